"""Huey wiring: the queue instance, tasks that run inside an app context, periodic upkeep, and the consumer.

Run the consumer with `flask worker` or `huey_consumer gemini_backend.tasks.huey -k thread -w 4`. Either way
it runs in the worker app (create_worker_app), which leaves out the web side it never uses.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, NoReturn

from flask import Flask
from huey import crontab
from huey.exceptions import RetryTask
from huey.storage import RedisStorage

from gemini_backend.extensions import huey

log = logging.getLogger(__name__)
_app: Flask | None = None
_app_lock = threading.Lock()

__all__ = ["huey", "bind_app", "app_task", "app_periodic_task", "generate_reply", "sweep_replies",
           "enqueue_reply", "create_worker_app", "run_consumer", "exec_consumer"]


def bind_app(app: Flask) -> None:
    """Use this app for task contexts (the web process binds its own; the consumer uses the worker app)."""
    global _app
    _app = app


def _get_app() -> Flask:
    """The bound app, or the worker app made from the environment."""
    global _app
    with _app_lock:
        if _app is None:
            from gemini_backend import ai
            _app = create_worker_app()
            ai.preload()
        return _app


def create_worker_app() -> Flask:
    """The app tasks run in: settings, logging, database, cache and the quota counters' storage.

    The consumer serves no HTTP, so it leaves out blueprints, OpenAPI, JWT, Stripe and migrations, whose
    imports would only add to its memory.
    """
    from gemini_backend import logs
    from gemini_backend.config import check_production, load_config
    from gemini_backend.extensions import engine_options, cache, db, limiter

    settings = load_config()
    check_production(settings)
    app = Flask("gemini_backend", instance_path=settings["INSTANCE_PATH"])
    app.config.update(settings)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    logs.configure(app)
    db.init_app(app)
    limiter.init_app(app)  # services.quota gives units back through limiter.storage
    cache.init_app(app)
    app.extensions["huey"] = huey
    return app


def run_consumer(workers: int, worker_type: str = "thread", graceful_signal: str = "INT") -> None:
    """Run the Huey consumer here until stopped (graceful_signal or SIGINT: running tasks finish first)."""
    from huey.consumer_options import ConsumerConfig

    app = _prepare_consumer()
    # Redis queues block on reads; the SQLite queue is polled, so poll it often (replies start within 0.5 s).
    polling = {} if app.config["QUEUE_URL"] else {"initial_delay": 0.05, "max_delay": 0.5}
    config = ConsumerConfig(workers=workers, worker_type=worker_type, graceful_signal=graceful_signal,
                            scheduler_interval=5, check_worker_health=True, **polling)
    config.validate()
    config.setup_logger()
    if app.config["LOG_LEVEL"] != "DEBUG":
        # Per task, Huey logs two lines and the HTTP client one; the reply's own line says what they say.
        for name in ("huey", "httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("huey.consumer").setLevel(logging.INFO)  # start, stop and worker health stay visible
    huey.create_consumer(**config.values).run()


# What exec_consumer runs. A Ctrl-C that lands before the consumer has set up its signal handling stops it
# quietly, as the flask command line does.
_CONSUMER_MAIN = """
import sys
try:
    from gemini_backend.tasks import run_consumer
    run_consumer(int(sys.argv[1]), sys.argv[2], sys.argv[3])
except KeyboardInterrupt:
    sys.exit(130)
"""


def exec_consumer(workers: int, worker_type: str = "thread", graceful_signal: str = "INT") -> NoReturn:
    """Replace this process with a fresh interpreter that runs run_consumer (same pid: signals still reach it)."""
    # The package must stay importable when the command line found it through FLASK_APP's folder.
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    args = [sys.executable, "-c", _CONSUMER_MAIN, str(workers), worker_type, graceful_signal]
    os.execve(sys.executable, args, {**os.environ, "PYTHONPATH": path})


def _prepare_consumer() -> Flask:
    """Make the app and load the Gemini SDK in this (main) thread, before the worker threads start."""
    from gemini_backend import ai
    app = _get_app()
    ai.preload(app.config)
    # What is loaded by now lives as long as the process: keep the collector from re-scanning it on every
    # full collection (a pass over those ~175k objects stalls every worker thread for ~50 ms).
    gc.freeze()
    return app


def _in_app_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Exceptions propagate on purpose: Huey's retries and retry_delay depend on them.
        with _get_app().app_context():
            return fn(*args, **kwargs)
    return wrapper


def app_task(**task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.task that runs the function inside an app context (Huey's Flask recipe)."""
    def decorator(fn: Callable[..., Any]):
        return huey.task(**task_options)(_in_app_context(fn))
    return decorator


def app_periodic_task(schedule: Callable, **task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.periodic_task that runs the function inside an app context."""
    def decorator(fn: Callable[..., Any]):
        return huey.periodic_task(schedule, **task_options)(_in_app_context(fn))
    return decorator


@app_task(retries=3, retry_delay=10)
def generate_reply(reply_id: int) -> str:
    """Answer one pending reply (retried by Huey on transient provider errors, with backoff)."""
    from gemini_backend.services.replies import RetryLater, generate_reply as produce
    try:
        return produce(reply_id)
    except RetryLater as exc:
        # RetryTask does not use up Huey's own retries: our attempt counter in the database bounds them.
        raise RetryTask(delay=exc.delay) from None


def enqueue_reply(reply_id: int, along: tuple[Any, ...] | None = None) -> None:
    """Queue generate_reply; a failure is logged, not raised: the sweeper picks the reply up later.

    `along`: one more Redis command for REDIS_URL (a cache drop), sent in the same round trip as the task when
    the queue lives on that Redis too.
    """
    if along is not None and not _queue_shares_redis():
        _run_alone(along)
        along = None
    try:
        if along is None:
            generate_reply(reply_id)
            return
        # Huey's own enqueue, written out to share a pipeline: RedisStorage.enqueue is an LPUSH of the task.
        data = huey.serialize_task(generate_reply.s(reply_id))
        pipe = huey.storage.conn.pipeline(transaction=False)
        pipe.execute_command(*along)
        pipe.lpush(huey.storage.queue_key, data)
        along_outcome, queued = pipe.execute(raise_on_error=False)
        if isinstance(along_outcome, Exception):
            log.warning("redis command %s failed: %s", along[0], along_outcome)
        if isinstance(queued, Exception):
            raise queued
    except Exception as exc:
        log.warning("could not enqueue reply %s (the sweeper will): %s", reply_id, exc)


def _queue_shares_redis() -> bool:
    """The queue is Huey's plain Redis storage on REDIS_URL (the default), so one connection reaches both."""
    from flask import current_app
    cfg = current_app.config
    return type(huey.storage) is RedisStorage and bool(cfg["REDIS_URL"]) and cfg["QUEUE_URL"] == cfg["REDIS_URL"]


def _run_alone(command: tuple[Any, ...]) -> None:
    """Send one Redis command on its own; a failure is logged (a cache write that fails only ages out)."""
    from gemini_backend.extensions import get_redis
    try:
        get_redis().execute_command(*command)
    except Exception as exc:
        log.warning("redis command %s failed: %s", command[0], exc)


@app_periodic_task(crontab(minute="*"))
def sweep_replies() -> dict[str, int]:
    """Re-enqueue stuck replies and fail those out of attempts (every minute)."""
    from gemini_backend.services.replies import sweep_replies as sweep
    return sweep()


@huey.on_startup()
def sweep_at_startup() -> None:
    """A consumer that starts (after a crash, say) sweeps at once instead of within the minute."""
    try:
        with _get_app().app_context():
            from gemini_backend.services.replies import sweep_replies as sweep
            sweep()
    except Exception:
        log.exception("startup sweep failed; the periodic sweep will retry")


@app_periodic_task(crontab(minute="*/15"))
def purge_expired() -> dict[str, int]:
    """Delete expired OTP challenges, revoked-token rows past expiry and idempotency keys over 24 h old."""
    from gemini_backend.services.upkeep import purge_expired_rows
    counts = purge_expired_rows()
    log.info("purged expired rows: %s", counts)
    return counts


if os.path.basename(sys.argv[0]).startswith("huey_consumer"):
    # Plain `huey_consumer gemini_backend.tasks.huey` imports this module in its main thread: make the app and
    # load the Gemini SDK here, before worker threads start (their concurrent first imports can deadlock).
    _prepare_consumer()
