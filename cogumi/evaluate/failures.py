"""Phase 1B.2 failure extraction: losses and ties become training examples with the reference answer.

Output rows follow the spec's ``{"instruction": prompt, "output": reference answer}``
with the category and outcome under ``metadata`` (read by
:func:`cogumi.schema.normalise_record`, so ``cogumi train`` takes the files as they are).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

FAILURE_OUTCOMES = ("loss", "tie")


def failure_records(items: list[dict[str, Any]], label: str) -> dict[str, list[dict[str, Any]]]:
    """``{category: [record, ...]}`` for every lost or tied item that has a reference answer."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        answer = (item.get("reference_answer") or "").strip()
        if item.get("outcome") not in FAILURE_OUTCOMES or not answer:
            continue
        out[item["category"]].append({
            "instruction": item["prompt"], "output": answer,
            "metadata": {"domain": item["category"], "source": f"{label}:{item['outcome']}", "id": item["id"],
                         "local_score": item.get("local_score"), "reference_score": item.get("reference_score")}})
    return dict(sorted(out.items()))


def to_jsonl(records: list[dict[str, Any]]) -> str:
    """One JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
