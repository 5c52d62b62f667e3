"""The verbatim span matcher: exact copying caught with certainty, beside the embeddings.

Every catalog chunk's text is cut into hashed shingles of ``SHINGLE_WORDS`` normalised
words (lower case, punctuation dropped). An output chunk's shingles are looked up; the
words they cover are counted per work. A work with at least ``min_words`` covered
words in an output chunk (a sentence or more copied word for word) is a verbatim
match: no similarity threshold is involved, and nothing short of copying produces one
(an 8-word shingle shared by chance is rare; 12 covered words take at least five
consecutive shared shingles).

Catalog chunks overlap by more than a shingle, so a copied span is never missed at a
chunk boundary. The index is rebuilt from ``catalog-chunks`` like the vector index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SHINGLE_WORDS = 8
MIN_SPAN_WORDS = 12
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def shingles(tokens: list[str], k: int = SHINGLE_WORDS) -> list[int]:
    """The hash of every window of ``k`` words, in order. Python's own (64-bit SipHash of
    the word tuple): an index is built and queried in one process, so the per-process
    hash seed does not matter, and it is several times cheaper than a digest per window."""
    return [hash(tuple(tokens[i:i + k])) for i in range(len(tokens) - k + 1)]


@dataclass(frozen=True)
class SpanMatch:
    work_id: str
    holder_id: str
    words: int  # output words covered by shingles of this work
    chunk_ids: tuple[str, ...]  # the catalog chunks those shingles came from


@dataclass
class SpanIndex:
    k: int = SHINGLE_WORDS
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

    def match(self, text: str, min_words: int = MIN_SPAN_WORDS) -> list[SpanMatch]:
        """Works with at least ``min_words`` of ``text`` copied verbatim, most first."""
        starts: dict[tuple[str, str], list[int]] = {}  # work -> output positions of shared shingles
        sources: dict[tuple[str, str], set[str]] = {}
        for i, h in enumerate(shingles(words(text), self.k)):
            ids = self._by_hash.get(h)
            if not ids:
                continue
            for chunk_id in ids:
                work_id, holder_id, _ = self._chunks[chunk_id]
                key = (work_id, holder_id)
                starts.setdefault(key, []).append(i)
                sources.setdefault(key, set()).add(chunk_id)
        found = []
        for (work_id, holder_id), positions in starts.items():
            covered = _covered(sorted(set(positions)), self.k)
            if covered >= min_words:
                found.append(SpanMatch(work_id, holder_id, covered, tuple(sorted(sources[(work_id, holder_id)]))))
        return sorted(found, key=lambda m: (-m.words, m.work_id))


def _covered(starts: list[int], k: int) -> int:
    """Words covered by the windows [s, s + k) for sorted, distinct ``starts``."""
    total, end = 0, -1
    for s in starts:
        total += min(k, s + k - end) if s < end else k
        end = s + k
    return total
