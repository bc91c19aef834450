"""Load generators: wrk (Debian's package, installed when missing) or a Python fallback with keep-alive threads."""
from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Load:
    """What one load run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers, socket errors and timeouts

    def __str__(self) -> str:
        return f"{self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"


@dataclass
class Target:
    """Requests to send: a method, and the (path, headers, body) a request cycles through."""

    base: str
    method: str
    requests: list[tuple[str, dict[str, str], str | None]]


def ensure_wrk(allow_install: bool = True) -> str | None:
    """Path to wrk, installing Debian's package when we are root; None when it stays unavailable."""
    found = shutil.which("wrk")
    if found or not allow_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True)
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True)
    return shutil.which("wrk")


class Generator:
    """Runs a Target at a number of connections for a number of seconds, with wrk or in Python."""

    def __init__(self, wrk: str | None, threads: int = 2) -> None:
        self.wrk = wrk
        self.threads = threads

    @property
    def name(self) -> str:
        return f"wrk ({self.threads} threads)" if self.wrk else "Python (threads + http.client keep-alive)"

    def run(self, target: Target, connections: int, seconds: float) -> Load:
        """Drive target; every connection keeps its socket open between requests."""
        if self.wrk:
            return self._wrk(target, connections, seconds)
        return python_load(target, connections, seconds)

    def _wrk(self, target: Target, connections: int, seconds: float) -> Load:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(lua_script(target))
        try:
            cmd = [self.wrk, "-t", str(min(self.threads, connections)), "-c", str(connections), "-d",
                   f"{max(1, round(seconds))}s", "--latency", "--timeout", "5s", "-s", script.name, target.base]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(script.name)
        return parse_wrk(out)


def lua_script(target: Target) -> str:
    """A wrk script that cycles through target's requests; each wrk thread starts at a different offset."""
    rows = []
    for path, headers, body in target.requests:
        header_table = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
        rows.append(f"  {{{json.dumps(path)}, {{{header_table}}}, {json.dumps(body) if body else 'nil'}}},")
    return "\n".join([
        "local reqs = {", *rows, "}",
        "local counter = 0",
        "function setup(thread) counter = counter + 1; thread:set('offset', counter * 7919) end",
        "local n = 0",
        "function init(args) n = offset or 0 end",
        "function request()",
        "  n = n + 1",
        "  local r = reqs[(n % #reqs) + 1]",
        f"  return wrk.format({json.dumps(target.method)}, r[1], r[2], r[3])",
        "end",
    ])


def parse_wrk(out: str) -> Load:
    """Requests/sec, p50, p99 and errors from `wrk --latency` output."""
    rps = p50 = p99 = 0.0
    requests = errors = 0
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(parts[1])
        elif parts[:1] == ["50%"] or parts[:1] == ["50.000%"]:
            p50 = to_ms(parts[1])
        elif parts[:1] == ["99%"] or parts[:1] == ["99.000%"]:
            p99 = to_ms(parts[1])
        elif "requests in" in line:
            requests = int(parts[0])
        elif line.strip().startswith("Non-2xx"):
            errors += int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            errors += sum(int(p.rstrip(",")) for p in parts if p.rstrip(",").isdigit())
    return Load(rps, p50, p99, requests, errors)


def to_ms(text: str) -> float:
    """wrk's '1.23ms' / '850.00us' / '1.02s' as milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def python_load(target: Target, connections: int, seconds: float) -> Load:
    """The fallback: one thread per connection, each with its own keep-alive http.client connection."""
    parts = urlsplit(target.base)
    stop_at = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections

    def drive(slot: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        n = slot * 7919
        while time.perf_counter() < stop_at:
            path, headers, body = target.requests[n % len(target.requests)]
            n += 1
            started = time.perf_counter()
            try:
                conn.request(target.method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
                ok = False
            latencies[slot].append(time.perf_counter() - started)
            failures[slot] += 0 if ok else 1
        conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    every = sorted(x for slot in latencies for x in slot)
    if not every:
        return Load(0.0, 0.0, 0.0, 0, sum(failures))
    return Load(len(every) / elapsed, percentile(every, 50) * 1000, percentile(every, 99) * 1000, len(every),
                sum(failures))


def percentile(ordered: list[float], pct: float) -> float:
    """The pct-th percentile of an ascending list (nearest rank)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One request: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path or "/", headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()

