"""A local stand-in routing set for runs without a modifiers stage (the embedded default, tests).

Generated tasks with checkable answers per domain (code: Python values, reasoning:
arithmetic and parity, automation: JSON, cron, HTTP methods). The base model answers
them; a wrong answer is labelled 1 ("a modifier is needed"). This is a *proxy*: it
assumes a modifier would have answered correctly, because no modifier ran. The
manifest says so.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any
from collections.abc import Callable

from cogumi.errors import CogumiError

PROXY_DESCRIPTION = ("local-proxy: generated tasks with checkable answers answered by the base model; "
                     "label = 1 when the base answer is wrong (assumes a modifier would be right: no modifier ran)")

_WORDS = ["apple", "banana", "kiwi", "router", "python", "cat", "orchestra", "sky", "lambda", "matrix", "ok",
          "distillation", "tree", "ray", "serve", "quantum", "llama", "model", "cherry", "zebra"]
_HTTP = [("delete a resource", "DELETE"), ("create a new resource", "POST"), ("read a resource", "GET"),
         ("replace a resource entirely", "PUT"), ("partially update a resource", "PATCH")]
_KEYS = ["name", "age", "city", "enabled", "count", "id", "status", "port"]


def _code(r: random.Random) -> dict[str, Any]:
    kind = r.randrange(4)
    if kind == 0:
        w = r.choice(_WORDS)
        return _task(f"In Python, what is the value of len('{w}')? Reply with the value only.", len(w), "number")
    if kind == 1:
        a, b = r.randint(5, 500), r.randint(2, 12)
        return _task(f"In Python, what does {a} // {b} evaluate to? Reply with the value only.", a // b, "number")
    if kind == 2:
        w = r.choice(_WORDS)
        return _task(f"In Python, what is '{w}'.upper()? Reply with the value only.", w.upper(), "word")
    xs = r.sample(range(1, 99), r.randint(3, 6))
    return _task(f"In Python, what is max({xs})? Reply with the value only.", max(xs), "number")


def _reasoning(r: random.Random) -> dict[str, Any]:
    kind = r.randrange(4)
    size = r.choice([9, 99, 999])
    a, b = r.randint(1, size), r.randint(1, size)
    if kind == 0:
        return _task(f"What is {a} + {b}? Reply with the number only.", a + b, "number")
    if kind == 1:
        return _task(f"What is {a} times {min(b, 30)}? Reply with the number only.", a * min(b, 30), "number")
    if kind == 2:
        hi, lo = max(a, b), min(a, b)
        return _task(f"Tom has {hi} apples and gives away {lo}. How many apples does he have left? "
                     "Reply with the number only.", hi - lo, "number")
    return _task(f"Is {a} an even number? Reply with yes or no.", "yes" if a % 2 == 0 else "no", "word")


def _automation(r: random.Random) -> dict[str, Any]:
    kind = r.randrange(3)
    if kind == 0:
        k, v = r.choice(_KEYS), r.randint(0, 9999)
        return _task(f'Write a JSON object with the key "{k}" set to the number {v}. Reply with the JSON only.',
                     {k: v}, "json")
    if kind == 1:
        h, m = r.randint(0, 23), r.choice([0, 15, 30, 45])
        return _task(f"Give the cron expression that runs every day at {h:02d}:{m:02d}. "
                     "Reply with the expression only.", f"{m} {h} * * *", "cron")
    what, method = r.choice(_HTTP)
    return _task(f"Which HTTP method is normally used to {what}? Reply with one word.", method, "word")


GENERATORS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "code": _code, "reasoning": _reasoning, "automation": _automation}


def _task(prompt: str, expected: Any, check: str) -> dict[str, Any]:
    return {"prompt": prompt, "expected": json.dumps(expected), "check": check}


def proxy_tasks(n: int, domains: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """``n`` tasks spread evenly over ``domains`` (duplicates removed).

    Raises:
        CogumiError: a domain the proxy has no task generator for.
    """
    unknown = [d for d in domains if d not in GENERATORS]
    if unknown:
        raise CogumiError(f"the local proxy routing set has no tasks for domain(s) {', '.join(unknown)}",
                          "router.data.proxy_domains", f"use some of {', '.join(GENERATORS)}, or give a routing "
                          "set from `cogumi modifiers` (router.data.file)")
    r = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(n * 20):
        if len(rows) >= n:
            break
        domain = domains[i % len(domains)]
        task = GENERATORS[domain](r)
        if task["prompt"] not in seen:
            seen.add(task["prompt"])
            rows.append({**task, "domain": domain})
    return rows


def check_answer(answer: str, expected_json: str, check: str) -> bool:
    """Whether ``answer`` gives the expected value (see the module doc for each check)."""
    expected = json.loads(expected_json)
    text = answer.strip()
    if check == "number":
        nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        return bool(nums) and float(nums[-1]) == float(expected)
    if check == "word":
        words = re.findall(r"[A-Za-z]+", text)
        return bool(words) and words[0].lower() == str(expected).lower()
    if check == "cron":
        return " ".join(str(expected).split()) in " ".join(text.replace("`", " ").split())
    if check == "json":
        m = re.search(r"\{.*?\}", text, re.S)
        try:
            return m is not None and json.loads(m.group(0)) == expected
        except json.JSONDecodeError:
            return False
    raise ValueError(f"unknown check '{check}'")


def label_proxy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``label`` (1 = base wrong) and ``base_score`` (1.0 = right) from each row's ``base_answer``."""
    out = []
    for row in rows:
        ok = check_answer(row.get("base_answer") or "", row["expected"], row["check"])
        out.append({**row, "label": 0 if ok else 1, "base_score": 1.0 if ok else 0.0})
    return out
