"""Prompt sets: the bundled six-category and simple-math sets, file loaders, selection, errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi.errors import CogumiError
from cogumi.evaluate.config import CATEGORIES
from cogumi.evaluate.prompts import load_prompts, select


def test_bundled_set_covers_the_six_categories():
    rows = load_prompts("bundled")
    assert {r["category"] for r in rows} == set(CATEGORIES)
    assert all(len([r for r in rows if r["category"] == c]) == 5 for c in CATEGORIES)
    assert all("tests" in r for r in rows if r["category"] == "code")
    assert all("answer" in r for r in rows if r["category"] == "math")


def test_bundled_math_has_train_and_heldout_splits():
    rows = load_prompts("bundled-math")
    train, held = select(rows, ["math"], None, "train"), select(rows, ["math"], None, "heldout")
    assert len(train) == 100 and len(held) == 60
    assert not {r["id"] for r in train} & {r["id"] for r in held}


def test_select_takes_the_first_n_per_category():
    rows = select(load_prompts("bundled"), ["math", "code"], 2)
    assert [r["id"] for r in rows] == ["math-1", "math-2", "code-1", "code-2"]
    with pytest.raises(CogumiError, match="no prompts in the categories"):
        select(load_prompts("bundled"), ["poetry"], 2)


def test_file_loaders_map_common_column_names(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "What is 2+2?", "domain": "math", "answer": "Two and two.\n#### 4"},
        {"question": "Write a haiku", "category": "creativity"}]))
    rows = load_prompts(str(jsonl))
    assert rows[0]["prompt"] == "What is 2+2?" and rows[0]["answer"] == "4"  # GSM8K-style solution
    assert rows[1]["category"] == "creative"
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "Hi", "category": "knowledge", "id": "k1"}]), parquet)
    assert load_prompts(str(parquet))[0]["id"] == "k1"


@pytest.mark.parametrize("content, match", [
    ('{"category": "math"}', "no prompt text"),
    ('{"prompt": "x"}', "no category"),
    ('{"prompt": "x", "category": "math", "id": 1}\n{"prompt": "y", "category": "math", "id": 1}', "not unique"),
    ("not json", "cannot read prompts"),
])
def test_bad_prompt_files_are_clear_errors(tmp_path, content, match):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(CogumiError, match=match):
        load_prompts(str(f))


def test_humaneval_as_a_code_prompt_set():
    rows = load_prompts("humaneval")
    assert len(rows) == 164 and rows[0]["category"] == "code" and "check(" in rows[0]["tests"]
