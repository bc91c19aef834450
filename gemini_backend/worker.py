"""The Huey consumer's entry module: `huey_consumer gemini_backend.worker.huey -k thread -w 8`, or with greenlet
workers (WORKER_TYPE=greenlet, the default) under gevent's own launcher, which patches before anything loads:
`python -m gevent.monkey --module huey.bin.huey_consumer gemini_backend.worker.huey -k greenlet -w 256`.
`flask worker` runs exactly that with the settings' WORKER_TYPE and WORKER_CONCURRENCY.
"""
import signal

from gevent import monkey

from gemini_backend.config import load_config

# Ctrl-C while starting up just stops the process (nothing has been taken off the queue yet); the consumer sets
# its own handling (SIGINT: finish running replies) once it runs.
signal.signal(signal.SIGINT, signal.SIG_DFL)

if load_config()["WORKER_TYPE"] == "greenlet" and not monkey.is_module_patched("socket"):
    # Started by a plain `huey_consumer -k greenlet`: patch now. Huey has loaded redis by now, so gevent warns
    # that it patched ssl late; the launcher above avoids that.
    monkey.patch_all()

import gc  # noqa: E402  (everything below runs on patched sockets and locks)
import logging  # noqa: E402

from gemini_backend import ai, create_app, metrics, tasks  # noqa: E402
from gemini_backend.taskqueue import huey  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["app", "huey"]


class _WithoutTaskLines(logging.Filter):
    """Drops Huey's two INFO lines per task (the reply logs its own); the consumer's start, stop and health lines
    come from child loggers, which this filter does not see."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


app = create_app(profile="worker")
if app.config["LOG_LEVEL"] != "DEBUG":
    logging.getLogger("huey").addFilter(_WithoutTaskLines())
    for name in ("httpx", "httpx2"):  # one line per Gemini request
        logging.getLogger(name).setLevel(logging.WARNING)
if app.config["WORKER_METRICS_PORT"]:
    metrics.serve(app.config["WORKER_METRICS_PORT"], app.config["METRICS_TOKEN"])
# A consumer that starts (after a crash, say) sweeps at once instead of within the minute; once, here, as Huey's
# startup hooks run once per worker.
try:
    tasks.sweep_replies.call_local()
except Exception:
    log.exception("startup sweep failed; the periodic sweep will retry")
# Load the Gemini SDK here, in the main thread: worker threads importing it at once can deadlock.
ai.preload(app.config)
# What is loaded by now lives as long as the process: keep the collector from re-scanning it on every full
# collection (a pass over those ~175k objects stalls every worker for ~50 ms).
gc.freeze()
