"""Full-text search over the user's own messages: PostgreSQL tsvector/GIN, SQLite FTS5 (migration 0009).

The query language is parsed here, once, for both databases, so they answer alike and neither ever parses user
input: words (all must match), "quoted phrases", OR between two words, -word to leave out. Every term reaches the
database as a bound string: on SQLite as an FTS5 string literal, on PostgreSQL through phraseto_tsquery.
"""
from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy import bindparam, text

from gemini_backend.extensions import db
from gemini_backend.models import UTCDateTime
from gemini_backend.schemas.search import encode_cursor

# A quoted phrase (the closing quote may be missing), with an optional leading '-', or any other run of non-space.
_TERM = re.compile(r'(-?)"([^"]*)"?|(\S+)')
# Both tokenizers index runs of letters and digits only: a term without any finds nothing and is dropped.
_SEARCHABLE = re.compile(r"[^\W_]")
OR = "OR"

# The marks the database puts around matches: control characters, which the snippet text can never contain
# (PostgreSQL's input is translated so it has none; SQLite's is checked per row, see _snippets_sqlite).
OPEN, CLOSE = "\x01", "\x02"
# PostgreSQL indexes these as spaces (migration 0009: words split as FTS5's unicode61 splits them). ts_headline
# must see the same words but show the characters: it reads them as control characters (stand-ins), which the
# snippet turns back into the escaped characters; the text's own control characters become spaces.
PG_SEPARATORS = "<>/@.:-_&;~+=?%#"
# Control characters that are not whitespace (\x05-\x08, \x0e-\x1f), one per separator.
PG_STAND_INS = "".join(map(chr, [*range(0x05, 0x09), *range(0x0E, 0x20)]))[:len(PG_SEPARATORS)]
PG_INDEXED_CHARS = 100000
PG_HEADLINE_FROM = OPEN + CLOSE + "\x03\x04" + PG_STAND_INS + PG_SEPARATORS
PG_HEADLINE_TO = " " * (4 + len(PG_STAND_INS)) + PG_STAND_INS
_PG_AS_INDEXED = str.maketrans(PG_SEPARATORS, " " * len(PG_SEPARATORS))
_PG_SHOWN = {stand_in: html.escape(char) for stand_in, char in zip(PG_STAND_INS, PG_SEPARATORS)}
PG_HEADLINE_OPTIONS = (f"StartSel={OPEN}, StopSel={CLOSE}, MaxWords=24, MinWords=10, ShortWord=2, "
                       'MaxFragments=2, FragmentDelimiter=" … "')
SNIPPET_TOKENS = 24  # SQLite snippet() length, close to PostgreSQL's MaxWords


@dataclass
class ParsedQuery:
    """A search: every group must match (a group matches when one of its phrases does), no excluded phrase may."""

    groups: list[list[str]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def parse_query(q: str) -> ParsedQuery:
    """The user's query as groups of phrases; terms with no letter or digit are left out."""
    parsed, join_next = ParsedQuery(), False
    for match in _TERM.finditer(q):
        if match.group(2) is not None:
            negated, term = bool(match.group(1)), match.group(2)
        elif match.group(3) == OR:
            join_next = bool(parsed.groups)  # OR with nothing before it is ignored
            continue
        else:
            word = match.group(3)
            negated = word.startswith("-") and len(word) > 1
            term = word[1:] if negated else word
        if not _SEARCHABLE.search(term):
            continue
        if negated:
            parsed.excluded.append(term)
        elif join_next:
            parsed.groups[-1].append(term)
        else:
            parsed.groups.append([term])
        join_next = False
    return parsed


def fts5_query(parsed: ParsedQuery) -> str:
    """The FTS5 MATCH expression: every term an FTS5 string (quotes doubled), so no user text is syntax."""
    def phrase(term: str) -> str:
        return '"' + term.replace('"', '""') + '"'

    def either(terms: list[str]) -> str:
        return phrase(terms[0]) if len(terms) == 1 else "(" + " OR ".join(map(phrase, terms)) + ")"

    expression = " AND ".join(either(group) for group in parsed.groups)
    if parsed.excluded:
        expression = f"({expression}) NOT {either(parsed.excluded)}"
    return expression


def pg_tsquery(parsed: ParsedQuery) -> tuple[str, dict[str, str]]:
    """A tsquery SQL expression built from phraseto_tsquery of bound terms, and its parameters."""
    params: dict[str, str] = {}

    def phrase(term: str) -> str:
        name = f"t{len(params)}"
        params[name] = term.translate(_PG_AS_INDEXED)  # split into words as the indexed text is
        return f"phraseto_tsquery('simple', :{name})"

    def either(terms: list[str]) -> str:
        return "(" + " || ".join(map(phrase, terms)) + ")"

    expression = " && ".join(either(group) for group in parsed.groups)
    if parsed.excluded:
        expression = f"{expression} && !!{either(parsed.excluded)}"
    return expression, params


def render_snippet(raw: str, marks: tuple[str, str] = (OPEN, CLOSE), stand_ins: bool = False) -> str:
    """HTML-escape the database's snippet, then turn its match marks into <mark>...</mark>, the only markup (and,
    from PostgreSQL, the stand-ins back into the escaped punctuation they replaced)."""
    escaped = html.escape(raw, quote=True)
    if stand_ins:
        escaped = "".join(_PG_SHOWN.get(char, char) for char in escaped)
    return escaped.replace(marks[0], "<mark>").replace(marks[1], "</mark>")


def search(user_id: int, q: str, limit: int, before: tuple[float, int] | None) -> dict[str, Any]:
    """One page of the user's messages (every branch) that match q, best first: {results, has_more, next_before}.

    Pages follow (score, message_id) descending; `before` is the last (score, id) of the previous page."""
    parsed = parse_query(q)
    if not parsed.groups:  # nothing searchable, or only words to leave out
        return {"results": [], "has_more": False, "next_before": None}
    if db.session.get_bind().dialect.name == "sqlite":
        ranked = _ranked_sqlite(user_id, parsed, limit + 1, before)
    else:
        ranked = _ranked_postgresql(user_id, parsed, limit + 1, before)
    page, has_more = ranked[:limit], len(ranked) > limit
    return {"results": [row for row, _ in page], "has_more": has_more,
            "next_before": encode_cursor(page[-1][1], page[-1][0]["message_id"]) if has_more else None}


_RESULT_COLUMNS = {"created_at": UTCDateTime()}


def _after_cursor(before: tuple[float, int] | None, score: str, message_id: str) -> tuple[str, dict[str, Any]]:
    """The SQL condition for rows after the cursor in (score DESC, id DESC) order."""
    if before is None:
        return "", {}
    return (f" AND ({score} < :cursor_score OR ({score} = :cursor_score AND {message_id} < :cursor_id))",
            {"cursor_score": before[0], "cursor_id": before[1]})


def _result(row: Any, snippet: str) -> dict[str, Any]:
    return {"chatroom_id": row.chatroom_id, "chatroom_name": row.chatroom_name, "message_id": row.id,
            "role": row.role, "snippet": snippet, "created_at": row.created_at}


def _ranked_postgresql(user_id: int, parsed: ParsedQuery, limit: int,
                       before: tuple[float, int] | None) -> list[tuple[dict[str, Any], float]]:
    """ts_rank (normalised by the log of the length) over the GIN index; ts_headline only for the page's rows."""
    tsquery, params = pg_tsquery(parsed)
    after, cursor_params = _after_cursor(before, "ranked.score", "ranked.id")
    # ts_rank is a real: compared as a double everywhere, so the cursor's value (read back as a double) is exact.
    sql = text(f"""
        WITH q AS (SELECT {tsquery} AS query),
        ranked AS (
            SELECT m.id, CAST(ts_rank(m.search_vector, q.query, 1) AS double precision) AS score
            FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id CROSS JOIN q
            WHERE c.user_id = :user_id AND m.search_vector @@ q.query),
        page AS (
            SELECT ranked.id, ranked.score FROM ranked WHERE true{after}
            ORDER BY ranked.score DESC, ranked.id DESC LIMIT :limit)
        SELECT page.id, page.score, m.chatroom_id, c.name AS chatroom_name, m.role, m.created_at,
               ts_headline('simple', translate(left(m.content, :indexed), :from_chars, :to_chars), q.query,
                           :options) AS snippet
        FROM page JOIN messages m ON m.id = page.id JOIN chatrooms c ON c.id = m.chatroom_id CROSS JOIN q
        ORDER BY page.score DESC, page.id DESC""").columns(**_RESULT_COLUMNS)
    rows = db.session.execute(sql, {**params, **cursor_params, "user_id": user_id, "limit": limit,
                                    "indexed": PG_INDEXED_CHARS, "from_chars": PG_HEADLINE_FROM,
                                    "to_chars": PG_HEADLINE_TO, "options": PG_HEADLINE_OPTIONS}).all()
    return [(_result(row, render_snippet(row.snippet, stand_ins=True)), row.score) for row in rows]


_FTS_FROM = """FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
               JOIN chatrooms c ON c.id = m.chatroom_id
               WHERE messages_fts MATCH :query"""


def _ranked_sqlite(user_id: int, parsed: ParsedQuery, limit: int,
                   before: tuple[float, int] | None) -> list[tuple[dict[str, Any], float]]:
    """bm25 (negated: higher is better, as on PostgreSQL) over FTS5; snippet() only for the page's rows."""
    query = fts5_query(parsed)
    if before is not None:
        # bm25 weighs words by how common they are in every stored message, so any new message moves every score:
        # a page goes on after the cursor's message where it ranks now (its score then, if it no longer matches).
        # Only the user's own message may anchor a page: another's would tell whether it matches (S11).
        now = db.session.execute(text(f"SELECT -bm25(messages_fts) {_FTS_FROM} AND c.user_id = :user_id "
                                      "AND messages_fts.rowid = :id"),
                                 {"query": query, "user_id": user_id, "id": before[1]}).scalar()
        before = (now, before[1]) if now is not None else before
    after, cursor_params = _after_cursor(before, "-bm25(messages_fts)", "m.id")
    ranked = db.session.execute(text(f"""
        SELECT m.id, -bm25(messages_fts) AS score {_FTS_FROM} AND c.user_id = :user_id{after}
        ORDER BY score DESC, m.id DESC LIMIT :limit"""),
        {"query": query, "user_id": user_id, "limit": limit, **cursor_params}).all()
    if not ranked:
        return []
    snippets = dict(_snippets_sqlite(query, [row.id for row in ranked]))
    results = []
    for row in ranked:
        if row.id in snippets:  # else deleted since the ranking: left out
            found, snippet = snippets[row.id]
            results.append((_result(found, snippet), row.score))
    return results


def _snippets_sqlite(query: str, ids: list[int]) -> Iterator[tuple[int, tuple[Any, str]]]:
    """(id, (row, rendered snippet)) for these messages. A message whose own text holds the marks gets marks it
    does not contain instead (rare: control characters in a message)."""
    sql = text(f"""
        SELECT m.id, m.chatroom_id, c.name AS chatroom_name, m.role, m.created_at,
               snippet(messages_fts, 0, :open, :close, '…', :tokens) AS snippet,
               instr(m.content, :open) > 0 OR instr(m.content, :close) > 0 AS clash
        {_FTS_FROM} AND messages_fts.rowid IN :ids""").bindparams(bindparam("ids", expanding=True))
    sql = sql.columns(**_RESULT_COLUMNS)
    params = {"query": query, "tokens": SNIPPET_TOKENS}
    for row in db.session.execute(sql, {**params, "ids": ids, "open": OPEN, "close": CLOSE}).all():
        marks = (OPEN, CLOSE)
        if row.clash:
            content = db.session.execute(text("SELECT content FROM messages WHERE id = :id"), {"id": row.id}).scalar()
            marks = _absent_marks(content)
            row = db.session.execute(sql, {**params, "ids": [row.id], "open": marks[0], "close": marks[1]}).one()
        yield row.id, (row, render_snippet(row.snippet, marks))


def _absent_marks(content: str) -> tuple[str, str]:
    """Two private-use characters the text does not contain (a message is far shorter than the 137,000 there are)."""
    candidates = map(chr, itertools.chain(range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE)))
    free = []
    for candidate in candidates:
        if candidate not in content:
            free.append(candidate)
            if len(free) == 2:
                break
    return free[0], free[1]
