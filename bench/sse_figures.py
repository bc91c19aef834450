"""Streaming figures: time to first chunk and concurrent streams, against a running service mode."""
from __future__ import annotations

import http.client
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def _post_message(base: str, token: str, room_id: int, text: str) -> int:
    """Post a message; the reply id."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", f"/chatroom/{room_id}/message", body=json.dumps({"content": text}),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    if response.status != 202:
        raise RuntimeError(f"post answered {response.status}: {body}")
    return body["reply"]["id"]


def _follow(base: str, token: str, room_id: int, reply_id: int, started: float) -> tuple[float, float]:
    """Read the SSE stream of a reply: (seconds to the first delta, seconds to done), from `started`."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", f"/chatroom/{room_id}/message/{reply_id}/stream",
                 headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    first = None
    while True:
        line = response.fp.readline()
        if not line:
            raise RuntimeError("stream ended without done")
        if line.startswith(b"event: delta") and first is None:
            first = time.perf_counter() - started
        if line.startswith(b"event: done") or line.startswith(b"event: error"):
            done = time.perf_counter() - started
            conn.close()
            return first if first is not None else done, done


def _one(base: str, token: str, room_id: int, i: int) -> tuple[float, float]:
    started = time.perf_counter()
    reply_id = _post_message(base, token, room_id, f"stream sample {i}")
    return _follow(base, token, room_id, reply_id, started)


def measure(base: str, token: str, room_ids: list[int], latency: float, samples: int = 20,
            concurrency: int = 16) -> dict[str, float]:
    """Time to first chunk (post -> first delta) alone and with `concurrency` streams open at once."""
    sequential = [_one(base, token, room_ids[i % len(room_ids)], i) for i in range(samples)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        parallel = list(pool.map(lambda i: _one(base, token, room_ids[i % len(room_ids)], 1000 + i),
                                 range(concurrency)))
    firsts = sorted(first for first, _ in sequential)
    crowd = sorted(first for first, _ in parallel)
    return {
        "ttfc_p50_ms": statistics.median(firsts) * 1000,
        "ttfc_p99_ms": firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))] * 1000,
        "ttfc_overhead_p50_ms": (statistics.median(firsts) - latency) * 1000,
        "concurrent_streams": float(len(parallel)),
        "concurrent_ttfc_p50_ms": statistics.median(crowd) * 1000,
        "concurrent_ttfc_max_ms": crowd[-1] * 1000,
    }
