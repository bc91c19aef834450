"""Prometheus metrics (API.md, Operations): the metric objects, the queue collector, GET /metrics and request timing.

Every process (gunicorn workers, the Huey consumer) writes its samples into one folder, PROMETHEUS_MULTIPROC_DIR
(default `<instance>/metrics`), and a scrape of any of them adds up the whole folder.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask, Response, g, request

from gemini_backend.config import export_metrics_directory

if TYPE_CHECKING:
    from gemini_backend.ai import Usage

log = logging.getLogger(__name__)


# Before prometheus_client is imported: it picks its multi-process value class from the environment at import
# (importing the package has already exported the folder; this covers a process that loaded metrics alone).
DIRECTORY = export_metrics_directory()

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.exposition import ThreadingWSGIServer  # noqa: E402

HTTP_REQUESTS = Histogram("gemini_backend_http_request_duration_seconds",
                          "Time to the response headers, by Flask route (url rule), method and status.",
                          ["route", "method", "status"])
REPLIES = Counter("gemini_backend_replies_finished", "Replies that ended, by outcome.", ["outcome"])
REPLY_DURATION = Histogram("gemini_backend_reply_duration_seconds",
                           "From the attempt's claim to the stored outcome, by outcome.", ["outcome"],
                           buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
FIRST_CHUNK = Histogram("gemini_backend_reply_first_chunk_seconds",
                        "From the attempt's claim to Gemini's first streamed chunk, by model.", ["model"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
TOKENS = Counter("gemini_backend_gemini_tokens", "Gemini tokens by direction (in: prompt, out: answer and thoughts).",
                 ["direction", "model"])
# livesum: a worker that exits takes its open streams with it (child_exit marks it dead).
OPEN_STREAMS = Gauge("gemini_backend_open_streams", "SSE reply streams being served.", multiprocess_mode="livesum")


class QueueCollector:
    """gemini_backend_queue_depth, read from Huey at scrape time; a queue that does not answer leaves it out."""

    def describe(self) -> Iterable[Metric]:
        return []  # so registering does not call collect (and reach the queue) before any scrape

    def collect(self) -> Iterable[Metric]:
        from gemini_backend.taskqueue import huey  # at scrape time: the consumer never loads this collector
        try:
            depth = huey.pending_count()
        except Exception as exc:  # a scrape must still show everything else while Redis is down
            log.warning("metrics: queue depth unavailable: %s", exc)
            return
        yield GaugeMetricFamily("gemini_backend_queue_depth", "Tasks waiting in the Huey queue.", value=depth)


def _registry() -> CollectorRegistry:
    """What a scrape shows: every process's samples from DIRECTORY, plus the queue depth."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client was imported before DIRECTORY was exported: only this process's samples exist.
        log.warning("metrics: prometheus_client was loaded before gemini_backend; /metrics shows this process only")
        REGISTRY.register(QueueCollector())
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector())
    return registry


SCRAPE_REGISTRY = _registry()


def reply_finished(outcome: str, claimed_at: float | None) -> None:
    """Count a stored outcome; claimed_at (time.monotonic) adds its duration."""
    REPLIES.labels(outcome).inc()
    if claimed_at is not None:
        REPLY_DURATION.labels(outcome).observe(time.monotonic() - claimed_at)


def first_chunk(model: str, claimed_at: float) -> None:
    """Record the wait for Gemini's first chunk."""
    FIRST_CHUNK.labels(model).observe(time.monotonic() - claimed_at)


def count_tokens(model: str, usage: Usage) -> None:
    """Add one Gemini call's usage to the token counters."""
    if usage.prompt_tokens:
        TOKENS.labels("in", model).inc(usage.prompt_tokens)
    if usage.billed_output_tokens:
        TOKENS.labels("out", model).inc(usage.billed_output_tokens)


def _authorized(header: str | None, token: str | None) -> bool:
    """No token configured, or `Bearer <token>` (compared in constant time)."""
    return not token or hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


def metrics_view() -> Response:
    """GET /metrics in the Prometheus text format."""
    from flask import current_app
    if not _authorized(request.headers.get("Authorization"), current_app.config["METRICS_TOKEN"]):
        from gemini_backend.errors import error_response
        return error_response(401, "unauthorized", "Send the metrics token as `Authorization: Bearer <token>`.",
                              headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(SCRAPE_REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"  # raw paths would explode
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).observe(time.perf_counter() - started)
    return response


def install(app: Flask) -> None:
    """Time every request and serve GET /metrics, unless METRICS_PORT moves it off the public port."""
    # First before_request, so requests that an earlier hook answers (415, 429) are timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    # First in the list, so it runs last (Flask runs after_request hooks in reverse) and sees the final status.
    app.after_request_funcs.setdefault(None, []).insert(0, _observe)
    if not app.config["METRICS_PORT"]:
        app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])


def clear_stale(directory: str = DIRECTORY) -> None:
    """Delete the sample files of processes that are gone (and this one's): a restarted server starts from zero."""
    for path in Path(directory).glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead(pid: int) -> None:
    """Drop an exited process's live gauges (open streams); its counters stay so totals never go down."""
    multiprocess.mark_process_dead(pid, DIRECTORY)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds would flood the log
        pass


def _port_app(token: str | None) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the metrics port: GET /metrics (any path) behind the same bearer token."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _authorized(environ.get("HTTP_AUTHORIZATION"), token):
            from gemini_backend.errors import error_body
            body = json.dumps(error_body(401, "unauthorized", "Send the metrics token as "
                                         "`Authorization: Bearer <token>`.")).encode()
            start_response("401 Unauthorized", [("Content-Type", "application/json"),
                                                ("WWW-Authenticate", "Bearer")])
            return [body]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(SCRAPE_REGISTRY)]
    return app


def serve(port: int, token: str | None = None, addr: str = "0.0.0.0") -> ThreadingWSGIServer:
    """Serve the metrics on their own port from a daemon thread (the gunicorn master's, when METRICS_PORT is set)."""
    server = make_server(addr, port, _port_app(token), ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
