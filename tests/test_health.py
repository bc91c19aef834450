"""Probes and the OpenAPI/Swagger UI pages."""
import re

from tests.conftest import BACKEND


def test_root_says_what_the_server_is(client):
    """GET / names the server and points at its docs, OpenAPI document and health probe, each of which answers."""
    r = client.get("/")
    assert r.status_code == 200
    assert set(r.json) == {"name", "version", "docs", "openapi", "health"}
    for link in ("docs", "openapi", "health"):
        assert client.get(r.json[link]).status_code == 200, link


def test_healthz_says_ok(client):
    """/healthz answers 200 {status: ok} without touching dependencies."""
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_readyz_pings_every_dependency(client):
    """/readyz is 200 only after pinging the database, the queue and (services mode) Redis."""
    r = client.get("/readyz")
    assert r.status_code == 200, r.json
    expected = {"database", "queue"} | ({"redis"} if BACKEND.name == "services" else set())
    assert set(r.json["checks"]) == expected and set(r.json["checks"].values()) == {"ok"}


def test_readyz_names_redis_when_it_is_down(app):
    """A Redis that does not answer makes /readyz 503 in the error shape, naming redis."""
    from gemini_backend import create_app
    broken = create_app({"APP_ENV": "test", "REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_SOCKET_TIMEOUT": 0.5})
    r = broken.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["error"] == "dependency_unavailable" and "redis" in r.json["message"]
    assert r.json["checks"]["redis"].startswith("down")
    assert r.json["code"] == 503 and r.json["status"] == "Service Unavailable"


def test_readyz_names_the_database_when_it_is_down(app):
    """A database that does not answer makes /readyz 503 naming the database, quickly."""
    from gemini_backend import create_app
    broken = create_app({"APP_ENV": "test",
                         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://postgres@127.0.0.1:1/none"})
    r = broken.test_client().get("/readyz")
    assert r.status_code == 503 and "database" in r.json["message"]
    assert r.json["checks"]["database"].startswith("down")


def test_openapi_document_has_bearer_scheme(client):
    """/openapi.json is an OpenAPI 3 document with the bearer security scheme."""
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/healthz" in doc["paths"] and "/readyz" in doc["paths"]


def test_docs_page_uses_only_assets_the_app_serves(client):
    """/docs loads Swagger UI from the app itself (no CDN), and every asset it references is served."""
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    html = page.data.decode()
    assert not re.search(r"""(src|href)=["']https?://""", html), "the docs page must not load from the internet"
    assets = re.findall(r"""(?:src|href)=["'](/docs/static/[^"']+)["']""", html)
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
