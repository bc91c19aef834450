"""full-text search over messages: a generated tsvector column with a GIN index (PostgreSQL), an external-content
FTS5 table kept by triggers (SQLite)

Revision ID: 0009_search
Revises: 0008_files_and_shares
Create Date: 2026-12-04 10:00:00

"""
from alembic import op


revision = '0009_search'
down_revision = '0008_files_and_shares'
branch_labels = None
depends_on = None

# PostgreSQL. The 'simple' configuration: lower-cased words, no stemming and no stop words, the same for every
# language (FTS5's unicode61 tokenizer behaves alike). The first 100,000 characters only: a tsvector holds at most
# 1 MB, and a longer reply must never fail to be stored because of its index. The punctuation PostgreSQL's parser
# glues words with becomes spaces, so words split as unicode61 splits them: "foo@bar.com", "/usr/bin", "v1.2",
# "snake_case" are searchable by their parts, and "<script>" or "List<String>" are not swallowed as HTML tags.
PG_UPGRADE = [
    "ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', translate(left(content, 100000), '<>/@.:-_&;~+=?%#', '                '))) STORED",
    "CREATE INDEX ix_messages_search_vector ON messages USING GIN (search_vector)",
]
PG_DOWNGRADE = [
    "DROP INDEX IF EXISTS ix_messages_search_vector",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
]

# SQLite. External content: the index reads the text from messages (no second copy); the triggers keep it in step
# with every insert, content change (a reply's text is written when it finishes) and delete. remove_diacritics 0:
# "cafe" does not find "café", as on PostgreSQL.
SQLITE_UPGRADE = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages "
    "WHEN old.content IS NOT new.content BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    # The messages stored before this migration.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
SQLITE_DOWNGRADE = [
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TABLE IF EXISTS messages_fts",
]


def _run(statements):
    for statement in statements:
        op.execute(statement)


def upgrade():
    _run(SQLITE_UPGRADE if op.get_bind().dialect.name == 'sqlite' else PG_UPGRADE)


def downgrade():
    _run(SQLITE_DOWNGRADE if op.get_bind().dialect.name == 'sqlite' else PG_DOWNGRADE)
