"""T4 (QUALITY.md): GET /metrics scraped before and after a run of the Postman collection against a real deployment
(a gunicorn host with two workers and a Huey consumer, PostgreSQL + Redis, the fake Gemini), behind METRICS_TOKEN.

The counters move exactly as the run did: for every (route, method, status) the request count grew by the number of
such requests newman made, and by nothing else; replies by outcome grew by the replies the run produced; tokens by
direction grew by what the fake Gemini reported for each call it answered.
"""
from __future__ import annotations

import http.client
import tempfile
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tests.conftest import WORKER_ENV
from tests.deploy.topology import SERVICES_ONLY, run_collection
from tests.fakes.gemini import _usage, default_reply
from tests.helpers import wait_for

pytestmark = [SERVICES_ONLY, pytest.mark.slow]

TOKEN = "deploy-scrape-token"
REQUESTS = "gemini_backend_http_request_duration_seconds"
REPLIES = "gemini_backend_replies_finished_total"
TOKENS = "gemini_backend_gemini_tokens_total"


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """One GET /metrics with the bearer token: the samples, keyed by (name, labels)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status == 200, text[:500]
    finally:
        conn.close()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: dict, after: dict, name: str) -> dict[frozenset, float]:
    """The samples of one name that changed between two scrapes, by labels."""
    keys = {labels for sample, labels in set(before) | set(after) if sample == name}
    deltas = {labels: after.get((name, labels), 0.0) - before.get((name, labels), 0.0) for labels in keys}
    return {labels: delta for labels, delta in deltas.items() if delta}


def route_of(app, method: str, path: str) -> str:
    """The Flask rule a request path is served by, as the metrics label it ("unmatched" for 404/405)."""
    adapter = app.url_map.bind("127.0.0.1")
    path = path.rstrip("/") or "/"  # http.StripTrailingSlash serves /chatroom/ as /chatroom
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except (NotFound, MethodNotAllowed):
        return "unmatched"
    return rule.rule


def test_metrics_move_as_the_postman_run_did(app, fleet, fake_gemini):
    fake_gemini.reset()
    fake_gemini.chunk_count = 1
    folder = tempfile.TemporaryDirectory(prefix="gb-metrics-")
    env = {**WORKER_ENV, "GEMINI_BASE_URL": fake_gemini.base_url, "METRICS_TOKEN": TOKEN,
           "PROMETHEUS_MULTIPROC_DIR": folder.name}  # this deployment's samples only
    try:
        web = fleet.web(workers=2, threads=8, **env)
        fleet.worker(threads=4, **env)
        before = scrape(web.port)
        run = run_collection(f"http://127.0.0.1:{web.port}")
        assert run.returncode == 0 and not run.failures(), "\n".join(run.failures()) + "\n" + run.output[-6000:]
        # The consumer counts the reply as it stores it, before the long-poll that saw it returns; wait anyway.
        after = wait_for(lambda: (lambda s: s if moved(before, s, REPLIES) else None)(scrape(web.port)), timeout=10,
                         what="the reply to reach /metrics")
    finally:
        fleet.close()
        folder.cleanup()

    # Requests: exactly the run's, by route rule, method and status (the scrapes themselves left out).
    made = Counter()
    for execution in run.executions:
        req, resp = execution["request"], execution["response"]
        path = "/" + "/".join(req["url"]["path"])
        made[(route_of(app, req["method"], path), req["method"], str(resp["code"]))] += 1
    counted = {(dict(labels)["route"], dict(labels)["method"], dict(labels)["status"]): delta
               for labels, delta in moved(before, after, REQUESTS + "_count").items()
               if dict(labels)["route"] != "/metrics"}
    assert counted == dict(made), {"newman": dict(made), "metrics": counted}
    assert len(made) >= 20 and any(status.startswith("4") for _, _, status in made)

    # Replies by outcome: the run produced four replies (its replay and retry made none): the first answer, its
    # regeneration, the edited question's and the one about the uploaded file. The collection stops the regeneration
    # at once, so that one ended `complete` (409: it had ended), or `stopped`: mid-stream, after a Gemini call, or
    # before any (then untimed).
    reply = run.response_json("Get reply (long-poll ?wait=5)")
    assert reply["status"] == "complete"
    assert run.response_json("Get the reply about the file (long-poll ?wait=5)")["status"] == "complete"
    stop = run.response_json("Stop reply")
    regenerated = "complete" if stop.get("error") == "not_stoppable" else stop["status"]
    assert regenerated in ("complete", "stopped"), stop
    called = regenerated == "complete" or bool(stop.get("content"))
    outcomes = Counter(["complete", "complete", "complete", regenerated])
    timed = Counter(["complete", "complete", "complete"] + ([regenerated] if called else []))
    assert moved(before, after, REPLIES) == {frozenset({"outcome": o}.items()): float(n) for o, n in outcomes.items()}
    assert moved(before, after, "gemini_backend_reply_duration_seconds_count") == {
        frozenset({"outcome": o}.items()): float(n) for o, n in timed.items()}

    # Tokens by direction: what the fake Gemini reported for each call it answered (one chunk per answer, which
    # carries its usage, so a stop after it leaves no call's tokens unreported).
    calls = fake_gemini.requests
    assert len(calls) == sum(timed.values())
    model = calls[0]["model"]
    usage = [_usage(call["body"], default_reply(call["body"])) for call in calls]
    assert moved(before, after, TOKENS) == {
        frozenset({"direction": "in", "model": model}.items()): float(sum(u["promptTokenCount"] for u in usage)),
        frozenset({"direction": "out", "model": model}.items()): float(sum(u["candidatesTokenCount"] for u in usage)),
    }
    assert moved(before, after, "gemini_backend_reply_first_chunk_seconds_count") == {
        frozenset({"model": model}.items()): float(len(calls))}
    # Nothing is left open or queued once the run is over.
    assert after[("gemini_backend_open_streams", frozenset())] == 0
    assert after[("gemini_backend_queue_depth", frozenset())] == 0
