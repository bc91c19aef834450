"""GET /search: the user's own messages, ranked, with escaped snippets whose only markup is <mark> (QUALITY.md S11,
S14), stable pages, and an index that follows every insert, content change and delete (both backends)."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import text

from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message
from gemini_backend.schemas.search import encode_cursor
from gemini_backend.services.search import fts5_query, parse_query
from tests.chat_helpers import ChatUser

MARKUP = re.compile(r"</?mark>")


def add(app, room_id: int, *contents: str, role: str = "user", parent_id: int | None = None) -> list[int]:
    """Store messages in a room directly (any text, as a finished reply could hold) and return their ids."""
    with app.app_context():
        rows = [Message(chatroom_id=room_id, role=role, content=content, status="complete", parent_id=parent_id)
                for content in contents]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def search(user: ChatUser, q: str, **params) -> dict:
    r = user.get("/search", query_string={"q": q, **params})
    assert r.status_code == 200, r.json
    return r.json


def found(user: ChatUser, q: str, **params) -> list[int]:
    return [hit["message_id"] for hit in search(user, q, **params)["results"]]


def index_is_consistent(app) -> None:
    """SQLite: FTS5's own check that the index holds exactly the text of messages (raises otherwise)."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            db.session.execute(text("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"))
            db.session.commit()


def only_mark_markup(snippet: str) -> bool:
    return "<" not in MARKUP.sub("", snippet) and ">" not in MARKUP.sub("", snippet)


def test_results_are_ranked_with_the_matches_marked(alice):
    room = alice.room("Trip to Lisbon")
    once, often = add(alice.app, room, "We might see Lisbon at some point on a long trip through many places",
                      "Lisbon, Lisbon: the trams of Lisbon")
    other = add(alice.app, alice.room("Other"), "Nothing about it here")
    body = search(alice, "lisbon")
    assert [hit["message_id"] for hit in body["results"]] == [often, once]
    assert other[0] not in found(alice, "lisbon")
    first = body["results"][0]
    assert (first["chatroom_id"], first["chatroom_name"], first["role"]) == (room, "Trip to Lisbon", "user")
    assert first["created_at"].endswith(("Z", "+00:00"))
    assert "<mark>Lisbon</mark>" in first["snippet"] and "<mark>trams</mark>" not in first["snippet"]
    assert first["snippet"].count("<mark>") == 3 and only_mark_markup(first["snippet"])
    assert (body["has_more"], body["next_before"]) == (False, None)


def test_snippets_escape_everything_but_the_marks(alice):
    room = alice.room("<b>bold</b> room")
    hostile = ('<script>alert("x")</script> the tram & <img src=x onerror=alert(1)> List<String> '
               "it's 'quoted'")
    [message] = add(alice.app, room, hostile)
    for q in ("tram", "script", "String"):
        [hit] = search(alice, q)["results"]
        assert hit["message_id"] == message
        assert only_mark_markup(hit["snippet"]), hit["snippet"]
        # The passage (PostgreSQL's starts and ends at a word), escaped: only the marks are markup.
        assert MARKUP.sub("", hit["snippet"]) in html.escape(hostile, quote=True)
        assert "tram &amp; &lt;img src=x onerror=alert(1)&gt; List&lt;String&gt;" in MARKUP.sub("", hit["snippet"])
        assert hit["chatroom_name"] == "<b>bold</b> room"  # JSON text, not markup: clients escape it
    assert "<mark>tram</mark>" in search(alice, "tram")["results"][0]["snippet"]
    script = search(alice, "script")["results"][0]["snippet"]
    assert "<mark>script</mark>&gt;alert(&quot;x&quot;)&lt;/<mark>script</mark>&gt;" in script


def test_text_holding_the_databases_mark_characters_gets_only_real_marks(alice):
    """Control characters in a message (the marks the database is asked for) never become <mark>s."""
    [message] = add(alice.app, alice.room(), "a\x01b\x02c \x02\x01 the tram \x03<x>\x04")
    [hit] = search(alice, "tram")["results"]
    assert hit["message_id"] == message
    assert hit["snippet"].count("<mark>") == 1 and "<mark>tram</mark>" in hit["snippet"]
    assert hit["snippet"].count("</mark>") == 1 and only_mark_markup(hit["snippet"])


HOSTILE_QUERIES = ['"', "'", "*", "NEAR(a b)", "content:x", "nosuchcolumn:x", "a OR", "OR", ") (", "<b>x</b>",
                   "😀", "a AND", "NOT a", "-", "--", "-a", '"unterminated phrase', '""', "a*", "^a", "a:b:c",
                   "' OR 1=1 --", "'; DROP TABLE messages; --", "\\", "%", "_", "{a b}", "a + b", "a NEAR/3 b",
                   "(a OR b) AND NOT c", "ÄÖÜ straße", "中文 搜索", "مرحبا", "\u202etxt", "\ufeffa", "a\x01b\x02",
                   "x" * 500, " ".join(["a"] * 250), '"' * 499]


@pytest.mark.parametrize("q", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_hostile_queries_never_fail(alice, q):
    """Query syntax of either database, HTML and unicode are searched as text: 200, never an FTS error."""
    add(alice.app, alice.room(), "near a b: content x, and OR a AND b", "<b>x</b> 😀 straße 中文 mb' 1=1")
    r = alice.get("/search", query_string={"q": q})
    assert r.status_code == 200, (q, r.json)
    assert all(only_mark_markup(hit["snippet"]) for hit in r.json["results"])


@pytest.mark.parametrize("q, status", [("x" * 5000, 422), ("", 422), ("   ", 422), ("a\x00b", 422)])
def test_unusable_queries_are_422(alice, q, status):
    r = alice.get("/search", query_string={"q": q})
    assert r.status_code == status, r.json
    assert r.json["error"] == "validation_error" and "q" in r.json["errors"]["query"]


def test_query_syntax_is_literal_text_on_both_databases(alice):
    room = alice.room()
    near, column, tagged = add(alice.app, room, "near a b", "the content x here", "<b>x</b> yes")
    assert found(alice, "NEAR(a b)") == [near]
    assert found(alice, "content:x") == [column]
    assert found(alice, "nosuchcolumn:x") == []
    assert tagged in found(alice, "<b>x</b>")
    assert found(alice, '"') == found(alice, "*") == found(alice, ") (") == found(alice, "😀") == []


def test_phrases_or_and_exclusion(alice):
    room = alice.room()
    tram, bus, both, night = add(alice.app, room, "the yellow tram", "the city bus", "a tram and a bus",
                                 "tram yellow at night")
    assert sorted(found(alice, "tram bus")) == [both]
    assert sorted(found(alice, '"yellow tram"')) == [tram]
    assert sorted(found(alice, "yellow tram")) == sorted([tram, night])
    assert sorted(found(alice, "tram OR bus")) == sorted([tram, bus, both, night])
    assert sorted(found(alice, "yellow OR bus tram")) == sorted([tram, both, night])  # (yellow OR bus) AND tram
    assert sorted(found(alice, "tram -bus")) == sorted([tram, night])
    assert sorted(found(alice, 'tram -"yellow tram"')) == sorted([both, night])
    assert found(alice, "-tram") == []  # only words to leave out: nothing to look for
    assert found(alice, "TRAM") and found(alice, "tra") == []  # whole words, any case, no prefixes


def test_the_query_reaches_fts5_only_as_quoted_strings():
    assert fts5_query(parse_query('a "b c" OR d -e x"y')) == '("a" AND ("b c" OR "d") AND "x""y") NOT "e"'
    assert parse_query('* ) ( - OR "').groups == []


def test_another_users_messages_are_never_found(alice, bob):
    mine = add(alice.app, alice.room(), "my zebra notes")
    theirs = add(bob.app, bob.room(), "bob's zebra secret", "zebra zebra zebra")
    assert found(alice, "zebra") == mine
    assert sorted(found(bob, "zebra")) == sorted(theirs)
    assert found(alice, "secret") == []


def test_every_branch_is_searched(alice):
    room = alice.room()
    [question] = add(alice.app, room, "first question")
    old, new = add(alice.app, room, "old answer about otters", "new answer about otters", role="model",
                   parent_id=question)
    with alice.app.app_context():
        db.session.get(Chatroom, room).active_leaf_id = new
        db.session.commit()
    assert sorted(found(alice, "otters")) == [old, new]
    assert {hit["role"] for hit in search(alice, "otters")["results"]} == {"model"}


def test_pages_neither_repeat_nor_skip(alice):
    room = alice.room()
    # Ranks with many ties (same text) and many distinct ones, in two rooms.
    ids = add(alice.app, room, *[("owl " * (i % 5 + 1)) + f"filler {i}" for i in range(23)])
    ids += add(alice.app, alice.room("Second"), *["owl"] * 6)
    add(alice.app, room, "no match here")
    everything = found(alice, "owl", limit=50)
    assert sorted(everything) == sorted(ids)
    pages, before = [], None
    while True:
        body = search(alice, "owl", limit=4, **({"before": before} if before else {}))
        pages.append([hit["message_id"] for hit in body["results"]])
        assert body["has_more"] == (body["next_before"] is not None)
        if not body["has_more"]:
            break
        before = body["next_before"]
    assert all(len(page) == 4 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 4
    assert [i for page in pages for i in page] == everything  # same order, no repeats, nothing skipped
    # A message written while paging does not shift the pages already read.
    first = search(alice, "owl", limit=4)
    add(alice.app, room, "owl " * 9)
    second = search(alice, "owl", limit=4, before=first["next_before"])
    assert [hit["message_id"] for hit in second["results"]] == pages[1]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 51}, {"limit": "x"}, {"before": "nope"},
                                    {"before": "WzEsIDJd" + "x"}, {"before": "WyJhIiwgMV0"}, {"before": "W251bGwsIDBd"},
                                    {"before": "WzEuMCwgMF0"}, {"before": "WzFlOTk5LCAxXQ"}])
def test_bad_paging_parameters_are_422(alice, params):
    r = alice.get("/search", query_string={"q": "owl", **params})
    assert r.status_code == 422, r.json
    assert list(r.json["errors"]["query"]) == list(params)


def test_search_needs_a_token(client):
    r = client.get("/search?q=owl")
    assert r.status_code == 401 and r.json["error"] == "token_missing"


def test_new_changed_and_deleted_messages_follow_the_index(alice, app):
    room = alice.room()
    [question] = add(app, room, "tell me about walruses")
    assert found(alice, "walruses") == [question]
    with app.app_context():  # a reply is stored pending and empty, and gets its text when it finishes
        reply = Message(chatroom_id=room, role="model", content="", status="pending", reply_to=question,
                        parent_id=question)
        db.session.add(reply)
        db.session.commit()
        reply_id = reply.id
    assert found(alice, "tusks") == []
    with app.app_context():
        row = db.session.get(Message, reply_id)
        row.content, row.status = "Walruses have long tusks.", "complete"
        db.session.commit()
    assert found(alice, "tusks") == [reply_id]
    with app.app_context():  # an unrelated update (the lease) leaves the index alone
        db.session.get(Message, reply_id).attempts = 2
        db.session.commit()
        db.session.get(Message, reply_id).content = "Walruses have whiskers."
        db.session.commit()
    assert found(alice, "tusks") == [] and found(alice, "whiskers") == [reply_id]
    index_is_consistent(app)
    assert alice.delete(f"/chatroom/{room}").status_code == 204
    assert found(alice, "walruses") == []
    index_is_consistent(app)


def test_a_reply_written_by_the_worker_is_found_by_its_text(alice, gemini, worker):
    room = alice.room()
    gemini.reply_fn = lambda body: "Capybaras are the largest rodents."
    posted = alice.say(room, "Which rodent is the biggest?")
    reply = alice.finished_reply(room, posted["reply"]["id"])
    assert reply["status"] == "complete"
    [hit] = search(alice, "capybaras")["results"]
    assert (hit["message_id"], hit["role"]) == (reply["id"], "model")
    assert found(alice, "rodent") == [posted["message"]["id"]]
    index_is_consistent(alice.app)


def test_messages_stored_before_the_migration_are_found(alice, app):
    """0009 indexes the messages already there (SQLite's rebuild; PostgreSQL's generated column)."""
    from flask_migrate import downgrade, upgrade
    room = alice.room()
    with app.app_context():
        downgrade(revision="0008_files_and_shares")
        try:
            db.session.execute(text("INSERT INTO messages (chatroom_id, role, content, status, attempts, created_at) "
                                    "VALUES (:room, 'user', 'an old message about narwhals', 'complete', 0, "
                                    "CURRENT_TIMESTAMP)"), {"room": room})
            db.session.commit()
        finally:
            db.session.remove()
            upgrade()
    assert len(found(alice, "narwhals")) == 1
    assert found(alice, "narwhals") == found(alice, "old message")
    index_is_consistent(app)


def test_words_split_alike_on_both_databases(alice):
    """Punctuation separates words as FTS5's unicode61 does, and the snippet shows the text as it was."""
    content = "Mail foo@bar.example, see /usr/local/bin and v1.2.3 of snake_case-ish a&b; 50% off #tag ~x +y =z?"
    [message] = add(alice.app, alice.room(), content)
    for q in ("bar", "example", "local", "2", "snake", "ish", "b", "50", "tag", "foo@bar.example", '"usr local"'):
        [hit] = search(alice, q)["results"]
        assert hit["message_id"] == message, q
        assert MARKUP.sub("", hit["snippet"]) in html.escape(content, quote=True), (q, hit["snippet"])
    snippet = search(alice, "bar.example")["results"][0]["snippet"]
    assert "<mark>bar.example</mark>" in snippet.replace("</mark>.<mark>", ".")  # FTS5 marks a phrase at once


def test_a_cursor_naming_another_users_message_tells_nothing(alice, bob):
    """A forged cursor's message id only counts when the message is the user's own (S11: no side channel)."""
    mine = add(alice.app, alice.room(), "heron", "heron heron heron heron heron")
    [theirs] = add(bob.app, bob.room(), "heron heron heron")  # ranks between alice's two
    everything = found(alice, "heron")
    assert sorted(everything) == sorted(mine)
    for anchor in (theirs, theirs + 1000):  # matching or not: the same answer
        assert found(alice, "heron", before=encode_cursor(1e300, anchor)) == everything
