"""zstd archive: dictionary from weight samples, streaming both ways, SHA-256 verified."""

from __future__ import annotations

import json

import pytest

from cogumi.compress.archive import file_sha256, pack, unpack, weight_samples
from cogumi.compress.errors import ArchiveError

SMALL = {"level": 10, "dict_size": 16384, "sample_size": 1024, "max_samples": 400}


@pytest.fixture(scope="module")
def packed(tiny_q5_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("zstd")
    return pack(tiny_q5_gguf, out, compare_without_dict=True, **SMALL), out


def test_pack_and_restore_bit_identical(packed, tiny_q5_gguf, tmp_path):
    record, out = packed
    assert record["sha256"] == file_sha256(tiny_q5_gguf) and record["level"] == 10
    assert record["original_bytes"] == tiny_q5_gguf.stat().st_size
    assert (out / record["archive"]).stat().st_size == record["compressed_bytes"] < record["original_bytes"]
    assert record["archive"].endswith(".gguf.zstd") and record["dict_bytes"] <= 16384
    assert "compressed_bytes_without_dict" in record
    restored = tmp_path / "restored.gguf"
    check = unpack(out / f"{record['archive']}.json", restored)
    assert check["verified"] and file_sha256(restored) == record["sha256"]
    assert restored.read_bytes() == tiny_q5_gguf.read_bytes()


def test_restored_file_runs_in_llama_cpp(packed, tmp_path):
    from cogumi.models.inference.llamacpp_backend import LlamaCppBackend

    record, out = packed
    restored = tmp_path / "r.gguf"
    unpack(out / f"{record['archive']}.json", restored)
    backend = LlamaCppBackend(restored, n_ctx=128)
    try:
        assert backend.count_tokens("hello world") == 2
    finally:
        backend.close()


def test_dictionary_samples_come_from_weights(tiny_q5_gguf):
    from gguf import GGUFReader

    samples = weight_samples(tiny_q5_gguf, 512, 50)
    assert len(samples) == 50 and all(len(s) == 512 for s in samples)
    first_data = min(int(t.data_offset) for t in GGUFReader(tiny_q5_gguf).tensors)
    header = tiny_q5_gguf.read_bytes()[:first_data]
    assert not any(s in header for s in samples)  # no sample is taken from the metadata/vocabulary


def _copy_archive(packed, tmp_path):
    import shutil

    record, out = packed
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    return record, dst


def test_damaged_archive_is_refused_by_checksum(packed, tmp_path):
    record, dst = _copy_archive(packed, tmp_path)
    zst = dst / record["archive"]
    data = bytearray(zst.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zst.write_bytes(bytes(data))
    with pytest.raises(ArchiveError) as err:
        unpack(dst / f"{record['archive']}.json", tmp_path / "out.gguf")
    assert record["archive"] in str(err.value)
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob(".out.gguf*"))


def test_record_checksum_mismatch_is_refused(packed, tmp_path):
    record, dst = _copy_archive(packed, tmp_path)
    rec_path = dst / f"{record['archive']}.json"
    rec_path.write_text(json.dumps(record | {"sha256": "0" * 64}))
    with pytest.raises(ArchiveError, match="not the recorded"):
        unpack(rec_path)


def test_wrong_dictionary_and_missing_parts(packed, tmp_path):
    record, dst = _copy_archive(packed, tmp_path)
    (dst / record["dictionary"]).write_bytes(b"\x00" * 100)
    with pytest.raises(ArchiveError, match="dictionary"):
        unpack(dst / f"{record['archive']}.json")
    (dst / record["archive"]).unlink()
    with pytest.raises(ArchiveError, match="missing"):
        unpack(dst / f"{record['archive']}.json")



def _bomb(record, dst, megabytes=32):
    """Replace the archive by a valid zstd frame (same dictionary) that expands to ``megabytes`` of zeros."""
    import zstandard

    zdict = zstandard.ZstdCompressionDict((dst / record["dictionary"]).read_bytes())
    data = zstandard.ZstdCompressor(level=3, dict_data=zdict).compress(b"\0" * (megabytes << 20))
    (dst / record["archive"]).write_bytes(data)
    return len(data)


def _count_writes(monkeypatch):
    """Count bytes unpack writes to its output files (through the module's ``open``)."""
    import builtins

    import cogumi.compress.archive as archive

    written = {"bytes": 0}

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            written["bytes"] += len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def spy_open(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)
        return Counting(fh) if "w" in mode else fh

    monkeypatch.setattr(archive, "open", spy_open, raising=False)
    return written


def test_lying_size_record_stops_at_the_recorded_size(packed, tmp_path, monkeypatch):
    record, dst = _copy_archive(packed, tmp_path)
    compressed = _bomb(record, dst)
    assert compressed < 64 << 10  # a small archive...
    rec_path = dst / f"{record['archive']}.json"
    rec_path.write_text(json.dumps(record | {"original_bytes": 10}))  # ...whose record says 10 bytes
    written = _count_writes(monkeypatch)
    with pytest.raises(ArchiveError, match="more than the recorded 10 bytes") as err:
        unpack(rec_path, tmp_path / "out.gguf")
    assert record["archive"] in str(err.value)
    assert written["bytes"] <= 10  # never wrote beyond the record (here: nothing at all)
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob(".out.gguf*"))


def test_output_larger_than_a_plausible_record_stops_at_it(packed, tmp_path, monkeypatch):
    record, dst = _copy_archive(packed, tmp_path)
    _bomb(record, dst)
    limit = (1 << 20) + 5  # not a chunk multiple: the stop is exact, not rounded to a read
    rec_path = dst / f"{record['archive']}.json"
    rec_path.write_text(json.dumps(record | {"original_bytes": limit}))
    written = _count_writes(monkeypatch)
    with pytest.raises(ArchiveError, match=r"more than the recorded \d+ bytes; stopped after \d+ bytes"):
        unpack(rec_path, tmp_path / "out.gguf")
    assert written["bytes"] <= limit
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize("field", ["archive", "dictionary"])
@pytest.mark.parametrize("name, why", [("../x.zstd", "'..'"), ("sub/../../x", "'..'"), ("/etc/x", "absolute"),
                                       ("x\0.zstd", "NUL"), ("", "empty")])
def test_malicious_member_names_are_refused(packed, tmp_path, field, name, why):
    record, dst = _copy_archive(packed, tmp_path)
    rec_path = dst / f"{record['archive']}.json"
    rec_path.write_text(json.dumps(record | {field: name}))
    with pytest.raises(ArchiveError, match=why) as err:
        unpack(rec_path, tmp_path / "out.gguf")
    assert repr(name) in str(err.value) and f"'{field}'" in str(err.value)
    assert not (tmp_path / "out.gguf").exists()


def test_member_symlink_escaping_the_folder_is_refused(packed, tmp_path):
    record, dst = _copy_archive(packed, tmp_path)
    outside = tmp_path / "outside.zstd"
    (dst / record["archive"]).rename(outside)
    (dst / record["archive"]).symlink_to(outside)
    with pytest.raises(ArchiveError, match="symlink that points outside") as err:
        unpack(dst / f"{record['archive']}.json")
    assert record["archive"] in str(err.value)


def test_record_with_wrong_types_is_refused(packed, tmp_path):
    record, dst = _copy_archive(packed, tmp_path)
    rec_path = dst / f"{record['archive']}.json"
    rec_path.write_text(json.dumps(record | {"original_bytes": "10"}))
    with pytest.raises(ArchiveError, match="original_bytes"):
        unpack(rec_path)
    rec_path.write_text("[1, 2")
    with pytest.raises(ArchiveError, match="not readable JSON"):
        unpack(rec_path)
