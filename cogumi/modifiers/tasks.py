"""Domain task sets: the packaged one (``cogumi/modifiers/data/tasks.jsonl``) or a user's JSONL.

Each row: ``id``, ``domain``, ``prompt`` and, by verification kind, ``tests`` (list of
Python assertions, code) or ``answer`` (a number, math). Judge-verified domains need neither.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError

PACKAGED_TASKS = Path(__file__).parent / "data" / "tasks.jsonl"


def load_tasks(source: str) -> list[dict[str, Any]]:
    """Read a task set.

    Args:
        source: ``embedded`` or a local ``.jsonl`` path.

    Returns:
        Task rows.

    Raises:
        CogumiError: missing file, bad JSON, or rows without id/domain/prompt.
    """
    path = PACKAGED_TASKS if source == "embedded" else Path(source).expanduser()
    if not path.is_file():
        raise CogumiError(f"task set {path} does not exist", "modifiers.tasks",
                          "use 'embedded' or a .jsonl file of {id, domain, prompt, tests?|answer?}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CogumiError(f"line {n} of {path} is not JSON ({exc.msg})", f"{path}:{n}",
                              "write one JSON object per line") from None
        missing = [k for k in ("id", "domain", "prompt") if not row.get(k)]
        if missing:
            raise CogumiError(f"line {n} of {path} lacks {', '.join(missing)}", f"{path}:{n}",
                              "every task needs id, domain and prompt")
        rows.append(row)
    return rows


def check_task(task: dict[str, Any], verify: str) -> None:
    """Fail clearly when a task cannot be verified the way its domain asks."""
    if verify == "code" and not task.get("tests"):
        raise CogumiError(f"code task {task['id']} has no 'tests'", "modifiers.tasks",
                          "give code tasks a list of Python assertions in 'tests'")
    if verify == "math" and task.get("answer") in (None, ""):
        raise CogumiError(f"math task {task['id']} has no 'answer'", "modifiers.tasks",
                          "give math tasks the expected final number in 'answer'")


def split_domain(tasks: list[dict[str, Any]], domain: str, limit: int | None, holdout: float,
                 seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (mining, held-out) tasks of one domain, seeded; at least one of each.

    Raises:
        CogumiError: fewer than two tasks for the domain.
    """
    rows = [t for t in tasks if t["domain"] == domain]
    if limit:
        rows = rows[:limit]
    if len(rows) < 2:
        raise CogumiError(f"domain '{domain}' has {len(rows)} task(s); mining and validation need at least 2",
                          "modifiers.tasks / modifiers.domains", f"add tasks for '{domain}' or remove the domain")
    order = list(range(len(rows)))
    random.Random(f"{seed}-{domain}").shuffle(order)
    n_hold = min(len(rows) - 1, max(1, round(len(rows) * holdout)))
    return [rows[i] for i in order[n_hold:]], [rows[i] for i in order[:n_hold]]
