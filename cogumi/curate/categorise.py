"""Domain and difficulty of prompts that arrive without them (keyword rules, deterministic).

Sources such as Alpaca or OpenOrca carry no domain; these rules route them to a
teacher and to the per-category generation settings. They are deliberately
simple and inspectable: a record's own ``domain``/``difficulty`` always wins.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("code", re.compile(
        r"\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|regex|function|class|method|code|"
        r"program|script|compile|debug|bug|api|algorithm|array|linked list|recursion|git|docker|bash|"
        r"html|css|json|unit test|refactor|big-o|complexity)\b|```|\bdef\b|=>|\(\)", re.I)),
    ("math", re.compile(
        r"\b(calculate|compute|solve|equation|integral|derivative|probability|percent|percentage|sum of|"
        r"product of|prime|fraction|geometry|triangle|area|volume|algebra|matrix|how many|average|"
        r"mean|median|factor|divisible|remainder|theorem|proof|prove)\b|\d+\s*[-+*/^=]\s*\d+", re.I)),
    ("creative", re.compile(
        r"\b(poem|poetry|haiku|limerick|story|short story|song|lyrics|slogan|tagline|fiction|character|"
        r"metaphor|imagine|screenplay|dialogue between|fairy tale|sonnet|creative)\b", re.I)),
    ("science", re.compile(
        r"\b(physics|chemistry|biology|cell|atom|molecule|energy|gravity|planet|star|galaxy|climate|"
        r"evolution|dna|gene|protein|photosynthesis|ecosystem|reaction|element|quantum|electric|"
        r"magnet|virus|bacteria|vaccine|species|geology|weather|ocean)\b", re.I)),
    ("reasoning", re.compile(
        r"\b(puzzle|riddle|logic|logical|deduce|infer|argument|fallacy|assume|if .+ then|which of|"
        r"why|compare|trade-?offs?|pros and cons|decide|should i|plan|strategy|analy[sz]e|evaluate)\b",
        re.I)),
)
_HARD = re.compile(r"\b(prove|derive|optimi[sz]e|complexity|rigorous|in depth|step[- ]by[- ]step|"
                   r"trade-?offs?|design a|implement a .+ (system|engine|parser|compiler)|edge cases|"
                   r"concurren\w*|asymptotic)\b", re.I)
_EASY = re.compile(r"^(what is|what are|who|when|define|name|list|give me|translate)\b", re.I)


def guess_domain(text: str) -> str:
    """The first domain whose keywords occur in ``text`` (conversation when none)."""
    for domain, pattern in _RULES:
        if pattern.search(text):
            return domain
    return "conversation"


def guess_difficulty(text: str) -> str:
    """easy / medium / hard from length and cue words."""
    words = len(text.split())
    if _HARD.search(text) or words > 80:
        return "hard"
    if words <= 12 or (_EASY.search(text.strip()) and words <= 25):
        return "easy"
    return "medium"
