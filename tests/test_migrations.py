"""The Alembic migrations and the models agree, on the backend under test."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from gemini_backend.extensions import db
from gemini_backend.search_schema import include_name


def test_single_head(app):
    """There is exactly one migration head (no forgotten merge)."""
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_models_match_migrations(app):
    """After `flask db upgrade`, autogenerate finds no difference between the database and the models."""
    with app.app_context():
        with db.engine.connect() as conn:
            opts = {"compare_type": True, "render_as_batch": True, "include_name": include_name}
            ctx = MigrationContext.configure(conn, opts=opts)
            diff = compare_metadata(ctx, db.metadata)
    assert diff == [], diff
