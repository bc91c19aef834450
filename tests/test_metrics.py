"""GET /metrics: Prometheus text, request timing by route, the token and the separate port, and samples written
by the real consumer process showing up in the web process's scrape."""
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chat_helpers import ChatUser
from tests.helpers import free_port, start_web, stop, wait_for

REQUESTS = "gemini_backend_http_request_duration_seconds"


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """The samples of one GET /metrics, keyed by (sample name, labels)."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.data
    return parse(r.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_prometheus_text_with_the_queue_depth(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    samples = parse(r.get_data(as_text=True))
    assert value(samples, "gemini_backend_queue_depth") == 0
    assert ("gemini_backend_open_streams", frozenset()) in samples


def test_requests_are_counted_by_route_rule_method_and_status(app, client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/chatroom/987654").status_code == 401
    after = scrape(client)

    def delta(**labels):
        return value(after, REQUESTS + "_count", **labels) - value(before, REQUESTS + "_count", **labels)

    assert delta(route="/healthz", method="GET", status="200") == 3
    assert delta(route="unmatched", method="GET", status="404") == 1
    room_rule = next(r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/chatroom/<")
                     and r.rule.count("<") == 1 and "GET" in r.methods)
    assert delta(route=room_rule, method="GET", status="401") == 1
    assert not [key for key in after if "987654" in str(key)], "raw paths must never become labels"


def test_the_metrics_token_is_required_when_set(make_app):
    client = make_app(METRICS_TOKEN="scrape-secret").test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-secret"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401
        assert r.json["error"] == "unauthorized" and r.json["code"] == 401 and r.json["message"]
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_metrics_port_takes_metrics_off_the_app(make_app):
    client = make_app(METRICS_PORT=9464).test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_gunicorn_serves_metrics_on_their_own_port_for_all_workers(_schema):
    """The master's metrics port adds up both workers' samples, behind the token; the app port has no /metrics."""
    port, metrics_port = free_port(), free_port()
    web = start_web(port, workers=2, METRICS_PORT=str(metrics_port), METRICS_TOKEN="tok")
    try:
        for _ in range(6):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert missing.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/metrics",
                                         headers={"Authorization": "Bearer tok"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            samples = parse(resp.read().decode())
        # start_web's readiness polls count too, so at least the six above.
        assert value(samples, REQUESTS + "_count", route="/healthz", method="GET", status="200") >= 6
        assert value(samples, REQUESTS + "_count", route="unmatched", method="GET", status="404") >= 1
    finally:
        output = stop(web)
    assert "Traceback" not in output, output[-3000:]


def test_a_reply_from_the_consumer_shows_in_the_web_scrape(app, client, gemini, worker):
    """Outcome, duration, first chunk and tokens are counted in the consumer process, read from the web's /metrics."""
    from gemini_backend.ai import DEFAULT_MODEL
    alice = ChatUser(app, client, pro=True)
    before = scrape(client)
    room = alice.room()
    posted = alice.say(room, "count my tokens please")
    reply = alice.finished_reply(room, posted["reply"]["id"])
    assert reply["status"] == "complete"
    model = app.config["GEMINI_MODEL"] or DEFAULT_MODEL

    def moved():
        after = scrape(client)
        return after if value(after, "gemini_backend_replies_finished_total", outcome="complete") > value(
            before, "gemini_backend_replies_finished_total", outcome="complete") else None

    after = wait_for(moved, timeout=10, what="the consumer's reply to reach /metrics")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gemini_backend_replies_finished_total", outcome="complete") == 1
    assert delta("gemini_backend_reply_duration_seconds_count", outcome="complete") == 1
    assert delta("gemini_backend_reply_first_chunk_seconds_count", model=model) == 1
    # The fake reports its usage in Gemini's final chunk: about a token per 4 characters.
    assert delta("gemini_backend_gemini_tokens_total", direction="out", model=model) == len(reply["content"]) // 4
    assert delta("gemini_backend_gemini_tokens_total", direction="in", model=model) > 0


def test_open_streams_are_counted_while_served(app, client, gemini, worker):
    alice = ChatUser(app, client, pro=True)
    room = alice.room()
    posted = alice.say(room, "stream me")
    alice.finished_reply(room, posted["reply"]["id"])
    idle = value(scrape(client), "gemini_backend_open_streams")
    r = alice.client.get(f"/chatroom/{room}/message/{posted['reply']['id']}/stream", headers=alice.headers,
                         buffered=False)
    chunks = iter(r.response)
    assert next(chunks).startswith(b":")  # the generator runs now, paused after its opening comment
    assert value(scrape(client), "gemini_backend_open_streams") == idle + 1
    r.close()
    assert value(scrape(client), "gemini_backend_open_streams") == idle

