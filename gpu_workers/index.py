"""The vector index behind attribution: one small interface over Qdrant.

``QdrantIndex`` uses qdrant-client, either against a Qdrant server (``QDRANT_URL``,
shared by all workers) or in local mode (in-process; each worker rebuilds it from the
compacted ``catalog-chunks`` topic, the durable copy of the catalog vectors).
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
        points = [
            self._models.PointStruct(
                id=_point_id(c.chunk_id),
                vector=list(map(float, c.vector)),
                payload={
                    "chunk_id": c.chunk_id, "work_id": c.work_id, "holder_id": c.holder_id,
                    "chunk_index": c.chunk_index, "catalog_version": c.catalog_version,
                },
            )
            for c in chunks
        ]
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
        out = []
        for response in responses:
            row = []
            for point in response.points:
                p = point.payload or {}
                row.append(Match(p["chunk_id"], p["work_id"], p["holder_id"], int(p["chunk_index"]),
                                 float(point.score)))
            out.append(row)
        return out

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)
