"""Split text into overlapping word windows. Catalog works and inference outputs are
chunked the same way so their chunks are comparable."""

from __future__ import annotations

import re

WORD = re.compile(r"\S+")
CHUNK_WORDS = 60
OVERLAP_WORDS = 20


def chunk_text(text: str, words: int = CHUNK_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """Windows of ``words`` words, each overlapping the previous by ``overlap``.

    A short text is one chunk. The last window is aligned to the end so no chunk is a
    tiny tail.
    """
    if overlap >= words:
        raise ValueError("overlap must be smaller than the window")
    tokens = WORD.findall(text)
    if not tokens:
        return []
    if len(tokens) <= words:
        return [" ".join(tokens)]
    step = words - overlap
    starts = list(range(0, len(tokens) - words + 1, step))
    if starts[-1] + words < len(tokens):
        starts.append(len(tokens) - words)
    return [" ".join(tokens[s : s + words]) for s in starts]
