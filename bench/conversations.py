"""QUALITY.md "Conversations at a real model's pace": steady, capacity, burst, open streams, memory.

The fake Gemini (bench/fake_gemini.py, its own process) sends its first chunk F = 1 s after the request, then
8 more 0.3 s apart. A conversation is one user posting one message and reading the reply's SSE stream to `done`
(bench/talk.py, an asyncio client). The reference is the same conversation alone, in the same run.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from bench import talk as client
from bench.figures import Row
from bench.load import percentile
from bench.procstat import Monitor, Peaks, group_cpu, machine_cpu, memory_kib, named_cpu, sockets_to, tree
from bench.services import Proc, Stack
from bench.talk import INF, ChatUser, Drive, Talk

F, CHUNKS, GAP = 1.0, 9, 0.3  # first chunk after F seconds, then CHUNKS - 1 more GAP apart
GOAL_FIRST = F + 0.3
GOAL_DONE_OVER_ALONE = 0.5
GOAL_POST = 0.250
GOAL_ROOMS = 0.100
GOAL_BURST_FIRST = F + 2
GOAL_HEALTH_OPEN = 0.100
GOAL_STREAM_KIB = 64
GOAL_REDIS_PER_WEB = 50
GOAL_RSS_MIB = 250
GOAL_CAPACITY = 100
SATURATED = 0.85  # the client counts as saturated above this share of one core


@dataclass
class ConvoSettings:
    """Sizes of the conversation rows (QUALITY.md's, or scaled down by --quick)."""

    conversations: int = 1000
    rate: float = 100
    burst: int = 300
    open_streams: int = 5000
    alone: int = 5
    capacity_rates: tuple[float, ...] = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 400)
    capacity_seconds: float = 10
    timeout: float = 30  # a conversation not done by then counts as an error
    hold: float = 20  # seconds the open streams are held after the last one was asked for
    every: float = 0.5  # probe interval
    settle: float = 10  # seconds to wait for replies still pending after the client is done
    quick: bool = False


def quick_settings() -> ConvoSettings:
    return ConvoSettings(conversations=200, rate=50, burst=100, open_streams=1000, alone=3, capacity_seconds=4,
                         capacity_rates=(5, 20, 50, 100, 200), timeout=20, hold=8, settle=8, quick=True)


# -- users ------------------------------------------------------------------------------------------

class Population:
    """Fresh Pro users, one room each, inserted in bulk; their access tokens minted as the app mints them."""

    def __init__(self, app, prefix: str = "+1999"):
        self.app, self.prefix, self.made = app, prefix, 0

    def take(self, count: int) -> list[ChatUser]:
        from sqlalchemy import insert

        from gemini_backend.extensions import db
        from gemini_backend.models import Chatroom, User, utcnow
        from gemini_backend.services.tokens import issue_tokens
        first, self.made = self.made, self.made + count
        with self.app.app_context():
            ids = db.session.scalars(insert(User).returning(User.id, sort_by_parameter_order=True),
                                     [{"phone": f"{self.prefix}{first + i:07d}", "name": f"talker {first + i}",
                                       "pro_override": True} for i in range(count)]).all()
            now = utcnow()
            rooms = db.session.scalars(insert(Chatroom).returning(Chatroom.id, sort_by_parameter_order=True),
                                       [{"user_id": uid, "name": "chat", "created_at": now, "updated_at": now,
                                         "last_activity_at": now} for uid in ids]).all()
            db.session.commit()
            tokens = [issue_tokens(SimpleNamespace(id=uid, token_version=0))["access_token"] for uid in ids]
            db.engine.dispose()  # the monitor counts the servers' connections, not ours
        return [ChatUser(uid, token, room) for uid, token, room in zip(ids, tokens, rooms)]

    def pending(self, users: list[ChatUser], count: int) -> list[tuple[ChatUser, int]]:
        """count user messages with pending replies, round-robin over the users' rooms, never enqueued."""
        from sqlalchemy import insert

        from gemini_backend.extensions import db
        from gemini_backend.models import Message, utcnow
        with self.app.app_context():
            now = utcnow()
            owners = [users[i % len(users)] for i in range(count)]
            asked = db.session.scalars(insert(Message).returning(Message.id, sort_by_parameter_order=True),
                                       [{"chatroom_id": u.room, "role": "user", "content": f"held {i}",
                                         "status": "complete", "created_at": now, "completed_at": now}
                                        for i, u in enumerate(owners)]).all()
            replies = db.session.scalars(insert(Message).returning(Message.id, sort_by_parameter_order=True),
                                         [{"chatroom_id": u.room, "role": "model", "content": "", "status": "pending",
                                           "reply_to": mid, "parent_id": mid, "created_at": now}
                                          for u, mid in zip(owners, asked)]).all()
            db.session.commit()
            db.engine.dispose()
        return list(zip(owners, replies))


# -- the servers under test -------------------------------------------------------------------------

class Servers:
    """gunicorn (gunicorn.conf.py) and a bare `flask worker`, on the paced fake Gemini; restarted when a run left
    work behind, so every run starts from the same state."""

    def __init__(self, stack: Stack, app, gemini_url: str, consumer_threads: int | None, people: Population,
                 reader_token: str):
        self.stack, self.app, self.gemini_url, self.consumer_threads = stack, app, gemini_url, consumer_threads
        self.people, self.reader_token = people, reader_token
        self.web: Proc | None = None
        self.consumer: Proc | None = None
        self.restarts = 0
        self.warm_errors: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    def start(self, consumer: bool = True) -> None:
        if self.web is None:
            self.web = self.stack.start_web("web-conversations", GEMINI_BASE_URL=self.gemini_url)
        if consumer and self.consumer is None:
            self.consumer = self.stack.start_consumer(self.consumer_threads, name="consumer-conversations",
                                                      GEMINI_BASE_URL=self.gemini_url)

    def stop_consumer(self) -> None:
        if self.consumer is not None:
            self.stack.stop(self.consumer, timeout=15)
            self.consumer = None

    def stop(self) -> None:
        """Both, without waiting for open streams or running replies."""
        if self.web is not None:
            self.stack.stop(self.web, timeout=10, signum=signal.SIGQUIT)
            self.web = None
        if self.consumer is not None:
            self.stack.stop(self.consumer, timeout=10, signum=signal.SIGKILL)
            self.consumer = None

    def restart(self) -> None:
        """Fresh processes and no backlog: what an earlier run left (pending replies, queued tasks) is dropped."""
        from bench import seed as seeding
        self.stop()
        seeding.clear_backlog(self.app)
        seeding.dispose(self.app)
        self.restarts += 1
        self.start()
        self.warm()

    def warm(self) -> None:
        """A few conversations and list reads first (connections, imports, the consumer up, the reader's cached
        list): a run never measures a cold start."""
        talks = conversation(self.people.take(4), "warm-up")
        asyncio.run(client.drive(self.base, talks, [0.0] * len(talks), self.reader_token, 60, every=0.5))
        self.warm_errors = [t.error for t in talks if t.error]

    def roots(self) -> dict[str, int]:
        roots = {"web": self.web.pid}
        if self.consumer is not None:
            roots["consumer"] = self.consumer.pid
        return roots

    def describe(self) -> str:
        """What the servers run as, from their own logs (worker class, processes, consumer workers)."""
        web_log = self.web.log.read_text(errors="replace") if self.web else ""
        kind = next((line.split("Using worker:", 1)[1].strip() for line in web_log.splitlines()
                     if "Using worker:" in line), "?")
        workers = len(tree(self.web.pid)) - 1 if self.web else 0
        consumer = "-"
        if self.consumer is not None:
            found = re.search(r"consumer started with (\d+ \w+)", self.consumer.log.read_text(errors="replace"))
            consumer = f"Huey, {found.group(1)} workers" if found else "Huey"
        return f"gunicorn {workers} x {kind} workers; consumer: {consumer}"


def idle_cpu(servers: Servers, seconds: float) -> float:
    """CPU seconds per second the web and the consumer spend with nothing to do."""
    roots = servers.roots()
    before = sum(group_cpu(roots).values())
    time.sleep(seconds)
    return (sum(group_cpu(roots).values()) - before) / seconds


def consumer_concurrency(consumer: Proc, timeout: float = 30) -> int | None:
    """How many workers the Huey consumer says it started with (its log), once it has said so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"consumer started with (\d+) ", consumer.log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if consumer.popen.poll() is not None:
            return None
        time.sleep(0.2)
    return None


# -- one run of conversations -------------------------------------------------------------------------

@dataclass
class Run:
    """A run of conversations and what the server side did meanwhile."""

    name: str
    drive: Drive
    peaks: Peaks
    cpu: dict[str, float]  # group -> CPU seconds spent during the run
    stores: dict[str, float] = field(default_factory=dict)  # PostgreSQL and Redis servers' CPU seconds meanwhile
    machine: float = 0.0  # CPU seconds the whole machine was busy meanwhile
    exact: int = 0
    posted: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    monitor_error: str | None = None

    @property
    def talks(self) -> list[Talk]:
        return self.drive.talks

    def values(self, attr: str) -> list[float]:
        return sorted(getattr(t, attr) if getattr(t, attr) is not None else INF for t in self.talks)

    def p(self, attr: str, pct: float) -> float:
        return percentile(self.values(attr), pct)

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.talks if t.error]

    @property
    def probe_failures(self) -> int:
        return sum(not s.ok for s in self.drive.health + self.drive.rooms)

    def probe_p(self, which: str, pct: float) -> float:
        return percentile(sorted(s.seconds for s in getattr(self.drive, which)), pct)

    def broken(self, alone_done: float) -> list[str]:
        """The goals of the steady row this run misses, each with its figure."""
        if self.drive.aborted:
            errors = self.errors
            return [self.drive.aborted + (f"; first error: {errors[0]}" if errors else "")]
        out = []
        if self.p("first", 99) > GOAL_FIRST:
            out.append(f"first delta p99 {secs(self.p('first', 99))}")
        if self.p("done", 99) > alone_done + GOAL_DONE_OVER_ALONE:
            out.append(f"done p99 {secs(self.p('done', 99))}")
        if self.p("post", 99) > GOAL_POST:
            out.append(f"post p99 {ms(self.p('post', 99))}")
        if self.probe_p("rooms", 99) > GOAL_ROOMS:
            out.append(f"/chatroom p99 {ms(self.probe_p('rooms', 99))}")
        if self.errors or self.probe_failures:
            out.append(f"{len(self.errors) + self.probe_failures} errors")
        if self.exact != len(self.talks):
            out.append(f"exactly once {self.exact}/{len(self.talks)}")
        return out

    @property
    def dirty(self) -> bool:
        return bool(self.errors or self.drive.aborted or self.exact != self.posted)


# A conversation that failed or timed out before reaching a point counts as never reaching it.
def secs(value: float) -> str:
    return "never" if value == INF else f"{value:.2f} s"


def ms(value: float) -> str:
    return "never" if value == INF else f"{value * 1000:.0f} ms"


def conversation(users: list[ChatUser], tag: str) -> list[Talk]:
    return [Talk(user, f"{tag} {i}: what is the capital of France?") for i, user in enumerate(users)]


def run(servers: Servers, stack: Stack, name: str, talks: list[Talk], offsets: list[float], reader_token: str,
        s: ConvoSettings, abort: client.Abort | None = None) -> Run:
    """Drive the conversations with the monitor on; wait for the replies; check each one in the database."""
    roots = servers.roots()
    before, stores_before, machine_before = group_cpu(roots), named_cpu(STORES), machine_cpu()
    with Monitor(roots, stack.database_url, stack.dbname, stack.redis_url, every=s.every) as monitor:
        drive = asyncio.run(client.drive(servers.base, talks, offsets, reader_token, s.timeout, s.every, abort))
    after, stores_after, machine_after = group_cpu(roots), named_cpu(STORES), machine_cpu()
    result = Run(name, drive, monitor.peaks, {g: after[g] - before.get(g, 0.0) for g in after},
                 {label: stores_after[label] - stores_before[label] for label in STORES},
                 machine_after - machine_before, monitor_error=monitor.error)
    check_replies(stack.database_url, result, 2 if (drive.aborted or result.errors) else s.settle)
    return result


STORES = {"PostgreSQL": "postgres", "Redis": "redis-server"}  # label -> process name prefix


def machine_row(name: str, r: Run) -> Row:
    """Where the whole machine's CPU went during a run, per conversation, and how many conversations a second the
    machine's cores could serve at that cost if nothing ever waited."""
    count = max(1, len(r.talks))
    parts = {"web": r.cpu.get("web", 0.0), "consumer": r.cpu.get("consumer", 0.0), **r.stores,
             "load client": r.drive.client_cpu}
    rest = max(0.0, r.machine - sum(parts.values()))
    total = max(r.machine, sum(parts.values())) / count * 1000
    cores = os.cpu_count() or 1
    text = " + ".join(f"{label} {value / count * 1000:.1f}" for label, value in parts.items())
    return Row(f"{name}: the whole machine's CPU per conversation (PostgreSQL and Redis: their whole servers)",
               f"{text} + the rest (fake Gemini, kernel, other) {rest / count * 1000:.1f} = {total:.1f} ms",
               f"{cores} cores / {total:.1f} ms = at most {cores * 1000 / total:.0f} conversations/s", "-")


def check_replies(database_url: str, result: Run, settle: float) -> None:
    """Every accepted message has exactly one model reply, complete, with the text the fake produced."""
    import psycopg2
    posted = {t.message_id: t for t in result.talks if t.message_id is not None}
    result.posted = len(posted)
    if not posted:
        return
    conn = psycopg2.connect(database_url, connect_timeout=5)
    try:
        conn.autocommit = True
        ids = list(posted)
        with conn.cursor() as cur:
            deadline = time.monotonic() + settle
            while True:
                cur.execute("SELECT count(*) FROM messages WHERE reply_to = ANY(%s) AND status = 'pending'", (ids,))
                if cur.fetchone()[0] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            cur.execute("SELECT m.id, count(r.id), min(r.status), min(r.content) FROM messages m "
                        "LEFT JOIN messages r ON r.reply_to = m.id AND r.role = 'model' "
                        "WHERE m.id = ANY(%s) GROUP BY m.id", (ids,))
            rows = cur.fetchall()
            rooms = list({t.user.room for t in posted.values()})
            cur.execute("SELECT count(*) FROM messages WHERE chatroom_id = ANY(%s) AND role = 'user'", (rooms,))
            user_rows = cur.fetchone()[0]
    finally:
        conn.close()
    for message_id, count, status, content in rows:
        if count == 1 and status == "complete" and content == posted[message_id].expected:
            result.exact += 1
        else:
            key = ("no reply" if count == 0 else f"{count} replies" if count > 1 else
                   status if status != "complete" else "wrong text")
            result.problems[key] = result.problems.get(key, 0) + 1
    if user_rows != len(posted):
        result.problems[f"{user_rows} user messages stored for {len(posted)} accepted"] = 1


# -- the rows -----------------------------------------------------------------------------------------

def conversation_rows(stack: Stack, app, reader_token: str, s: ConvoSettings, consumer_threads: int | None,
                      log) -> list[Row]:
    """Every conversation row; log(rows) shows rows as they come."""
    rows: list[Row] = []
    fake, gemini_url = stack.start_paced_gemini(F, CHUNKS, GAP)
    people = Population(app)
    servers = Servers(stack, app, gemini_url, consumer_threads, people, reader_token)
    try:
        servers.start()
        servers.warm()
        warm_errors = servers.warm_errors
        rows_header = Row(f"servers of the conversation rows: {servers.describe()}",
                          f"warm-up (4 conversations at once): {len(warm_errors)} errors"
                          + (f" (first: {warm_errors[0]})" if warm_errors else ""), "-", "-")
        log([rows_header])
        rows.append(rows_header)

        # The servers' CPU with nothing to do (heartbeats, polling, the sweeper): part of every CPU figure.
        idle = idle_cpu(servers, 3 if s.quick else 6)

        # Reference: the same conversation alone.
        ref = asyncio.run(client.alone(servers.base, conversation(people.take(s.alone), "alone"), s.timeout))
        good = [t for t in ref if not t.error]
        bad = [t.error for t in ref if t.error]
        fake_done = F + (CHUNKS - 1) * GAP
        alone_first = statistics.median(t.first for t in good) if good else INF
        alone_done = statistics.median(t.done for t in good) if good else fake_done  # the fake's own, at worst
        new = [Row(f"reference: one conversation alone ({len(ref)} in a row), F = {F:g} s, "
                   f"{CHUNKS} chunks {GAP} s apart", f"first delta p50 {secs(alone_first)}, done p50 {alone_done:.2f} s "
                   f"(fake's own: {F:g} s, {fake_done:.1f} s)"
                   + (f"; {len(bad)} of {len(ref)} failed (first: {bad[0]}); alone = the fake's {fake_done:.1f} s"
                      if not good else f"; {len(bad)} of {len(ref)} failed (first: {bad[0]})" if bad else ""),
                   "reference", "no error", not bad)]
        if bad:
            servers.restart()
        log(new)
        rows += new

        # Steady.
        count, rate = s.conversations, s.rate
        fake_cpu0 = group_cpu({"fake": fake.pid})["fake"]
        steady = run(servers, stack, "steady", conversation(people.take(count), "steady"),
                     [i / rate for i in range(count)], reader_token, s)
        fake_cpu = group_cpu({"fake": fake.pid})["fake"] - fake_cpu0
        new = steady_rows(steady, stack, count, rate, alone_done, fake_cpu, idle)
        log(new)
        rows += new
        if steady.dirty:
            servers.restart()

        # Burst.
        burst = run(servers, stack, "burst", conversation(people.take(s.burst), "burst"),
                    [i / s.burst for i in range(s.burst)], reader_token, s)
        new = burst_rows(burst)
        log(new)
        rows += new
        if burst.dirty:
            servers.restart()

        # Capacity: from the steady row's rate, up while every goal holds, down while it does not.
        new = capacity_rows(servers, stack, people, reader_token, s, steady, alone_done, idle)
        log(new)
        rows += new

        # Open streams: no consumer, so every reply stays pending and its stream stays open.
        servers.stop_consumer()
        new = open_stream_rows(servers, stack, people, s)
        log(new)
        rows += new
    finally:
        servers.stop()
        stack.stop(fake)
        from bench import seed as seeding
        seeding.clear_backlog(app)
        seeding.dispose(app)
    return rows


def steady_rows(r: Run, stack: Stack, count: int, rate: float, alone_done: float, fake_cpu: float,
                idle: float) -> list[Row]:
    d = r.drive
    name = f"C1 steady: {count} conversations at {rate:g}/s"
    errors = r.errors
    error_text = error_summary(errors)
    per_convo = sum(r.cpu.values()) / max(1, count)
    rows = [
        Row(f"{name}: first delta (from post start; a failed conversation counts as never)",
            f"p50 {secs(r.p('first', 50))}, p99 {secs(r.p('first', 99))}",
            f"p99 - F = {fmt_over(r.p('first', 99), F)}", f"p99 <= F + 0.3 s = {GOAL_FIRST:g} s",
            r.p("first", 99) <= GOAL_FIRST),
        Row(f"{name}: done", f"p50 {secs(r.p('done', 50))}, p99 {secs(r.p('done', 99))}",
            f"p99 - alone = {fmt_over(r.p('done', 99), alone_done)}",
            f"p99 <= alone + 0.5 s = {alone_done + GOAL_DONE_OVER_ALONE:.2f} s",
            r.p("done", 99) <= alone_done + GOAL_DONE_OVER_ALONE),
        Row(f"{name}: POST message (202)", f"p50 {ms(r.p('post', 50))}, p99 {ms(r.p('post', 99))}", "-",
            "p99 <= 250 ms", r.p("post", 99) <= GOAL_POST),
        Row(f"{name}: cached GET /chatroom every {0.5:g} s", probe_text(d.rooms), "-", "p99 <= 100 ms, no error",
            r.probe_p("rooms", 99) <= GOAL_ROOMS and all(x.ok for x in d.rooms)),
        Row(f"{name}: /healthz every {0.5:g} s", probe_text(d.health), "-", "no error",
            all(x.ok for x in d.health)),
        Row(f"{name}: errors; replies exactly once (database)",
            f"{error_text}; {r.exact}/{count} replies exactly once, complete, text = fake's"
            + (f" (problems: {fmt_counts(r.problems)})" if r.problems else ""), "-",
            "no error; every reply exactly once", not errors and r.exact == count),
        memory_row(r),
        connections_row(r, stack),
        Row(f"{name}: server CPU", f"web {r.cpu.get('web', 0):.1f} s + consumer {r.cpu.get('consumer', 0):.1f} s "
            f"over {d.wall:.1f} s wall (idle, the same servers spend {idle * 1000:.0f} ms/s); fake Gemini "
            f"{fake_cpu:.1f} s", f"{per_convo * 1000:.1f} ms/conversation ("
            f"{max(0.0, sum(r.cpu.values()) - idle * d.wall) / max(1, count) * 1000:.1f} above idle)",
            "-"),
        machine_row(name, r),
        client_row(name, d),
    ]
    return rows


def error_summary(errors: list[str], limit: int = 3) -> str:
    """'N conversation errors (kind: n, ...; first: ...)'."""
    if not errors:
        return "0 conversation errors"
    kinds: dict[str, int] = {}
    for error in errors:
        kind = error.split(":", 1)[0] if error.startswith(("post", "stream", "error event", "wrong text", "first",
                                                           "done")) else error
        kinds[kind] = kinds.get(kind, 0) + 1
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:limit]
    return (f"{len(errors)} conversation errors (" + ", ".join(f"{k}: {n}" for k, n in top)
            + (", ..." if len(kinds) > limit else "") + f"; first: {errors[0][:160]})")


def fmt_over(value: float, reference: float) -> str:
    return "never" if value == INF else f"{(value - reference) * 1000:+.0f} ms"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def probe_text(samples: list[client.Sample]) -> str:
    times = sorted(x.seconds for x in samples)
    failed = sum(not x.ok for x in samples)
    if not times:
        return "no samples"
    return (f"p50 {times[len(times) // 2] * 1000:.0f} ms, p99 {percentile(times, 99) * 1000:.0f} ms, "
            f"max {times[-1] * 1000:.0f} ms over {len(times)} samples" + (f", {failed} failed" if failed else ""))


def client_row(name: str, d: Drive) -> Row:
    share = d.client_cpu / d.wall if d.wall else 0.0
    late = max((t.lag for t in d.talks), default=0.0)
    verdict = "SATURATED: its delays are in every figure above" if share > SATURATED else "not saturated"
    return Row(f"{name}: load client (asyncio, this process)",
               f"CPU {d.client_cpu:.1f} s over {d.wall:.1f} s = {share:.0%} of a core; loop lag p99 "
               f"{d.lag_p99 * 1000:.0f} ms, max {d.lag_max * 1000:.0f} ms; latest start {late * 1000:.0f} ms late",
               verdict, "-")


def memory_row(r: Run) -> Row:
    peaks = r.peaks
    web = sorted(((peaks.role.get(pid, "?"), kib) for pid, kib in peaks.rss_kib.items()
                  if peaks.role.get(pid, "").startswith("web")), key=lambda x: x[0] != "web master")
    consumer = [kib for pid, kib in peaks.rss_kib.items() if peaks.role.get(pid) == "consumer"]
    worst = max([kib for _, kib in web] + consumer, default=0) / 1024
    text = ("web master " + ", ".join(f"{kib / 1024:.0f}" for role, kib in web if role == "web master") +
            " MiB, workers " + ", ".join(f"{kib / 1024:.0f}" for role, kib in web if role != "web master") +
            " MiB; consumer " + ", ".join(f"{kib / 1024:.0f}" for kib in consumer) + " MiB")
    return Row("C5 memory: peak RSS of each process during the steady row (VmHWM, sampled)", text,
               f"max {worst:.0f} MiB", f"each <= {GOAL_RSS_MIB} MiB", worst <= GOAL_RSS_MIB and worst > 0)


def connections_row(r: Run, stack: Stack) -> Row:
    """Peak connections of each process to PostgreSQL and Redis (its own sockets), and the totals."""
    peaks, pg, rd = r.peaks, port_of(stack.database_url, 5432), port_of(stack.redis_url, 6379)
    by_role: dict[str, list[str]] = {}
    for pid, ports in sorted(peaks.sockets.items()):
        by_role.setdefault(peaks.role.get(pid, "?"), []).append(f"{ports.get(pg, 0)}/{ports.get(rd, 0)}")
    detail = "; ".join(f"{role} {', '.join(v)}" for role, v in by_role.items())
    return Row("connections during the steady row (peaks)",
               f"PostgreSQL backends on the bench DB: {peaks.pg_total}; per process PostgreSQL/Redis: {detail}; "
               f"Redis server connected_clients: {peaks.redis_clients} (whole server, other clients included)"
               + (f"; monitor error: {r.monitor_error}" if r.monitor_error else ""), "-", "-")


def port_of(url: str, default: int) -> int:
    from urllib.parse import urlsplit
    return urlsplit(url).port or default


def burst_rows(r: Run) -> list[Row]:
    n = len(r.talks)
    errors = r.errors
    name = f"C3 burst: {n} conversations started within 1 s"
    return [
        Row(f"{name}: first delta", f"p50 {secs(r.p('first', 50))}, p99 {secs(r.p('first', 99))}; done p99 "
            f"{secs(r.p('done', 99))}; post p99 {ms(r.p('post', 99))}", f"p99 - F = {fmt_over(r.p('first', 99), F)}",
            f"p99 <= F + 2 s = {GOAL_BURST_FIRST:g} s", r.p("first", 99) <= GOAL_BURST_FIRST),
        Row(f"{name}: errors", error_summary(errors)
            + f"; {r.exact}/{n} replies exactly once; /healthz {probe_text(r.drive.health)}", "-", "no error",
            not errors and r.exact == n),
        client_row(name, r.drive),
    ]


def capacity_rows(servers: Servers, stack: Stack, people: Population, reader_token: str, s: ConvoSettings,
                  steady: Run, alone_done: float, idle: float) -> list[Row]:
    """The highest arrival rate meeting every steady goal, with the server CPU per conversation there."""
    abort = client.Abort(first=GOAL_FIRST, done=alone_done + GOAL_DONE_OVER_ALONE, post=GOAL_POST)
    def cpu(result: Run) -> tuple[float, float]:
        """Server CPU seconds per conversation: all of it, and above what the servers spend idle."""
        total, count = sum(result.cpu.values()), max(1, len(result.talks))
        return total / count, max(0.0, total - idle * result.drive.wall) / count

    # rate, met, why not, CPU per conversation, the run
    tried: list[tuple[float, bool, str, tuple[float, float], Run]] = []
    steady_broken = steady.broken(alone_done)
    tried.append((s.rate, not steady_broken, "; ".join(steady_broken), cpu(steady), steady))
    going_up = not steady_broken
    rates = sorted((r for r in s.capacity_rates if r > s.rate), reverse=False) if going_up else \
        sorted((r for r in s.capacity_rates if r < s.rate), reverse=True)
    for rate in rates:
        count = max(10, int(rate * s.capacity_seconds))
        talks = conversation(people.take(count), f"capacity {rate:g}")
        result = run(servers, stack, f"capacity {rate:g}", talks, [i / rate for i in range(count)], reader_token, s,
                     abort)
        broken = result.broken(alone_done)
        share = result.drive.client_cpu / result.drive.wall if result.drive.wall else 0.0
        why = "; ".join(broken)
        if share > SATURATED:  # a saturated client can only make the server look worse
            why += f"{'; ' if why else ''}load client saturated ({share:.0%} of a core)"
        tried.append((rate, not broken, why, cpu(result), result))
        print(f"    capacity run at {rate:g}/s ({count} conversations): {'met' if not broken else 'NOT met'}"
              + (f": {why}" if why else ""), flush=True)
        if result.dirty or broken:
            servers.restart()
        if going_up == bool(broken):  # up: first failure ends it; down: first success ends it
            break
    passing = [t for t in tried if t[1]]
    best = max(passing, key=lambda t: t[0]) if passing else None
    summary = ", ".join(f"{rate:g}/s " + ("met" if met else "not met") + (f" ({why})" if why else "")
                        for rate, met, why, _, _ in tried)
    if best is None:
        measured = f"below {min(t[0] for t in tried):g}/s (every rate tried missed a goal)"
        cpu_text = (f"{tried[0][3][0] * 1000:.1f} ms server CPU/conversation ({tried[0][3][1] * 1000:.1f} above "
                    f"idle) at {tried[0][0]:g}/s")
    else:
        top = max(t[0] for t in tried)
        measured = f"{best[0]:g} conversations/s" + (" (the highest rate tried)" if best[0] == top else "")
        cpu_text = (f"{best[3][0] * 1000:.1f} ms server CPU/conversation (web + consumer; {best[3][1] * 1000:.1f} "
                    f"above idle) at {best[0]:g}/s")
    shown = best or min(tried, key=lambda t: t[0])  # the machine's CPU where the rate is reported
    return [Row(f"C2 capacity: highest steady rate meeting every C1 goal (search runs of {s.capacity_seconds:g} s, "
                f"stopped early once a goal is lost; the {s.rate:g}/s run is C1's)", f"{measured}; tried: {summary}",
                cpu_text, f">= {GOAL_CAPACITY}/s", best is not None and best[0] >= GOAL_CAPACITY),
            machine_row(f"C2 capacity at {shown[0]:g}/s", shown[4])]


def open_stream_rows(servers: Servers, stack: Stack, people: Population, s: ConvoSettings) -> list[Row]:
    """Streams held open on pending replies: /healthz meanwhile, memory per stream, Redis connections per process."""
    n = s.open_streams
    users = people.take(min(n, 1000))
    targets = people.pending(users, n)
    web_pids = lambda: tree(servers.web.pid)  # noqa: E731
    time.sleep(1)
    before = sum(memory_kib(pid)[0] for pid in web_pids())
    measured: dict[str, object] = {}

    def on_held(held: client.Held) -> None:
        pids = web_pids()
        measured["rss_kib"] = sum(memory_kib(pid)[0] for pid in pids)
        redis_port, pg_port = port_of(stack.redis_url, 6379), port_of(stack.database_url, 5432)
        socks = sockets_to(pids, {redis_port, pg_port})
        measured["redis"] = {pid: c[redis_port] for pid, c in socks.items()}
        measured["pg"] = {pid: c[pg_port] for pid, c in socks.items()}
        measured["master"] = servers.web.pid

    # Sockets are counted once, at the end of the hold (on_held): reading thousands of fds every second here would
    # take the GIL from the client while it probes /healthz.
    with Monitor({"web": servers.web.pid}, stack.database_url, stack.dbname, stack.redis_url, every=1.0,
                 sockets=False) as monitor:
        held = asyncio.run(client.hold_streams(servers.base, targets, s.hold, 0.25, on_held))
    after = measured.get("rss_kib", before)
    server_open = held.server_open
    is_open = server_open if server_open is not None else held.answered
    per_stream = (after - before) / is_open if is_open else INF
    redis = measured.get("redis", {})
    worker_redis = {pid: c for pid, c in redis.items() if pid != measured.get("master")}
    worker_pg = [c for pid, c in measured.get("pg", {}).items() if pid != measured.get("master")]
    worst_redis = max(redis.values(), default=0)
    health = sorted(x.seconds for x in held.health)
    health_p99 = percentile(health, 99)
    name = f"C4 open streams: {n} SSE streams on pending replies"
    opened = (f"server's open-streams gauge {server_open}" if server_open is not None else
              "server gauge unavailable") + (f"; client: {held.answered} answered 200 (headers), {held.sent} "
                                             f"requests sent, {held.failed} failed"
                                             + (f" ({fmt_counts(held.failures)})" if held.failures else "")
                                             + f"; all open after {held.open_seconds:.1f} s, then held {s.hold:g} s")
    all_open = is_open >= n and held.failed == 0
    share = held.client_cpu / held.wall if held.wall else 0.0
    return [
        Row(f"{name}: /healthz every 0.25 s while they are open", f"{probe_text(held.health)}; {opened}",
            f"{is_open}/{n} open", "p99 <= 100 ms; all open", health_p99 <= GOAL_HEALTH_OPEN and all_open
            and all(x.ok for x in held.health)),
        Row(f"{name}: memory per open stream (web RSS delta / open streams)",
            f"web processes {before / 1024:.0f} -> {after / 1024:.0f} MiB for {is_open} open streams",
            ("n/a" if per_stream == INF else f"{per_stream:.1f} KiB/stream") + ("" if all_open else
                                                                                f" ({is_open}/{n} open)"),
            f"<= {GOAL_STREAM_KIB} KiB, all open",
            per_stream <= GOAL_STREAM_KIB and all_open),
        Row(f"{name}: Redis connections per web process (its sockets, at the end of the hold)",
            "per worker: " + (", ".join(str(c) for c in worker_redis.values()) or "-")
            + f"; most of any web process: {worst_redis} (PostgreSQL connections per worker: "
            + (", ".join(str(c) for c in worker_pg) or "-") + f"; PostgreSQL backends on the bench DB, peak: "
            f"{monitor.peaks.pg_total})", "-" if all_open else f"{is_open}/{n} open",
            f"<= {GOAL_REDIS_PER_WEB}, all open",
            worst_redis <= GOAL_REDIS_PER_WEB and all_open),
        Row(f"{name}: load client", f"CPU {held.client_cpu:.1f} s over {held.wall:.1f} s = {share:.0%} of a core",
            "SATURATED" if share > SATURATED else "not saturated", "-"),
    ]
