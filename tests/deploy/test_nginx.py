"""T2 (QUALITY.md): Debian's nginx, configured with deploy/nginx.conf, in front of two gunicorn hosts started with
TRUSTED_PROXY_HOPS=1.

S15: 40 clients, each on its own source address (Linux routes all of 127.0.0.0/8 to the loopback, so a client
socket bound to 127.0.0.N reaches nginx as client 127.0.0.N), are limited one by one, not as one proxy; a client
cannot choose its address by sending X-Forwarded-For, neither through nginx nor straight to a host that trusts no
proxy. Streams: the deltas of a slowly generated reply reach the client through nginx as they are produced.
"""
from __future__ import annotations

import pytest

from tests.conftest import WORKER_ENV
from tests.deploy.topology import SERVICES_ONLY, Nginx, request, sse_events
from tests.factories import auth_headers, create_user, new_phone

pytestmark = [SERVICES_ONLY, pytest.mark.slow]

LIMIT = 5  # AUTH_RATE_LIMIT per client address on the hosts: lower than the default 30 to make the point sharp
HOSTS_ENV = {"TRUSTED_PROXY_HOPS": "1", "AUTH_RATE_LIMIT": f"{LIMIT} per minute"}

# nginx at its default buffering, compressing event streams (gzip_types lists them): the app's X-Accel-Buffering: no
# turns proxy buffering off for its streams, so each chunk is flushed through gzip at once. The control: the same,
# told to ignore that header; nginx then holds the deltas back until the reply ends, and the test must see it.
GZIP_STREAMS = """
server {
    listen 127.0.0.1:{port};
    gzip on;
    gzip_types text/event-stream;
    gzip_min_length 0;
    location / {
        proxy_pass http://gemini_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}"""
GZIP_STREAMS_BUFFERED = GZIP_STREAMS.replace("gzip_min_length 0;", "gzip_min_length 0;\n    "
                                             "proxy_ignore_headers X-Accel-Buffering;")


@pytest.fixture(scope="module")
def hosts(module_fleet, fake_gemini, _schema):
    env = {**WORKER_ENV, **HOSTS_ENV, "GEMINI_BASE_URL": fake_gemini.base_url}
    web = module_fleet.webs(2, workers=2, threads=8, **env)
    module_fleet.worker(threads=4, **env)
    return web


@pytest.fixture(scope="module")
def nginx(hosts):
    with Nginx([h.port for h in hosts], extra_servers=[GZIP_STREAMS, GZIP_STREAMS_BUFFERED]) as proxy:
        yield proxy


def send_otp(port: int, source: str, headers: dict | None = None) -> tuple[int, str | None]:
    """POST /auth/send-otp for a new number from the source address: (status, error name)."""
    status, body, _ = request(port, "POST", "/auth/send-otp", headers, {"phone": new_phone()}, source=source)
    return status, (body or {}).get("error") if isinstance(body, dict) else None


def test_s15_distinct_clients_behind_nginx_are_limited_one_by_one(app, nginx):
    """40 clients each ask for a code through nginx: all 200 (keyed on nginx's address, only 5 of them would be).
    One client then goes on until it is refused: exactly LIMIT codes in all; another client is still served."""
    first = [send_otp(nginx.port, f"127.0.0.{10 + i}") for i in range(40)]
    assert first == [(200, None)] * 40, first
    more = [send_otp(nginx.port, "127.0.0.10") for _ in range(LIMIT + 1)]
    assert more == [(200, None)] * (LIMIT - 1) + [(429, "rate_limited")] * 2, more
    assert send_otp(nginx.port, "127.0.0.11") == (200, None)


def test_s15_forged_forwarded_for_through_nginx_changes_nothing(app, nginx):
    """A client that sends its own X-Forwarded-For through nginx is still one client: nginx appends the address it
    saw and the hosts (one trusted hop) take that last entry, so rotating the header buys nothing."""
    codes = [send_otp(nginx.port, "127.0.0.60", {"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(LIMIT + 2)]
    assert codes == [(200, None)] * LIMIT + [(429, "rate_limited")] * 2, codes


def test_s15_forged_forwarded_for_straight_to_a_host_without_trusted_hops(app, fleet, hosts, fake_gemini):
    """Straight to a host with TRUSTED_PROXY_HOPS=0 (the default), a forged X-Forwarded-For changes nothing: the same
    client is limited however it varies the header. The control: a host with one trusted hop, reached directly,
    believes the header (which is why such hosts must be reachable only through the proxy)."""
    direct = fleet.web(workers=1, threads=4, **{**HOSTS_ENV, "TRUSTED_PROXY_HOPS": "0"})
    forged = [send_otp(direct.port, "127.0.0.70", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(LIMIT + 2)]
    assert forged == [(200, None)] * LIMIT + [(429, "rate_limited")] * 2, forged
    trusting = [send_otp(hosts[0].port, "127.0.0.71", {"X-Forwarded-For": f"198.51.100.{n}"})
                for n in range(LIMIT + 2)]
    assert trusting == [(200, None)] * (LIMIT + 2), trusting


def _stream_through(app, port: int, gemini, text: str, gzip: bool = False) -> list:
    """Post a message through the proxy on port and read its reply's stream there: the events, stamped."""
    gemini.reset()
    gemini.latency, gemini.chunk_count, gemini.chunk_delay = 0.5, 5, 0.3
    headers = auth_headers(app, create_user(app, pro=True))
    status, room, _ = request(port, "POST", "/chatroom", headers, {"name": "stream"})
    assert status == 201, room
    status, posted, _ = request(port, "POST", f"/chatroom/{room['id']}/message", headers, {"content": text})
    assert status == 202, posted
    path = f"/chatroom/{room['id']}/message/{posted['reply']['id']}/stream"
    events = list(sse_events(port, path, {**headers, **({"Accept-Encoding": "gzip"} if gzip else {})}))
    deltas = [e for e in events if e.name == "delta"]
    assert len(deltas) == 5 and events[-1].name == "done", [(e.name, e.data) for e in events]
    assert "".join(e.data["text"] for e in deltas) == events[-1].data["content"] == f"Echo: {text}"
    return deltas


def test_streams_arrive_through_nginx_chunk_by_chunk(app, nginx, fake_gemini):
    """Through deploy/nginx.conf each delta reaches the client as Gemini produces it (0.3 s apart), not all at the
    end; so too through an nginx that buffers and gzips event streams, because the app's streams say
    X-Accel-Buffering: no. The control, that nginx told to ignore the header, delivers them together at the end."""
    for port, gzip in ((nginx.port, False), (nginx.extra_ports[0], True)):
        deltas = _stream_through(app, port, fake_gemini, f"stream through port {port}", gzip=gzip)
        gaps = [b.at - a.at for a, b in zip(deltas, deltas[1:])]
        assert all(gap >= 0.15 for gap in gaps), (port, gaps)
        assert deltas[-1].at - deltas[0].at >= 0.9, (port, gaps)
    held = _stream_through(app, nginx.extra_ports[1], fake_gemini, "held back", gzip=True)
    assert held[-1].at - held[0].at < 0.1, "the control: a buffering nginx delivers the deltas together"


def _big_png(side: int = 1000) -> bytes:
    """A valid PNG of about 3 MB (stored without compression): over nginx's default body limit of 1 MiB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((x * 7 + y) % 256 for x in range(side * 3)) for y in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 0)) + chunk(b"IEND", b""))


def test_uploads_pass_nginx_up_to_the_apps_own_limit(app, nginx):
    """POST /files has a body limit of its own in deploy/nginx.conf: a 3 MB image reaches the app (201), which a
    server-wide 1 MiB limit would refuse; every other route keeps the small limit."""
    import http.client
    headers = auth_headers(app, create_user(app))
    image = _big_png()
    assert len(image) > 2 * 1024 * 1024
    boundary = "gemini-backend-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.request("POST", "/files", body=body,
                     headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    assert resp.status == 201, answer[:300]
    status, _, _ = request(nginx.port, "POST", "/chatroom", headers, {"name": "x" * (2 * 1024 * 1024)})
    assert status == 413
