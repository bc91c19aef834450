"""gunicorn settings; every value can be overridden from the environment."""
import os
import resource
import sys
from typing import Any

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# gevent workers: an open stream or long-poll costs a greenlet and a socket, not a thread (gunicorn patches the
# standard library before it loads the app; the app makes psycopg2 cooperate). One process per core, at most 4 by
# default so the database budget of the README holds on a big host (set WEB_CONCURRENCY to go past it).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, len(os.sched_getaffinity(0)))))
# Connections (open streams included) one gevent worker serves at once; more wait in the listen backlog.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "4000"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))  # gthread only (GUNICORN_WORKER_CLASS=gthread)
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's control socket lives in $HOME by default, where several servers on one host would share it.
control_socket_disable = os.environ.get("GUNICORN_CONTROL_SOCKET", "") == ""
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
# Behind a reverse proxy, trust X-Forwarded-* from it (set FORWARDED_ALLOW_IPS to its address).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _raise_open_files_limit() -> None:
    """Each open stream is a socket: lift the soft limit on open files to the hard one (the workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_open_files_limit()

# Prometheus: every worker and the Huey consumer write samples into PROMETHEUS_MULTIPROC_DIR (default
# instance/metrics), exported here in the master so the workers it forks inherit it.
from gemini_backend import metrics  # noqa: E402


def on_starting(server: Any) -> None:
    """Start the counters from zero: drop the sample files of processes that are gone (the master alone runs this)."""
    metrics.clear_stale()


def when_ready(server: Any) -> None:
    """With METRICS_PORT set, serve /metrics on that port from the master instead of the public one."""
    from gemini_backend.config import load_config
    cfg = load_config()
    if cfg["METRICS_PORT"]:
        metrics.serve(cfg["METRICS_PORT"], cfg["METRICS_TOKEN"])
        server.log.info("metrics on port %s", cfg["METRICS_PORT"])


def worker_int(worker: Any) -> None:
    """Quick shutdown (SIGINT, SIGQUIT; Ctrl-C): a gevent worker leaves at once. gunicorn would sys.exit() from
    a greenlet, which gevent reports as a SystemExit traceback; a graceful stop is SIGTERM either way."""
    if worker_class == "gevent":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server: Any, worker: Any) -> None:
    """A worker that exited has no open streams any more."""
    metrics.mark_dead(worker.pid)
