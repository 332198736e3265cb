"""Judge verdict parsing, the response cache, teacher routing and category settings."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cogumi.config import CogumiConfig
from cogumi.curate.cache import ResponseCache, cache_key
from cogumi.curate.config import CurateConfig, TeacherConfig
from cogumi.curate.judge import RUBRIC, VERDICT_SCHEMA, parse_verdict, total_score
from cogumi.curate.teacher import assign_teacher, sampling_for
from cogumi.models.inference import Generation, SamplingParams, Usage

GOOD = {"accuracy": 3, "completeness": 2, "coherence": 1, "helpfulness": 2}


@pytest.mark.parametrize("text", [
    json.dumps(GOOD),
    "```json\n" + json.dumps(GOOD) + "\n```",
    "Here is my verdict: " + json.dumps(GOOD) + " Hope this helps!",
    '{"Factual Accuracy": "3", "Completeness": 2.0, "coherence": 1, "helpfulness": "2/3"}',
    "accuracy: 3\ncompleteness: 2\ncoherence: 1\nhelpfulness: 2",
    '{"scores": {"x": 1}} then {"accuracy": 3, "completeness": 2, "coherence": 1, "helpfulness": 2}',
])
def test_verdicts_parse_robustly(text):
    assert parse_verdict(text) == GOOD


@pytest.mark.parametrize("text", [
    "", "I think it is good.", '{"accuracy": 4, "completeness": 2, "coherence": 1, "helpfulness": 2}',
    '{"accuracy": 3, "completeness": 2, "coherence": 1}', '{"accuracy": 0.7, "completeness": 0.7, '
    '"coherence": 0.7, "helpfulness": 0.7}', "accuracy: 3.5 completeness: 2 coherence: 1 helpfulness: 2",
])
def test_bad_verdicts_are_none(text):
    assert parse_verdict(text) is None


def test_rubric_and_schema_match_the_spec():
    assert RUBRIC == {"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}
    props = VERDICT_SCHEMA["json_schema"]["schema"]["properties"]
    assert props["accuracy"]["enum"] == [0, 1, 2, 3] and props["coherence"]["enum"] == [0, 1, 2]
    assert total_score({"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}) == 10.0
    assert total_score(dict.fromkeys(RUBRIC, 0)) == 1.0


def test_cache_key_depends_on_everything_that_changes_the_answer():
    msgs = [{"role": "user", "content": "hi"}]
    base = cache_key("openai|http://a/v1||", "m", msgs, SamplingParams())
    assert base == cache_key("openai|http://a/v1||", "m", [{"content": "hi", "role": "user"}], SamplingParams())
    assert base != cache_key("openai|http://b/v1||", "m", msgs, SamplingParams())
    assert base != cache_key("openai|http://a/v1||", "m2", msgs, SamplingParams())
    assert base != cache_key("openai|http://a/v1||", "m", [{"role": "user", "content": "hi!"}], SamplingParams())
    assert base != cache_key("openai|http://a/v1||", "m", msgs, SamplingParams(temperature=0.7))
    assert base != cache_key("openai|http://a/v1||", "m", msgs, SamplingParams(seed=1))


def test_cache_round_trip_and_corrupt_entries(tmp_path):
    cache = ResponseCache(str(tmp_path / "c"))
    gen = Generation("answer é", "stop", Usage(3, 4), "m", "openai", 0.5)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, gen)
    got = cache.get("ab" * 32)
    assert (got.text, got.usage.prompt_tokens, got.usage.completion_tokens) == ("answer é", 3, 4)
    assert len(ResponseCache(str(tmp_path / "c"))) == 1
    (tmp_path / "c" / "cd").mkdir()
    (tmp_path / "c" / "cd" / ("cd" * 32 + ".json")).write_text('{"text": "half')
    assert cache.get("cd" * 32) is None
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_routing_follows_shares_and_eligibility():
    teachers = [TeacherConfig(name="llama405b", share=40), TeacherConfig(name="gpt4o", share=35),
                TeacherConfig(name="qwen-coder", share=25)]
    counts = Counter(assign_teacher(f"row{i}", "reasoning", "medium", teachers).name for i in range(6000))
    assert abs(counts["llama405b"] / 6000 - 0.40) < 0.03
    assert abs(counts["gpt4o"] / 6000 - 0.35) < 0.03
    assert abs(counts["qwen-coder"] / 6000 - 0.25) < 0.03
    assert assign_teacher("row1", "x", "y", teachers).name == assign_teacher("row1", "x", "y", teachers).name
    only_code = [TeacherConfig(name="coder", domains=["code"]), TeacherConfig(name="hard", difficulties=["hard"])]
    assert assign_teacher("r", "code", "easy", only_code).name == "coder"
    assert assign_teacher("r", "math", "hard", only_code).name == "hard"
    assert assign_teacher("r", "math", "easy", only_code) is None


def test_category_settings_follow_the_spec_table():
    cfg = CurateConfig()
    assert sampling_for(cfg, "math", 0).temperature == 0.0
    assert sampling_for(cfg, "creative", 0).temperature == 0.7
    assert sampling_for(cfg, "reasoning", 0).temperature == 0.1
    capped = CurateConfig(max_new_tokens=32)
    assert sampling_for(capped, "code", 3).max_tokens == 32 and sampling_for(capped, "code", 3).seed == 3
    assert CogumiConfig().curate.min_judge_score == 7.0


def test_config_rejects_duplicate_teachers_and_bad_ranges():
    with pytest.raises(ValueError, match="unique"):
        CurateConfig(teachers=[TeacherConfig(name="a"), TeacherConfig(name="a")])
    with pytest.raises(ValueError, match="min_tokens"):
        CurateConfig.model_validate({"filters": {"min_tokens": 10, "max_tokens": 5}})
