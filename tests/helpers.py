"""Small helpers shared by tests: subprocesses with the test environment, free ports, polling."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody uses right now, below the kernel's ephemeral range.

    A port the kernel hands out for binding to port 0 comes from the range it also uses for outgoing
    connections, so another process's connection could take it before the server we start binds it.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded machine: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def child_env(**overrides: str) -> dict[str, str]:
    """The test run's environment (backend URLs, instance folder) plus overrides, for child processes."""
    env = dict(os.environ)
    env.update(FLASK_APP="wsgi", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a child in its own process group; its output goes to a file (a pipe nobody reads would fill
    up and block the child's logging)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_file = log  # type: ignore[attr-defined]
    return proc


def output_of(proc: subprocess.Popen) -> str:
    """What the child has printed so far."""
    log = proc.log_file  # type: ignore[attr-defined]
    log.seek(0)
    return log.read().decode(errors="replace")


def start_worker(threads: int = 2, wait: bool = True, **env: str) -> subprocess.Popen:
    """Start a real Huey consumer (`flask worker`) in its own process group; wait: until it consumes."""
    proc = _spawn([str(BIN / "flask"), "worker", "-w", str(threads)], child_env(**env))
    if wait:
        wait_until_consuming(proc)
    return proc


def wait_until_consuming(proc: subprocess.Popen) -> None:
    """Wait until a consumer started by start_worker takes tasks."""
    wait_for(lambda: "Huey consumer started" in output_of(proc), timeout=60, what="the consumer to start", proc=proc)


def start_web(port: int, workers: int = 1, threads: int = 8, **env: str) -> subprocess.Popen:
    """Start gunicorn with the project's config on port and wait until /healthz answers."""
    proc = _spawn([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                  child_env(PORT=str(port), WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads),
                            GUNICORN_ACCESS_LOG="/dev/null", **env))
    import urllib.request
    wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200,
             timeout=30, what="gunicorn to answer /healthz", proc=proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = 2, timeout: float = 30) -> str:
    """Signal the process group, wait for exit, and return what it printed."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    return output_of(proc)


def wait_for(predicate: Callable[[], object], timeout: float = 10, interval: float = 0.05, what: str = "condition",
             proc: subprocess.Popen | None = None):
    """Poll predicate until it returns a truthy value (exceptions count as falsy) or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited while waiting for {what}: {output_of(proc)[-3000:]}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


def http_json(port: int, method: str, path: str, headers: dict | None = None, body=None,
              timeout: float = 30) -> tuple[int, object, float]:
    """One JSON request to a server on 127.0.0.1: (status, decoded body, seconds taken); error statuses included."""
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})},
                                 data=json.dumps(body).encode() if body is not None else None)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null"), time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), time.monotonic() - started
