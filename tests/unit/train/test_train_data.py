"""Reading, checking and splitting training files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogumi.artifacts import RunDir
from cogumi.errors import CogumiError
from cogumi.train.data import check_lengths, read_examples, resolve_ref, split_examples, to_prompt_completion
from tests.unit.train.helpers import failure_rows, sum_rows, write_jsonl, write_parquet


@pytest.fixture
def run(tmp_path):
    return RunDir.open(str(tmp_path / "runs"), "t")


def test_curated_parquet_via_stage_reference(run):
    write_parquet(Path(run.path) / "curate" / "curated.parquet", sum_rows(5))
    rows = read_examples(resolve_ref("stage:curate/curated.parquet", run), "train.data")
    assert len(rows) == 5 and rows[2]["instruction"] == "What is 2 plus 2?" and rows[2]["domain"] == "math"


def test_failure_jsonl_output_becomes_response(tmp_path, run):
    path = write_jsonl(tmp_path / "failures.jsonl", failure_rows(3))
    rows = read_examples(resolve_ref(str(path), run), "train.data")
    assert [r["response"] for r in rows] == ["0 times 3 is 0.", "1 times 3 is 3.", "2 times 3 is 6."]


def test_missing_stage_file_says_which_stage_to_run(run):
    with pytest.raises(CogumiError, match=r"does not exist.*run the stage"):
        read_examples(resolve_ref("stage:evaluate/failures.jsonl", run), "train.data")


def test_empty_file_is_an_error(tmp_path, run):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CogumiError, match="holds no examples"):
        read_examples(resolve_ref(str(tmp_path / "empty.jsonl"), run), "train.data")


def test_malformed_line_is_named(tmp_path, run):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": oops}\n')
    with pytest.raises(CogumiError, match=r"line 2 of .*bad.jsonl is not valid JSON") as exc:
        read_examples(resolve_ref(str(tmp_path / "bad.jsonl"), run), "train.data")
    assert exc.value.where.endswith("bad.jsonl:2")


def test_row_without_response_is_an_error(tmp_path, run):
    write_jsonl(tmp_path / "half.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "only"}])
    with pytest.raises(CogumiError, match="missing or empty 'response'"):
        read_examples(resolve_ref(str(tmp_path / "half.jsonl"), run), "train.data")


def test_parquet_without_needed_columns(tmp_path, run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["x"], "answer": ["y"]}), tmp_path / "other.parquet")
    with pytest.raises(CogumiError, match="lacks column"):
        read_examples(resolve_ref(str(tmp_path / "other.parquet"), run), "train.data")


def test_corrupt_parquet_and_unknown_format(tmp_path, run):
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(CogumiError, match="not a readable Parquet"):
        read_examples(resolve_ref(str(tmp_path / "x.parquet"), run), "train.data")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(CogumiError, match="neither .parquet nor .jsonl"):
        read_examples(resolve_ref(str(tmp_path / "x.csv"), run), "train.data")


def test_split_is_seeded_and_disjoint():
    rows = sum_rows(20)
    train, val = split_examples(rows, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 18
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    assert split_examples(rows, 0.1, seed=3) == (train, val)
    assert split_examples(rows, 0.0, seed=3) == (rows, [])


def test_prompt_completion_form():
    pc = to_prompt_completion(sum_rows(1)[0])
    assert pc["prompt"][0]["role"] == "user" and pc["completion"][0]["role"] == "assistant"


def test_sequence_length_below_the_chat_template_is_refused(tiny_llama_dir):
    from cogumi.models.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_llama_dir))
    stats = check_lengths(tok, sum_rows(4), 128)
    assert stats["template_tokens"] > 10 and stats["truncated_fraction"] == 0.0
    with pytest.raises(CogumiError, match=r"smaller than the chat template"):
        check_lengths(tok, sum_rows(4), stats["template_tokens"])
    long = [{"instruction": "word " * 200, "response": "ok"}]
    assert check_lengths(tok, long, 128)["truncated_fraction"] == 1.0
