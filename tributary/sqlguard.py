"""What an analyst's SQL may do: read this database, and nothing else.

Four layers, each enough on its own for what it covers (the checks that need the
engine run in :class:`sinks.clickhouse.store.ReadOnlyQueries`):

1. :func:`single_statement` tokenizes the text the way ClickHouse does (strings,
   quoted identifiers, nested comments, heredocs; any other non-ASCII character, such
   as the typographic quotes ClickHouse also reads as quotes, is refused) and accepts
   exactly one statement whose first keyword reads (SELECT, WITH, SHOW, DESCRIBE,
   EXPLAIN, EXISTS), without ``INTO OUTFILE`` and without a call to a function that
   touches the host.
2. ClickHouse itself confirms it is one statement without running it
   (``formatQuerySingleLine`` of the text, bound as a parameter).
3. :func:`check_ast` reads ClickHouse's own parse (``EXPLAIN AST``): only reading
   statement nodes, only row-generating table functions, no ``file()``, no output
   file, no system tables beyond the catalogue ones.
4. The statement runs on a session whose ``readonly=1`` is a session setting (no
   writes, no DDL, no settings changes, for every statement the engine runs).

``readonly=1`` alone is not enough on embedded chdb (measured with chdb 4.4): it
still runs ``SELECT ... INTO OUTFILE`` and the scalar ``file('/etc/hostname')``, and
chdb runs every statement of a multi-statement text. A setting passed with a query
binds only the last statement of such a text: hence a session setting.
"""

from __future__ import annotations

import re

READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
# table functions that only generate rows or read this database's own tables
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                                  "generateseries", "values", "view", "null"})
# statement nodes of ClickHouse's AST that only read (any other ``...Query`` node, e.g.
# InsertQuery hidden behind WITH, or ShowProcesslistQuery, is refused)
READ_NODES = frozenset({"SelectWithUnionQuery", "SelectQuery", "SelectIntersectExceptQuery", "TablesInSelectQuery", "Explain",
                        "DescribeQuery", "ShowTables", "ShowColumns", "ShowCreateTableQuery", "ExistsTableQuery"})
# the system tables an analyst needs to find their way; the others show other users'
# queries, settings, paths and grants
SAFE_SYSTEM_TABLES = frozenset({"one", "numbers", "zeros", "tables", "columns", "databases", "functions",
                                "table_functions", "data_type_families",
                                "view_refreshes"})  # the rollups' refresh status (README runbook)
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
        if kind == "other" and not m.group().isascii():
            # ClickHouse reads typographic quotes (‘’ “”) as quotes: a character this
            # tokenizer does not know could hide a ';' from it
            raise UnsafeQuery(f"character {m.group()!r} at position {i + 1}: non-ASCII characters are "
                              "only allowed inside '...' strings or \"...\" / `...` names")
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
            out.append((kind, m.group()))
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
        if (node.endswith("Query") or node == "SHOW") and node not in READ_NODES:
            raise UnsafeQuery(f"{node} is not a read-only statement")
        if (node == "TableIdentifier" and name.lower().startswith("system.")
                and name.split(".", 1)[1].lower().strip("`\"") not in SAFE_SYSTEM_TABLES):
            raise UnsafeQuery(f"{name} is not open to queries (allowed system tables: "
                                  f"{', '.join(sorted(SAFE_SYSTEM_TABLES))})")
        if node == "Function":
            lowered = name.lower()
            if parent == "TableExpression" and lowered not in SAFE_TABLE_FUNCTIONS:
                raise UnsafeQuery(f"table function {name}() is not allowed; query this database's tables")
            if lowered in HOST_FUNCTIONS:
                raise UnsafeQuery(f"{name}() reads the host's files; only this database can be queried")
        if depth == 1 and node == "Literal" and parent == "SelectWithUnionQuery":
            raise UnsafeQuery("INTO OUTFILE writes on the server's host; read the result instead")
        parents.append((depth, node))
