"""Judge verdict parsing, the response cache, teacher routing and category settings."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cogumi.config import CogumiConfig
from cogumi.endpoints.cache import ResponseCache, cache_key
from cogumi.curate.config import CurateConfig, TeacherConfig
from cogumi.endpoints.quality_judge import (
    QUALITY_RUBRIC,
    QUALITY_VERDICT_SCHEMA,
    parse_quality_verdict,
    quality_score,
)
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
    assert parse_quality_verdict(text) == GOOD


@pytest.mark.parametrize("text", [
    "", "I think it is good.", '{"accuracy": 4, "completeness": 2, "coherence": 1, "helpfulness": 2}',
    '{"accuracy": 3, "completeness": 2, "coherence": 1}', '{"accuracy": 0.7, "completeness": 0.7, '
    '"coherence": 0.7, "helpfulness": 0.7}', "accuracy: 3.5 completeness: 2 coherence: 1 helpfulness: 2",
])
def test_bad_verdicts_are_none(text):
    assert parse_quality_verdict(text) is None


def test_rubric_and_schema_match_the_spec():
    assert QUALITY_RUBRIC == {"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}
    props = QUALITY_VERDICT_SCHEMA["json_schema"]["schema"]["properties"]
    assert props["accuracy"]["enum"] == [0, 1, 2, 3] and props["coherence"]["enum"] == [0, 1, 2]
    assert quality_score({"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}) == 10.0
    assert quality_score(dict.fromkeys(QUALITY_RUBRIC, 0)) == 1.0


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


class _FakeBackend:
    """An endpoint that answers (or times out) without a server, counting calls."""

    def __init__(self, fail_with=None):
        self.calls, self.fail_with = 0, fail_with

    def chat(self, messages, params):
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return Generation("an answer", "stop", Usage(12, 5), "m", "openai", 0.1)

    def close(self):
        pass


def _endpoint(tmp_path, backend, limiter=None, attempts=3):
    from cogumi.config_base import ModelConfig
    from cogumi.endpoints.metered import MeteredEndpoint
    from cogumi.endpoints.config import RetryConfig
    from cogumi.endpoints.limiter import LocalLimiter

    lim = limiter or LocalLimiter()
    lim.configure("t", 6000, 10**7)
    ep = MeteredEndpoint("t", ModelConfig(backend="openai", base_url="http://x/v1", model="m"), 2.0, 10.0,
                         RetryConfig(max_attempts=attempts, base_s=0.01, max_s=0.02), lim,
                         ResponseCache(str(tmp_path / "cache")))
    ep._backend = backend
    return ep


def test_an_answer_is_cached_the_moment_it_arrives(tmp_path):
    from cogumi.endpoints.limiter import LocalLimiter

    class DiesAfterTheAnswer(LocalLimiter):
        def settle(self, *args):  # the first thing that touches the answer: the run is killed here
            raise KeyboardInterrupt

    backend = _FakeBackend()
    with pytest.raises(KeyboardInterrupt):
        _endpoint(tmp_path, backend, DiesAfterTheAnswer()).chat([{"role": "user", "content": "q"}], SamplingParams())
    again = _endpoint(tmp_path, backend).chat([{"role": "user", "content": "q"}], SamplingParams())
    assert again.cached and again.generation.text == "an answer" and backend.calls == 1  # paid once


def test_cache_entries_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    cache = ResponseCache(str(tmp_path / "c"))
    cache.put("ef" * 32, Generation("x", "stop", Usage(1, 1), "m", "openai", 0.0))
    folder = str(tmp_path / "c" / "ef")
    assert synced[-2].startswith(os.path.join(folder, "ef" * 32 + ".json.")) and synced[-1] == folder
    assert cache.get("ef" * 32).text == "x" and not list((tmp_path / "c").rglob("*.tmp"))


def test_timed_out_attempts_are_billed_as_an_estimate(tmp_path):
    import httpx
    import openai

    from cogumi.endpoints.metered import estimate_prompt_tokens
    from cogumi.endpoints.retry import RetriesExhausted

    msgs = [{"role": "user", "content": "a question of some length"}]
    timeout = openai.APITimeoutError(request=httpx.Request("POST", "http://x/v1/chat/completions"))
    with pytest.raises(RetriesExhausted) as err:
        _endpoint(tmp_path, _FakeBackend(timeout)).chat(msgs, SamplingParams())
    assert err.value.unanswered == 3  # every attempt reached the server and may have been billed
    assert err.value.estimated_usd == pytest.approx(3 * estimate_prompt_tokens(msgs) * 2.0 / 1e6)

    class TimesOutOnce(_FakeBackend):
        def chat(self, messages, params):
            self.fail_with = timeout if self.calls == 0 else None
            return super().chat(messages, params)

    res = _endpoint(tmp_path, TimesOutOnce()).chat(msgs, SamplingParams(seed=5))
    assert (res.attempts, res.unanswered) == (2, 1)
    assert res.estimated_usd == pytest.approx(12 * 2.0 / 1e6)  # the answer's own prompt count, same prompt
    assert res.cost_usd == pytest.approx((12 * 2.0 + 5 * 10.0) / 1e6 + res.estimated_usd)


def test_report_bills_unanswered_attempts_and_marks_the_estimate():
    from cogumi.curate.report import CurationStats, render_markdown
    from cogumi.curate.rows import ERROR, new_row

    stats = CurationStats({"t": (2.0, 10.0)})
    answered = new_row(teacher="t", prompt_tokens=12, completion_tokens=5, cost_usd=(12 * 2 + 5 * 10 + 12 * 2) / 1e6,
                       cached=False, attempts=2, unanswered_attempts=1, estimated_usd=12 * 2 / 1e6)
    failed = new_row(teacher="t", status=ERROR, stage="teacher", reason="timed out", cost_usd=30 * 2 / 1e6,
                     cached=False, attempts=3, unanswered_attempts=3, estimated_usd=30 * 2 / 1e6)
    stats.add([answered, failed])
    summary = stats.summary()
    cost = summary["cost"]["t"]
    assert cost["calls"] == 1 and cost["unanswered_calls"] == 4
    assert cost["usd"] == pytest.approx((12 * 2 + 5 * 10 + 12 * 2 + 30 * 2) / 1e6)
    assert cost["estimated_usd"] == pytest.approx((12 * 2 + 30 * 2) / 1e6)
    assert summary["cost_total_usd"] == pytest.approx(cost["usd"])
    assert "for 4 attempt(s) that timed out on the client" in render_markdown(summary, {})
