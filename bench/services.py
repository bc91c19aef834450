"""The services the benchmark drives: a fresh database, a Redis DB, fake Gemini, gunicorn and the Huey consumer."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.backends import OWNER_KEY
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
# Secrets of production length: APP_ENV=production refuses anything shorter or the development defaults.
JWT_SECRET = "bench-jwt-" + uuid.uuid4().hex + uuid.uuid4().hex
OTP_SECRET = "bench-otp-" + uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class Proc:
    """A child process started in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path
    port: int | None = None
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        """The last lines the process printed."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """One run's database, Redis DB and processes; close() undoes all of it."""

    web_workers: int | None = None  # None: gunicorn.conf.py's default, as production runs it
    web_threads: int | None = None
    web_worker_class: str | None = None  # None: gunicorn.conf.py's (gevent)
    consumer_type: str | None = None  # None: the consumer's default (greenlet)
    latency: float = 0.2
    redis_db: int | None = None
    dbname: str = field(default_factory=lambda: f"gb_bench_{os.getpid()}")
    procs: list[Proc] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gb-bench-")))
    env: dict[str, str] = field(default_factory=dict)
    created_db: bool = False

    # -- setup ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the database and Redis DB, migrate, start fake Gemini; os.environ gets the app's settings."""
        import redis
        self.redis_db = self.redis_db if self.redis_db is not None else pick_redis_db()
        self.redis_url = f"{REDIS_SERVER}/{self.redis_db}"
        self.database_url = f"{PG_SERVER}/{self.dbname}"
        self.gemini_port = free_port()
        self.env = {
            "FLASK_APP": "wsgi", "PYTHONUNBUFFERED": "1",
            "APP_ENV": "production", "JWT_SECRET": JWT_SECRET, "OTP_SECRET": OTP_SECRET, "OTP_DELIVERY": "log",
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "GEMINI_API_KEY": "bench-key", "GEMINI_BASE_URL": f"http://127.0.0.1:{self.gemini_port}",
            "PRO_MINUTE_LIMIT": "1000000", "JWT_ACCESS_TOKEN_EXPIRES": "7200",
            "INSTANCE_PATH": str(self.workdir / "instance"),
        }
        # Only explicit overrides: without them gunicorn.conf.py and the consumer use production's defaults.
        if self.web_workers is not None:
            self.env["WEB_CONCURRENCY"] = str(self.web_workers)
        if self.web_threads is not None:
            self.env["GUNICORN_THREADS"] = str(self.web_threads)
        if self.web_worker_class is not None:
            self.env["GUNICORN_WORKER_CLASS"] = self.web_worker_class
        if self.consumer_type is not None:
            self.env["WORKER_TYPE"] = self.consumer_type
        # Settings the caller's shell may carry would make this run differ from production's defaults.
        for name in ("CHATROOM_CACHE_TTL", "CHATROOM_CACHE", "HUEY_IMMEDIATE", "QUEUE_URL", "LOG_LEVEL",
                     "GUNICORN_ACCESS_LOG", "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "GEMINI_RESPONSE_CACHE_TTL",
                     "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "WORKER_THREADS",
                     "PROMETHEUS_MULTIPROC_DIR", "METRICS_PORT", "METRICS_TOKEN"):
            os.environ.pop(name, None)
        for name in [name for name in os.environ if name.startswith(("GUNICORN_", "WORKER_", "DB_POOL", "CONSUMER_"))]:
            os.environ.pop(name)
        os.environ.update(self.env)  # the in-process app that seeds rows must see the same stores
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.set(OWNER_KEY, os.getpid(), ex=4 * 3600)  # still ours after the flush: test runs keep off it
        self._admin(f'CREATE DATABASE "{self.dbname}"')
        self.created_db = True
        migrate = subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=self.child_env(),
                                 capture_output=True, text=True)
        if migrate.returncode != 0:
            raise RuntimeError(f"flask db upgrade failed:\n{migrate.stdout}\n{migrate.stderr}")
        gemini = self.spawn("fake-gemini", [sys.executable, "-m", "tests.fakes.gemini", "--port",
                                            str(self.gemini_port), "--latency", str(self.latency), "--quiet"])
        wait_port(self.gemini_port, gemini)

    def start_paced_gemini(self, first_chunk_delay: float, chunk_count: int, chunk_delay: float) -> tuple[Proc, str]:
        """The asyncio fake Gemini at a real model's pace (bench/fake_gemini.py), and its base URL."""
        port = free_port()
        proc = self.spawn("fake-gemini-paced", [sys.executable, "-m", "bench.fake_gemini", "--port", str(port),
                                                "--first-chunk-delay", str(first_chunk_delay),
                                                "--chunk-count", str(chunk_count), "--chunk-delay", str(chunk_delay)],
                          port=port, stop_signal=signal.SIGTERM)
        wait_port(port, proc)
        return proc, f"http://127.0.0.1:{port}"

    def child_env(self, **overrides: str) -> dict[str, str]:
        """The environment of a child process."""
        return {**os.environ, **self.env, **overrides}

    def spawn(self, name: str, args: list[str], port: int | None = None, stop_signal: int = signal.SIGTERM,
              **env: str) -> Proc:
        """Start a child in its own process group (Ctrl-C reaches only us; we stop it in order)."""
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(args, cwd=ROOT, env=self.child_env(**env), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(name, popen, log, port, stop_signal)
        self.procs.append(proc)
        return proc

    def start_web(self, name: str, app: str = "wsgi:app", health: str = "/healthz", **env: str) -> Proc:
        """gunicorn with the project's gunicorn.conf.py, ready when `health` answers 200."""
        port = free_port()
        proc = self.spawn(name, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", app], port=port, PORT=str(port),
                          GUNICORN_BIND=f"127.0.0.1:{port}", **env)
        wait_http(f"http://127.0.0.1:{port}{health}", proc)
        return proc

    def start_consumer(self, threads: int | None = None, name: str = "consumer", **env: str) -> Proc:
        """The Huey consumer as production runs it (bare `flask worker`, or `-w W` when asked); SIGINT stops it
        gracefully."""
        args = [str(BIN / "flask"), "worker"] + ([] if threads is None else ["-w", str(threads)])
        return self.spawn(name, args, stop_signal=signal.SIGINT, **env)

    def stop(self, proc: Proc, timeout: float = 15, signum: int | None = None) -> None:
        """Stop one process group: its graceful signal (or signum), then SIGKILL."""
        if proc.popen.poll() is None:
            try:
                os.killpg(proc.pid, signum or proc.stop_signal)
                proc.popen.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                proc.popen.wait()
        kill_group(proc.pid)  # anything of the group left behind (gunicorn workers, consumer threads' children)
        if proc in self.procs:
            self.procs.remove(proc)

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, flush the Redis DB, drop the database; never raises."""
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep cleaning up
                print(f"cleanup: stopping {proc.name}: {exc}", file=sys.stderr)
        try:
            import redis
            if self.redis_db is not None:
                redis.Redis.from_url(self.redis_url).flushdb()
        except Exception as exc:
            print(f"cleanup: flushing Redis DB {self.redis_db}: {exc}", file=sys.stderr)
        if self.created_db:
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
                self.created_db = False
            except Exception as exc:
                print(f"cleanup: dropping {self.dbname}: {exc}", file=sys.stderr)

    def _admin(self, sql: str) -> None:
        import psycopg2
        conn = psycopg2.connect(f"{PG_SERVER}/postgres", connect_timeout=5)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()


# -- process helpers ----------------------------------------------------------------------------

def pick_redis_db() -> int:
    """A Redis DB of this run's own, from 14 down: claimed with the same owner key as test runs
    (tests/backends.OWNER_KEY), so a test run and a bench never share (and flush) one DB."""
    import atexit

    import redis
    for number in range(14, 1, -1):
        client = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
        if client.dbsize() == 0 and client.set(OWNER_KEY, os.getpid(), nx=True, ex=4 * 3600):
            atexit.register(client.delete, OWNER_KEY)
            return number
    raise RuntimeError("no free Redis DB between 2 and 14; pass --redis-db N")


def kill_group(pid: int) -> None:
    """SIGKILL a process group, if any of it is left."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_port(port: int, proc: Proc, timeout: float = 15) -> None:
    """Wait until something accepts connections on port."""
    _wait(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(), proc, timeout)


def wait_http(url: str, proc: Proc, timeout: float = 40) -> None:
    """Wait until url answers 200."""
    _wait(lambda: urllib.request.urlopen(url, timeout=2).close(), proc, timeout)


def _wait(probe, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except OSError:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not come up in {timeout:.0f} s:\n{proc.tail()}") from None
            time.sleep(0.2)


def worker_pids(master: Proc) -> list[int]:
    """The gunicorn worker processes of a master."""
    out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
