"""Phase 1C: category-specific self-consistency distillation ("distill determinism").

For each prompt the local model generates with its category's settings (the
spec's CATEGORY_SETTINGS) and only consistent outputs are kept as training data:

- ``verified`` (math, code, knowledge): one greedy answer, kept when it matches the
  ground truth (final number for math, tests passing in the sandbox for code);
  without ground truth it is kept only if ``keep_unverified``;
- ``vote`` (reasoning, instruction): ``n_samples`` answers at the category's
  temperature, answers extracted and voted; kept at >= ``min_agreement`` as the
  longest solution with the majority answer (and, where ground truth exists and
  ``verify_votes``, only when the majority is right);
- ``diverse`` (creative): ``n_samples`` answers, up to ``max_diverse`` kept whose
  character 3-gram Jaccard similarity stays below ``diversity_threshold``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from cogumi.evaluate.answers import (
    char_ngrams,
    extract_code,
    final_number,
    format_number,
    jaccard,
    normalise_text,
    numbers_equal,
    short_answer,
)
from cogumi.evaluate.calls import Caller
from cogumi.evaluate.config import CategoryStrategy
from cogumi.evaluate.sandbox import run_program
from cogumi.models.inference import SamplingParams

NUMERIC = ("math",)


def code_program(text: str, row: dict[str, Any]) -> str:
    """The program that passes when ``text`` solves the row's code prompt."""
    code = extract_code(text)
    stub, entry = row.get("stub"), row.get("entry_point") or ""
    if stub:
        defines = re.search(rf"(?m)^\s*def\s+{re.escape(entry)}\s*\(", code)
        code = stub + ("    pass\n\n" + code if defines else code)
    return f"{code}\n\n{row.get('tests', '')}\n"


def answer_key(category: str, text: str, row: dict[str, Any], timeout_s: float = 5.0) -> str | None:
    """What two outputs must share to count as the same answer (None = no answer found)."""
    if category in NUMERIC:
        return format_number(final_number(text))
    if category == "code":
        if row.get("tests"):
            return "pass" if run_program(code_program(text, row), timeout_s=timeout_s).passed else "fail"
        return normalise_text(extract_code(text)) or None
    return short_answer(text) or None


def verify(category: str, text: str, key: str | None, row: dict[str, Any]) -> bool | None:
    """True/False against the row's ground truth; None when it has none."""
    if category == "code":
        return (key == "pass") if row.get("tests") else None
    expected = row.get("answer")
    if not expected:
        return None
    if category in NUMERIC or final_number(expected) is not None and re.fullmatch(r"-?[\d.,/]+", expected.strip()):
        return numbers_equal(key, expected) or numbers_equal(format_number(final_number(text)), expected)
    want = normalise_text(expected)
    return bool(want) and f" {want} " in f" {normalise_text(text)} "


def vote(keys: list[str | None]) -> tuple[str | None, float]:
    """(majority answer, its share of all samples); samples without an answer count against it."""
    found = [k for k in keys if k]
    if not found:
        return None, 0.0
    answer, count = Counter(found).most_common(1)[0]
    return answer, count / len(keys)


def pick_diverse(texts: list[str], limit: int, threshold: float) -> list[str]:
    """Up to ``limit`` non-empty texts, longest first, each below ``threshold`` similarity to those kept."""
    kept: list[tuple[str, set[str]]] = []
    for text in sorted({t.strip() for t in texts if t and t.strip()}, key=len, reverse=True):
        grams = char_ngrams(text)
        if all(jaccard(grams, g) < threshold for _, g in kept):
            kept.append((text, grams))
        if len(kept) == limit:
            break
    return [t for t, _ in kept]


def decide(category: str, strategy: CategoryStrategy, texts: list[str], row: dict[str, Any], *,
           min_agreement: float, max_diverse: int, diversity_threshold: float, keep_unverified: bool,
           verify_votes: bool, timeout_s: float) -> dict[str, Any]:
    """Which outputs of one prompt become training data, and why.

    Returns:
        ``{"kept": [texts], "keys": [...], "majority", "agreement", "verified", "decision"}``.
    """
    keys = [answer_key(category, t, row, timeout_s) for t in texts] if strategy.keep != "diverse" else []
    out: dict[str, Any] = {"kept": [], "keys": keys, "majority": None, "agreement": None, "verified": None}
    if strategy.keep == "diverse":
        out["kept"] = pick_diverse(texts, max_diverse, diversity_threshold)
        out["decision"] = f"kept {len(out['kept'])} diverse of {len(texts)}"
        return out
    if strategy.keep == "verified":
        text, key = texts[0], keys[0]
        ok = verify(category, text, key, row)
        out.update(majority=key, verified=ok)
        if ok or (ok is None and keep_unverified and text.strip()):
            out["kept"] = [text]
            out["decision"] = "kept: matches ground truth" if ok else "kept: no ground truth to check"
        else:
            out["decision"] = "dropped: " + ("wrong answer" if ok is False else "empty answer")
        return out
    majority, agreement = vote(keys)
    out.update(majority=majority, agreement=round(agreement, 4))
    if majority is None or agreement < min_agreement:
        out["decision"] = f"dropped: agreement {agreement:.2f} < {min_agreement:.2f}"
        return out
    best = max((t for t, k in zip(texts, keys) if k == majority), key=len)
    ok = verify(category, best, majority, row)
    out["verified"] = ok
    if verify_votes and ok is False:
        out["decision"] = f"dropped: majority answer {majority!r} contradicts ground truth"
        return out
    out["kept"] = [best]
    out["decision"] = f"kept: longest of the majority ({agreement:.0%} agree)"
    return out


class DistillStep:
    """Generate and filter one batch of prompt rows with the local model (a Ray Data actor's step)."""

    def __init__(self, model: Any, strategies: dict[str, Any], n_samples: int, min_agreement: float,
                 max_diverse: int, diversity_threshold: float, keep_unverified: bool, verify_votes: bool,
                 max_tokens: int, system_prompt: str | None, code_timeout_s: float, seed: int = 0):
        self.caller = Caller(model, attempts=2)
        self.strategies = {c: CategoryStrategy.model_validate(s) for c, s in strategies.items()}
        self.n, self.max_tokens, self.system_prompt, self.seed = n_samples, max_tokens, system_prompt, seed
        self.rules: dict[str, Any] = dict(min_agreement=min_agreement, max_diverse=max_diverse,
                                          diversity_threshold=diversity_threshold, keep_unverified=keep_unverified,
                                          verify_votes=verify_votes, timeout_s=code_timeout_s)

    def samples(self, row: dict[str, Any], strategy: CategoryStrategy) -> tuple[list[str], dict[str, Any]]:
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + \
                   [{"role": "user", "content": row["prompt"]}]
        greedy = not strategy.generate_sample
        count = 1 if greedy else self.n
        texts: list[str] = []
        errors: list[str] = []
        acct: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for i in range(count):
            params = SamplingParams(max_tokens=self.max_tokens, temperature=0.0 if greedy else strategy.generate_temp,
                                    seed=self.seed + i)
            out = self.caller.chat(messages, params)
            acct["calls"] += out.attempts
            acct["prompt_tokens"] += out.prompt_tokens
            acct["completion_tokens"] += out.completion_tokens
            if out.error:
                errors.append(out.error)
            else:
                texts.append(out.text or "")
        acct["error"] = errors[0] if errors and not texts else None
        return texts, acct

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        category = row["category"]
        strategy = self.strategies.get(category)
        if strategy is None:
            return row | {"decision": f"skipped: no strategy for category '{category}'", "kept": "[]",
                          "samples": "[]", "error": None}
        texts, acct = self.samples(row, strategy)
        if not texts:
            return row | {"decision": "error", "error": acct["error"], "kept": "[]", "samples": "[]",
                          **{f"gen_{k}": v for k, v in acct.items() if k != "error"}}
        d = decide(category, strategy, texts, row, **self.rules)
        return row | {"samples": json.dumps(texts), "keys": json.dumps(d["keys"]), "kept": json.dumps(d["kept"]),
                      "majority": d["majority"], "agreement": d["agreement"], "verified": d["verified"],
                      "decision": d["decision"], "strategy": strategy.keep, "error": None,
                      **{f"gen_{k}": v for k, v in acct.items() if k != "error"}}

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.one(r) for r in rows]

    def close(self) -> None:
        self.caller.close()
