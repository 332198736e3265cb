"""Paired comparisons of two systems on the same items: mean difference, 95 % interval, verdict.

Every held-out item is answered (or scored) by both systems, so the per-item
differences carry the comparison; a Student-t interval on their mean is honest for
the small samples a CPU run affords (and close to a bootstrap for the larger ones).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Direction = Literal["higher", "lower"]


@dataclass
class PairedResult:
    """One metric of system B against system A on ``n`` paired items.

    Attributes:
        metric: what was measured (e.g. ``math accuracy``, ``code answer NLL/token``).
        data: the held-out set and its size, in words.
        better: ``higher`` or ``lower`` values are better.
        a, b: the metric of each system over all items.
        diff: mean per-item difference ``b - a``; ``low``/``high`` its 95 % interval.
        verdict: ``better``, ``worse`` or ``equal within noise`` (B against A).
    """

    metric: str
    data: str
    n: int
    better: Direction
    a: float
    b: float
    diff: float
    low: float
    high: float
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (rounded)."""
        d = asdict(self)
        for k in ("a", "b", "diff", "low", "high"):
            d[k] = round(d[k], 5) if math.isfinite(d[k]) else None
        return d


def t_quantile_975(df: int) -> float:
    """Two-sided 95 % Student-t quantile for ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def compare(metric: str, data: str, a: list[float], b: list[float], better: Direction,
            a_total: float | None = None, b_total: float | None = None) -> PairedResult:
    """Paired comparison of per-item values ``a[i]`` and ``b[i]``.

    Args:
        a_total, b_total: the systems' overall figure when it is not the plain mean (e.g. a
            token-weighted perplexity); the interval is always on the mean item difference.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired comparison needs equal, non-empty lists (got {len(a)} and {len(b)})")
    n = len(a)
    diffs = [y - x for x, y in zip(a, b)]
    mean = sum(diffs) / n
    if n > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    else:
        half = math.inf
    low, high = mean - half, mean + half
    if (better == "higher" and low > 0) or (better == "lower" and high < 0):
        verdict = "better"
    elif (better == "higher" and high < 0) or (better == "lower" and low > 0):
        verdict = "worse"
    else:
        verdict = "equal within noise"
    return PairedResult(metric, data, n, better, a_total if a_total is not None else sum(a) / n,
                        b_total if b_total is not None else sum(b) / n, mean, low, high, verdict)


def overall(results: list[PairedResult]) -> str:
    """``better`` / ``worse`` when every clear change points one way, ``mixed`` when they disagree,
    else ``equal within noise``."""
    verdicts = {r.verdict for r in results}
    if {"better", "worse"} <= verdicts:
        return "mixed"
    if "worse" in verdicts:
        return "worse"
    if "better" in verdicts:
        return "better"
    return "equal within noise"


def render_row(r: PairedResult) -> str:
    """One Markdown table row: metric, data, n, A, B, difference ± interval, verdict."""
    return (f"| {r.metric} | {r.data} | {r.n} | {r.a:.4g} | {r.b:.4g} | {r.diff:+.4g} "
            f"[{r.low:+.3g}, {r.high:+.3g}] | {r.verdict} |")


TABLE_HEADER = ("| metric | held-out data | n | {a} | {b} | difference (95 % CI) | verdict |\n"
                "|---|---|---:|---:|---:|---|---|")
