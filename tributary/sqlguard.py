"""What an analyst's SQL may do: read this database, and nothing else.

Three layers, each enough on its own for what it covers:

1. :func:`single_statement` tokenizes the text the way ClickHouse does (strings,
   quoted identifiers, comments, heredocs) and accepts exactly one statement whose
   first keyword reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS), without
   ``INTO OUTFILE`` and without a call to a function that touches the host.
2. :func:`check_ast` reads ClickHouse's own parse of the statement (``EXPLAIN AST``)
   and refuses table functions other than a few that only generate rows, scalar
   functions that read files, and an output file: what the engine would run, not
   what a regular expression thinks it sees.
3. The statement runs on a connection with ``readonly=1``: no writes, no DDL, no
   settings changes (which also blocks ``file()``/``url()`` as table functions).

``readonly=1`` alone is not enough on embedded chdb (measured with chdb 4.4): it
still runs ``SELECT ... INTO OUTFILE`` and the scalar ``file('/etc/hostname')``.
"""

from __future__ import annotations

import re

READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
# table functions that only generate rows or read this database's own tables
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                                  "generateseries", "values", "view", "merge", "null"})
# scalar functions that read the host's files
HOST_FUNCTIONS = frozenset({"file"})
# table functions that reach the host, the network or other systems: refused by name even
# before the engine parses the statement (the AST check refuses every unlisted one)
HOST_TABLE_FUNCTIONS = frozenset({
    "file", "url", "urlcluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "s3", "s3cluster",
    "gcs", "oss", "cosn", "hdfs", "hdfscluster", "azureblobstorage", "azureblobstoragecluster", "executable",
    "input", "jdbc", "odbc", "mysql", "postgresql", "sqlite", "mongodb", "redis", "iceberg", "icebergs3",
    "deltalake", "hudi", "filesystem", "python", "arrowflight", "ytsaurus", "paimon", "dictionary",
})


class UnsafeQuery(ValueError):
    """The statement would do more than read this database."""


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<line_comment>(--|\#)[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<heredoc>\$(?P<tag>[A-Za-z0-9_]*)\$)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) of every meaningful token: comments and spaces are dropped; an
    unterminated string, identifier, comment or heredoc is refused."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(sql):
        m = _TOKEN.match(sql, i)
        if m is None or (m.lastgroup == "other" and m.group() in "'\"`"):
            raise UnsafeQuery(f"unterminated quote at character {i + 1}")
        kind = m.lastgroup or "other"
        if kind == "block_comment":
            end = _block_comment_end(sql, m.end())
            i = end
            continue
        if kind == "heredoc":
            close = sql.find(m.group(), m.end())
            if close < 0:
                raise UnsafeQuery(f"unterminated heredoc {m.group()} at character {i + 1}")
            out.append(("string", sql[i:close + len(m.group())]))
            i = close + len(m.group())
            continue
        if kind not in ("space", "line_comment"):
            out.append((kind if kind != "tag" else "other", m.group()))
        i = m.end()
    return out


def _block_comment_end(sql: str, start: int) -> int:
    depth, i = 1, start  # ClickHouse block comments nest
    while depth:
        nxt_open, nxt_close = sql.find("/*", i), sql.find("*/", i)
        if nxt_close < 0:
            raise UnsafeQuery("unterminated /* comment")
        if 0 <= nxt_open < nxt_close:
            depth, i = depth + 1, nxt_open + 2
        else:
            depth, i = depth - 1, nxt_close + 2
    return i


def single_statement(sql: str) -> str:
    """``sql`` without a trailing ``;``, if it is one read-only statement; else UnsafeQuery."""
    toks = tokens(sql)
    while toks and toks[-1] == ("other", ";"):
        toks.pop()
    if not toks:
        raise UnsafeQuery("empty query")
    if ("other", ";") in toks:
        raise UnsafeQuery("one statement per query: remove the ';' and send each statement on its own")
    first = toks[0][1].upper() if toks[0][0] == "word" else toks[0][1]
    if first not in READ_KEYWORDS:
        raise UnsafeQuery(f"only read-only statements ({', '.join(sorted(READ_KEYWORDS))}) are allowed, "
                          f"not {first}")
    words = [text.lower() if kind == "word" else None for kind, text in toks]
    for (kind, text), nxt in zip(toks, toks[1:] + [("", "")], strict=True):
        name = (text[1:-1] if kind == "quoted" else text).lower()  # `file`( calls file too
        if kind in ("word", "quoted") and nxt == ("other", "(") and name in HOST_FUNCTIONS | HOST_TABLE_FUNCTIONS:
            raise UnsafeQuery(f"{text}() reads the host or the network; only this database can be queried")
    for a, b in zip(words, words[1:], strict=False):
        if a == "into" and b == "outfile":
            raise UnsafeQuery("INTO OUTFILE writes on the server's host; read the result instead")
    return sql.rstrip().rstrip(";").rstrip()


_AST_LINE = re.compile(r"^(?P<indent> *)(?P<node>\S+)(?: (?P<name>[^ (]+))?")


def check_ast(lines: list[str]) -> None:
    """Refuse what ``EXPLAIN AST`` shows the statement would do beyond reading."""
    parents: list[tuple[int, str]] = []
    for line in lines:
        m = _AST_LINE.match(line)
        if m is None:
            continue
        depth, node, name = len(m["indent"]), m["node"], m["name"] or ""
        while parents and parents[-1][0] >= depth:
            parents.pop()
        parent = parents[-1][1] if parents else ""
        if node == "Function":
            lowered = name.lower()
            if parent == "TableExpression" and lowered not in SAFE_TABLE_FUNCTIONS:
                raise UnsafeQuery(f"table function {name}() is not allowed; query this database's tables")
            if lowered in HOST_FUNCTIONS:
                raise UnsafeQuery(f"{name}() reads the host's files; only this database can be queried")
        if depth == 1 and node == "Literal" and parent == "SelectWithUnionQuery":
            raise UnsafeQuery("INTO OUTFILE writes on the server's host; read the result instead")
        parents.append((depth, node))
