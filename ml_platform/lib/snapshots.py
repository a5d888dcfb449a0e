"""Immutable, content-addressed data snapshots.

A snapshot is a Parquet file named by the SHA-256 of its bytes. Writing the same content twice
yields the same name and leaves the stored file untouched; a stored file is never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    sha256: str
    path: Path
    rows: int
    columns: list[str]

    @property
    def short(self) -> str:
        return self.sha256[:12]


class SnapshotIntegrityError(RuntimeError):
    """A stored snapshot's content no longer matches its hash."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_snapshot(df: pd.DataFrame, directory: Path) -> Snapshot:
    """Store `df` as `<directory>/<sha256>.parquet`; return the snapshot (existing or new)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, suffix=".parquet.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # index=False and a fixed compression make the bytes a function of the content.
        df.to_parquet(tmp, index=False, compression="zstd")
        sha = file_sha256(tmp)
        final = directory / f"{sha}.parquet"
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return Snapshot(sha256=sha, path=final, rows=len(df), columns=[str(c) for c in df.columns])


def read_snapshot(path: Path, expected_sha256: str | None = None) -> pd.DataFrame:
    """Read a snapshot, first checking that its bytes still hash to `expected_sha256`.

    Verified reads are cached in-process (the last two): training, evaluation and the gate read the
    same snapshot within one run. Callers must treat the frame as read-only (select/copy, never
    assign into it)."""
    if not path.exists():
        raise FileNotFoundError(f"snapshot {path} is missing")
    if expected_sha256 is None:
        return pd.read_parquet(path)
    stat = path.stat()
    return _read_verified(str(path), expected_sha256, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _read_verified(path: str, expected_sha256: str, size: int, mtime_ns: int) -> pd.DataFrame:
    # Size and mtime are part of the key: a file changed on disk is read, and hashed, again.
    actual = file_sha256(Path(path))
    if actual != expected_sha256:
        raise SnapshotIntegrityError(
            f"snapshot {path} was altered: its SHA-256 is {actual[:12]}…, expected {expected_sha256[:12]}…"
        )
    return pd.read_parquet(path)
