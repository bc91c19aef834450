"""CORS: only the configured origins, with the headers a browser client needs to read."""
from gemini_backend import create_app


def test_no_cors_when_unset(client):
    """Without CORS_ORIGINS no Access-Control headers are sent."""
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_configured_origin_is_allowed_and_headers_exposed(app):
    """A listed origin gets CORS headers exposing Retry-After, X-RateLimit-* and X-Cache; preflight works."""
    client = create_app({"APP_ENV": "test", "CORS_ORIGINS": ["https://chat.example.com"]}).test_client()
    r = client.get("/healthz", headers={"Origin": "https://chat.example.com"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://chat.example.com"
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-cache"} <= exposed
    pre = client.options("/chatroom", headers={"Origin": "https://chat.example.com",
                                               "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert pre.status_code == 200 and "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
