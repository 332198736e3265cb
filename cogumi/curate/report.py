"""Curation statistics, accumulated batch by batch while the outputs stream to disk.

Counts per status, stage and reason; kept rows per domain and difficulty;
English purity; exact/near duplicates removed; quality distribution; tokens and
dollars per teacher and for the judge. Rendered as JSON, Markdown and a plot.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from typing import Any

from cogumi.curate.rows import ERROR, FILTERED, OK
from cogumi.schema import DIFFICULTIES, DOMAINS


def _reason_kind(row: dict[str, Any]) -> str:
    reason = row.get("reason") or ""
    if row.get("stage") == "dedup":
        return "exact duplicate" if reason.startswith("exact") else "near duplicate"
    if row.get("stage") == "judge":
        return "judge unscored" if "unparseable" in reason else "judge score" if "score" in reason else "judge"
    head = reason.split(":", 1)[0].strip()
    return head if row.get("stage") == "filter" else (row.get("stage") or "unknown")


class CurationStats:
    """Accumulates everything the report needs from the final rows."""

    def __init__(self, prices: dict[str, tuple[float, float]]):
        self.prices = prices
        self.status: Counter = Counter()
        self.by_reason: Counter = Counter()
        self.kept_cells: Counter = Counter()
        self.input_cells: Counter = Counter()
        self.sources: Counter = Counter()
        self.quality: Counter = Counter()
        self.quality_kept: list[float] = []
        self.unscored = 0
        self.languages: Counter = Counter()
        self.tokens_kept: list[int] = []
        self.pii_rows = 0
        self.spend: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.errors: list[str] = []

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Count a batch of final rows."""
        for r in rows:
            status = r["status"]
            self.status[status] += 1
            self.input_cells[(r.get("domain"), r.get("difficulty"))] += 1
            if status != OK:
                self.by_reason[(status, _reason_kind(r))] += 1
                if status == ERROR and len(self.errors) < 20:
                    reason, where = r.get("reason") or "", r.get("location") or r.get("id")
                    self.errors.append(reason if reason.startswith(str(where)) else f"{where}: {reason}")
            if r.get("completion_tokens") is not None or r.get("unanswered_attempts"):
                self._bill(r.get("teacher") or "?", r.get("prompt_tokens"), r.get("completion_tokens"),
                           r.get("cost_usd"), r.get("cached"), r.get("unanswered_attempts"), r.get("estimated_usd"),
                           r.get("batch_id"))
            if r.get("judge_cached") is not None:
                self._bill("judge", r.get("judge_prompt_tokens"), r.get("judge_completion_tokens"),
                           r.get("judge_cost_usd"), r.get("judge_cached"), r.get("judge_unanswered"),
                           r.get("judge_estimated_usd"), r.get("judge_batch_id"))
            if r.get("quality_score") is not None:
                self.quality[int(round(r["quality_score"]))] += 1
            elif r.get("judge_scores"):
                self.unscored += 1
            if status == OK:
                self.kept_cells[(r.get("domain"), r.get("difficulty"))] += 1
                self.sources[r.get("source")] += 1
                self.languages[r.get("language") or "unchecked"] += 1
                if r.get("quality_score") is not None:
                    self.quality_kept.append(float(r["quality_score"]))
                if r.get("tokens") is not None:
                    self.tokens_kept.append(int(r["tokens"]))
                self.pii_rows += bool(r.get("pii"))

    def _bill(self, who: str, tin: int | None, tout: int | None, cost: float | None, cached: bool | None,
              unanswered: int | None = None, estimated: float | None = None, batch_id: str | None = None) -> None:
        """Add one row's calls: answered (``tout`` known), cached, and unanswered attempts that may be billed.

        ``online_equivalent_usd`` is what the same calls cost online: their tokens at the online
        price plus the estimate for unanswered attempts (equal to ``usd`` for online calls; a batch
        answer's ``usd`` is at the batch price).
        """
        s = self.spend[who]
        pin, pout = self.prices.get(who, (0.0, 0.0))
        if unanswered:
            s["unanswered_calls"] += unanswered
            s["estimated_usd"] += estimated or 0.0
        if tout is None and not cached:
            s["usd"] += cost or 0.0  # only unanswered attempts: their estimate is the whole bill
            s["online_equivalent_usd"] += cost or 0.0
            return
        if batch_id and not cached:
            s["batch_calls"] += 1
        key = "cached_" if cached else ""
        s[f"{key}calls"] += 1
        s[f"{key}prompt_tokens"] += tin or 0
        s[f"{key}completion_tokens"] += tout or 0
        if cached:
            s["saved_usd"] += ((tin or 0) * pin + (tout or 0) * pout) / 1e6
        else:
            s["usd"] += cost or 0.0
            s["online_equivalent_usd"] += ((tin or 0) * pin + (tout or 0) * pout) / 1e6 + (estimated or 0.0)

    def summary(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        total = sum(self.status.values())
        kept = self.status[OK]
        checked = sum(v for k, v in self.languages.items() if k not in ("unchecked",))
        english = self.languages.get("en", 0) + self.languages.get("unknown", 0)
        dup_exact = self.by_reason[(FILTERED, "exact duplicate")]
        dup_near = self.by_reason[(FILTERED, "near duplicate")]
        spend = {who: {k: round(v, 6) for k, v in s.items()} for who, s in sorted(self.spend.items())}
        return {
            "rows": {"input": total, "ok": kept, "error": self.status[ERROR], "filtered": self.status[FILTERED]},
            "accounted": total == kept + self.status[ERROR] + self.status[FILTERED],
            "by_reason": {f"{s}: {k}": v for (s, k), v in sorted(self.by_reason.items())},
            "kept_by_domain": {d: sum(v for (dd, _), v in self.kept_cells.items() if dd == d) for d in DOMAINS},
            "kept_by_difficulty": {d: sum(v for (_, dd), v in self.kept_cells.items() if dd == d)
                                   for d in DIFFICULTIES},
            "kept_by_cell": {f"{d}/{f}": self.kept_cells[(d, f)] for d in DOMAINS for f in DIFFICULTIES},
            "input_by_cell": {f"{d}/{f}": self.input_cells[(d, f)] for d in DOMAINS for f in DIFFICULTIES},
            "kept_by_source": dict(self.sources),
            "english_purity": round(english / checked, 4) if checked else None,
            "languages_kept": dict(self.languages),
            "duplicates_removed": {"exact": dup_exact, "near": dup_near},
            "quality": {"histogram": {str(k): self.quality[k] for k in range(1, 11)},
                        "mean_kept": round(sum(self.quality_kept) / len(self.quality_kept), 3)
                        if self.quality_kept else None,
                        "unscored": self.unscored},
            "tokens": {"mean_kept": round(sum(self.tokens_kept) / len(self.tokens_kept), 1)
                       if self.tokens_kept else None},
            "pii_redacted_rows": self.pii_rows,
            "cost": spend,
            "cost_total_usd": round(sum(s.get("usd", 0.0) for s in self.spend.values()), 6),
            "cost_total_online_equivalent_usd": round(sum(s.get("online_equivalent_usd", 0.0)
                                                          for s in self.spend.values()), 6),
            "first_errors": self.errors,
        }


def render_markdown(summary: dict[str, Any], method: dict[str, str]) -> str:
    """The report as Markdown."""
    r = summary["rows"]
    out = io.StringIO()
    w = out.write
    w("# Curation report\n\n")
    w(f"Input rows: **{r['input']}** — kept **{r['ok']}**, filtered {r['filtered']}, errors {r['error']} "
      f"({'every row accounted for' if summary['accounted'] else 'ROWS MISSING'}).\n\n")
    w("## Method\n\n" + "".join(f"- {k}: {v}\n" for k, v in sorted(method.items())) + "\n")
    w("## Why rows were removed\n\n| status: reason | rows |\n|---|---:|\n")
    w("".join(f"| {k} | {v} |\n" for k, v in summary["by_reason"].items()) or "| (none) | 0 |\n")
    w("\n## Kept rows by domain and difficulty\n\n| domain | " + " | ".join(DIFFICULTIES) + " | total |\n")
    w("|---|" + "---:|" * (len(DIFFICULTIES) + 1) + "\n")
    for d in DOMAINS:
        cells = [summary["kept_by_cell"][f"{d}/{f}"] for f in DIFFICULTIES]
        w(f"| {d} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |\n")
    q = summary["quality"]
    w(f"\n## Quality\n\nMean judge score of kept rows: {q['mean_kept']}; unscored verdicts: {q['unscored']}.\n\n")
    w("| score | " + " | ".join(q["histogram"]) + " |\n|---|" + "---:|" * len(q["histogram"]) + "\n")
    w("| rows | " + " | ".join(str(v) for v in q["histogram"].values()) + " |\n\n")
    w(f"English purity of kept rows: {summary['english_purity']}. Duplicates removed: "
      f"{summary['duplicates_removed']['exact']} exact, {summary['duplicates_removed']['near']} near. "
      f"Rows with PII redacted: {summary['pii_redacted_rows']}. Mean tokens of kept rows: "
      f"{summary['tokens']['mean_kept']}.\n\n")
    w("## Cost\n\n| who | calls | of which batch | prompt tok | completion tok | USD | online-equivalent USD "
      "| cached calls | USD saved by cache |\n")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for who, s in summary["cost"].items():
        w(f"| {who} | {int(s.get('calls', 0))} | {int(s.get('batch_calls', 0))} | {int(s.get('prompt_tokens', 0))} | "
          f"{int(s.get('completion_tokens', 0))} | {s.get('usd', 0.0):.4f} | {s.get('online_equivalent_usd', 0.0):.4f} "
          f"| {int(s.get('cached_calls', 0))} | {s.get('saved_usd', 0.0):.4f} |\n")
    w(f"\nTotal spent this run: ${summary['cost_total_usd']:.4f} (online, the same calls: "
      f"${summary.get('cost_total_online_equivalent_usd', summary['cost_total_usd']):.4f}).\n")
    unanswered = {who: s for who, s in summary["cost"].items() if s.get("unanswered_calls")}
    if unanswered:
        w("Of which estimated: " + ", ".join(
            f"{who} ${s.get('estimated_usd', 0.0):.4f} for {int(s['unanswered_calls'])} attempt(s) that timed out "
            f"on the client (the provider may have billed them; counted at their prompt tokens)"
            for who, s in unanswered.items()) + ".\n")
    if summary["first_errors"]:
        w("\n## First errors\n\n" + "".join(f"- {e}\n" for e in summary["first_errors"]))
    judged = sum(q["histogram"].values())
    w(f"\n![judge scores of {judged} judged rows; {r['ok']} kept rows of {r['input']} by domain](report.png)\n")
    return out.getvalue()


def render_plot(summary: dict[str, Any]) -> bytes:
    """PNG with the quality histogram and kept rows per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    hist = summary["quality"]["histogram"]
    ax1.bar(list(hist), list(hist.values()), color="#4c72b0")
    ax1.set_title(f"judge score ({sum(hist.values())} judged rows)")
    ax1.set_xlabel("score")
    ax1.set_ylabel("rows")
    doms = summary["kept_by_domain"]
    ax2.bar(list(doms), list(doms.values()), color="#55a868")
    ax2.set_title(f"kept rows by domain ({summary['rows']['ok']} of {summary['rows']['input']} input rows)")
    ax2.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
