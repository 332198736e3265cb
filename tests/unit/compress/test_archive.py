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

