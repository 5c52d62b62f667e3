"""The verbatim span matcher: copying caught with certainty, word by word.

Every catalog unit's text is cut into hashed shingles of ``SHINGLE_WORDS`` normalised
words (:func:`gpu_workers.segment.words`). An output's shingles are looked up, and
every output word inside a shared shingle is *copied* from the works holding it: a copy
of ``MIN_SPAN_WORDS`` (8) words or more is found, with no similarity threshold, and it
is found on word positions, so the words it pays are exactly the words copied.

A phrase shared by many registered works ("On error, -1 is returned, and errno is set
to indicate the error") belongs to none of them: a shingle held by more than
``common_works`` distinct works is boilerplate and is no evidence of copying. A work
registered twice (or two editions) still shares its words between the copies.

The index is rebuilt from ``catalog-chunks`` like the vector index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpu_workers.segment import words

SHINGLE_WORDS = 8
MIN_SPAN_WORDS = SHINGLE_WORDS
COMMON_WORKS = 3  # a shingle in more distinct works than this is boilerplate


def shingles(tokens: list[str], k: int = SHINGLE_WORDS) -> list[int]:
    """The hash of every window of ``k`` words, in order. Python's own (64-bit SipHash of
    the word tuple): an index is built and queried in one process, so the per-process
    hash seed does not matter, and it is several times cheaper than a digest per window."""
    return [hash(tuple(tokens[i:i + k])) for i in range(len(tokens) - k + 1)]


WorkKey = tuple[str, str]  # (work_id, holder_id)


@dataclass(frozen=True)
class Copied:
    """What one work contributed word for word to one output."""

    work_id: str
    holder_id: str
    positions: frozenset[int]  # output word positions covered by this work's shingles
    chunk_ids: tuple[str, ...]  # the catalog units those shingles came from

    @property
    def words(self) -> int:
        return len(self.positions)


@dataclass
class SpanIndex:
    k: int = SHINGLE_WORDS
    common_works: int = COMMON_WORKS
    _by_hash: dict[int, set[str]] = field(default_factory=dict)
    _chunks: dict[str, tuple[str, str, list[int]]] = field(default_factory=dict)

    def add(self, chunk_id: str, work_id: str, holder_id: str, text: str) -> None:
        self.remove(chunk_id)
        hashes = shingles(words(text), self.k)
        self._chunks[chunk_id] = (work_id, holder_id, hashes)
        for h in hashes:
            self._by_hash.setdefault(h, set()).add(chunk_id)

    def remove(self, chunk_id: str) -> None:
        old = self._chunks.pop(chunk_id, None)
        if old is None:
            return
        for h in old[2]:
            ids = self._by_hash.get(h)
            if ids is not None:
                ids.discard(chunk_id)
                if not ids:
                    del self._by_hash[h]

    def __len__(self) -> int:
        return len(self._chunks)

    def _holders_of(self, h: int) -> dict[WorkKey, set[str]]:
        works: dict[WorkKey, set[str]] = {}
        for chunk_id in self._by_hash.get(h, ()):
            work_id, holder_id, _ = self._chunks[chunk_id]
            works.setdefault((work_id, holder_id), set()).add(chunk_id)
        return works

    def copied(self, tokens: list[str], min_words: int = MIN_SPAN_WORDS,
               exclude: frozenset[str] = frozenset()) -> list[Copied]:
        """Works with at least ``min_words`` of ``tokens`` copied, most words first.
        ``exclude``: work ids to ignore (the calibration's leave-one-work-out)."""
        positions: dict[WorkKey, set[int]] = {}
        sources: dict[WorkKey, set[str]] = {}
        for i, h in enumerate(shingles(tokens, self.k)):
            if h not in self._by_hash:
                continue
            works = {key: ids for key, ids in self._holders_of(h).items() if key[0] not in exclude}
            if not works or len(works) > self.common_works:
                continue
            for key, ids in works.items():
                positions.setdefault(key, set()).update(range(i, i + self.k))
                sources.setdefault(key, set()).update(ids)
        found = [Copied(w, h, frozenset(p), tuple(sorted(sources[(w, h)])))
                 for (w, h), p in positions.items() if len(p) >= min_words]
        return sorted(found, key=lambda c: (-c.words, c.work_id))

    def match(self, text: str, min_words: int = MIN_SPAN_WORDS) -> list[Copied]:
        return self.copied(words(text), min_words)
