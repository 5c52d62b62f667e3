"""Build ``gpu_workers/data/novels_same_genre.jsonl``: same-genre "unrelated" text for the
``novels`` attribution evaluation set.

The ``novels`` catalog (``tributary/data/sample_catalog.json``) is 20 openings of
public-domain novels.  Its unrelated cases should be fiction too, written by others, from
books that are *not* in the catalog.  This script collects such passages, offline, from
six Debian (main) packages:

* ``fortunes-min`` / ``fortunes``: fortune cookie files (``literature`` and the others);
* ``nethack-common``: the NetHack encyclopedia (the ``data`` member of the ``nhdat`` archive);
* ``crawl-common``: Dungeon Crawl Stone Soup's ``dat/descript/quotes.txt``;
* ``gtypist``: the "excerpts from the classics" lesson of ``s.typ``;
* ``golang-github-klauspost-compress-dev``: ``testdata/Mark.Twain-Tom.Sawyer.txt``, the
  whole novel (Project Gutenberg text), of which TOM_SAWYER_PASSAGES paragraphs are taken,
  evenly spaced.

Only quotations whose attribution matches a hand-checked allow-list (``ALLOW`` below) are
kept: narrative prose (novels, short stories, tales, fables, myths and legends) first
published, and translated, in 1928 or earlier, by authors and translators who died in 1954
or earlier.  Then a passage must

* be prose (not verse, not a play's dialogue), 15-120 words long (a quotation over 120
  words keeps its leading sentences up to 120 words; a Tom Sawyer paragraph over 120 words
  is dropped);
* not come from one of the catalog's works (by title);
* share no run of 8 consecutive words (lower-cased, punctuation dropped) with any catalog
  work's text;
* not repeat a passage already kept (same words).

The output is deterministic (package, file and position order; nothing random).

Getting the input (one folder per package, each a ``dpkg-deb -x`` of its ``.deb``)::

    mkdir -p /tmp/fx/debs && cd /tmp/fx/debs
    apt-get download fortunes fortunes-min nethack-common crawl-common gtypist \
        golang-github-klauspost-compress-dev
    for d in *.deb; do p=${d%%_*}; mkdir -p ../x/$p && dpkg-deb -x "$d" ../x/$p; done
    cd - && python gpu_workers/evalsets/build_novels_same_genre.py /tmp/fx/x

Versions used for the committed file: see ``PACKAGES``.  ``--candidates`` prints every
prose candidate of the right length with its raw attribution (a help for extending the
allow-list); ``--report`` prints what was dropped and why.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = HERE.parent / "data" / "novels_same_genre.jsonl"
DEFAULT_CATALOG = REPO / "tributary" / "data" / "sample_catalog.json"

MIN_WORDS, MAX_WORDS = 15, 120
NGRAM = 8
PD_YEAR = 1928  # published (and translated) in or before this year
DIED_BY = 1954  # every author and translator died in or before this year

# Debian package -> (version, license of the package as its copyright file states it)
PACKAGES: dict[str, tuple[str, str]] = {
    "fortunes-min": ("1:1.99.1-7.3", "BSD-3-Clause (fortune-mod; /usr/share/doc/fortunes-min/copyright)"),
    "fortunes": ("1:1.99.1-7.3", "BSD-3-Clause (fortune-mod; /usr/share/doc/fortunes/copyright)"),
    "nethack-common": ("3.6.6-3+b2", "NGPL (NetHack General Public License)"),
    "crawl-common": ("2:0.28.0-1.1", "GPL-2+ (Dungeon Crawl Stone Soup)"),
    "gtypist": ("2.9.5-3+b1", "GPL-3+ (GNU Typist)"),
    "golang-github-klauspost-compress-dev": ("1.15.12+ds1-3", "BSD-3-Clause (klauspost/compress; the test text is the Project Gutenberg edition of The Adventures of Tom Sawyer)"),
}


class Candidate(NamedTuple):
    package: str
    file: str          # path inside the package
    pos: int           # position in the file
    attribution: str   # raw attribution as the file gives it
    text: str          # normalised text
    verse: bool        # looks like verse / a play


# --------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": "--",
                         "\u2013": "-", "\u2026": "...", "\u00a0": " "})


def normalise(text: str) -> str:
    text = text.translate(_QUOTES)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"^(\[\.\.\.\]|\.\.\.)\s*", "", text)  # a leading ellipsis marker


def unquote(text: str) -> str:
    """Crawl's quotes.txt wraps every quotation in one pair of double quotes (its markup)."""
    if text.startswith('"') and text.endswith('"') and '"' not in text[1:-1]:
        return normalise(text[1:-1])
    return text


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", "").replace("\u2019", ""))


def looks_like_verse(lines: list[str], width: int = 72) -> bool:
    """Verse or a play: several short lines, or speaker labels (``HAMLET:``)."""
    lines = [ln.rstrip() for ln in lines if ln.strip()]
    if any(re.match(r"^\s*[A-Z][A-Z .']{2,}[:.]\s", ln) for ln in lines):
        return True
    if len(lines) < 3:
        return False
    body = lines[:-1]
    short = sum(1 for ln in body if len(ln.strip()) < width * 0.62)
    return short / len(body) > 0.34


# --------------------------------------------------------------------------------------
# Parsers: each yields Candidates (all lengths; filtering comes later)
# --------------------------------------------------------------------------------------
def _fortune_files(root: Path) -> list[Path]:
    d = root / "usr" / "share" / "games" / "fortunes"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))


def parse_fortunes(package: str, root: Path) -> Iterator[Candidate]:
    for path in _fortune_files(root):
        raw = path.read_bytes().decode("latin-1")
        raw = re.sub(r"_\x08|\x08.", "", raw)  # overstrike (underline) markup
        for n, cookie in enumerate(re.split(r"\n%\n", raw)):
            lines = cookie.strip("\n").split("\n")
            attribution, body = "", lines
            for i in range(len(lines) - 1, 0, -1):
                if re.match(r"^\s+--+\s*\S", lines[i]):
                    attribution = " ".join(ln.strip() for ln in lines[i:]).lstrip("- ").strip()
                    body = lines[:i]
                    break
            if not attribution:
                continue
            yield Candidate(package, str(path.relative_to(root)), n, attribution,
                            normalise(" ".join(body)), looks_like_verse(body))


def _nethack_data(root: Path) -> str:
    """The ``data`` member of NetHack's dlb archive ``nhdat``."""
    blob = (root / "usr" / "lib" / "games" / "nethack" / "nhdat").read_bytes()
    header, rest = blob.split(b"\n", 1)
    nfiles = int(header.split()[1])
    entries = re.findall(rb"n([^\s]+)\s+(\d+)\n", rest)[:nfiles]
    names = [e[0].decode() for e in entries]
    offsets = [int(e[1]) for e in entries] + [len(blob)]
    i = names.index("data")
    return blob[offsets[i]:offsets[i + 1]].decode("latin-1")


def parse_nethack(package: str, root: Path) -> Iterator[Candidate]:
    data = _nethack_data(root)
    lines = data.split("\n")
    # header: a comment, the hex offset of the texts, then keys and "offset,lines" pairs
    start = int(lines[1], 16)
    texts = data[start:]
    spans = sorted({(int(m.group(1)), int(m.group(2))) for m in re.finditer(r"^(\d+),(\d+)$", data[:start], re.M)})
    n = 0
    for off, count in spans:
        entry = texts[off:].split("\n")[:count]
        block: list[str] = []
        for ln in entry:
            m = re.match(r"^\s*\[\s*(.*?)\s*\]\s*$", ln)
            if m:
                if m.group(1) and block:
                    yield Candidate(package, "usr/lib/games/nethack/nhdat:data", n, m.group(1),
                                    normalise(" ".join(x.strip() for x in block)),
                                    looks_like_verse([x.strip() for x in block], width=64))
                    n += 1
                block = []
            elif not ln.strip():
                block = []  # a new paragraph starts a new quotation
            else:
                block.append(ln)


def parse_crawl(package: str, root: Path) -> Iterator[Candidate]:
    rel = "usr/share/crawl/dat/descript/quotes.txt"
    raw = (root / rel).read_text(encoding="utf-8")
    n = 0
    for entry in raw.split("%%%%\n"):
        lines = entry.split("\n")[1:]  # first line: the key
        text: list[str] = []
        attr: list[str] = []
        for ln in lines + [""]:
            if re.match(r"^ {2,}-\S", ln) and text:
                attr.append(ln.strip()[1:])
            elif attr and ln.strip() and not ln.startswith((" \u201c", "\u201c", '"')):
                attr.append(ln.strip())  # attribution wrapped
            elif attr:
                yield Candidate(package, rel, n, " ".join(attr), unquote(normalise(" ".join(x.strip() for x in text))),
                                looks_like_verse(text, width=80))
                n += 1
                text, attr = ([ln] if ln.strip() else []), []
            elif ln.strip():
                text.append(ln)
            elif text and not attr:
                text.append("")  # paragraph break inside a quotation


def parse_gtypist(package: str, root: Path) -> Iterator[Candidate]:
    rel = "usr/share/gtypist/s.typ"
    lines = (root / rel).read_text(encoding="latin-1").split("\n")
    info, n = "", 0
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("I:"):
            info = ln[2:].strip()
        elif ln.startswith("S:"):
            body = [ln[2:]]
            while i + 1 < len(lines) and lines[i + 1].startswith(" :"):
                i += 1
                body.append(lines[i][2:])
            joined = ""
            for b in body:  # undo the lesson's end-of-line hyphenation ("par-" / "ticular")
                joined = joined[:-1] + b.strip() if joined.endswith("-") and not joined.endswith("--") else (joined + " " + b.strip()).strip()
            yield Candidate(package, rel, n, info, normalise(joined), looks_like_verse(body, width=60))
            n += 1
        i += 1


def parse_tom_sawyer(package: str, root: Path) -> Iterator[Candidate]:
    """Paragraphs of the novel (chapters I to XXXV and the conclusion)."""
    rel = "usr/share/gocode/src/github.com/klauspost/compress/testdata/Mark.Twain-Tom.Sawyer.txt"
    raw = (root / rel).read_text(encoding="latin-1").replace("\r\n", "\n")
    start = raw.index("\nCHAPTER I\n")
    end = raw.index("End of the Project Gutenberg")
    for n, para in enumerate(re.split(r"\n\s*\n", raw[start:end])):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines or re.match(r"^\s*(CHAPTER [IVXL]+|CONCLUSION)\s*$", lines[0]):
            continue
        yield Candidate(package, rel, n, "Mark Twain, The Adventures of Tom Sawyer",
                        normalise(" ".join(ln.strip() for ln in lines)), False)


PARSERS = {
    "fortunes-min": parse_fortunes,
    "fortunes": parse_fortunes,
    "nethack-common": parse_nethack,
    "crawl-common": parse_crawl,
    "gtypist": parse_gtypist,
    "golang-github-klauspost-compress-dev": parse_tom_sawyer,
}


# --------------------------------------------------------------------------------------
# The allow-list: (packages, regex on the raw attribution) -> author, work, kind, years.
# year: first publication of the original; trans: year of the English translation quoted
# (None for English originals); died: the latest death year among author and translator
# (for anonymous translations of the 19th century or earlier: the translation's year).
# Every entry was checked by hand against the quoted text (translator identified from
# the wording where the file does not name one); attributions that could not be checked
# (unknown or modern translation, unknown work) are left out.
# --------------------------------------------------------------------------------------
class Allow(NamedTuple):
    packages: tuple[str, ...]
    pattern: str
    author: str
    work: str
    kind: str
    year: int
    trans: int | None
    died: int


FORTUNES = ("fortunes-min", "fortunes")
NETHACK = ("nethack-common",)
CRAWL = ("crawl-common",)
GTYPIST = ("gtypist",)

ALLOW: list[Allow] = [
    # fortune cookie files: "-- Author, "Work""
    Allow(FORTUNES, r'^Lewis Carroll?, "Through the Looking[- ]Glass"', "Lewis Carroll", "Through the Looking-Glass", "novel", 1871, None, 1898),
    Allow(FORTUNES, r'^Lewis Carroll?, "Sylvie and Bruno"', "Lewis Carroll", "Sylvie and Bruno", "novel", 1889, None, 1898),
    Allow(FORTUNES, r'^Lewis Carroll?, "Alice in Wonderland"', "Lewis Carroll", "Alice's Adventures in Wonderland", "novel", 1865, None, 1898),
    Allow(FORTUNES, r'^Mark Twain,? "(The Adventures of )?Huckleberry Finn"', "Mark Twain", "Adventures of Huckleberry Finn", "novel", 1884, None, 1910),
    Allow(FORTUNES, r'^Mark Twain,? "A Connecticut Yankee', "Mark Twain", "A Connecticut Yankee in King Arthur's Court", "novel", 1889, None, 1910),
    Allow(FORTUNES, r'Conan Doyle, "A Case of Identity"', "Arthur Conan Doyle", "A Case of Identity", "short story", 1891, None, 1930),
    Allow(FORTUNES, r'Conan Doyle, "Silver Blaze"', "Arthur Conan Doyle", "Silver Blaze", "short story", 1892, None, 1930),
    Allow(FORTUNES, r'^Sherlock Holmes, "The Norwood Builder"', "Arthur Conan Doyle", "The Adventure of the Norwood Builder", "short story", 1903, None, 1930),
    Allow(FORTUNES, r'Conan Doyle, "The Valley of Fear"', "Arthur Conan Doyle", "The Valley of Fear", "novel", 1915, None, 1930),
    Allow(FORTUNES, r'Conan Doyle, "A Study in Scarlet"', "Arthur Conan Doyle", "A Study in Scarlet", "novel", 1887, None, 1930),
    Allow(FORTUNES, r'^James Joyce, "Ulysses"', "James Joyce", "Ulysses", "novel", 1922, None, 1941),
    Allow(FORTUNES, r'^Dickens, "Martin Chuzzlewit"', "Charles Dickens", "Martin Chuzzlewit", "novel", 1844, None, 1870),
    Allow(FORTUNES, r'^Charles Dickens, "A Christmas Carol"', "Charles Dickens", "A Christmas Carol", "novella", 1843, None, 1870),
    Allow(FORTUNES, r'^Oscar Wilde, "The Picture of Dorian Gray"', "Oscar Wilde", "The Picture of Dorian Gray", "novel", 1890, None, 1900),
    Allow(FORTUNES, r'^Saki, "Reginald', "Saki (H. H. Munro)", "Reginald", "short story", 1904, None, 1916),
    Allow(FORTUNES, r'^Sinclair Lewis, "Babbitt"', "Sinclair Lewis", "Babbitt", "novel", 1922, None, 1951),
    Allow(FORTUNES, r'^Virginia Woolf, "Mrs\. Dalloway"', "Virginia Woolf", "Mrs Dalloway", "novel", 1925, None, 1941),
    Allow(FORTUNES, r'^Virginia Woolf, "To the Lighthouse"', "Virginia Woolf", "To the Lighthouse", "novel", 1927, None, 1941),
    Allow(FORTUNES, r'^Henry Fielding, "Tom Jones"', "Henry Fielding", "The History of Tom Jones, a Foundling", "novel", 1749, None, 1754),
    Allow(FORTUNES, r'^G\. K\. Chesterton, "The Man Who Was Thursday"', "G. K. Chesterton", "The Man Who Was Thursday", "novel", 1908, None, 1936),
    # NetHack encyclopedia: "[ Work, by Author ]"
    Allow(NETHACK, r"^Aesop's Fables$", "Aesop (tr. Joseph Jacobs)", "Aesop's Fables", "fable", -550, 1894, 1916),
    Allow(NETHACK, r"^Aladdin, from The Arabian Nights, by Andrew Lang", "Andrew Lang (ed.)", "The Arabian Nights' Entertainments: Aladdin", "tale", 1898, None, 1912),
    Allow(NETHACK, r"^Bulfinch's Mythology, by Thomas Bulfinch", "Thomas Bulfinch", "Bulfinch's Mythology", "myth", 1855, None, 1867),
    Allow(NETHACK, r"^Crime and Punishment, by Fyodor Dostoevsky", "Fyodor Dostoevsky (tr. Constance Garnett)", "Crime and Punishment", "novel", 1866, 1914, 1946),
    Allow(NETHACK, r"^King Solomon's Mines, by H\. Rider Haggard", "H. Rider Haggard", "King Solomon's Mines", "novel", 1885, None, 1925),
    Allow(NETHACK, r"^She, by H\. Rider Haggard", "H. Rider Haggard", "She", "novel", 1887, None, 1925),
    Allow(NETHACK, r"^Lorna Doone, by R\.D\. Blackmore", "R. D. Blackmore", "Lorna Doone", "novel", 1869, None, 1900),
    Allow(NETHACK, r"^Ozma of Oz, by L\. Frank Baum", "L. Frank Baum", "Ozma of Oz", "novel", 1907, None, 1919),
    Allow(NETHACK, r"^The Wonderful Wizard of Oz, by L\. Frank Baum", "L. Frank Baum", "The Wonderful Wizard of Oz", "novel", 1900, None, 1919),
    Allow(NETHACK, r"^Tarzan of the Apes, by Edgar Rice Burroughs", "Edgar Rice Burroughs", "Tarzan of the Apes", "novel", 1912, None, 1950),
    Allow(NETHACK, r"^The Cats of Ulthar, by H\.P\. Lovecraft", "H. P. Lovecraft", "The Cats of Ulthar", "short story", 1920, None, 1937),
    Allow(NETHACK, r"^The Count of Monte Cristo, by Alexandre Dumas", "Alexandre Dumas (anonymous translation, Chapman and Hall)", "The Count of Monte Cristo", "novel", 1844, 1846, 1870),
    Allow(NETHACK, r"^The Phantom of the Opera, by Gaston Leroux", "Gaston Leroux (tr. Alexander Teixeira de Mattos)", "The Phantom of the Opera", "novel", 1910, 1911, 1927),
    Allow(NETHACK, r"^The Pit and the Pendulum, by Edgar Allan Poe", "Edgar Allan Poe", "The Pit and the Pendulum", "short story", 1842, None, 1849),
    Allow(NETHACK, r"^The Iliad, by Homer", "Homer (tr. A. T. Murray)", "The Iliad", "epic (prose translation)", -750, 1924, 1940),
    Allow(NETHACK, r"^The Story of the Amulet, by Edith Nesbit", "E. Nesbit", "The Story of the Amulet", "novel", 1906, None, 1924),
    Allow(NETHACK, r"^Two Years Before the Mast, by Richard Henry Dana", "Richard Henry Dana Jr.", "Two Years Before the Mast", "narrative (memoir)", 1840, None, 1882),
    Allow(NETHACK, r"^Ulysses, by James Joyce", "James Joyce", "Ulysses", "novel", 1922, None, 1941),
    Allow(NETHACK, r"^Sylvie and Bruno Concluded, by Lewis Carroll", "Lewis Carroll", "Sylvie and Bruno Concluded", "novel", 1893, None, 1898),
    Allow(NETHACK, r"^The White Company, by Sir Arthur Conan Doyle", "Arthur Conan Doyle", "The White Company", "novel", 1891, None, 1930),
    Allow(NETHACK, r"^The Innocence of Father Brown, by G\.K\. Chesterton", "G. K. Chesterton", "The Innocence of Father Brown", "short stories", 1911, None, 1936),
    Allow(NETHACK, r"^The Invisible Man, by H\.G\. Wells", "H. G. Wells", "The Invisible Man", "novel", 1897, None, 1946),
    Allow(NETHACK, r"^The Jungle Book, by Rudyard Kipling", "Rudyard Kipling", "The Jungle Book", "short stories", 1894, None, 1936),
    Allow(NETHACK, r"^Rikki-tikki-tavi, by Rudyard Kipling", "Rudyard Kipling", "The Jungle Book: Rikki-Tikki-Tavi", "short story", 1894, None, 1936),
    Allow(NETHACK, r"^The Merry Adventures of Robin Hood, by Howard Pyle", "Howard Pyle", "The Merry Adventures of Robin Hood", "novel", 1883, None, 1911),
    Allow(NETHACK, r"^Les Miserables, by Victor Hugo", "Victor Hugo (tr. Isabel F. Hapgood)", "Les Miserables", "novel", 1862, 1887, 1928),
    Allow(NETHACK, r"^Don Quixote of La Mancha, by Miquel de Cervantes Saavedra", "Miguel de Cervantes (tr. Thomas Shelton)", "Don Quixote", "novel", 1605, 1612, 1620),
    # catalog works: listed so that the title check drops (and counts) them
    Allow(NETHACK, r"^Moby Dick, by Herman Melville", "Herman Melville", "Moby-Dick", "novel", 1851, None, 1891),
    Allow(NETHACK, r"^A Christmas Carol, by Charles Dickens", "Charles Dickens", "A Christmas Carol", "novella", 1843, None, 1870),
    Allow(NETHACK, r"^Frankenstein, by Mary Wollstonecraft Shelley", "Mary Shelley", "Frankenstein", "novel", 1818, None, 1851),
    Allow(NETHACK, r"^Dracula, by Bram Stoker", "Bram Stoker", "Dracula", "novel", 1897, None, 1912),
    Allow(NETHACK, r"^The Hound of the Baskervilles, by Sir Arthur Conan Doyle", "Arthur Conan Doyle", "The Hound of the Baskervilles", "novel", 1902, None, 1930),
    # Dungeon Crawl quotes: "-Author, _Work_, ... year. trans. Translator, year."
    Allow(CRAWL, r"^Aesop, _The Manslayer_\. .*trans\. George Fyler Townsend", "Aesop (tr. George Fyler Townsend)", "Aesop's Fables: The Manslayer", "fable", -550, 1867, 1900),
    Allow(CRAWL, r"^Alain René Le Sage, _Asmodeus", "Alain-René Lesage (anonymous translation)", "Asmodeus: or, The Devil on Two Sticks", "novel", 1707, 1708, 1747),
    Allow(CRAWL, r"^C\.J\.T\., _Folk-lore and Legends: English_", "C. J. T.", "Folk-lore and Legends: English", "legend", 1890, None, 1890),
    Allow(CRAWL, r"^Charles Dickens, _Oliver Twist_", "Charles Dickens", "Oliver Twist", "novel", 1838, None, 1870),
    Allow(CRAWL, r"^H\.G\. Wells, _The Invisible Man_", "H. G. Wells", "The Invisible Man", "novel", 1897, None, 1946),
    Allow(CRAWL, r'^H\.P\. Lovecraft, "The Festival"', "H. P. Lovecraft", "The Festival", "short story", 1925, None, 1937),
    Allow(CRAWL, r"^H\.P\. Lovecraft, _The Unnamable_", "H. P. Lovecraft", "The Unnamable", "short story", 1925, None, 1937),
    Allow(CRAWL, r"^H\.P\. Lovecraft, “The Colour out of Space”", "H. P. Lovecraft", "The Colour out of Space", "short story", 1927, None, 1937),
    Allow(CRAWL, r"^Hesiod, _Theogony_, .*Evelyn-White", "Hesiod (tr. Hugh G. Evelyn-White)", "Theogony", "myth (prose translation)", -700, 1914, 1924),
    Allow(CRAWL, r"^Homer, _The Odyssey_, Book IX\. trans\. Samuel Butler", "Homer (tr. Samuel Butler)", "The Odyssey", "epic (prose translation)", -700, 1900, 1902),
    Allow(CRAWL, r"^Homer, _The Iliad_, XXIV, 776\. trans\. A\. T\. Murray", "Homer (tr. A. T. Murray)", "The Iliad", "epic (prose translation)", -750, 1924, 1940),
    Allow(CRAWL, r"^J\. E\. Hanauer, _Folk-lore of the Holy Land", "J. E. Hanauer", "Folk-lore of the Holy Land", "folk tale", 1907, None, 1938),
    Allow(CRAWL, r"^Jules Verne, _Journey into the Interior of the Earth_\. .*Malleson", "Jules Verne (tr. Frederick Amadeus Malleson)", "A Journey into the Interior of the Earth", "novel", 1864, 1877, 1905),
    Allow(CRAWL, r"^Lewis Carroll, _Through the Looking-Glass", "Lewis Carroll", "Through the Looking-Glass", "novel", 1871, None, 1898),
    Allow(CRAWL, r"^Lewis Carroll, _Sylvie and Bruno Concluded_", "Lewis Carroll", "Sylvie and Bruno Concluded", "novel", 1893, None, 1898),
    Allow(CRAWL, r"^_?Mahābhārata_?, .*Ganguli, 1883", "Mahabharata (tr. Kisari Mohan Ganguli)", "The Mahabharata", "epic (prose translation)", -400, 1883, 1908),
    Allow(CRAWL, r"^Marie-Catherine Le Jumel de Barneville", "Madame d'Aulnoy (tr. for Andrew Lang's Fairy Books)", "L'Oranger et l'Abeille (The Bee and the Orange Tree)", "fairy tale", 1697, 1900, 1912),
    Allow(CRAWL, r"^Mark Twain, _Personal Recollections of Joan of Arc", "Mark Twain", "Personal Recollections of Joan of Arc", "novel", 1896, None, 1910),
    Allow(CRAWL, r"^Mary Shelley, (_Frankenstein|“Frankenstein”)", "Mary Shelley", "Frankenstein", "novel", 1818, None, 1851),
    Allow(CRAWL, r"^Bram Stoker, _Dracula_", "Bram Stoker", "Dracula", "novel", 1897, None, 1912),
    Allow(CRAWL, r"^Arthur Conan Doyle, _The Hound of the Baskervilles_", "Arthur Conan Doyle", "The Hound of the Baskervilles", "novel", 1902, None, 1930),
    Allow(CRAWL, r"^Nathaniel Hawthorne, “The Haunted Mind”", "Nathaniel Hawthorne", "The Haunted Mind (Twice-Told Tales)", "sketch", 1835, None, 1864),
    Allow(CRAWL, r"^Pseudo-Apollodorus , _Library and Epitome_, .*Frazer, 1913", "Pseudo-Apollodorus (tr. James George Frazer)", "The Library", "myth", 100, 1921, 1941),
    Allow(CRAWL, r"^Henry Fielding, _The History of Tom Jones", "Henry Fielding", "The History of Tom Jones, a Foundling", "novel", 1749, None, 1754),
    Allow(CRAWL, r"^Sir Walter Scott, _Guy Mannering_", "Walter Scott", "Guy Mannering", "novel", 1815, None, 1832),
    Allow(CRAWL, r"^Victor Hugo, _The Hunchback of Notre-Dame_, .*Hapgood", "Victor Hugo (tr. Isabel F. Hapgood)", "The Hunchback of Notre-Dame", "novel", 1831, 1888, 1928),
    Allow(CRAWL, r"^Willa Cather, _O Pioneers!_", "Willa Cather", "O Pioneers!", "novel", 1913, None, 1947),
    Allow(CRAWL, r"^William Baldwin, “Beware the Cat”", "William Baldwin", "Beware the Cat", "novel", 1570, None, 1563),
    Allow(CRAWL, r"^_Tales of Chivalry; or, Perils by Flood and Field_", "anonymous", "Tales of Chivalry; or, Perils by Flood and Field", "tale", 1830, None, 1830),
    Allow(CRAWL, r"^Firdausi, _Shahnameh_\. .*Zimmern", "Firdausi (retold by Helen Zimmern)", "The Epic of Kings (Shahnameh)", "epic (prose retelling)", 1010, 1883, 1934),
    Allow(CRAWL, r"^Adam Mickiewicz, _Pan Tadeusz_, .*Noyes, 1917", "Adam Mickiewicz (tr. George Rapall Noyes)", "Pan Tadeusz", "epic (prose translation)", 1834, 1917, 1952),
    Allow(CRAWL, r"^Hans Christian Andersen, “The Red Shoes”", "Hans Christian Andersen (tr. H. B. Paull)", "The Red Shoes", "fairy tale", 1845, 1872, 1875),
    Allow(CRAWL, r"^Osborn Bergin, “How the Dagda Got His Magic Staff”", "Osborn Bergin (tr.)", "How the Dagda Got His Magic Staff", "legend", 1927, None, 1950),
    Allow(CRAWL, r"^_Khuddaka Nikāya_, Jātaka 141 .*Chalmers, 1895", "Jataka (tr. Robert Chalmers)", "Jataka 141: Godha-Jataka", "fable", -300, 1895, 1938),
    Allow(CRAWL, r"^_The Arabian Nights_\. trans\. Sir Richard F\. Burton, 1885", "The Arabian Nights (tr. Richard F. Burton)", "The Book of the Thousand Nights and a Night", "tale", 900, 1885, 1890),
    Allow(CRAWL, r"^“When Snapping Turtle went to War”", "Kickapoo tale (tr. Truman Michelson)", "When Snapping Turtle Went to War (Kickapoo Tales)", "folk tale", 1915, 1915, 1938),
    # GNU Typist lesson S3 "excerpts from the classics"
    Allow(GTYPIST, r"^Gulliver's Travels", "Jonathan Swift", "Gulliver's Travels", "novel", 1726, None, 1745),
    Allow(GTYPIST, r"^Treasure Island", "Robert Louis Stevenson", "Treasure Island", "novel", 1883, None, 1894),
    Allow(GTYPIST, r"^A Christmas Carol", "Charles Dickens", "A Christmas Carol", "novella", 1843, None, 1870),
]
# Tom Sawyer (one whole public-domain novel, shipped as compression test data)
TOM_SAWYER = Allow(("golang-github-klauspost-compress-dev",), "", "Mark Twain", "The Adventures of Tom Sawyer", "novel", 1876, None, 1910)
TOM_SAWYER_PASSAGES = 70


# --------------------------------------------------------------------------------------
# Catalog checks
# --------------------------------------------------------------------------------------
TITLE_ALIASES = {"alices adventures in wonderland": ["alice in wonderland"], "moby dick": ["moby dick or the whale"]}


def _title_key(title: str) -> str:
    t = " ".join(words(title.split(",")[0]))
    return re.sub(r"^(the|a|an) ", "", t)


class Catalog:
    def __init__(self, path: Path):
        data = json.loads(path.read_text(encoding="utf-8"))
        self.titles: dict[str, str] = {}
        self.grams: dict[tuple[str, ...], str] = {}
        for w in data["works"]:
            key = _title_key(w["title"])
            for t in [key] + TITLE_ALIASES.get(key, []):
                self.titles[t] = w["work_id"]
            ws = words(w["text"])
            for i in range(len(ws) - NGRAM + 1):
                self.grams.setdefault(tuple(ws[i:i + NGRAM]), w["work_id"])

    def work_of_title(self, work: str) -> str | None:
        key = _title_key(work)
        for t, wid in self.titles.items():
            if key == t or key.startswith(t + " "):
                return wid
        return None

    def shared_run(self, text: str) -> str | None:
        ws = words(text)
        for i in range(len(ws) - NGRAM + 1):
            wid = self.grams.get(tuple(ws[i:i + NGRAM]))
            if wid:
                return wid
        return None


# --------------------------------------------------------------------------------------
def package_version(root: Path, package: str) -> str:
    """The version in the package's Debian changelog (binNMU suffix from the arch changelog)."""
    doc = root / "usr" / "share" / "doc" / package
    version = ""
    for p in [doc / "changelog.Debian.gz"] + sorted(doc.glob("changelog.Debian.*.gz")):
        if not p.exists():
            continue
        with gzip.open(p, "rt", encoding="utf-8", errors="replace") as f:
            m = re.search(r"\(([^)]+)\)", f.readline())
        if m:
            version = m.group(1)
    return version


def candidates(extracted: Path) -> Iterator[Candidate]:
    for package, parser in PARSERS.items():
        root = extracted / package
        if not root.is_dir():
            raise SystemExit(f"missing {root} (dpkg-deb -x the {package} .deb there)")
        yield from parser(package, root)


_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Dr|St|Mt|Messrs|Capt|Col|Gen|Prof|Rev|vol|ch|No)|\b[A-Z])\.$")


def sentences(text: str) -> list[str]:
    out, start = [], 0
    for m in re.finditer(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[]*[A-Z0-9])", text):
        if _ABBREV.search(text[start:m.end()]):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def fit(text: str) -> str:
    """The passage itself, or for one over MAX_WORDS its longest run of leading sentences
    within MAX_WORDS."""
    if len(text.split()) <= MAX_WORDS:
        return text
    kept: list[str] = []
    for sentence in sentences(text):
        if len(" ".join(kept + [sentence]).split()) > MAX_WORDS:
            break
        kept.append(sentence)
    return " ".join(kept)


def public_domain(rule: Allow) -> bool:
    """First published, and translated, in or before PD_YEAR (public domain in the US) and
    every author and translator dead for more than 70 years (public domain where copyright
    runs for the author's life plus 70 years)."""
    return rule.year <= PD_YEAR and (rule.trans or rule.year) <= PD_YEAR and rule.died <= DIED_BY


def spread(items: list[Any], count: int) -> list[Any]:
    """count items evenly spaced over the list (deterministic)."""
    if len(items) <= count:
        return list(items)
    return [items[(2 * i + 1) * len(items) // (2 * count)] for i in range(count)]


def select(extracted: Path, catalog: Catalog, strict_versions: bool = True) -> tuple[list[dict[str, str]], collections.Counter, list[str]]:
    versions = {}
    for package, (want, _) in PACKAGES.items():
        got = package_version(extracted / package, package)
        if got != want and strict_versions:
            raise SystemExit(f"{package}: version {got!r}, expected {want!r} (pass --any-version to build anyway)")
        versions[package] = got
    allow = [(a, re.compile(a.pattern)) for a in ALLOW]
    kept: list[dict[str, str]] = []
    sawyer: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    dropped: collections.Counter = collections.Counter()
    notes: list[str] = []
    for c in candidates(extracted):
        if c.package in TOM_SAWYER.packages:
            rule: Allow | None = TOM_SAWYER
        else:
            rule = next((a for a, rx in allow if c.package in a.packages and rx.search(c.attribution)), None)
        if rule is None:
            dropped["not on the allow-list (not checked public-domain narrative prose: modern works, "
                    "non-fiction, jokes, aphorisms, unknown source or translation)"] += 1
            continue
        if c.verse:
            dropped["verse or a play"] += 1
            continue
        # a quotation over MAX_WORDS keeps its leading sentences; Tom Sawyer has paragraphs to spare
        text = c.text if rule is TOM_SAWYER else fit(c.text)
        n = len(text.split())
        if n > MAX_WORDS:
            dropped[f"longer than {MAX_WORDS} words (Tom Sawyer)"] += 1
            continue
        if n < MIN_WORDS:
            dropped[f"shorter than {MIN_WORDS} words" if len(c.text.split()) < MIN_WORDS
                    else f"longer than {MAX_WORDS} words and no leading sentences fit"] += 1
            continue
        if not public_domain(rule):
            dropped[f"not public domain by the rule (published/translated after {PD_YEAR} or a creator died after {DIED_BY})"] += 1
            continue
        wid = catalog.work_of_title(rule.work)
        if wid:
            dropped["from a catalog work (title)"] += 1
            notes.append(f"title {wid}: {c.package} {c.file}#{c.pos} {rule.work}")
            continue
        wid = catalog.shared_run(text)
        if wid:
            dropped[f"shares {NGRAM} consecutive words with a catalog work"] += 1
            notes.append(f"{NGRAM}-gram {wid}: {c.package} {c.file}#{c.pos} {text[:80]}")
            continue
        key = tuple(words(text))
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        if text != c.text:
            notes.append(f"cut to {n} words: {c.package} {c.file}#{c.pos} {rule.work}")
        row = {"text": text, "source": f"{c.package} {versions[c.package]} {c.file}", "author": rule.author, "work": rule.work}
        (sawyer if rule is TOM_SAWYER else kept).append(row)
    chosen = spread(sawyer, TOM_SAWYER_PASSAGES)
    dropped[f"Tom Sawyer paragraph not among the {TOM_SAWYER_PASSAGES} evenly spaced ones"] += len(sawyer) - len(chosen)
    return kept + chosen, dropped, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("extracted", type=Path, help="folder holding one dpkg-deb -x tree per package, named as in PACKAGES")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output JSON lines (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="catalog whose works are excluded")
    ap.add_argument("--any-version", action="store_true", help="do not insist on the package versions in PACKAGES")
    ap.add_argument("--candidates", action="store_true", help="print prose candidates of the right length (package, words, attribution) and exit")
    ap.add_argument("--report", action="store_true", help="also print the catalog-related drops and the shortened quotations one by one")
    args = ap.parse_args(argv)

    if args.candidates:
        for c in candidates(args.extracted):
            n = len(c.text.split())
            if MIN_WORDS <= n <= MAX_WORDS and not c.verse:
                print(f"{c.package}\t{n}\t{c.attribution}\t{c.text[:70]}")
        return 0

    kept, dropped, notes = select(args.extracted, Catalog(args.catalog), strict_versions=not args.any_version)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for row in kept:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_pkg = collections.Counter(r["source"].split()[0] for r in kept)
    print(f"kept {len(kept)} passages -> {args.out}", file=sys.stderr)
    for k, v in sorted(by_pkg.items()):
        print(f"  {k}: {v}", file=sys.stderr)
    print(f"dropped {sum(dropped.values())}:", file=sys.stderr)
    for k, v in dropped.most_common():
        print(f"  {v:6d}  {k}", file=sys.stderr)
    if args.report:
        for line in notes:
            print("  " + line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
