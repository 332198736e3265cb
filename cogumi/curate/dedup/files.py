"""``cogumi dedup``: remove near-duplicates from a JSONL or Parquet file.

Writes the kept rows in the input's format and ``<OUTPUT>.duplicates.jsonl``
with one line per removed row: its row number and id, exact/near, the cluster
(the id of the row kept for it) and its Jaccard similarity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cogumi.curate.dedup.cluster import DedupResult, dedup_in_memory
from cogumi.curate.dedup.minhash import join_fields
from cogumi.errors import CogumiError

ROW = "_cogumi_row"


def read_table(path: Path) -> pa.Table:
    """A JSONL or Parquet file as an Arrow table.

    Raises:
        CogumiError: missing file, unknown extension, or malformed JSONL lines (the first few are named).
    """
    if not path.is_file():
        raise CogumiError(f"input file {path} does not exist", str(path), "pass an existing .jsonl or .parquet file")
    if path.suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    if path.suffix not in (".jsonl", ".json"):
        raise CogumiError(f"unsupported input '{path.suffix}'", str(path), "use a .jsonl or .parquet file")
    records, bad = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError(f"a line must be a JSON object, got {type(rec).__name__}")
                records.append(rec)
            except (UnicodeDecodeError, ValueError) as exc:
                bad.append(f"line {number}: {str(exc)[:80]}")
    if bad:
        raise CogumiError(f"{len(bad)} malformed line(s): {'; '.join(bad[:5])}", str(path),
                          "fix or delete those lines (each line must be one JSON object)")
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CogumiError(f"rows have inconsistent types ({exc})", str(path),
                          "give each field one type across all lines") from None


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet or JSONL, chosen by the extension of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        pq.write_table(table, path)
        return
    with open(path, "w", encoding="utf-8") as f:
        for rec in table.to_pylist():
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")


def run_dedup_file(input_path: Path, output_path: Path, fields: list[str], threshold: float = 0.8,
                   num_perm: int = 128, k: int = 3, id_field: str | None = None, score_field: str | None = None,
                   workers: int = 0) -> dict[str, Any]:
    """Deduplicate one file.

    Args:
        fields: columns compared (joined by newlines).
        id_field: column with row ids (default: row numbers).
        score_field: column ranking cluster members (highest kept).
        workers: 0 = in process; N = Ray Data with N signature workers.

    Returns:
        Counts: rows, kept, exact and near duplicates removed.
    """
    table = read_table(input_path)
    needed = [*fields, *(c for c in (id_field, score_field) if c)]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise CogumiError(f"input lacks column(s) {', '.join(missing)} (has: {', '.join(table.column_names)})",
                          str(input_path), "choose --fields/--id-field/--score-field among its columns")
    ids = [str(x) for x in table.column(id_field).to_pylist()] if id_field else [str(i) for i in range(table.num_rows)]
    if len(set(ids)) != len(ids):
        raise CogumiError(f"column '{id_field}' has repeated ids", str(input_path), "pass a unique --id-field")
    scores = table.column(score_field).to_pylist() if score_field else None
    work = table.append_column(ROW, pa.array(ids, pa.string()))
    if workers > 0:
        result = _dedup_on_ray(work, fields, score_field, threshold, num_perm, k, workers)
    else:
        texts = [join_fields(r, fields) for r in work.select(fields).to_pylist()]
        result = dedup_in_memory(ids, texts, scores, threshold, num_perm, k)
    removed = {r.id: r for r in result.removals}
    keep_mask = pa.array([i not in removed for i in ids])
    write_table(table.filter(keep_mask), output_path)
    report = output_path.with_name(output_path.name + ".duplicates.jsonl")
    position = {rid: n for n, rid in enumerate(ids)}
    with open(report, "w", encoding="utf-8") as f:
        for r in sorted(result.removals, key=lambda r: position[r.id]):
            f.write(json.dumps({"row": position[r.id], "id": r.id, "kind": r.kind, "cluster": r.cluster,
                                "kept": r.kept, "similarity": r.similarity}) + "\n")
    return {"rows": table.num_rows, "kept": table.num_rows - len(removed), "exact": result.count("exact"),
            "near": result.count("near"), "candidate_pairs": result.candidates, "bands": result.bands,
            "rows_per_band": result.rows, "duplicates_report": str(report)}


def _dedup_on_ray(table: pa.Table, fields: list[str], score_field: str | None, threshold: float,
                  num_perm: int, k: int, workers: int) -> DedupResult:
    import ray
    import ray.data

    from cogumi.curate.dedup.distributed import dedup_dataset
    from cogumi.raycluster import connect

    connect(log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_arrow(table).repartition(max(workers * 2, 1))
    return dedup_dataset(ds, id_col=ROW, fields=fields, score_col=score_field, threshold=threshold,
                         num_perm=num_perm, k=k, workers=workers)
