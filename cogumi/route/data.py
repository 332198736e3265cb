"""The routing set: the router's training input (a file contract between phases 3 and 4).

One row per prompt, as Parquet (``routing.parquet``) or JSON Lines:

=================  ========  ===================================================================
column             required  meaning
=================  ========  ===================================================================
prompt             yes       the user's query (the router embeds it)
domain             yes       the domain whose modifier was compared with the base (e.g. ``code``)
label              yes       1 when the modifier's answer beat the base's, else 0
base_answer        no        the base model's answer
base_mean_logprob  no*       confidence features of that answer (:mod:`cogumi.route.features`);
base_min_logprob   no*       \\* all four or none: without them ``cogumi router`` generates the
base_entropy       no*       base answer itself and computes them (NaN entropy = no top-k)
base_length        no*
base_score         no        quality of the base answer (any scale, e.g. judge 0-10 or pass 0/1)
modifier_score     no        quality of the modifier's answer, same scale (for the threshold sweep)
=================  ========  ===================================================================

The modifiers phase writes it to ``<run>/modifiers/routing.parquet``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from cogumi.errors import CogumiError
from cogumi.route.features import CONFIDENCE_KEYS

REQUIRED = ("prompt", "domain", "label")
FEATURE_COLUMNS = tuple(f"base_{k}" for k in CONFIDENCE_KEYS)
SCORE_COLUMNS = ("base_score", "modifier_score")
MODIFIERS_OUTPUT = "routing.parquet"


def read_routing_set(uri: str) -> list[dict[str, Any]]:
    """Read and validate a routing set.

    Args:
        uri: local path or pyarrow URI of a ``.parquet`` or ``.jsonl`` file.

    Returns:
        Rows with ``label`` as int and optional columns present only when every row has them.

    Raises:
        CogumiError: missing file, unknown format, missing columns, bad labels, no rows.
    """
    from cogumi.artifacts import resolve_filesystem

    fs, path = resolve_filesystem(uri)
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        raise CogumiError(f"routing set {uri} does not exist", "router.data.file",
                          "run `cogumi modifiers` first or point router.data.file at a .parquet/.jsonl file")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(path, filesystem=fs).to_pylist()
    elif path.endswith((".jsonl", ".json")):
        with fs.open_input_stream(path) as f:
            text = f.read().decode()
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise CogumiError(f"line {n} of the routing set is not JSON ({exc.msg})", uri,
                                      "write one JSON object per line") from None
    else:
        raise CogumiError(f"routing set {uri} is neither .parquet nor .jsonl", "router.data.file",
                          "convert it to Parquet or JSON Lines")
    return validate_rows(rows, uri)


def validate_rows(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Check the columns of :data:`REQUIRED` and normalise labels and optional columns (see module doc)."""
    if not rows:
        raise CogumiError("the routing set has no rows", where, "produce it with `cogumi modifiers`")
    missing = [c for c in REQUIRED if any(c not in r or r[c] is None for r in rows)]
    if missing:
        raise CogumiError(f"the routing set lacks column(s) {', '.join(missing)} (in some rows at least)", where,
                          f"every row needs {', '.join(REQUIRED)}; see cogumi/route/data.py for the contract")
    out = []
    for i, r in enumerate(rows):
        try:
            label = int(r["label"])
        except (TypeError, ValueError):
            label = -1
        if label not in (0, 1):
            raise CogumiError(f"row {i} has label {r['label']!r}; labels are 0 (base enough) or 1 (modifier better)",
                              where, "fix the label column")
        out.append({**r, "label": label, "prompt": str(r["prompt"]), "domain": str(r["domain"])})
    have = [c for c in FEATURE_COLUMNS if all(_number(r.get(c)) for r in out)]
    if 0 < len(have) < len(FEATURE_COLUMNS):
        partial = sorted(set(FEATURE_COLUMNS) - set(have))
        raise CogumiError(f"the routing set has some confidence columns but not {', '.join(partial)}", where,
                          "give all four base_* feature columns or none (then the router computes them)")
    for c in FEATURE_COLUMNS + SCORE_COLUMNS:
        if not all(_number(r.get(c)) for r in out):
            for r in out:
                r.pop(c, None)
    return out


class UntrainableRoutingSet(CogumiError):
    """The routing set is too small or has one label: no router can be fitted on it."""


def require_trainable(labels: list[int], where: str) -> None:
    """At least 10 rows and both labels, or an UntrainableRoutingSet (checked before any expensive extraction)."""
    found = sorted(set(labels))
    if len(labels) < 10 or found != [0, 1]:
        raise UntrainableRoutingSet(f"the routing set has {len(labels)} rows with labels {found}; the router needs "
                                    "at least 10 rows with both labels (0 = base enough, 1 = modifier better)", where,
                                    "add rows or check how the labels were produced; router.data.source=local-proxy "
                                    "builds a stand-in set from the base model alone")


def has_features(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows carry all four base confidence features."""
    return all(c in rows[0] for c in FEATURE_COLUMNS)


def has_scores(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows carry base and modifier quality scores."""
    return all(c in rows[0] for c in SCORE_COLUMNS)


def _number(v: Any) -> bool:
    """A number; NaN counts (a missing entropy is NaN by design)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (not math.isinf(v))
