"""The routing-set contract and the local proxy set's tasks and answer checks."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi.errors import CogumiError
from cogumi.route.data import has_features, has_scores, read_routing_set, validate_rows
from cogumi.route.proxy import check_answer, label_proxy_rows, proxy_tasks
from tests.unit.route.support import synthetic_rows


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_jsonl_and_parquet_read_the_same(tmp_path):
    rows = synthetic_rows(20)
    a = read_routing_set(write_jsonl(tmp_path / "r.jsonl", rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    b = read_routing_set(str(tmp_path / "r.parquet"))
    assert a == b and has_features(a) and not has_scores(a)


def test_missing_columns_and_bad_labels_are_named(tmp_path):
    with pytest.raises(CogumiError, match="lacks column.*domain"):
        validate_rows([{"prompt": "x", "label": 1}], "t")
    with pytest.raises(CogumiError, match="label 'yes'"):
        validate_rows([{"prompt": "x", "domain": "code", "label": "yes"}], "t")
    with pytest.raises(CogumiError, match="does not exist"):
        read_routing_set(str(tmp_path / "nope.parquet"))
    with pytest.raises(CogumiError, match="neither"):
        (tmp_path / "r.csv").write_text("a,b\n")
        read_routing_set(str(tmp_path / "r.csv"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"\n')
    with pytest.raises(CogumiError, match="line 1"):
        read_routing_set(str(tmp_path / "bad.jsonl"))


def test_confidence_columns_are_all_or_none_and_nan_entropy_is_allowed():
    rows = [{"prompt": "p", "domain": "code", "label": 0, "base_mean_logprob": -1.0}]
    with pytest.raises(CogumiError, match="some confidence columns"):
        validate_rows(rows, "t")
    full = [{**rows[0], "base_min_logprob": -2.0, "base_entropy": math.nan, "base_length": 1.0,
             "base_score": 3, "modifier_score": 8}]
    out = validate_rows(full, "t")
    assert has_features(out) and has_scores(out)
    assert not has_features(validate_rows([{"prompt": "p", "domain": "code", "label": 1}], "t"))


def test_proxy_tasks_cover_the_domains_and_refuse_unknown_ones():
    rows = proxy_tasks(30, ["code", "reasoning", "automation"], seed=1)
    assert len(rows) == 30 and {r["domain"] for r in rows} == {"code", "reasoning", "automation"}
    assert len({r["prompt"] for r in rows}) == 30
    assert rows == proxy_tasks(30, ["code", "reasoning", "automation"], seed=1)
    with pytest.raises(CogumiError, match="legal"):
        proxy_tasks(10, ["legal"])


@pytest.mark.parametrize("answer,expected,check,ok", [
    ("23 + 58 = 81", 81, "number", True), ("The answer is 80.", 81, "number", False),
    ("1,024", 1024, "number", True), ("POST", "POST", "word", True), ("Use POST.", "POST", "word", False),
    ("`30 5 * * *`", "30 5 * * *", "cron", True), ("0 5 * * *", "30 5 * * *", "cron", False),
    ('Sure: {"age": 31}', {"age": 31}, "json", True), ('{"age": "31"}', {"age": 31}, "json", False),
    ("{not json}", {"a": 1}, "json", False)])
def test_answer_checks(answer, expected, check, ok):
    assert check_answer(answer, json.dumps(expected), check) is ok


def test_proxy_labels_mark_wrong_base_answers_as_needing_a_modifier():
    rows = [{"prompt": "q", "domain": "reasoning", "expected": "4", "check": "number", "base_answer": "4"},
            {"prompt": "q2", "domain": "reasoning", "expected": "5", "check": "number", "base_answer": "six"}]
    out = label_proxy_rows(rows)
    assert [(r["label"], r["base_score"]) for r in out] == [(0, 1.0), (1, 0.0)]


def test_auto_source_falls_back_to_the_proxy_when_the_modifiers_set_has_one_label(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cogumi.artifacts import RunDir
    from cogumi.config import load_config
    from cogumi.route.stage import resolve_source

    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r"])
    run = RunDir.open(cfg.run.root, cfg.run.name)
    path = tmp_path / "r" / "modifiers" / "routing.parquet"
    path.parent.mkdir(parents=True)
    rows = [{"prompt": f"p{i}", "domain": "code", "label": 0} for i in range(12)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    src = resolve_source(cfg, run)
    assert src.kind == "local-proxy" and "fallback" in src.description and "labels [0]" in src.description
    pq.write_table(pa.Table.from_pylist([{**r, "label": i % 2} for i, r in enumerate(rows)]), path)
    assert resolve_source(cfg, run).kind == "modifiers"
    cfg.router.data.source = "modifiers"  # asked for explicitly: no silent fallback
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert resolve_source(cfg, run).kind == "modifiers"
