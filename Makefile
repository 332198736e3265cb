# Set-up and test entry points. `make demo` and `make test` each create the
# virtual environment and install Cogumi first, so each works on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# CPU machines: torch==2.13.0 (a local CPU build where one is on disk, as on our CI).
# GPU machines: TORCH="torch==2.13.0" from PyPI is the CUDA build; any torch<=2.14.1 works.
TORCH   ?= torch==2.13.0
PYTEST_ARGS ?=
CONFIG  ?= configs/local.yaml

.PHONY: install demo test test-fast bench lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The main job: the whole pipeline on local Ray, ending with the endpoint up (Ctrl-C stops it).
# SERVE=--no-serve probes the endpoint, writes the report and exits.
SERVE   ?=
demo: install
	$(BIN)/cogumi doctor --config $(CONFIG)
	$(BIN)/cogumi pipeline --config $(CONFIG) $(SERVE)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure" >&2; fi; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/backends.py

lint: install
	$(BIN)/ruff check cogumi jobs tests benchmarks
	$(BIN)/mypy cogumi

clean:
	rm -rf $(VENV) runs .pytest_cache
