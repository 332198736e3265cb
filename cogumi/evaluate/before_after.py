"""Two systems on the same held-out items: likelihood of the references, and answers that are checked.

Used by the training gate (a candidate against the model it would replace: likelihoods
only, cheap) and by the final evaluation (the starting model against the served system:
likelihoods plus generated answers scored by exact match or the code sandbox).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cogumi.evaluate.heldout import HeldOutItem, Scorer, code_items, math_items, per_token, text_items
from cogumi.evaluate.paired import PairedResult, compare

log = logging.getLogger(__name__)

SUITE_DATA = {"text": "bundled heldout.txt paragraphs", "math": "simple-math heldout split",
              "code": "bundled MBPP problems"}


def held_out_suites(text: int | None, math: int, code: int) -> dict[str, list[HeldOutItem]]:
    """The held-out items of each suite (a suite with 0 items is left out)."""
    suites = {"text": text_items(text)}
    if math:
        suites["math"] = math_items(math)
    if code:
        suites["code"] = code_items(code)
    return {k: v for k, v in suites.items() if v}


def item_nll(scorer: Scorer, item: HeldOutItem) -> tuple[float, int]:
    """(NLL, tokens) of the item's reference under ``scorer``."""
    if item.suite == "text":
        return scorer.text_nll(item.reference)
    return scorer.answer_nll(item.messages, item.reference)


def likelihood_results(suites: dict[str, list[HeldOutItem]], a: Callable[[HeldOutItem], Scorer],
                       b: Callable[[HeldOutItem], Scorer]) -> tuple[list[PairedResult], list[dict[str, Any]]]:
    """Per-suite paired comparison of mean NLL per token (lower is better).

    Args:
        a, b: the scorer each system uses for an item (the served system picks one per route).

    Returns:
        (one result per suite, per-item rows).
    """
    results, rows = [], []
    for suite, items in suites.items():
        pa, pb, ta, tb = [], [], [0.0, 0], [0.0, 0]
        for item in items:
            na, ka = item_nll(a(item), item)
            nb, kb = item_nll(b(item), item)
            if not ka or not kb:
                continue
            pa.append(per_token(na, ka))
            pb.append(per_token(nb, kb))
            ta = [ta[0] + na, ta[1] + ka]
            tb = [tb[0] + nb, tb[1] + kb]
            rows.append({"suite": suite, "id": item.id, "nll_a": round(pa[-1], 5), "nll_b": round(pb[-1], 5),
                         "tokens": ka})
        if pa:
            results.append(compare(f"{suite}: reference NLL/token", f"{SUITE_DATA[suite]}, {ta[1]} tokens", pa, pb,
                                   "lower", ta[0] / ta[1], tb[0] / tb[1]))
    return results, rows


def answer_results(suites: dict[str, list[HeldOutItem]], answer_a: Callable[[HeldOutItem], str],
                   answer_b: Callable[[HeldOutItem], str], timeout_s: float = 5.0
                   ) -> tuple[list[PairedResult], list[dict[str, Any]]]:
    """Generated answers of both systems, checked: math by exact number, code by its tests in the sandbox."""
    from cogumi.evaluate.answers import final_number, format_number, numbers_equal
    from cogumi.evaluate.codebench import score

    def correct(item: HeldOutItem, text: str) -> tuple[bool, str]:
        if item.suite == "math":
            got = format_number(final_number(text))
            return numbers_equal(got, item.answer), f"answered {got}"
        result = score(item.problem, text, timeout_s=timeout_s)
        return bool(result["passed"]), f"{result['status']}: {result['reason'][:120]}"

    results, rows = [], []
    for suite in ("math", "code"):
        items = suites.get(suite, [])
        ca, cb = [], []
        for item in items:
            text_a, text_b = answer_a(item), answer_b(item)
            (ok_a, why_a), (ok_b, why_b) = correct(item, text_a), correct(item, text_b)
            ca.append(float(ok_a))
            cb.append(float(ok_b))
            rows.append({"suite": suite, "id": item.id, "correct_a": ok_a, "correct_b": ok_b, "why_a": why_a,
                         "why_b": why_b, "answer_a": text_a[:400], "answer_b": text_b[:400]})
        if items:
            metric = "math: exact-match accuracy" if suite == "math" else "code: pass@1 (sandbox)"
            results.append(compare(metric, f"{SUITE_DATA[suite]}, greedy", ca, cb, "higher"))
    return results, rows
