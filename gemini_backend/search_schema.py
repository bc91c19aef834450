"""The full-text search objects the migrations create outside the SQLAlchemy models, and the autogenerate filter
that keeps Alembic from proposing to drop them (migrations/env.py and tests/test_migrations.py share it)."""
from __future__ import annotations

# PostgreSQL: a generated tsvector column on messages and its GIN index (migration 0009).
SEARCH_VECTOR_COLUMN = "search_vector"
SEARCH_VECTOR_INDEX = "ix_messages_search_vector"
# SQLite: an external-content FTS5 table over messages.content; FTS5 keeps its data in shadow tables named after it
# (messages_fts_data, _idx, _docsize, _config).
FTS_TABLE = "messages_fts"


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic include_name hook: False for the search objects, which the models do not describe."""
    if type_ == "table":
        return not (name or "").startswith(FTS_TABLE)
    if type_ == "column":
        return not (parent_names.get("table_name") == "messages" and name == SEARCH_VECTOR_COLUMN)
    if type_ == "index":
        return name != SEARCH_VECTOR_INDEX
    return True
