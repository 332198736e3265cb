"""Lossless zstd archives of GGUF files, with a dictionary trained on weight samples.

``pack`` streams the file through a zstd compressor (level and dictionary from the
config) while hashing it, and writes ``<file>.zstd`` (a standard zstd frame), the
dictionary ``<file>.zdict`` and ``<file>.zstd.json`` (sizes, SHA-256, level,
dictionary id). The suffix is ``.zstd``, not ``.zst``: pyarrow's filesystems
decompress ``.zst`` files transparently when reading (extension detection), which
breaks stage digests of a dictionary-compressed frame. ``unpack`` streams
it back, hashing on the way, and refuses output whose SHA-256 differs. Nothing is
ever held whole in memory; outputs are written under temporary names and renamed.

A dictionary mostly helps small inputs: on a multi-megabyte GGUF zstd learns the
statistics from the data itself, and quantised weights are close to random bytes,
so expect a ratio near 1.0 for K-quants (``compare_without_dict`` measures it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any, BinaryIO

from cogumi.compress.errors import ArchiveError

CHUNK = 1 << 20
SUFFIX = ".zstd"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def weight_samples(gguf_path: Path, sample_size: int, max_samples: int, seed: int = 0) -> list[bytes]:
    """Byte samples from the tensor-data region of a GGUF (the weights, not the header)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    spans = [(int(t.data_offset), int(t.n_bytes)) for t in reader.tensors if int(t.n_bytes) >= sample_size]
    if not spans:
        spans = [(0, gguf_path.stat().st_size)]
    total = sum(n for _, n in spans)
    count = max(1, min(max_samples, total // sample_size))
    rng = random.Random(seed)
    picks = sorted(rng.randrange(total - sample_size + 1) for _ in range(count))
    samples, span_i, base = [], 0, 0
    with open(gguf_path, "rb") as f:
        for pos in picks:
            while pos >= base + spans[span_i][1]:
                base += spans[span_i][1]
                span_i += 1
            offset = spans[span_i][0] + min(pos - base, spans[span_i][1] - sample_size)
            f.seek(offset)
            samples.append(f.read(sample_size))
    return samples


def train_dictionary(gguf_path: Path, dict_size: int, sample_size: int, max_samples: int) -> Any:
    """A ``zstandard.ZstdCompressionDict`` trained on weight samples of ``gguf_path``.

    Raises:
        ArchiveError: zstd could not train a dictionary (too little sample data for the size asked).
    """
    import zstandard

    samples: list[bytes | bytearray | memoryview] = [*weight_samples(gguf_path, sample_size, max_samples)]
    try:
        return zstandard.train_dictionary(dict_size, samples)
    except zstandard.ZstdError as exc:
        raise ArchiveError(f"zstd could not train a {dict_size}-byte dictionary from {len(samples)} samples of "
                           f"{gguf_path} ({exc})", f"compress zstd: {gguf_path}",
                           "lower compress.zstd.dict_size or raise compress.zstd.max_samples") from None


class _HashingReader:
    """File-like reader that hashes what passes through it."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.sha, self.bytes = fh, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        self.bytes += len(data)
        return data


def pack(src: str | Path, out_dir: str | Path, *, level: int, dict_size: int, sample_size: int, max_samples: int,
         threads: int = 0, compare_without_dict: bool = False) -> dict[str, Any]:
    """Compress ``src`` into ``out_dir`` with a trained dictionary, streaming.

    Returns:
        The archive record also written to ``<name>.zstd.json``.
    """
    import zstandard

    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zst, zdict, record_path = (out_dir / f"{src.name}{SUFFIX}", out_dir / f"{src.name}.zdict",
                               out_dir / f"{src.name}{SUFFIX}.json")
    t0 = time.perf_counter()
    dictionary = train_dictionary(src, dict_size, sample_size, max_samples)
    train_s = time.perf_counter() - t0
    _atomic_bytes(zdict, dictionary.as_bytes())
    cctx = zstandard.ZstdCompressor(level=level, dict_data=dictionary, write_checksum=True,
                                    write_content_size=True, threads=threads)
    tmp = zst.with_name(f".{zst.name}.partial")
    t0 = time.perf_counter()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            reader = _HashingReader(fin)
            cctx.copy_stream(reader, fout, size=src.stat().st_size, read_size=CHUNK,  # type: ignore[arg-type]
                             write_size=CHUNK)  # zstandard reads any object with read(); its stubs say IO
        os.replace(tmp, zst)
    finally:
        tmp.unlink(missing_ok=True)
    compress_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "file": src.name, "original_bytes": reader.bytes, "sha256": reader.sha.hexdigest(),
        "archive": zst.name, "compressed_bytes": zst.stat().st_size,
        "ratio": round(reader.bytes / max(zst.stat().st_size, 1), 4), "level": level,
        "dictionary": zdict.name, "dict_bytes": zdict.stat().st_size, "dict_id": dictionary.dict_id(),
        "dict_sha256": file_sha256(zdict), "train_s": round(train_s, 3), "compress_s": round(compress_s, 3),
    }
    if compare_without_dict:
        plain = zstandard.ZstdCompressor(level=level, threads=threads)
        with open(src, "rb") as fin:
            sink = _CountingSink()
            plain.copy_stream(fin, sink, read_size=CHUNK, write_size=CHUNK)  # type: ignore[arg-type]  # any write()
        record["compressed_bytes_without_dict"] = sink.bytes
    _atomic_bytes(record_path, json.dumps(record, indent=2).encode())
    return record


class _CountingSink:
    """Write-only sink that counts bytes (measuring without writing a file)."""

    def __init__(self):
        self.bytes = 0

    def __enter__(self) -> _CountingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def _record(record_path: Path, where: str) -> dict[str, Any]:
    """The archive record, with its types checked (it is read from disk, so it may lie)."""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"archive record {record_path} is not readable JSON ({exc.__class__.__name__})", where,
                           "run the zstd step again") from None
    if not isinstance(record, dict):
        raise ArchiveError(f"archive record {record_path} is not a JSON object", where, "run the zstd step again")
    for key, kind in (("archive", str), ("dictionary", str), ("sha256", str), ("dict_sha256", str),
                      ("original_bytes", int)):
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise ArchiveError(f"archive record {record_path}: field '{key}' is missing or invalid ({value!r})",
                               where, "run the zstd step again")
    return record


def member_path(folder: Path, name: str, field: str, where: str) -> Path:
    """``folder/name`` for a member named by an archive record, refusing names that leave ``folder``.

    A record is data from disk: a member must be a plain relative name, without NUL, absolute
    paths or ``..`` parts, and must not be (or pass through) a symlink pointing outside ``folder``.

    Raises:
        ArchiveError: naming the member and what is wrong with it.
    """
    def refuse(why: str) -> ArchiveError:
        return ArchiveError(f"archive member {name!r} (record field '{field}') {why}; refusing to open it", where,
                            "the record was edited or is malicious: rebuild the archive from the GGUF")

    if not name or "\x00" in name:
        raise refuse("is empty or contains a NUL byte")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise refuse("is an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise refuse("contains '..'")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise refuse("is a symlink that points outside the archive folder")
    return path


def unpack(record_path: str | Path, out_path: str | Path | None = None) -> dict[str, Any]:
    """Stream an archive back, verify its size and SHA-256, and write it to ``out_path`` (if given).

    The record is not trusted: member names must stay inside its folder, and decompression
    stops as soon as the output would exceed the recorded size (a small archive can expand
    to gigabytes), so nothing beyond ``original_bytes`` is ever written.

    Args:
        record_path: the ``<name>.zstd.json`` written by :func:`pack` (the ``.zstd`` and
            ``.zdict`` are found next to it).
        out_path: where to restore the file; None only verifies.

    Returns:
        ``{"sha256", "bytes", "decompress_s", "verified": True}``.

    Raises:
        ArchiveError: missing pieces, an unsafe member name, a damaged stream, output larger
            than recorded, or a checksum that does not match.
    """
    import zstandard

    record_path = Path(record_path)
    where = f"compress zstd: {record_path}"
    if not record_path.is_file():
        raise ArchiveError(f"archive record {record_path} does not exist", where, "run the zstd step again")
    record = _record(record_path, where)
    zst = member_path(record_path.parent, record["archive"], "archive", where)
    zdict = member_path(record_path.parent, record["dictionary"], "dictionary", where)
    for part in (zst, zdict):
        if not part.is_file():
            raise ArchiveError(f"archive part {part} is missing", where, "run the zstd step again")
    if file_sha256(zdict) != record["dict_sha256"]:
        raise ArchiveError(f"dictionary {zdict} does not match the one the archive was made with", where,
                           "restore the original .zdict file or rebuild the archive")
    expected = record["original_bytes"]
    damaged = "the archive is damaged; rebuild it from the GGUF (cogumi compress --force)"
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(zdict.read_bytes()))
    sha, n = hashlib.sha256(), 0
    tmp = Path(out_path).with_name(f".{Path(out_path).name}.partial") if out_path else None
    t0 = time.perf_counter()
    try:
        with open(zst, "rb") as fin, (open(tmp, "wb") if tmp else _CountingSink()) as fout:
            reader = dctx.stream_reader(fin, read_size=CHUNK)
            # never ask for more than one byte past the recorded size: a lying record stops here
            while chunk := reader.read(min(CHUNK, expected - n + 1)):
                if n + len(chunk) > expected:
                    raise ArchiveError(f"{zst} decompresses to more than the recorded {expected} bytes; stopped "
                                       f"after {n} bytes without writing more", where, damaged)
                sha.update(chunk)
                n += len(chunk)
                fout.write(chunk)
        if sha.hexdigest() != record["sha256"] or n != expected:
            raise ArchiveError(f"{zst} decompresses to {n} bytes with SHA-256 {sha.hexdigest()[:16]}..., not the "
                               f"recorded {expected} bytes / {record['sha256'][:16]}...", where, damaged)
        if tmp and out_path:
            os.replace(tmp, out_path)
    except zstandard.ZstdError as exc:
        raise ArchiveError(f"{zst} is not a valid zstd stream ({exc})", where, damaged) from None
    finally:
        if tmp:
            tmp.unlink(missing_ok=True)
    return {"sha256": sha.hexdigest(), "bytes": n, "decompress_s": round(time.perf_counter() - t0, 3),
            "verified": True}


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
