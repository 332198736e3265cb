"""Read prompt sources into Ray Datasets of pipeline rows, streaming and with row locations.

- JSONL: a custom :class:`ray.data.Datasource` splits each file into byte ranges at
  line boundaries (one newline-counting scan on the driver gives every range its
  first line number), so read tasks stream in parallel and bad lines still say
  ``file:line``.
- Parquet: one read task per row group, rows located as ``file#row``.
- HF datasets (``hf:NAME``): ``datasets.load_dataset`` then ``ray.data.from_huggingface``.
Local paths and pyarrow filesystem URIs (``s3://...``) are accepted.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from cogumi.artifacts import resolve_filesystem
from cogumi.curate.config import CurateConfig
from cogumi.curate.rows import ROW_SCHEMA, to_table
from cogumi.curate.sources import HF_NAMES, SEED_FILE, duplicate_ids, parse_jsonl_lines, record_to_row
from cogumi.errors import CogumiError

_SPLIT_BYTES = 8 << 20
_ROWS_PER_BLOCK = 256


def _line_splits(fs, path: str, target: int) -> list[tuple[int, int, int]]:
    """``(start, end, first line)`` byte ranges of at least ``target`` bytes, each ending after a newline."""
    splits: list[tuple[int, int, int]] = []
    start, start_line, base, lines_before_base = 0, 1, 0, 0
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 20):
            search = max(0, start + target - 1 - base)
            while search < len(chunk):
                idx = chunk.find(b"\n", search)
                if idx < 0:
                    break
                end = base + idx + 1
                splits.append((start, end, start_line))
                start, start_line = end, lines_before_base + chunk.count(b"\n", 0, idx + 1) + 1
                search = max(idx + 1, start + target - 1 - base)
            lines_before_base += chunk.count(b"\n")
            base += len(chunk)
    if base > start or not splits:
        splits.append((start, base, start_line))
    return splits


def _read_range(fs, path: str, start: int, end: int, first_line: int, fmt: str, source: str,
                stem: str) -> Iterator[pa.Table]:
    with fs.open_input_file(path) as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    batch: list[dict[str, Any]] = []
    for row in parse_jsonl_lines(iter(lines), first_line, path, fmt, source, stem):
        batch.append(row)
        if len(batch) >= _ROWS_PER_BLOCK:
            yield to_table(batch)
            batch = []
    if batch:
        yield to_table(batch)


def _read_row_group(fs, path: str, group: int, first_row: int, fmt: str, source: str,
                    stem: str) -> Iterator[pa.Table]:
    with fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read_row_group(group)
    rows = [record_to_row(rec, fmt, f"{path}#{first_row + i}", f"{stem}-r{first_row + i}", source)
            for i, rec in enumerate(table.to_pylist())]
    for i in range(0, len(rows), _ROWS_PER_BLOCK):
        yield to_table(rows[i:i + _ROWS_PER_BLOCK])


class PromptFileDatasource(Datasource):
    """Ray Datasource over one JSONL or Parquet prompt file, emitting pipeline rows.

    Args:
        uri: local path or pyarrow filesystem URI.
        fmt: field mapping name or ``auto``.
        source: source name recorded on the rows.
    """

    def __init__(self, uri: str, fmt: str, source: str):
        self.uri, self.fmt, self.source = uri, fmt, source
        self.fs, self.path = resolve_filesystem(uri)
        info = self.fs.get_file_info(self.path)
        if info.type != pafs.FileType.File:
            raise CogumiError(f"prompt file {uri} does not exist", "curate.prompts",
                              "pass an existing .jsonl or .parquet file, 'embedded' or 'hf:NAME'")
        self.size = int(info.size or 0)
        self.stem = posixpath.splitext(posixpath.basename(self.path))[0]

    def estimate_inmemory_data_size(self) -> int:
        return self.size * 2

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        fs, path, fmt, source, stem = self.fs, self.path, self.fmt, self.source, self.stem
        tasks = []
        if path.endswith((".parquet", ".pq")):
            with fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata
            first = 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                tasks.append(ReadTask(
                    partial(_read_row_group, fs, path, g, first, fmt, source, stem),
                    BlockMetadata(num_rows=n, size_bytes=None, exec_stats=None, input_files=(self.uri,)),
                    schema=ROW_SCHEMA, per_task_row_limit=per_task_row_limit))
                first += n
            return tasks
        target = max(1 << 16, min(_SPLIT_BYTES, self.size // max(parallelism, 1) + 1))
        for start, end, line in _line_splits(fs, path, target):
            tasks.append(ReadTask(
                partial(_read_range, fs, path, start, end, line, fmt, source, stem),
                BlockMetadata(num_rows=None, size_bytes=end - start, exec_stats=None, input_files=(self.uri,)),
                schema=ROW_SCHEMA, per_task_row_limit=per_task_row_limit))
        return tasks


def _map_hf(batch: pa.Table, name: str, split: str, fmt: str) -> pa.Table:
    rows = batch.to_pylist()
    out = [record_to_row({k: v for k, v in r.items() if k != "_cogumi_row"}, fmt,
                         f"{name}[{split}][{r['_cogumi_row']}]", f"{name.split('/')[-1]}-{split}-{r['_cogumi_row']}",
                         HF_NAMES.get(name.lower(), fmt))
           for r in rows]
    return to_table(out)


def read_hf(name: str, split: str, config_name: str | None, fmt: str, num_cpus: float = 0.25):
    """A Ray Dataset of rows from the HF dataset ``name`` (needs network or the HF cache)."""
    import datasets
    import ray.data

    try:
        hf = datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
        raise CogumiError(f"cannot load HF dataset '{name}' split '{split}' ({exc.__class__.__name__}: "
                          f"{str(exc)[:200]})", "curate.prompts",
                          "check the name, split and network (or HF_DATASETS_OFFLINE with a local cache)") from None
    hf = hf.add_column("_cogumi_row", list(range(len(hf))))
    mapping = fmt if fmt != "auto" else HF_NAMES.get(name.lower(), "auto")
    return ray.data.from_huggingface(hf).map_batches(
        _map_hf,  # type: ignore[arg-type]  # Ray's UDF type has no room for the fn_kwargs below
        batch_format="pyarrow", num_cpus=num_cpus,
        fn_kwargs={"name": name, "split": split, "fmt": mapping})


def read_prompts(cfg: CurateConfig):
    """The prompt rows of ``cfg.prompts`` as a Ray Dataset (``cfg.limit`` applied)."""
    import ray.data

    spec = cfg.prompts
    if spec.startswith("hf:"):
        ds = read_hf(spec[3:], cfg.hf_split, cfg.hf_config, cfg.source_format, cfg.ray.read_num_cpus)
    else:
        uri = str(SEED_FILE) if spec == "embedded" else spec
        source = "cogumi-seed" if spec == "embedded" else cfg.source_format
        if not uri.endswith((".jsonl", ".json", ".parquet", ".pq")):
            raise CogumiError(f"unsupported prompt source '{spec}'", "curate.prompts",
                              "use 'embedded', a .jsonl or .parquet file, or 'hf:NAME'")
        ds = ray.data.read_datasource(PromptFileDatasource(uri, cfg.source_format, source),
                                      num_cpus=cfg.ray.read_num_cpus)
    return ds.limit(cfg.limit) if cfg.limit else ds


def check_unique_ids(ds) -> int:
    """Read only the ``id`` and ``location`` columns of ``ds`` and refuse duplicate ids.

    Runs before any teacher is paid: rows keep the ``id`` of their input record, and two rows
    with one id would share a cache route, a dedup verdict and an accounting line.

    Returns:
        The number of rows.

    Raises:
        CogumiError: naming the lines that reuse an id.
    """
    pairs: list[tuple[str, str]] = []
    for batch in ds.select_columns(["id", "location"]).iter_batches(batch_format="pyarrow", batch_size=65536):
        pairs.extend(zip(batch.column("id").to_pylist(), batch.column("location").to_pylist()))
    problems = duplicate_ids(pairs)
    if problems:
        raise CogumiError("duplicate prompt ids: " + "; ".join(problems), "curate.prompts",
                          "give every record a unique 'id', or drop the field to use <file>-L<line> ids")
    return len(pairs)
