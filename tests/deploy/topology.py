"""Deployment topologies for tests/deploy: Debian's PgBouncer and nginx, gunicorn hosts and Huey consumers.

Each is a real process in its own process group, on a free port, with its files in a temporary folder, and is
always stopped (killed if it does not stop) when the test or module ends, passing or failing. Nothing here
touches a system service: PgBouncer and nginx run from their binaries with configurations written here.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import BACKEND
from tests.helpers import (BIN, ROOT, _spawn, child_env, free_port, output_of, start_worker, stop, wait_for,
                           wait_until_consuming)

SERVICES_ONLY = pytest.mark.skipif(
    BACKEND.name != "services",
    reason="deployment topologies (PgBouncer, nginx, several hosts) run on PostgreSQL + Redis only: "
           "TEST_BACKEND=services")
NGINX_EXAMPLE = ROOT / "deploy" / "nginx.conf"
POSTMAN = ROOT / "postman"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"


# -- binaries ----------------------------------------------------------------------------------------------------

def binary(name: str, package: str) -> str:
    """The path of a system binary; skip saying what to install, or fail when REQUIRE_SERVICES is set (CI)."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = f"{name} is not installed: `apt-get install {package}` (Debian's package)"
    if name in ("pgbouncer", "nginx"):
        reason += f"; these tests start their own {name} on a free port, never the system service"
    if os.environ.get("REQUIRE_SERVICES"):
        pytest.fail(f"REQUIRE_SERVICES is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _unprivileged_user() -> str | None:
    """When run as root, the user PgBouncer switches to (it refuses to run as root): postgres, else nobody."""
    if os.geteuid() != 0:
        return None
    import pwd
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# -- processes -----------------------------------------------------------------------------------------------------

class Fleet:
    """Every process a test (or module) starts; close() stops what is still running, killing what will not stop."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen, name: str) -> subprocess.Popen:
        proc.name = name  # type: ignore[attr-defined]
        self._procs.append(proc)
        return proc

    def web(self, port: int | None = None, workers: int = 1, threads: int = 8, **env: str) -> subprocess.Popen:
        """A gunicorn host with the project's gunicorn.conf.py (as tests.helpers.start_web starts it), tracked
        before it is waited for, so a host that never answers is stopped too."""
        return self.webs(1, workers, threads, [port] if port else None, **env)[0]

    def webs(self, count: int, workers: int = 1, threads: int = 8, ports: list[int] | None = None,
             **env: str) -> list[subprocess.Popen]:
        """count gunicorn hosts on their own ports, started together, each answering /healthz."""
        hosts = []
        for port in ports or [free_port() for _ in range(count)]:
            proc = self.add(_spawn([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                   child_env(PORT=str(port), WEB_CONCURRENCY=str(workers),
                                             GUNICORN_THREADS=str(threads), GUNICORN_ACCESS_LOG="/dev/null", **env)),
                            f"gunicorn:{port}")
            proc.port = port  # type: ignore[attr-defined]
            hosts.append(proc)
        for proc in hosts:
            wait_for(lambda: _healthz(proc.port), timeout=30,  # noqa: B023  called at once
                     what=f"gunicorn on port {proc.port} to answer /healthz", proc=proc)
        return hosts

    def worker(self, threads: int = 4, **env: str) -> subprocess.Popen:
        """A Huey consumer (`flask worker`, as tests.helpers.start_worker starts it), waited for until it runs."""
        return self.workers(1, threads, **env)[0]

    def workers(self, count: int, threads: int = 4, **env: str) -> list[subprocess.Popen]:
        """count consumers, started together, each waited for until it runs."""
        consumers = [self.add(start_worker(threads=threads, wait=False, **env), "consumer") for _ in range(count)]
        for proc in consumers:
            wait_until_consuming(proc)
        return consumers

    def kill9(self, proc: subprocess.Popen) -> str:
        """kill -9 the whole process group (gunicorn master and workers; the consumer), as a host that dies."""
        _kill_group(proc)
        return output_of(proc)

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> str:
        """SIGINT to the process group (gunicorn: quick shutdown; the consumer: running replies finish first), then
        SIGKILL after timeout; what it printed."""
        return stop(proc, sig=signal.SIGINT, timeout=timeout) if proc.poll() is None else output_of(proc)

    def close(self) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()


def _healthz(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


# -- PgBouncer -----------------------------------------------------------------------------------------------------

class PgBouncer:
    """Debian's pgbouncer in transaction mode in front of the test run's PostgreSQL, on a port of its own.

    A small pool (pool_size server connections, all kept open) used round robin: consecutive transactions of one
    client connection land on different server connections, so anything that leans on session state (a PREPAREd
    statement, a session SET, a temporary table) breaks here as it does behind a hosted pooler.
    """

    def __init__(self, target_url: str, pool_size: int = 3) -> None:
        self.target = urlsplit(target_url)
        self.pool_size = pool_size
        self.port = 0
        self.dir = ""
        self.proc: subprocess.Popen | None = None

    def url(self, database_url: str) -> str:
        """database_url with its host and port replaced by this pooler's."""
        parts = urlsplit(database_url)
        auth = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{auth + '@' if auth else ''}127.0.0.1:{self.port}"))

    def config(self) -> str:
        t = self.target
        server = f"host={t.hostname or '127.0.0.1'} port={t.port or 5432} user={t.username or 'postgres'}"
        if t.password:
            server += f" password={t.password}"
        user = _unprivileged_user()
        return "\n".join([
            "[databases]",
            f"* = {server}",  # any database name, as the client asks for it
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = any",  # clients are not checked; PgBouncer logs in with the user above
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            f"min_pool_size = {self.pool_size}",
            "reserve_pool_size = 0",
            "server_round_robin = 1",
            "max_client_conn = 1000",
            "query_wait_timeout = 30",
            "server_login_retry = 1",
            "stats_users = gbstats",  # SHOW STATS on the console (database `pgbouncer`), for the tests
            "logfile =",  # stderr, into the process log
            *([f"user = {user}"] if user else []),
            "",
        ])

    def start(self) -> PgBouncer:
        exe = binary("pgbouncer", "pgbouncer")
        self.dir = tempfile.mkdtemp(prefix="gb-pgbouncer-")
        os.chmod(self.dir, 0o755)  # readable by the unprivileged user it switches to
        self.port = free_port()
        ini = Path(self.dir) / "pgbouncer.ini"
        ini.write_text(self.config())
        ini.chmod(0o644)
        self.proc = _spawn([exe, str(ini)], dict(os.environ))
        try:
            wait_for(self._answers, timeout=20, what=f"pgbouncer on port {self.port}", proc=self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        import psycopg2
        conn = psycopg2.connect(self.url(urlunsplit(self.target)), connect_timeout=2)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    def log(self) -> str:
        return output_of(self.proc) if self.proc else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, sig=signal.SIGINT, timeout=10)  # SIGINT: safe shutdown
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- nginx ---------------------------------------------------------------------------------------------------------

def site_config(upstream_ports: list[int], listen_port: int, example: str | None = None) -> str:
    """deploy/nginx.conf for this machine: its upstream servers replaced by 127.0.0.1:<port> (with the example's own
    server parameters), its listen line by 127.0.0.1:<listen_port>. Everything else is the example, unchanged."""
    text = example if example is not None else NGINX_EXAMPLE.read_text()
    block = re.search(r"upstream\s+gemini_backend\s*\{(?P<body>.*?)\n\}", text, re.S)
    assert block, "deploy/nginx.conf must define `upstream gemini_backend { ... }`"
    body = block["body"]
    servers = re.findall(r"^\s*server\s+\S+(?P<params>[^;]*);", body, re.M)
    assert servers, "the upstream of deploy/nginx.conf lists no server"
    params = servers[0]
    kept = re.sub(r"^\s*server\s+\S+[^;]*;[^\n]*\n?", "", body, flags=re.M)
    ours = "".join(f"\n    server 127.0.0.1:{port}{params};" for port in upstream_ports)
    text = text[:block.start("body")] + ours + kept + text[block.end("body"):]
    text, listens = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{listen_port};", text, count=1,
                            flags=re.M)
    assert listens == 1, "deploy/nginx.conf must have a listen line"
    return text


@dataclass
class Nginx:
    """Debian's nginx in the foreground (`daemon off;`) with the example site and optional extra servers.

    The access log records, per request, the upstream(s) tried, the status and the test's X-Test-Conn header,
    so a test can tell which host served what.
    """

    upstream_ports: list[int]
    extra_servers: list[str] = field(default_factory=list)  # server blocks; "{port}" stands for a free port each
    port: int = 0
    extra_ports: list[int] = field(default_factory=list)
    prefix: str = ""
    proc: subprocess.Popen | None = None

    def config(self) -> str:
        p = self.prefix
        temp = "\n".join(f"    {kind}_temp_path {p}/temp/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        extra = "\n".join(server.replace("{port}", str(port))
                          for server, port in zip(self.extra_servers, self.extra_ports))
        return f"""
daemon off;
master_process on;
worker_processes 1;
{'user root;' if os.geteuid() == 0 else ''}
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 2048; }}
http {{
    log_format gbtest '$remote_addr "$request" $status up=[$upstream_addr] up_status=[$upstream_status] '
                      'conn=$http_x_test_conn xff="$http_x_forwarded_for"';
    access_log {p}/access.log gbtest;
{temp}
    include {p}/site.conf;
{extra}
}}
"""

    def start(self) -> Nginx:
        exe = binary("nginx", "nginx")
        self.prefix = tempfile.mkdtemp(prefix="gb-nginx-")
        self.port = free_port()
        self.extra_ports = [free_port() for _ in self.extra_servers]
        (Path(self.prefix) / "temp").mkdir()
        (Path(self.prefix) / "site.conf").write_text(site_config(self.upstream_ports, self.port))
        conf = Path(self.prefix) / "nginx.conf"
        conf.write_text(self.config())
        self.proc = _spawn([exe, "-p", self.prefix, "-c", str(conf), "-e", f"{self.prefix}/error.log"],
                           dict(os.environ))
        try:
            wait_for(lambda: all(_port_open(port) for port in [self.port, *self.extra_ports]), timeout=15,
                     what=f"nginx on port {self.port}", proc=self.proc)
        except BaseException:
            print(self.error_log())
            self.stop()
            raise
        return self

    def access_log(self) -> list[str]:
        path = Path(self.prefix) / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def error_log(self) -> str:
        path = Path(self.prefix) / "error.log"
        return (path.read_text() if path.exists() else "") + (output_of(self.proc) if self.proc else "")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, sig=signal.SIGTERM, timeout=10)  # fast shutdown: open streams are cut, not waited for
        if self.prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- HTTP clients --------------------------------------------------------------------------------------------------

def request(port: int, method: str, path: str, headers: dict | None = None, body=None, source: str | None = None,
            timeout: float = 30) -> tuple[int, object, dict[str, str]]:
    """One JSON request to 127.0.0.1:port from the source address given (any of 127/8 on Linux):
    (status, decoded body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return resp.status, decoded, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@dataclass
class Event:
    name: str
    data: object
    id: str | None
    at: float


class StreamBroken(Exception):
    """The connection ended before the stream's final event."""


def sse_events(port: int, path: str, headers: dict[str, str], timeout: float = 60) -> Iterator[Event]:
    """Read an SSE response off a raw HTTP connection event by event, as the bytes arrive (gzip-decoded when the
    proxy compressed it), stamping each event with its arrival time. Raises StreamBroken when the connection ends
    before a `done` or `error` event."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise AssertionError(f"stream answered {resp.status}: {resp.read()[:500]!r}")
        assert resp.getheader("Content-Type", "").startswith("text/event-stream")
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if resp.getheader("Content-Encoding") == "gzip" else None
        buffer, fields = b"", {}
        while True:
            try:
                data = resp.read1(65536)  # what has arrived, without waiting for more
            except (http.client.HTTPException, OSError, ValueError) as exc:
                raise StreamBroken(repr(exc)) from exc
            if not data:
                raise StreamBroken("connection closed")
            buffer += inflate.decompress(data) if inflate else data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode().rstrip("\r")
                if text == "":
                    if "event" in fields:
                        event = Event(fields["event"], json.loads(fields.get("data", "null")), fields.get("id"),
                                      time.monotonic())
                        yield event
                        if event.name in ("done", "error"):
                            return
                    fields = {}
                elif not text.startswith(":"):
                    name, _, value = text.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
    finally:
        conn.close()


def ids_increase(ids: list[str]) -> bool:
    """Redis Stream ids ("ms-seq"), strictly increasing."""
    keys = [tuple(int(part) for part in i.split("-")) for i in ids]
    return all(a < b for a, b in zip(keys, keys[1:]))


# -- newman (the Postman collection) -------------------------------------------------------------------------------

def newman() -> str:
    """newman from postman/package-lock.json (`npm ci --prefix postman`, as tests/test_postman.py installs it)."""
    binary("node", "nodejs npm")
    binary("npm", "nodejs npm")
    if not NEWMAN.exists():
        result = subprocess.run(["npm", "ci", "--prefix", str(POSTMAN), "--no-audit", "--no-fund"], cwd=POSTMAN,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not NEWMAN.exists():
            pytest.skip("could not install newman with `npm ci` in postman/ (is the npm registry reachable?): "
                        + (result.stdout + result.stderr)[-2000:])
    return str(NEWMAN)


@dataclass
class NewmanRun:
    returncode: int
    output: str
    report: dict

    @property
    def executions(self) -> list[dict]:
        return self.report.get("run", {}).get("executions", [])

    def response_json(self, item_name: str) -> object:
        """The decoded JSON body of the (last) response to the collection item of that name."""
        found = [e for e in self.executions if e.get("item", {}).get("name") == item_name]
        assert found, f"the run has no request named {item_name!r}"
        return json.loads(bytes(found[-1]["response"]["stream"]["data"]))

    def failures(self) -> list[str]:
        return [f"{f.get('source', {}).get('name')}: {f.get('error', {}).get('message')}"
                for f in self.report.get("run", {}).get("failures", [])]


def run_collection(base_url: str, timeout: float = 180) -> NewmanRun:
    """The project's Postman collection and environment against base_url (as postman/run.sh runs them), with a JSON
    report of every request and assertion."""
    exe = newman()
    with tempfile.TemporaryDirectory(prefix="gb-newman-") as tmp:
        report_path = Path(tmp) / "report.json"
        args = [exe, "run", str(POSTMAN / "gemini-backend.postman_collection.json"),
                "--environment", str(POSTMAN / "local.postman_environment.json"),
                "--env-var", f"baseUrl={base_url}", "--timeout-request", "30000", "--timeout", "120000",
                "--color", "off", "--reporters", "cli,json", "--reporter-json-export", str(report_path)]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            output = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"newman took more than {timeout} s:\n{output[-6000:]}")
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return NewmanRun(proc.returncode, output, report)
