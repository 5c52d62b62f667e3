"""The state of a transactional stage: one key-value store per input partition,
mirrored to a compacted state topic in the same Kafka transaction as the stage's
outputs and input offsets (:mod:`tributary.txloop`).

- :class:`PartitionState` is what a stage's logic reads and writes while it handles a
  batch: writes stay in an overlay until the transaction commits (:meth:`commit`), or
  are dropped if it aborts (:meth:`rollback`), so the local copy never holds state
  Kafka does not.
- The local copy lives in RocksDB (``rocksdict``) under the data directory, so state
  need not fit in memory (a 30-day refund window at fleet rates is billions of keys);
  a dict backend serves unit tests. The copy remembers how far into its state-topic
  partition it has applied; on assignment only the tail after that is read, and a copy
  left behind by another owner (scale-out) catches up the same way.
- :class:`Expiry` bounds state by event time without an in-memory index: the keys each
  batch adds under one time bucket are listed under one state key, and buckets older
  than the horizon are dropped a few lists per batch.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger("tributary.state")

_DELETED = object()
APPLIED = "__applied__"  # the next state-topic offset the local copy has applied
TOPIC_ID = "__topic_id__"  # which incarnation of the state topic the local copy mirrors


class Backend(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def put(self, items: list[tuple[str, bytes | None]]) -> None: ...
    def close(self) -> None: ...


class DictBackend:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, items: list[tuple[str, bytes | None]]) -> None:
        for key, value in items:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def close(self) -> None:
        pass


class RocksBackend:
    """One RocksDB per (stage, partition); writes of a committed batch in one WriteBatch."""

    def __init__(self, path: Path):
        from rocksdict import Options, Rdict, WriteBatch  # the streams extra

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # memtables of 8 MiB, at most two per partition: RocksDB's 64 MiB default grew each
        # stage's RSS by ~0.65 KiB per event for the first few hundred thousand events
        options.set_write_buffer_size(8 << 20)
        options.set_max_write_buffer_number(2)
        self._batch = WriteBatch
        self.db = Rdict(str(path), options)
        self.path = path

    def get(self, key: str) -> bytes | None:
        value = self.db.get(key.encode())
        return value if value is None else bytes(value)

    def put(self, items: list[tuple[str, bytes | None]]) -> None:
        batch = self._batch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value)
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def destroy(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


class PartitionState:
    """Key -> JSON value for one partition, with a per-transaction overlay."""

    def __init__(self, partition: int, backend: Backend):
        self.partition = partition
        self.backend = backend
        self._overlay: dict[str, Any] = {}
        self._encoded: list[tuple[str, bytes | None]] | None = None  # changes(), until the next write

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._overlay:
            value = self._overlay[key]
            return default if value is _DELETED else value
        raw = self.backend.get(key)
        return default if raw is None else orjson.loads(raw)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _DELETED) is not _DELETED

    def __setitem__(self, key: str, value: Any) -> None:
        self._overlay[key] = value
        self._encoded = None

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key, _DELETED)
        self._overlay[key] = _DELETED
        self._encoded = None
        return default if value is _DELETED else value

    def changes(self) -> list[tuple[str, bytes | None]]:
        """What this transaction wrote: (key, JSON bytes or None for a deletion). Encoded
        once: the transaction produces them and the commit stores the same bytes."""
        if self._encoded is None:
            self._encoded = [(key, None if value is _DELETED else orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
                             for key, value in self._overlay.items()]
        return self._encoded

    @property
    def dirty(self) -> bool:
        return bool(self._overlay)

    def commit(self, applied: int | None = None) -> None:
        """The transaction committed: the overlay becomes the local copy. ``applied``: the
        state-topic offset after this transaction's last state record, so that a restart
        catches up from there instead of from the last restore."""
        items = self.changes()
        if applied is not None:
            items = [*items, (APPLIED, str(applied).encode())]
        if items:
            self.backend.put(items)
        self.rollback()

    def rollback(self) -> None:
        self._overlay.clear()
        self._encoded = None

    def applied(self, topic_id: str) -> int | None:
        """The next state-topic offset this copy needs; None if it mirrors another topic
        (one deleted and created again, another cluster) or nothing at all."""
        raw, mirrored = self.backend.get(APPLIED), self.backend.get(TOPIC_ID)
        if raw is None or mirrored is None or mirrored.decode() != topic_id:
            return None
        return int(raw)

    def restore(self, records: list[tuple[bytes, bytes | None]], upto: int, topic_id: str) -> None:
        """Apply state-topic records (key, value or tombstone) read up to offset ``upto``."""
        items: list[tuple[str, bytes | None]] = [(k.decode(), v) for k, v in records]
        items += [(APPLIED, str(upto).encode()), (TOPIC_ID, topic_id.encode())]
        self.backend.put(items)


def topic_id(bootstrap: str, topic: str) -> str:
    """A topic's id: a topic deleted and created again (or another cluster's) has another,
    so a local copy of the old one is never taken for it."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=30)
    return str(future[topic].result().topic_id)


def catch_up(reader: Any, topic: str, partition: int, folder: Path | None, topic_id: str,
             what: str = "", expand: Callable[[bytes, bytes | None], list[tuple[bytes, bytes | None]]] | None = None
             ) -> PartitionState:
    """A partition's state: its local copy under ``folder`` (RocksDB; None: in memory),
    caught up with ``topic`` (read_committed, by ``reader``, a consumer with
    enable.partition.eof) from where the copy left off; rebuilt from the log alone when
    there is no copy, it mirrors another incarnation of the topic, or the log no longer
    reaches back to it. ``expand``: a record -> the (key, value) writes it stands for
    (default: itself)."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    def backend() -> Backend:
        return RocksBackend(folder) if folder is not None else DictBackend()

    state = PartitionState(partition, backend())
    try:
        tp = TopicPartition(topic, partition)
        low, high = reader.get_watermark_offsets(tp, timeout=30)
        applied = state.applied(topic_id)
        if applied is None or applied < low or applied > high:
            if applied is not None or folder is not None:
                log.info("%s partition=%d rebuilding the local state from %s [%d, %d)", what, partition, topic,
                         low, high)
            state.backend.close()
            if folder is not None:
                RocksBackend.destroy(folder)
            state = PartitionState(partition, backend())
            applied = low
        start = applied
        if start >= high:
            state.restore([], start, topic_id)
            return state
        reader.assign([TopicPartition(topic, partition, start if start > 0 else OFFSET_BEGINNING)])
        records: list[tuple[bytes, bytes | None]] = []
        position = start
        deadline = time.monotonic() + 300
        while position < high:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restoring {topic}/{partition} did not reach offset {high}")
            for msg in reader.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("restore %s/%d: %s", topic, partition, err)
                    continue
                key = msg.key()
                if key is not None:
                    records += expand(key, msg.value()) if expand else [(key, msg.value())]
                position = max(position, (msg.offset() or 0) + 1)
            # transaction markers and aborted records advance the position without a message
            position = max(position, reader.position([tp])[0].offset)
            if len(records) >= 50_000:
                state.restore(records, position, topic_id)
                records = []
        state.restore(records, position, topic_id)
        return state
    finally:
        reader.unassign()


class Expiry:
    """Drop keys whose event time fell ``horizon_s`` behind the newest event time seen on
    the partition. Per batch: one list of the batch's new keys per time bucket
    (``x:<bucket>:<n>``), one counter per bucket (``xn:<bucket>``) and the open buckets
    (``xb``); expired lists are removed ``per_batch`` at a time, so no transaction
    carries more than a few thousand deletions."""

    def __init__(self, horizon_s: float, bucket_s: float = 3_600, per_batch: int = 4):
        self.horizon_s = horizon_s
        self.bucket_s = bucket_s
        self.per_batch = per_batch

    def newest(self, state: KeyValue, scope: str = "") -> float | None:
        return state.get(f"{scope}xt")  # type: ignore[no-any-return]

    def too_old(self, state: KeyValue, t: float, scope: str = "") -> bool:
        newest = self.newest(state, scope)
        return newest is not None and t < newest - self.horizon_s

    def track(self, state: KeyValue, added: list[tuple[str, float]], scope: str = "") -> list[str]:
        """Record the keys a batch added (with their event times) and expire what is due;
        returns the keys expired. ``scope`` prefixes the bookkeeping keys, for a store
        shared by several partitions (a Faust table)."""
        if added:
            newest = max(t for _, t in added)
            if newest > (self.newest(state, scope) or float("-inf")):
                state[f"{scope}xt"] = newest
            buckets: dict[int, list[str]] = {}
            for key, t in added:
                buckets.setdefault(int(t // self.bucket_s), []).append(key)
            open_buckets = set(state.get(f"{scope}xb") or [])
            for bucket, keys in buckets.items():
                n = int(state.get(f"{scope}xn:{bucket}") or 0)
                state[f"{scope}x:{bucket}:{n}"] = keys
                state[f"{scope}xn:{bucket}"] = n + 1
                if bucket not in open_buckets:
                    open_buckets.add(bucket)
                    state[f"{scope}xb"] = sorted(open_buckets)
        return self.expire(state, scope)

    def expire(self, state: KeyValue, scope: str = "") -> list[str]:
        newest = self.newest(state, scope)
        if newest is None:
            return []
        cut = (newest - self.horizon_s) // self.bucket_s  # buckets wholly older than this go
        expired: list[str] = []
        open_buckets = list(state.get(f"{scope}xb") or [])
        budget, closed = self.per_batch, False
        while open_buckets and open_buckets[0] < cut and budget:
            bucket = open_buckets[0]
            n = int(state.get(f"{scope}xn:{bucket}") or 0)
            while n and budget:
                n -= 1
                budget -= 1
                for key in state.pop(f"{scope}x:{bucket}:{n}", None) or []:
                    state.pop(key, None)
                    expired.append(key)
            if n:
                state[f"{scope}xn:{bucket}"] = n
            else:
                state.pop(f"{scope}xn:{bucket}", None)
                open_buckets.pop(0)
                closed = True
        if closed:
            state[f"{scope}xb"] = open_buckets
        return expired


# what Expiry keeps its lists in: a partition's state here, or a Faust table (ingest)
KeyValue = PartitionState | MutableMapping[str, Any]
