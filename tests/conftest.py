"""Test setup: the suite runs once per backend, chosen by TEST_BACKEND before the package is imported.

- TEST_BACKEND=embedded (default): SQLite + Huey on SQLite + SQLite limits + file cache, in a temp folder.
- TEST_BACKEND=services: PostgreSQL (a fresh database per run, dropped at the end) and Redis (a DB number
  of its own, flushed per test). Unreachable servers skip the run with a reason that says what to start.
"""
from __future__ import annotations

import shutil
import tempfile

import pytest

from tests import backends
from tests.fakes.stripe_server import FakeStripe

BACKEND = backends.select()  # sets the environment before gemini_backend is imported

from gemini_backend import create_app  # noqa: E402
from gemini_backend.extensions import db  # noqa: E402
from tests.chat_helpers import ChatUser  # noqa: E402


def pytest_report_header(config):
    return f"backend: {BACKEND.describe()}"


def pytest_collection_modifyitems(config, items):
    if BACKEND.skip_reason:
        skip = pytest.mark.skip(reason=BACKEND.skip_reason)
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _schema():
    """Apply the real migrations once per run, on a fresh database."""
    if BACKEND.skip_reason:
        pytest.skip(BACKEND.skip_reason)
    BACKEND.create_database()
    app = create_app({"APP_ENV": "test"})
    with app.app_context():
        from flask_migrate import upgrade
        upgrade()
        db.engine.dispose()
    yield
    BACKEND.drop_database()


@pytest.fixture()
def app(_schema):
    """A fresh app over emptied tables, queue, limits and cache."""
    app = create_app({"APP_ENV": "test"})
    with app.app_context():
        backends.empty_all_stores(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()


@pytest.fixture()
def tmp_instance():
    """A throwaway instance folder."""
    path = tempfile.mkdtemp(prefix="gb-instance-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def app_logs(caplog):
    """caplog that also sees the app's own logger (which does not propagate to the root logger)."""
    import logging
    logger = logging.getLogger("gemini_backend")
    logger.addHandler(caplog.handler)
    caplog.set_level("DEBUG", logger="gemini_backend")
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture(scope="module")
def fake_gemini():
    """A fake Gemini API on 127.0.0.1 for the whole module (reset before each test that asks for `gemini`)."""
    from tests.fakes.gemini import FakeGemini
    with FakeGemini() as fake:
        yield fake


@pytest.fixture()
def gemini(fake_gemini):
    fake_gemini.reset()
    return fake_gemini


WORKER_ENV = {"GEMINI_API_KEY": "test-key", "GEMINI_TIMEOUT": "2", "REPLY_RETRY_DELAY": "0.2",
              "REPLY_MAX_ATTEMPTS": "3", "REPLY_LEASE_SECONDS": "10", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def worker(fake_gemini, _schema):
    """A real Huey consumer process (`flask worker`) answering with the fake Gemini, for the whole module."""
    from tests.helpers import start_worker, stop
    proc = start_worker(threads=4, GEMINI_BASE_URL=fake_gemini.base_url, **WORKER_ENV)
    yield proc
    output = stop(proc)
    assert "Traceback" not in output or "RetryTask" in output, output[-4000:]


STRIPE_CONFIG = {"STRIPE_SECRET_KEY": "sk_test_gemini_backend", "STRIPE_PRO_PRICE_ID": "price_pro_test",
                 "STRIPE_WEBHOOK_SECRET": "whsec_test", "DOMAIN": "https://chat.example.com"}


@pytest.fixture()
def fake():
    """The fake Stripe API, in the exact shape of the API version the SDK pins (period on the items only)."""
    with FakeStripe(top_level_period=False) as server:
        yield server


@pytest.fixture()
def alice(app, client):
    """A Basic user with an access token, on the test client (a module may define its own)."""
    return ChatUser(app, client)


@pytest.fixture()
def bob(app, client):
    """A second Basic user, for what one user must never see of another's."""
    return ChatUser(app, client)


@pytest.fixture()
def make_app(app):
    """Build apps with extra config over the stores the `app` fixture emptied; their pools close afterwards."""
    made = []

    def factory(**overrides):
        made.append(create_app({"APP_ENV": "test", **overrides}))
        return made[-1]

    yield factory
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture()
def billing_app(make_app, fake):
    """An app whose Stripe settings point the real SDK at the fake."""
    return make_app(**STRIPE_CONFIG, STRIPE_API_BASE=fake.base_url)


@pytest.fixture()
def bclient(billing_app):
    return billing_app.test_client()
