"""Each attribution worker's view of the catalog, materialised from the compacted
``catalog-chunks`` topic (like a global table) and kept current before every batch."""

from __future__ import annotations

import json
import logging

from confluent_kafka import Message

from gpu_workers.index import ChunkRecord, VectorIndex
from gpu_workers.spans import SpanIndex
from tributary.kafka import TopicReader
from tributary.topics import Topic

log = logging.getLogger("tributary.catalog")


class CatalogView:
    """The vector index and the verbatim span index, both fed from the same records."""

    def __init__(self, bootstrap: str, index: VectorIndex, topic: str = Topic.CATALOG_CHUNKS.value):
        self.index = index
        self.spans = SpanIndex()
        self.version = 0
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
                self.spans.remove(chunk_id)
                return
            rec = json.loads(value)
            self.spans.add(rec["chunk_id"], rec["work_id"], rec["holder_id"], rec.get("text") or "")
            upserts.append(ChunkRecord(rec["chunk_id"], rec["work_id"], rec["holder_id"],
                                       int(rec["chunk_index"]), int(rec["catalog_version"]), rec["vector"]))
            self.version = max(self.version, int(rec["catalog_version"]))

        applied = self._reader.read_to_end(collect, timeout)
        if upserts:
            self.index.upsert(upserts)
        if deletes:
            self.index.delete(deletes)
        if applied:
            self.chunks = self.index.count()
            log.info("catalog view applied=%d chunks=%d catalog_version=%d", applied, self.chunks, self.version)
        return applied

    def close(self) -> None:
        self._reader.close()
