"""The Huey consumer: the worker app, the periodic upkeep, and the process that runs them.

Run it with `flask worker` (greenlet workers by default; see WORKER_TYPE and WORKER_CONCURRENCY), or
`huey_consumer gemini_backend.tasks.huey -k thread -w 8`. Either way tasks run in the worker app
(create_worker_app), which leaves out the web side it never uses.
"""
from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from flask import Flask
from huey import crontab

from gemini_backend import ai, logs, metrics
from gemini_backend.config import check_production, load_config
from gemini_backend.extensions import bind_storage
from gemini_backend.services import replies, upkeep
from gemini_backend.taskqueue import app_periodic_task, bind_app, bound_app, huey

log = logging.getLogger(__name__)

__all__ = ["huey", "create_worker_app", "run_consumer", "exec_consumer", "sweep_replies", "purge_expired"]


def create_worker_app() -> Flask:
    """The app tasks run in: settings, logging, database, cache, the quota counters' storage and the queue.

    The consumer serves no HTTP, so it leaves out blueprints, OpenAPI, JWT, Stripe and migrations, whose
    imports would only add to its memory.
    """
    settings = load_config()
    check_production(settings)
    app = Flask("gemini_backend", instance_path=settings["INSTANCE_PATH"])
    app.config.update(settings)
    logs.configure(app)
    bind_storage(app)  # services.quota gives units back through the limiter's storage
    return app


def run_consumer(workers: int, worker_type: str = "greenlet", graceful_signal: str = "INT") -> None:
    """Run the Huey consumer here until stopped (graceful_signal or SIGINT: running tasks finish first)."""
    from huey.consumer_options import ConsumerConfig

    app = _prepare_consumer()
    # Redis queues block on reads; the SQLite queue is polled, so poll it often (replies start within 0.5 s).
    polling = {} if app.config["QUEUE_URL"] else {"initial_delay": 0.05, "max_delay": 0.5}
    config = ConsumerConfig(workers=workers, worker_type=worker_type, graceful_signal=graceful_signal,
                            scheduler_interval=5, check_worker_health=True, **polling)
    config.validate()
    config.setup_logger()
    if app.config["WORKER_METRICS_PORT"]:
        metrics.serve(app.config["WORKER_METRICS_PORT"], app.config["METRICS_TOKEN"])
    if app.config["LOG_LEVEL"] != "DEBUG":
        # Per task, Huey logs two lines and the HTTP client one; the reply's own line says what they say.
        for name in ("huey", "httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("huey.consumer").setLevel(logging.INFO)  # start, stop and worker health stay visible
    huey.create_consumer(**config.values).run()


# What exec_consumer runs. Greenlet workers need gevent's patches before anything else is imported (our package
# included: it loads libraries that make locks). A Ctrl-C that lands before the consumer has set up its signal
# handling stops it quietly, as the flask command line does.
_CONSUMER_MAIN = """
import sys
try:
    if sys.argv[2] == "greenlet":
        from gevent import monkey
        monkey.patch_all()
    from gemini_backend.tasks import run_consumer
    run_consumer(int(sys.argv[1]), sys.argv[2], sys.argv[3])
except KeyboardInterrupt:
    sys.exit(130)
"""


def exec_consumer(workers: int, worker_type: str = "greenlet", graceful_signal: str = "INT") -> NoReturn:
    """Replace this process with a fresh interpreter that runs run_consumer (same pid: signals still reach it)."""
    # The package must stay importable when the command line found it through FLASK_APP's folder.
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    args = [sys.executable, "-c", _CONSUMER_MAIN, str(workers), worker_type, graceful_signal]
    os.execve(sys.executable, args, {**os.environ, "PYTHONPATH": path})


def _prepare_consumer() -> Flask:
    """Make and bind the worker app and load the Gemini SDK in this (main) thread, before the workers start."""
    app = create_worker_app()
    bind_app(app)
    ai.preload(app.config)
    # What is loaded by now lives as long as the process: keep the collector from re-scanning it on every
    # full collection (a pass over those ~175k objects stalls every worker for ~50 ms).
    gc.freeze()
    return app


@app_periodic_task(crontab(minute="*"))
def sweep_replies() -> dict[str, int]:
    """Re-enqueue stuck replies and fail those out of attempts (every minute)."""
    return replies.sweep_replies()


@huey.on_startup()
def sweep_at_startup() -> None:
    """A consumer that starts (after a crash, say) sweeps at once instead of within the minute."""
    try:
        with bound_app().app_context():
            replies.sweep_replies()
    except Exception:
        log.exception("startup sweep failed; the periodic sweep will retry")


@app_periodic_task(crontab(minute="*/15"))
def purge_expired() -> dict[str, int]:
    """Delete expired OTP challenges, revoked-token rows past expiry and idempotency keys over 24 h old."""
    counts = upkeep.purge_expired_rows()
    log.info("purged expired rows: %s", counts)
    return counts


if os.path.basename(sys.argv[0]).startswith("huey_consumer"):
    # Plain `huey_consumer gemini_backend.tasks.huey` imports this module in its main thread: make the app and
    # load the Gemini SDK here, before worker threads start (their concurrent first imports can deadlock).
    _prepare_consumer()
