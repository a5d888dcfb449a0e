"""Named locks that hold across processes (and, on PostgreSQL, across machines), released by the operating
system or the database if their holder dies - a killed process never leaves one taken.

Used for the champion's compare-and-set (resources/governance.py) and for training (one fit per model at a
time, defs/training/assets.py).
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(name: str, *, database_url: str | None, lock_dir: Path) -> Iterator[None]:
    """Hold lock `name` for the block: a PostgreSQL advisory lock when `database_url` is a PostgreSQL database
    (held by the connection: it ends with the process), else an flock on `<lock_dir>/<name>.lock`."""
    if database_url and database_url.startswith(("postgresql", "postgres:")):
        import psycopg2

        con = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
        con.autocommit = True
        key = zlib.crc32(f"ml_platform:{name}".encode())
        try:
            with con.cursor() as cur:
                cur.execute("select pg_advisory_lock(%s)", (key,))
            yield
        finally:
            try:
                with con.cursor() as cur:
                    cur.execute("select pg_advisory_unlock(%s)", (key,))
            finally:
                con.close()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
