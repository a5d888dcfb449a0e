"""Batch scoring: feature rows in, prediction rows out, one chunk at a time (memory stays bounded by a chunk).

Each prediction row carries the model version that made it and a deterministic prediction id, so scoring
the same batch again with the same version gives the same ids (and the warehouse stores nothing twice).
No Dagster here: the `batch_predictions` asset and the benchmark call the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ml_platform.lib.modeling import model_inputs, positive_scores
from ml_platform.sql import quote_identifier

PREDICTION_COLUMNS = ("prediction_id", "entity_id", "model_name", "model_version", "snapshot_hash", "score",
                      "scored_at")

T = TypeVar("T")

# Each byte value as its two lowercase hex digits, little-endian in a uint16: "0f" is ord("0") | ord("f") << 8.
_HEX_PAIRS = np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], dtype="<u2")


def features_query(table: str, *, columns: list[str], id_column: str | None) -> str:
    """The rows of one batch (`snapshot_hash = ?`) of a feature table, with only the columns scoring reads."""
    selected = dict.fromkeys([*([id_column] if id_column else []), *columns])
    return f"select {', '.join(quote_identifier(c) for c in selected)} from {table} where snapshot_hash = ?"


def prediction_ids(entity_ids: Iterable[str] | np.ndarray, *, model_name: str, model_version: str,
                   snapshot_hash: str) -> np.ndarray:
    """`<model>-v<version>-<16 hex digits>`, the digits being pandas' 64-bit hash of `<entity>|<snapshot>`.

    The same ids as `hash_pandas_object(entity + "|" + snapshot)` formatted with `%016x`, built without
    a Python-level loop: hashing without factorizing first (every id is distinct) and hex digits from a
    lookup table, straight into one buffer of fixed-width strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keyed = pc.binary_join_element_wise(pa.array(np.asarray(entity_ids, dtype=object), type=pa.string()),
                                        f"|{snapshot_hash}", "")
    # hash_array = hash_pandas_object(..., index=False) without factorizing. It hashes a str's UTF-8 bytes
    # and bytes as they are: handing it bytes spares it encoding every key again.
    hashes = pd.util.hash_array(keyed.cast(pa.binary()).to_numpy(zero_copy_only=False), categorize=False)
    prefix = np.frombuffer(f"{model_name}-v{model_version}-".encode(), dtype=np.uint8)
    width = len(prefix) + 16
    text = np.empty((len(hashes), width), dtype=np.uint8)
    text[:, :len(prefix)] = prefix
    big_endian = hashes.astype(">u8").view(np.uint8)  # most significant byte first, as %016x writes it
    text[:, len(prefix):] = _HEX_PAIRS[big_endian].view(np.uint8).reshape(-1, 16)
    offsets = np.arange(0, (len(hashes) + 1) * width, width, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(len(hashes), pa.py_buffer(offsets), pa.py_buffer(text))
    return ids.to_numpy(zero_copy_only=False)


def score_chunks(model: Any, chunks: Iterable[pd.DataFrame], *, columns: list[str], positive_label: Any,
                 id_column: str | None, model_name: str, model_version: str, snapshot_hash: str,
                 scored_at: datetime | None = None, read_ahead: int = 1) -> Iterator[pd.DataFrame]:
    """Score feature rows chunk by chunk: one frame of PREDICTION_COLUMNS per non-empty chunk, in order.

    `columns` are the model's inputs; `id_column` names each row's entity (without one, the row's position
    in the whole stream, as the unchunked scoring numbered them). Every row of a run gets the same
    `scored_at` (now, in UTC, unless given).

    With `read_ahead` > 0, a background thread reads the next chunks (that many at most) and prepares
    their model inputs and prediction ids while the model scores the current one: the model's predict
    releases the GIL, so reading no longer waits for scoring. Memory holds `read_ahead` + 2 chunks.
    `chunks` is closed when the scoring ends or is stopped (a generator holding a connection lets it go).
    """
    scored_at = scored_at or datetime.now(UTC).replace(tzinfo=None)
    prepared = _prepared(chunks, columns=columns, id_column=id_column, model_name=model_name,
                         model_version=str(model_version), snapshot_hash=snapshot_hash, scored_at=scored_at)
    source = read_ahead_of(prepared, read_ahead) if read_ahead > 0 else prepared
    try:
        for inputs, rows in source:
            rows.insert(PREDICTION_COLUMNS.index("score"), "score", positive_scores(model, inputs, positive_label))
            yield rows
    finally:
        source.close()


def _prepared(chunks: Iterable[pd.DataFrame], *, columns: list[str], id_column: str | None, model_name: str,
              model_version: str, snapshot_hash: str, scored_at: datetime) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Everything scoring needs but the model: per chunk, its model inputs and its prediction rows but the score."""
    position = 0
    try:
        for chunk in chunks:
            if chunk.empty:
                continue
            if id_column:
                entity = chunk[id_column].astype(str).to_numpy(dtype=object)
            else:
                entity = np.arange(position, position + len(chunk)).astype(str).astype(object)
            position += len(chunk)
            rows = pd.DataFrame({
                "prediction_id": prediction_ids(entity, model_name=model_name, model_version=model_version,
                                                snapshot_hash=snapshot_hash),
                "entity_id": entity,
                "model_name": model_name,
                "model_version": model_version,
                "snapshot_hash": snapshot_hash,
                "scored_at": scored_at,
            })
            yield model_inputs(chunk, columns), rows
    finally:
        # Stopped early (or done): let a generator over a connection close it now, in this thread.
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def read_ahead_of(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """`items`, in order, produced by a background thread up to `depth` items ahead of the consumer.

    The thread iterates (and finally closes) `items` on its own, so a generator holding a connection uses
    it from that one thread. An error there is raised here; stopping early stops the thread.
    """
    import queue
    import threading

    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, value = buffer.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()
