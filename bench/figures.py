"""The figures of QUALITY.md "Performance", each a ratio against a reference taken in the same run."""
from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass

from bench import seed as seeding
from bench.load import Generator, Load, Target, get, percentile
from bench.services import Proc, peak_rss_mib, worker_pids


@dataclass
class Row:
    """One line of the table."""

    figure: str
    measured: str
    ratio: str
    goal: str
    met: bool | None = None  # None: for information, no goal


@dataclass
class Settings:
    """How long and how hard to drive each figure."""

    seconds: float
    warmup: float
    consumer_threads: int
    latency: float
    saturation_factor: int  # N = W x this, for reply throughput
    steady_seconds: float
    rounds: int  # the HTTP figures are measured in this many interleaved rounds


def interleaved(gen: Generator, runs: list[tuple[str, Target, int]], s: Settings,
                bracket: str | None = None) -> dict[str, list[Load]]:
    """Each run once per round, rounds back to back: a burst of other work hits one round, not one figure.

    With bracket (the reference run's name), the reference also runs again at the end of each round and counts
    as the mean of its two runs, so every figure of the round sits between two measurements of its reference.
    """
    results: dict[str, list[Load]] = {name: [] for name, _, _ in runs}
    for _ in range(s.rounds):
        for name, target, connections in runs:
            results[name].append(gen.run(target, connections, s.seconds / s.rounds))
        if bracket is not None:
            _, target, connections = next(run for run in runs if run[0] == bracket)
            first, again = results[bracket][-1], gen.run(target, connections, s.seconds / s.rounds)
            results[bracket][-1] = Load((first.rps + again.rps) / 2, (first.p50_ms + again.p50_ms) / 2,
                                        (first.p99_ms + again.p99_ms) / 2, first.requests + again.requests,
                                        first.errors + again.errors)
    return results


def per_round(top: list[Load], bottom: list[Load]) -> float:
    """Median over rounds of top/bottom req/s, each pair taken in the same round."""
    return statistics.median(a.rps / b.rps if b.rps else float("inf") for a, b in zip(top, bottom))


def median_load(loads: list[Load]) -> Load:
    """The round with the median req/s (its own p50/p99), errors summed over all rounds."""
    middle = sorted(loads, key=lambda load: load.rps)[(len(loads) - 1) // 2]
    return Load(middle.rps, middle.p50_ms, middle.p99_ms, sum(x.requests for x in loads),
                sum(x.errors for x in loads))


def spread(loads: list[Load]) -> str:
    """Lowest-highest req/s over rounds."""
    rates = sorted(load.rps for load in loads)
    return f"{rates[0]:.0f}-{rates[-1]:.0f}"


def http_figures(gen: Generator, floor: Proc, cached: Proc, uncached: Proc, token: str,
                 writers: list[seeding.Writer], s: Settings) -> list[Row]:
    """Figures 1-3: cached and uncached GET /chatroom at 32 connections, POST message at 8 and 32, vs the floor."""
    auth = {"Authorization": f"Bearer {token}"}
    check_list(cached, auth, expect_cache="HIT")
    check_list(uncached, auth, expect_cache="MISS")
    body = json.dumps({"content": "bench message: what is the capital of France?"})
    posts = [(f"/chatroom/{w.rooms[i]}/message",
              {"Authorization": f"Bearer {w.token}", "Content-Type": "application/json"}, body)
             for i in range(len(writers[0].rooms)) for w in writers]
    runs = [("floor", Target(url(floor), "GET", [("/floor", auth, None)]), 32),
            ("cached", Target(url(cached), "GET", [("/chatroom", auth, None)]), 32),
            ("uncached", Target(url(uncached), "GET", [("/chatroom", auth, None)]), 32),
            ("post8", Target(url(cached), "POST", posts), 8),
            ("post32", Target(url(cached), "POST", posts), 32)]
    for _, target, connections in runs:
        gen.run(target, connections, s.warmup)
    r = interleaved(gen, runs, s, bracket="floor")
    floor_load, hit, miss = median_load(r["floor"]), median_load(r["cached"]), median_load(r["uncached"])
    ratio, value = per_round(r["cached"], r["floor"]), per_round(r["cached"], r["uncached"])
    rows = [
        Row("floor: JWT check + one Redis GET, 32 conn", f"{floor_load} (rounds: {spread(r['floor'])} req/s)",
            "reference", "-"),
        Row("1. cached GET /chatroom (50 rooms), 32 conn", f"{hit}{errors(hit)}", f"{ratio:.2f} x floor",
            ">= 0.9 x floor", ratio >= 0.9 and hit.errors == 0),
        Row("2. cache value: cached vs cache off (50 rooms), 32 conn", f"off: {miss}{errors(miss)}",
            f"{value:.2f}x", ">= 3x", value >= 3 and miss.errors == 0),
    ]
    for connections in (8, 32):
        loads = r[f"post{connections}"]
        load, ratio = median_load(loads), per_round(loads, r["floor"])
        worst_p99 = max(x.p99_ms for x in loads)
        sound = load.errors == 0 and worst_p99 < 500 and load.requests > 0
        goal = "no error, p99 < 500 ms" + (", >= 0.25 x floor" if connections == 32 else "")
        rows.append(Row(f"3. POST message accepted (Pro, {len(posts)} rooms), {connections} conn",
                        f"{load}, worst p99 {worst_p99:.0f} ms, errors {load.errors}", f"{ratio:.2f} x floor",
                        goal, sound and (connections == 8 or ratio >= 0.25)))
    return rows


def reply_figures(app, web: Proc, writers: list[seeding.Writer], s: Settings) -> list[Row]:
    """Figures 4-5: reply throughput at saturation, and per-reply overhead under steady load below it."""
    w, latency = s.consumer_threads, s.latency
    out = [sdk_reference(app, latency), sdk_ceiling(app, latency, min(w, 64), min(w * s.saturation_factor, 400))]
    warm = seeding.pending_replies(app, writers, min(w * 2, 100), "warm-up")  # connections, SDK clients, imports
    seeding.enqueue(app, warm)
    seeding.wait_finished(app, warm[0] - 1, len(warm), timeout=60)

    count = min(w * s.saturation_factor, 400)
    ids = seeding.pending_replies(app, writers, count, "throughput")
    started = seeding.enqueue(app, ids)
    rows = seeding.wait_finished(app, ids[0] - 1, count, timeout=30 + 3 * count * latency / w)
    span = (max(row[3] for row in rows) - started).total_seconds()
    statuses = {row[1] for row in rows}
    rate, ideal = count / span, w / latency
    # No goal any more (QUALITY.md's guards): for scale; the conversation rows are the throughput figures now.
    out.append(Row(f"4. reply throughput, W = {w}, L = {latency} s, {count} replies queued at once",
               f"{rate:.1f} replies/s in {span:.2f} s" + ("" if statuses == {"complete"} else f" ({statuses})"),
               f"{rate / ideal:.2f} x W/L", "- (all complete)", None if statuses == {"complete"} else False))

    rate = min(ideal / 2, 20.0)  # low load: 20/s is what 0.5 x W/L was with W = 8, L = 0.2 s
    after = seeding.last_message_id(app)
    posted = steady_posts(url(web), writers, rate, s.steady_seconds)
    rows = seeding.wait_finished(app, after, posted, timeout=60)
    overheads = sorted(((done - made).total_seconds() - latency) * 1000 for _, _, made, done in rows)
    p50, p99 = statistics.median(overheads), percentile(overheads, 99)
    out.append(Row(f"5. reply overhead at low load (completed - created - L), {posted} posts over HTTP at "
                   f"{rate:.0f}/s", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {overheads[-1]:.1f} ms",
                   "server side", "p99 <= 25 ms", p99 <= 25))
    return out


def _plain_sdk(app):
    """The app's google-genai client (no queue, database or Redis around it) and a one-question history."""
    from gemini_backend.ai import GeminiSettings, Turn, get_client
    with app.app_context():
        client = get_client(GeminiSettings.from_config(app.config))
    return client, [Turn("user", "what is the capital of France?")]


def sdk_reference(app, latency: float, calls: int = 20) -> Row:
    """For scale, no goal: one google-genai streaming call to fake Gemini from this process, minus L."""
    client, history = _plain_sdk(app)
    spent = []
    for _ in range(calls + 2):
        started = time.perf_counter()
        "".join(client.stream(history))
        spent.append((time.perf_counter() - started - latency) * 1000)
    spent = sorted(spent[2:])  # the first calls open the connection
    return Row("reference: one SDK streaming call to fake Gemini, sequential (SDK + fake, no app)",
               f"p50 {statistics.median(spent):.1f} ms, p99 {percentile(spent, 99):.1f} ms over L", "-", "-")


def sdk_ceiling(app, latency: float, threads: int, calls: int) -> Row:
    """For scale, no goal: figure 4 without the app (W threads making plain google-genai streaming calls to the
    fake Gemini, saturated), the most this machine allows W/L to be."""
    client, history = _plain_sdk(app)
    left, lock = [calls], threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            "".join(client.stream(history))

    workers = [threading.Thread(target=caller, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = calls / (time.perf_counter() - started)
    return Row(f"reference: {calls} plain SDK streaming calls from {threads} threads, saturated (SDK + fake, no app)",
               f"{rate:.1f} calls/s", f"{rate / (threads / latency):.2f} x W/L", "-")


def steady_posts(base: str, writers: list[seeding.Writer], rate: float, seconds: float) -> int:
    """POST messages at a fixed rate (open loop, over keep-alive connections); how many were accepted."""
    total = max(1, int(rate * seconds))
    schedule = [(i / rate, writers[i % len(writers)], i) for i in range(total)]
    lock, accepted, failures = threading.Lock(), [0], []
    start = time.perf_counter() + 0.05

    def poster() -> None:
        host, port = base.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while True:
            with lock:
                if not schedule:
                    break
                at, writer, i = schedule.pop(0)
            time.sleep(max(0.0, start + at - time.perf_counter()))
            conn.request("POST", f"/chatroom/{writer.rooms[i % len(writer.rooms)]}/message",
                         body=json.dumps({"content": f"steady {i}"}),
                         headers={"Authorization": f"Bearer {writer.token}", "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            with lock:
                if response.status == 202:
                    accepted[0] += 1
                else:
                    failures.append(response.status)
        conn.close()

    threads = [threading.Thread(target=poster, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"steady posts failed: {failures[:5]}")
    return accepted[0]


def memory_rows(webs: list[Proc], consumer: Proc, floor: Proc) -> list[Row]:
    """Figure 6: peak RSS (VmHWM) of each gunicorn worker of the app and of the consumer; the floor's for scale."""
    web_peaks = [peak_rss_mib(pid) for web in webs for pid in worker_pids(web)]
    consumer_peak = peak_rss_mib(consumer.pid)
    floor_peaks = [peak_rss_mib(pid) for pid in worker_pids(floor)]
    worst = max(web_peaks + [consumer_peak])
    return [Row("6. peak RSS (VmHWM) after the guards: app web workers; consumer",
                f"{', '.join(f'{p:.0f}' for p in web_peaks)} MiB; {consumer_peak:.0f} MiB "
                f"(floor app workers: {', '.join(f'{p:.0f}' for p in floor_peaks)} MiB)",
                f"max {worst:.0f} MiB", "- (the goal is C5's)")]


def stream_rows(web: Proc, writer: seeding.Writer, s: Settings, samples: int, concurrency: int) -> list[Row]:
    """Extra, no goal: time to the first SSE chunk of a reply, alone and with many streams open."""
    from bench import sse_figures
    result = sse_figures.measure(url(web), writer.token, writer.rooms, s.latency, samples=samples,
                                 concurrency=concurrency)
    return [
        Row(f"time to first chunk (post -> first SSE delta), L = {s.latency} s",
            f"p50 {result['ttfc_p50_ms']:.0f} ms, p99 {result['ttfc_p99_ms']:.0f} ms",
            f"{result['ttfc_overhead_p50_ms']:.0f} ms over L", "-"),
        Row(f"{int(result['concurrent_streams'])} streams at once",
            f"first chunk p50 {result['concurrent_ttfc_p50_ms']:.0f} ms, max {result['concurrent_ttfc_max_ms']:.0f} ms",
            "all finished", "-"),
    ]


def check_list(web: Proc, auth: dict[str, str], expect_cache: str) -> None:
    """GET /chatroom twice: 50 rooms, and the second answer's X-Cache is what the figure assumes."""
    for _ in range(2):
        status, headers, body = get(f"{url(web)}/chatroom", auth)
    if status != 200 or len(json.loads(body)["chatrooms"]) != 50:
        raise RuntimeError(f"GET /chatroom on {web.name} answered {status}: {body[:200]!r}")
    if headers.get("X-Cache") != expect_cache:
        raise RuntimeError(f"{web.name}: expected X-Cache {expect_cache}, got {headers.get('X-Cache')}")


def url(proc: Proc) -> str:
    """Base URL of a web process."""
    return f"http://127.0.0.1:{proc.port}"


def errors(load: Load) -> str:
    """', N errors' when there were any."""
    return f", {load.errors} errors" if load.errors else ""
