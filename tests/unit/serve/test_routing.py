"""Routing without models: confidence, domains, escalation, overrides, the router loader."""

from __future__ import annotations

import math

import pytest

from cogumi.errors import CogumiError
from cogumi.models.inference import Generation, TokenLogprob, Usage
from cogumi.route.builtin import CascadeRouter, answer_confidence, classify_domain, detect_escalation
from cogumi.route.contract import Router
from cogumi.route.loader import load_router
from cogumi.serve.config import RoutingSettings
from cogumi.serve.service import ChatService
from cogumi.serve.worker import RequestError


def gen(*logprobs: float) -> Generation:
    return Generation("answer", "stop", Usage(3, len(logprobs)), "m", "test", 0.1,
                      [TokenLogprob(f"t{i}", lp) for i, lp in enumerate(logprobs)])


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_confidence_is_geometric_mean_probability():
    assert answer_confidence(gen(math.log(0.9), math.log(0.4))) == pytest.approx(math.sqrt(0.9 * 0.4))
    assert answer_confidence(Generation("x", "stop", Usage(), "m", "t", 0.0, None)) is None


def test_cascade_keeps_a_confident_base_answer():
    d = CascadeRouter(0.8).route(user("write a python function"), gen(-0.01, -0.02), ["code"])
    assert (d.modifier, d.reason, d.route) == (None, "confident", "base")
    assert d.confidence > 0.8 and d.domain == "code"


def test_cascade_sends_a_doubtful_answer_to_the_matching_modifier():
    d = CascadeRouter(0.8).route(user("fix this python bug"), gen(-2.0, -1.5), ["code", "reasoning"])
    assert (d.modifier, d.reason) == ("code", "low-confidence")
    assert d.confidence < 0.3


def test_cascade_without_domain_or_modifiers_stays_on_base():
    r = CascadeRouter(0.8)
    assert r.route(user("hello there"), gen(-3.0), ["code"]).reason == "no-domain"
    assert r.route(user("python code"), gen(-3.0), []).reason == "no-modifiers"


def test_pre_route_uses_the_conversation_only():
    d = CascadeRouter(0.8, needs_base_answer=False).route(user("automate this cron workflow"), None,
                                                           ["code", "automation"])
    assert (d.modifier, d.reason, d.confidence) == ("automation", "pre-route", None)


def test_classify_domain_weights_the_latest_turn_and_ignores_assistant_text():
    msgs = [{"role": "user", "content": "why is the sky blue"}, {"role": "assistant", "content": "python python"},
            {"role": "user", "content": "now write python code for it"}]
    best, scores = classify_domain(msgs, ["code", "reasoning"])
    assert best == "code" and scores["code"] > scores["reasoning"] > 0
    assert classify_domain(user("good morning"), ["code"])[0] is None


@pytest.mark.parametrize("text,expected", [
    ("That's wrong, try again", 1.0), ("never mind", 1.0), ("it doesn't work!!!", 1.0),
    ("thanks, that works", 0.0), ("can you also add tests?", 0.0)])
def test_escalation_needs_a_previous_answer(text, expected):
    convo = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
             {"role": "user", "content": text}]
    assert detect_escalation(convo) == expected
    assert detect_escalation(user(text)) == 0.0  # nothing to be dissatisfied with yet


def test_builtin_router_satisfies_the_protocol():
    assert isinstance(CascadeRouter(), Router)
    assert isinstance(load_router(None, 0.7, "pre"), CascadeRouter)
    assert load_router(None, 0.7, "pre").needs_base_answer is False


def test_missing_router_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(CogumiError, match="does not exist"):
        load_router(str(tmp_path / "nope"), 0.8, "cascade")


def service() -> ChatService:
    return ChatService(object(), object(), ["code", "reasoning"], CascadeRouter(), RoutingSettings())


@pytest.mark.parametrize("model,header,kind,modifier", [
    ("cogumi", None, "auto", None), ("cogumi/auto", None, "auto", None), ("cogumi/base", None, "base", None),
    ("cogumi/code", None, "modifier", "code"), ("cogumi", "reasoning", "modifier", "reasoning"),
    ("cogumi/code", "base", "base", None), ("cogumi/code", "AUTO", "auto", None)])
def test_overrides_by_model_name_and_header(model, header, kind, modifier):
    t = service().resolve(model, header)
    assert (t.kind, t.modifier) == (kind, modifier)


@pytest.mark.parametrize("model,header,status", [
    ("gpt-4", None, 404), ("cogumi/math", None, 404), ("cogumi/../etc/passwd", None, 400),
    ("cogumi/Code", None, 400), ("cogumi", "../code", 400), ("cogumi", "nope", 404)])
def test_bad_model_or_route_names_are_4xx(model, header, status):
    with pytest.raises(RequestError) as err:
        service().resolve(model, header)
    assert err.value.status == status


def test_model_ids_list_every_route():
    assert service().model_ids() == ["cogumi", "cogumi/base", "cogumi/code", "cogumi/reasoning"]
