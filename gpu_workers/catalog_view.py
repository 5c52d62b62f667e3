"""Each attribution worker's view of the catalog, materialised from the compacted
``catalog-chunks`` topic (like a global table) and kept current before every batch."""

from __future__ import annotations

import json
import logging

from confluent_kafka import Message

from gpu_workers.catalog import CatalogUnits
from gpu_workers.index import ChunkRecord, VectorIndex
from tributary.kafka import TopicReader
from tributary.topics import Topic

log = logging.getLogger("tributary.catalog")


class CatalogView:
    """The vector index and the in-memory catalog (exact vectors, texts, verbatim spans,
    calibration), both fed from the same records."""

    def __init__(self, bootstrap: str, index: VectorIndex, topic: str = Topic.CATALOG_CHUNKS.value):
        self.index = index
        self.units = CatalogUnits()
        self.chunks = 0
        self._reader = TopicReader(bootstrap, topic)

    def sync(self, timeout: float = 10.0) -> int:
        """Apply everything up to the topic's current end; returns how many records."""
        upserts: list[ChunkRecord] = []
        deletes: list[str] = []

        def collect(msg: Message) -> None:
            value = msg.value()
            if value is None:
                chunk_id = (msg.key() or b"").decode()
                deletes.append(chunk_id)
                self.units.remove(chunk_id)
                return
            upserts.append(self.units.add_record(json.loads(value)))

        applied = self._reader.read_to_end(collect, timeout)
        if upserts:
            self.index.upsert(upserts)
        if deletes:
            self.index.delete(deletes)
        if applied:
            self.chunks = self.index.count()
            log.info("catalog view applied=%d units=%d catalog_version=%d", applied, self.chunks, self.version)
        return applied

    @property
    def version(self) -> int:
        return self.units.version

    def close(self) -> None:
        self._reader.close()
