"""Prompt sources: the seed set, the six datasets' field mappings, malformed input with locations."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.fs as pafs
import pytest

from cogumi.curate.categorise import guess_difficulty, guess_domain
from cogumi.curate.reader import _line_splits
from cogumi.curate.rows import ERROR, OK
from cogumi.curate.sources import SEED_FILE, detect_format, iter_jsonl, parse_jsonl_lines, record_to_row
from cogumi.schema import DIFFICULTIES, DOMAINS

# one record per source, with that dataset's real column names
SOURCE_RECORDS = {
    "alpaca-gpt4": {"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output": "They nap."},
    "anthropic-hh": {"chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour...",
                     "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: No."},
    "codealpaca": {"instruction": "Write a function to add two numbers.", "input": "", "output": "def add..."},
    "dolly": {"instruction": "Write a poem about rain.", "context": "", "response": "Rain...",
              "category": "creative_writing"},
    "metamathqa": {"query": "What is 2+3?", "response": "5", "type": "GSM_Rephrased", "original_question": "x"},
    "openorca": {"id": "niv.1", "system_prompt": "You are an AI.", "question": "Why is the sky blue?",
                 "response": "Scattering."},
}


def test_seed_set_covers_every_domain_and_difficulty():
    rows = list(iter_jsonl(SEED_FILE))
    assert len(rows) >= 300
    assert all(r["status"] == OK and r["source"] == "cogumi-seed" for r in rows)
    cells = Counter((r["domain"], r["difficulty"]) for r in rows)
    assert set(cells) == {(d, f) for d in DOMAINS for f in DIFFICULTIES}
    assert min(cells.values()) >= 15
    texts = [r["instruction"] for r in rows]
    assert len(set(texts)) == len(texts)
    assert len({t.split()[0] for t in texts}) > 40  # varied openings, not a template
    first = [(r["domain"], r["difficulty"]) for r in rows[:18]]
    assert len(set(first)) == 18  # a small limit still covers every cell


@pytest.mark.parametrize("name", sorted(SOURCE_RECORDS))
def test_each_source_mapping(name):
    rec = SOURCE_RECORDS[name]
    assert detect_format(set(rec), "codealpaca.jsonl" if name == "codealpaca" else "data.jsonl") == name
    row = record_to_row(rec, "auto", "data.jsonl:1", "data-L1", "codealpaca" if name == "codealpaca" else "auto")
    assert row["status"] == OK, row["reason"]
    assert row["domain"] in DOMAINS and row["difficulty"] in DIFFICULTIES
    expected = {"alpaca-gpt4": "Summarise the text.\n\nCats sleep a lot.", "anthropic-hh": "How do I bake bread?",
                "codealpaca": "Write a function to add two numbers.", "dolly": "Write a poem about rain.",
                "metamathqa": "What is 2+3?", "openorca": "Why is the sky blue?"}[name]
    assert row["instruction"] == expected
    fixed = {"anthropic-hh": "conversation", "codealpaca": "code", "dolly": "creative", "metamathqa": "math"}
    if name in fixed:
        assert row["domain"] == fixed[name]


def test_explicit_mapping_reports_missing_field():
    row = record_to_row({"prompt": "hi"}, "metamathqa", "f.jsonl:3", "f-L3", "metamathqa")
    assert row["status"] == ERROR and row["reason"] == "f.jsonl:3: missing or empty field 'query'"


def test_bad_lines_become_error_rows_with_their_location():
    lines = [
        json.dumps({"instruction": "Explain recursion.", "domain": "code"}).encode(),
        b'{"instruction": "broken",',
        b"",
        "\u00e9t\u00e9".encode("latin-1"),
        b"[1, 2]",
        json.dumps({"instruction": "   "}).encode(),
        json.dumps({"text": "no prompt field"}).encode(),
        json.dumps({"instruction": "Solve 2x = 4.", "domain": "maths"}).encode(),
        json.dumps({"instruction": 42}).encode(),
        json.dumps({"instruction": "Write a haiku about snow.", "difficulty": "easy"}).encode(),
    ]
    rows = list(parse_jsonl_lines(iter(lines), 10, "in.jsonl", "auto", "auto", "in"))
    assert len(rows) == 9  # the blank line is not a row
    by_line = {int(r["location"].split(":")[1]): r for r in rows}
    assert by_line[10]["status"] == OK and by_line[10]["domain"] == "code"
    assert by_line[19]["status"] == OK and by_line[19]["domain"] == "creative"
    reasons = {n: by_line[n]["reason"] for n in (11, 13, 14, 15, 16, 17, 18)}
    assert "in.jsonl:11: malformed JSON" in reasons[11]
    assert "in.jsonl:13: line is not valid UTF-8" in reasons[13]
    assert "must be a JSON object, got list" in reasons[14]
    assert "missing or empty field 'instruction'" in reasons[15]
    assert "no prompt field" in reasons[16] and "text" in reasons[16]
    assert "unknown domain 'maths'" in reasons[17]
    assert "must be text, got int" in reasons[18]
    assert all(by_line[n]["status"] == ERROR and by_line[n]["stage"] == "load" for n in reasons)
    assert len({r["id"] for r in rows}) == len(rows)


def test_line_splits_give_exact_line_numbers(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"instruction": f"question {i} " + "x" * (i % 37)}) for i in range(500)]
    path.write_text("\n".join(lines))  # no trailing newline
    data = path.read_bytes()
    for target in (1, 100, 4096, 1 << 30):
        splits = _line_splits(pafs.LocalFileSystem(), str(path), target)
        assert splits[0][0] == 0 and splits[-1][1] == len(data)
        for (_, end, _), (start, _, _) in zip(splits, splits[1:]):
            assert end == start
        for start, _, line in splits:
            assert data[:start].count(b"\n") + 1 == line


def test_domain_and_difficulty_rules():
    assert guess_domain("Write a Python function that sorts a list") == "code"
    assert guess_domain("Calculate the area of a circle of radius 3") == "math"
    assert guess_domain("Write a haiku about the sea") == "creative"
    assert guess_domain("How does photosynthesis work in plants?") == "science"
    assert guess_domain("Should I take the job offer? Weigh the pros and cons") == "reasoning"
    assert guess_domain("Hi there, how was your weekend?") == "conversation"
    assert guess_difficulty("What is DNA?") == "easy"
    assert guess_difficulty("Prove that there are infinitely many primes.") == "hard"
    assert guess_difficulty("Describe how a bill becomes law in the United States, including the role of "
                            "committees and the president.") == "medium"


def test_input_id_is_kept_else_file_line():
    lines = [b'{"id": "q-7", "instruction": "Say hi."}', b'{"instruction": "Say bye."}',
             b'{"id": 42, "instruction": "Count."}', b'{"id": "", "instruction": "Empty id."}',
             b'{"id": ["x"], "instruction": "List id."}']
    rows = list(parse_jsonl_lines(iter(lines), 1, "p.jsonl", "auto", "auto", "p"))
    assert [r["id"] for r in rows[:3]] == ["q-7", "p-L2", "42"]
    assert all(r["status"] == OK for r in rows[:3])
    for r, line in ((rows[3], 4), (rows[4], 5)):  # an unusable id is an error row at its line, not a silent rename
        assert r["status"] == ERROR and r["id"] == f"p-L{line}"
        assert r["reason"].startswith(f"p.jsonl:{line}: field 'id' must be a non-empty string")
    assert record_to_row(SOURCE_RECORDS["openorca"], "auto", "o.jsonl:1", "o-L1", "auto")["id"] == "niv.1"


def test_duplicate_ids_name_both_lines_in_file_order():
    from cogumi.curate.sources import duplicate_ids

    pairs = [("p-L1", "p.jsonl:1"), ("a", "p.jsonl:10"), ("b", "p.jsonl:3"), ("a", "p.jsonl:9"), ("a", "p.jsonl:12"),
             ("p-L1", "p.jsonl:2")]  # in any order (parallel readers); an input id may collide with a line id
    assert duplicate_ids(pairs) == ["p.jsonl:2: id 'p-L1' is already used at p.jsonl:1",
                                    "p.jsonl:10: id 'a' is already used at p.jsonl:9 (and again at 1 more line(s))"]
    assert duplicate_ids([("x", "f:1"), ("y", "f:2")]) == []
    assert len(duplicate_ids([("x", f"f:{i}") for i in range(100)] + [("y", "g:1"), ("y", "g:2")], limit=1)) == 1
