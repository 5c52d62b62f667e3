"""The vector index behind attribution: one small interface, two Qdrant engines.

- ``EdgeIndex`` (the embedded default): a qdrant-edge shard in-process, HNSW-indexed.
  An embedded shard is locked by one process, so each attribution worker materialises
  its own from the compacted ``catalog-chunks`` topic (the durable copy of the catalog
  vectors) into its own directory, rebuilt at start and kept current before each batch.
- ``QdrantIndex``: qdrant-client against a Qdrant server (``QDRANT_URL``), shared by all
  workers; its local mode (``:memory:``, brute force in Python) runs the same contract
  tests and suits toy catalogs only.

``open_index`` picks one from the settings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    work_id: str
    holder_id: str
    chunk_index: int
    catalog_version: int
    vector: list[float]


@dataclass(frozen=True)
class Match:
    chunk_id: str
    work_id: str
    holder_id: str
    chunk_index: int
    score: float


class VectorIndex(Protocol):
    def upsert(self, chunks: list[ChunkRecord]) -> None: ...
    def delete(self, chunk_ids: list[str]) -> None: ...
    def search_batch(self, vectors: np.ndarray, top_k: int) -> list[list[Match]]: ...
    def count(self) -> int: ...


def _point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tributary:{chunk_id}"))


def _payload(c: ChunkRecord) -> dict[str, object]:
    return {"chunk_id": c.chunk_id, "work_id": c.work_id, "holder_id": c.holder_id,
            "chunk_index": c.chunk_index, "catalog_version": c.catalog_version}


def _match(payload: dict[str, object] | None, score: float) -> Match:
    p = payload or {}
    return Match(str(p["chunk_id"]), str(p["work_id"]), str(p["holder_id"]), int(p["chunk_index"]),  # type: ignore[call-overload]
                 float(score))


class EdgeIndex:
    """qdrant-edge, embedded: one shard per process under ``path`` (wiped at start:
    the catalog-chunks topic is the source of truth). After a bulk load the HNSW index
    is built (``optimize``) so searches stay fast at 100k+ chunks."""

    OPTIMIZE_AFTER = 1_000  # points changed since the last optimize

    def __init__(self, path: str, dim: int = 384):
        import shutil

        from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams

        shutil.rmtree(path, ignore_errors=True)
        self.shard = EdgeShard.create(path, EdgeConfig(vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine)))
        self._changed = 0

    def upsert(self, chunks: list[ChunkRecord]) -> None:
        from qdrant_edge import Point, UpdateOperation

        if not chunks:
            return
        for i in range(0, len(chunks), 2_000):
            points = [Point(_point_id(c.chunk_id), list(map(float, c.vector)), _payload(c))
                      for c in chunks[i:i + 2_000]]
            self.shard.update(UpdateOperation.upsert_points(points))
        self._touched(len(chunks))

    def delete(self, chunk_ids: list[str]) -> None:
        from qdrant_edge import UpdateOperation

        if chunk_ids:
            self.shard.update(UpdateOperation.delete_points([_point_id(c) for c in chunk_ids]))
            self._touched(len(chunk_ids))

    def _touched(self, n: int) -> None:
        self._changed += n
        if self._changed >= self.OPTIMIZE_AFTER:
            self.shard.optimize()
            self._changed = 0

    def search_batch(self, vectors: np.ndarray, top_k: int) -> list[list[Match]]:
        from qdrant_edge import Query, QueryBatchRequest, QueryRequest

        if len(vectors) == 0:
            return []
        batch = QueryBatchRequest([QueryRequest(limit=top_k, query=Query.Nearest(v.tolist()), with_payload=True)
                                   for v in vectors])
        return [[_match(p.payload, p.score) for p in points] for points in self.shard.query_batch(batch)]

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self.shard.count(CountRequest(exact=True)))

    def close(self) -> None:
        self.shard.close()


def open_index(qdrant_url: str | None, edge_path: str, dim: int, api_key: str | None = None) -> VectorIndex:
    """A Qdrant server when ``QDRANT_URL`` is set, else this worker's embedded shard."""
    if qdrant_url:
        return QdrantIndex(qdrant_url, dim=dim, api_key=api_key)
    return EdgeIndex(edge_path, dim=dim)


class QdrantIndex:
    def __init__(self, location: str = ":memory:", collection: str = "catalog_chunks", dim: int = 384,
                 api_key: str | None = None):
        from qdrant_client import QdrantClient, models

        self._models = models
        if location.startswith(("http://", "https://")):
            self.client = QdrantClient(url=location, api_key=api_key)
        elif location == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(path=location)
        self.collection = collection
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )

    def upsert(self, chunks: list[ChunkRecord]) -> None:
        if not chunks:
            return
        points = [self._models.PointStruct(id=_point_id(c.chunk_id), vector=list(map(float, c.vector)),
                                           payload=_payload(c)) for c in chunks]
        self.client.upsert(self.collection, points=points, wait=True)

    def delete(self, chunk_ids: list[str]) -> None:
        if chunk_ids:
            self.client.delete(
                self.collection,
                points_selector=self._models.PointIdsList(points=[_point_id(c) for c in chunk_ids]),
                wait=True,
            )

    def search_batch(self, vectors: np.ndarray, top_k: int) -> list[list[Match]]:
        if len(vectors) == 0:
            return []
        requests = [
            self._models.QueryRequest(query=v.tolist(), limit=top_k, with_payload=True) for v in vectors
        ]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[_match(point.payload, point.score) for point in response.points] for response in responses]

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)
