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

import hashlib
import re
from dataclasses import dataclass, field

SHINGLE_WORDS = 8
MIN_SPAN_WORDS = 12
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def shingles(tokens: list[str], k: int = SHINGLE_WORDS) -> list[int]:
    """The hash of every window of ``k`` words, in order."""
    return [int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + k]).encode(), digest_size=8).digest(), "big")
            for i in range(len(tokens) - k + 1)]


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
        hashes = shingles(words(text), self.k)
        covered: dict[tuple[str, str], set[int]] = {}
        sources: dict[tuple[str, str], set[str]] = {}
        for i, h in enumerate(hashes):
            for chunk_id in self._by_hash.get(h, ()):
                work_id, holder_id, _ = self._chunks[chunk_id]
                key = (work_id, holder_id)
                covered.setdefault(key, set()).update(range(i, i + self.k))
                sources.setdefault(key, set()).add(chunk_id)
        found = [SpanMatch(w, h, len(positions), tuple(sorted(sources[(w, h)])))
                 for (w, h), positions in covered.items() if len(positions) >= min_words]
        return sorted(found, key=lambda m: (-m.words, m.work_id))
