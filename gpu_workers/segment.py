"""Text -> words and sentences, the same way for catalog works and inference outputs.

Attribution pays words, so everything is counted in one tokenisation: ``words`` (case
folded, letters and digits of any script, inner apostrophes kept, each CJK character a
word). A text is cut into sentences at
sentence-ending punctuation and at line breaks; a fragment shorter than
``MIN_SENTENCE_WORDS`` ("See below.", "Returns 0.") joins its neighbour, and a run-on
longer than ``MAX_SENTENCE_WORDS`` is cut into even pieces, so every unit the model
embeds says something and fits the model's window.

A ``Segment`` knows its word range in the whole text, so a decision about a sentence
becomes a number of words, and a copied span (found on word positions) lands in the
sentences it covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_SENTENCE_WORDS = 5
MAX_SENTENCE_WORDS = 48
WINDOW_SENTENCES = 2  # short windows: each pair of neighbouring sentences is a unit too

# letters and digits of any script (inner apostrophes kept); a CJK character is a word of its own
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:'[^\W_{_CJK}]+)*")
_BREAK = re.compile(r"(?<=[.!?:;])[\"')\]]*\s+(?=[\"'(\[]?[^\W_a-z])|(?<=[\u3002\uff01\uff1f])\s*"
                    r"|\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where each of ``words(text)`` stands in ``text`` (start, end), to mark words in place."""
    return [m.span() for m in _WORD.finditer(text.replace("\u2019", "'"))]


@dataclass(frozen=True)
class Segment:
    text: str
    first_word: int  # position of its first word in the whole text's ``words``
    n_words: int

    @property
    def word_range(self) -> range:
        return range(self.first_word, self.first_word + self.n_words)


def _pieces(text: str) -> list[str]:
    out = []
    for part in _BREAK.split(text):
        part = " ".join(part.split())
        if part:
            out.append(part)
    return out


def _split_long(sentence: str, n: int) -> list[str]:
    tokens = sentence.split()
    parts = -(-n // MAX_SENTENCE_WORDS)
    size = -(-len(tokens) // parts)
    return [" ".join(tokens[i:i + size]) for i in range(0, len(tokens), size)]


def sentences(text: str) -> list[Segment]:
    """The text's sentences in order; their word ranges tile ``words(text)`` exactly."""
    merged: list[str] = []
    for piece in _pieces(text):
        n = len(words(piece))
        if n == 0:
            if merged:
                merged[-1] = f"{merged[-1]} {piece}"
            else:
                merged.append(piece)
            continue
        if merged and len(words(merged[-1])) < MIN_SENTENCE_WORDS:
            merged[-1] = f"{merged[-1]} {piece}"  # a fragment joins what follows it
        else:
            merged.append(piece)
    if len(merged) > 1 and len(words(merged[-1])) < MIN_SENTENCE_WORDS:
        tail = merged.pop()
        merged[-1] = f"{merged[-1]} {tail}"  # a trailing fragment joins what precedes it
    out: list[Segment] = []
    cursor = 0
    for sentence in merged:
        n = len(words(sentence))
        for part in (_split_long(sentence, n) if n > MAX_SENTENCE_WORDS else [sentence]):
            k = len(words(part))
            if k:
                out.append(Segment(part, cursor, k))
                cursor += k
    return out


@dataclass(frozen=True)
class Unit:
    """What is embedded and searched: one sentence, or a window of neighbouring ones."""

    text: str
    first_sentence: int
    last_sentence: int  # inclusive

    @property
    def kind(self) -> str:
        return "sentence" if self.first_sentence == self.last_sentence else "window"


def units(segments: list[Segment], window: int = WINDOW_SENTENCES) -> list[Unit]:
    """Every sentence, then every window of ``window`` neighbouring sentences."""
    out = [Unit(s.text, i, i) for i, s in enumerate(segments)]
    if window > 1:
        for i in range(len(segments) - window + 1):
            out.append(Unit(" ".join(s.text for s in segments[i:i + window]), i, i + window - 1))
    return out
