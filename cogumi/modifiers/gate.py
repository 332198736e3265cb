"""Promotion of a domain adapter: served only when it is not worse than the base it modifies.

Two checks, both on items the adapter never trained on: the stage's own held-out tasks
(accuracy must not drop), and for code/math domains the likelihood of held-out reference
answers (:mod:`cogumi.evaluate.heldout`; worse with a 95 % interval excluding zero rejects).
"""

from __future__ import annotations

from typing import Any

from cogumi.config import ModelConfig
from cogumi.evaluate.heldout import code_items, math_items, scorer_for
from cogumi.evaluate.before_after import likelihood_results
from cogumi.evaluate.paired import PairedResult

SUITES = {"code": code_items, "math": math_items}


def gate_adapter(kind: str, base: ModelConfig, adapter: str, holdout: dict[str, Any],
                 items: int) -> tuple[bool, str, list[dict[str, Any]]]:
    """(promoted, why, likelihood results) of one adapter against its base.

    Args:
        kind: the domain's verification kind (``code``, ``math`` or ``judge``).
        adapter: the adapter as ``base``'s backend loads it (GGUF LoRA or PEFT folder).
        holdout: the ``holdout`` entry of the stage's validation summary.
    """
    problems: list[str] = []
    notes: list[str] = []
    delta = holdout.get("delta")
    if delta is not None:
        line = (f"held-out tasks: accuracy {holdout['base_accuracy']} -> {holdout['adapter_accuracy']} "
                f"(n={holdout['tasks']})")
        (problems if delta < 0 else notes).append(line)
    results: list[PairedResult] = []
    if kind in SUITES:
        a, b = scorer_for(base), scorer_for(base, adapter=adapter)
        try:
            results, _ = likelihood_results({kind: SUITES[kind](items)}, lambda item: a, lambda item: b)
        finally:
            a.close()
            b.close()
        for r in results:
            line = f"{r.metric} {r.a:.4f} -> {r.b:.4f} ({r.verdict}, 95% CI [{r.low:+.3g}, {r.high:+.3g}], n={r.n})"
            (problems if r.verdict == "worse" else notes).append(line)
    if problems:
        return False, "; ".join(problems), [r.as_dict() for r in results]
    return True, "; ".join(notes) or "no held-out evidence against it", [r.as_dict() for r in results]
