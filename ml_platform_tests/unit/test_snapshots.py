"""Content-addressed snapshots: same content, same name; stored files are never overwritten; tampering is caught."""

import pandas as pd
import pytest

from ml_platform.lib.snapshots import SnapshotIntegrityError, file_sha256, read_snapshot, write_snapshot


def frame(n=100):
    return pd.DataFrame({"id": [f"c{i}" for i in range(n)], "x": range(n)})


def test_snapshot_is_named_by_the_sha256_of_its_bytes(tmp_path):
    snap = write_snapshot(frame(), tmp_path)
    assert snap.path.name == f"{snap.sha256}.parquet"
    assert file_sha256(snap.path) == snap.sha256
    assert snap.rows == 100 and snap.columns == ["id", "x"]


def test_same_content_gives_the_same_snapshot_and_leaves_it_untouched(tmp_path):
    first = write_snapshot(frame(), tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = write_snapshot(frame(), tmp_path)
    assert second.sha256 == first.sha256
    assert first.path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temp files left behind


def test_different_content_gives_a_different_snapshot(tmp_path):
    assert write_snapshot(frame(100), tmp_path).sha256 != write_snapshot(frame(101), tmp_path).sha256


def test_an_altered_snapshot_is_refused(tmp_path):
    snap = write_snapshot(frame(), tmp_path)
    data = bytearray(snap.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.path.write_bytes(bytes(data))
    with pytest.raises(SnapshotIntegrityError, match="was altered"):
        read_snapshot(snap.path, snap.sha256)


def test_a_missing_snapshot_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_snapshot(tmp_path / "nope.parquet", "0" * 64)
