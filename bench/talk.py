"""The asyncio load client of the conversation figures: simulated users as coroutines on one event loop (aiohttp).

One user's conversation: POST /chatroom/{room}/message (202 with {message, reply}), then GET the reply's SSE stream
and read it to `done`. Times are taken from the start of the post. /healthz and a cached GET /chatroom are sampled
on fresh connections while the conversations run. The client measures itself too: its CPU time and how late its
event loop wakes up, so a saturated client shows in the output instead of passing for a slow server.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field

import aiohttp

from bench.load import percentile

INF = math.inf


@dataclass
class ChatUser:
    """A Pro user with one room and an access token."""

    id: int
    token: str
    room: int


@dataclass
class Talk:
    """One conversation, as the client saw it; seconds from the start of its post."""

    user: ChatUser
    content: str
    lag: float = 0.0  # how late the client started it (its own event loop being busy)
    started: float = 0.0  # perf_counter at the post's start
    post: float | None = None
    first: float | None = None
    done: float | None = None
    error: str | None = None
    message_id: int | None = None
    reply_id: int | None = None

    @property
    def expected(self) -> str:
        """What the fake Gemini answers to this message."""
        return "Echo: " + self.content


@dataclass
class Sample:
    """One probe request."""

    seconds: float
    ok: bool


@dataclass
class Drive:
    """Everything one run of conversations measured on the client side."""

    talks: list[Talk]
    health: list[Sample] = field(default_factory=list)
    rooms: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0
    lag_p99: float = 0.0  # event-loop wake-up lateness, seconds
    lag_max: float = 0.0
    aborted: str | None = None


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def connector(fresh: bool = False) -> aiohttp.TCPConnector:
    """No connection limit. Pooled connections are dropped well before gunicorn's keep-alive (5 s) closes them;
    fresh: a new connection for each request (probes: the kernel, not our pool, picks the worker)."""
    if fresh:
        return aiohttp.TCPConnector(limit=0, force_close=True)
    return aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=2)


async def converse(session: aiohttp.ClientSession, base: str, talk: Talk, timeout: float) -> Talk:
    """Post the message and read the reply's stream to its end; errors and timeouts land in talk.error."""
    stage = "post"
    talk.started = started = time.perf_counter()
    headers = auth(talk.user.token)
    try:
        async with asyncio.timeout(timeout):
            async with session.post(f"{base}/chatroom/{talk.user.room}/message", json={"content": talk.content},
                                    headers=headers) as response:
                payload = await response.read()
                talk.post = time.perf_counter() - started
                if response.status != 202:
                    talk.error = f"post answered {response.status}: {payload[:120]!r}"
                    return talk
            body = json.loads(payload)
            talk.message_id, talk.reply_id = body["message"]["id"], body["reply"]["id"]
            stage = "stream"
            url = f"{base}/chatroom/{talk.user.room}/message/{talk.reply_id}/stream"
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    talk.error = f"stream answered {response.status}: {(await response.read())[:120]!r}"
                    return talk
                stage = "first delta"
                parts: list[str] = []
                buffer = b""
                async for data in response.content.iter_any():  # whatever arrived: fewer wake-ups than by line
                    buffer += data
                    while b"\n\n" in buffer:
                        block, buffer = buffer.split(b"\n\n", 1)
                        event = payload = None
                        for line in block.split(b"\n"):
                            if line.startswith(b"event:"):
                                event = line[6:].strip()
                            elif line.startswith(b"data:"):
                                payload = line[5:]
                        if event is None or payload is None:
                            continue  # a comment (keep-alive)
                        now = time.perf_counter() - started
                        if event == b"delta":
                            if talk.first is None:
                                talk.first, stage = now, "done"
                            parts.append(json.loads(payload)["text"])
                        elif event == b"reset":
                            parts.clear()
                        elif event == b"done":
                            talk.done = now
                            text, stored = "".join(parts), json.loads(payload).get("content")
                            if text != talk.expected or stored != talk.expected:
                                talk.error = f"wrong text: streamed {text[:60]!r}, stored {str(stored)[:60]!r}"
                            return talk
                        elif event == b"error":
                            talk.error = f"error event: {payload[:200].decode(errors='replace')}"
                            return talk
                talk.error = f"stream ended before done (at {stage})"
    except TimeoutError:
        talk.error = f"timeout after {timeout:g} s waiting for {stage}"
    except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
        talk.error = f"{stage}: {type(exc).__name__}: {str(exc)[:100]}"
    return talk


async def probe(session: aiohttp.ClientSession, url: str, headers: dict[str, str], out: list[Sample],
                timeout: float) -> None:
    """One request; its latency (the timeout when it failed to answer) and whether it answered 200."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers=headers) as response:
                await response.read()
                out.append(Sample(time.perf_counter() - started, response.status == 200))
    except (TimeoutError, aiohttp.ClientError, OSError):
        out.append(Sample(max(time.perf_counter() - started, timeout), False))


async def sampler(session: aiohttp.ClientSession, url: str, headers: dict[str, str], every: float,
                  stop: asyncio.Event, out: list[Sample], timeout: float = 10) -> None:
    """probe() every `every` seconds until stop is set (a slow answer does not delay the next probe)."""
    pending = []
    while not stop.is_set():
        pending.append(asyncio.create_task(probe(session, url, headers, out, timeout)))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    await asyncio.gather(*pending)


async def lag_watch(stop: asyncio.Event, out: list[float], tick: float = 0.05) -> None:
    """How late the loop wakes from a short sleep: the client's own delay on every figure it takes."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(tick)
        out.append(max(0.0, loop.time() - before - tick))


@dataclass
class Abort:
    """Give up on a run once its goals can no longer hold (used by the capacity search, never by the rows)."""

    first: float  # seconds
    done: float
    post: float

    def violations(self, talks: list[Talk], now: float) -> tuple[int, dict[str, int]]:
        """Conversations that already broke a goal or failed, and how many broke each."""
        count, kinds = 0, {"error": 0, "post": 0, "first delta": 0, "done": 0}
        for talk in talks:
            if not talk.started:
                continue
            age = now - talk.started
            broke = {"error": bool(talk.error),
                     "post": (talk.post if talk.post is not None else age) > self.post,
                     "first delta": (talk.first if talk.first is not None else age) > self.first,
                     "done": (talk.done if talk.done is not None else age) > self.done}
            if any(broke.values()):
                count += 1
                for kind, hit in broke.items():
                    kinds[kind] += hit
        return count, kinds


async def drive(base: str, talks: list[Talk], offsets: list[float], reader_token: str, timeout: float,
                every: float = 0.5, abort: Abort | None = None) -> Drive:
    """Start talks[i] at offsets[i] seconds (open loop), sample /healthz and GET /chatroom meanwhile."""
    loop = asyncio.get_running_loop()
    result = Drive(talks)
    stop, lags = asyncio.Event(), []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(connector=connector(), timeout=aiohttp.ClientTimeout(total=None)) as session, \
            aiohttp.ClientSession(connector=connector(fresh=True),
                                  timeout=aiohttp.ClientTimeout(total=None)) as probes:
        watchers = [asyncio.create_task(sampler(probes, f"{base}/healthz", {}, every, stop, result.health)),
                    asyncio.create_task(sampler(probes, f"{base}/chatroom", auth(reader_token), every, stop,
                                                result.rooms)),
                    asyncio.create_task(lag_watch(stop, lags))]
        start = loop.time() + 0.1

        async def at(talk: Talk, offset: float) -> Talk:
            await asyncio.sleep(max(0.0, start + offset - loop.time()))
            talk.lag = loop.time() - start - offset
            return await converse(session, base, talk, timeout)

        pending = {asyncio.create_task(at(talk, offset)) for talk, offset in zip(talks, offsets)}
        allowed = len(talks) - math.ceil(0.99 * len(talks))  # more violations than this break a p99
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            if abort is not None and pending:
                broken, kinds = abort.violations(talks, time.perf_counter())
                if broken > allowed:
                    started = sum(1 for talk in talks if talk.started)
                    result.aborted = (f"stopped early, {started} of {len(talks)} started: {broken} broke a goal ("
                                      + ", ".join(f"{kind} {n}" for kind, n in kinds.items() if n) + ")")
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        stop.set()
        await asyncio.gather(*watchers)
    result.wall = time.perf_counter() - wall0
    result.client_cpu = time.process_time() - cpu0
    lags.sort()
    result.lag_p99, result.lag_max = percentile(lags, 99), (lags[-1] if lags else 0.0)
    return result


async def alone(base: str, talks: list[Talk], timeout: float) -> list[Talk]:
    """The reference: the same conversation with nothing else running, one after another."""
    async with aiohttp.ClientSession(connector=connector(), timeout=aiohttp.ClientTimeout(total=None)) as session:
        for talk in talks:
            await converse(session, base, talk, timeout)
    return talks


# -- open streams ---------------------------------------------------------------------------------

@dataclass
class Held:
    """What holding many streams open measured on the client side."""

    asked: int
    sent: int = 0  # requests written to a connection
    answered: int = 0  # response headers received (200)
    failed: int = 0  # refused, reset, non-200, or ended early
    failures: dict[str, int] = field(default_factory=dict)
    health: list[Sample] = field(default_factory=list)
    server_open: int | None = None  # the server's own gauge (gemini_backend_open_streams), when it has one
    client_cpu: float = 0.0
    wall: float = 0.0
    open_seconds: float = 0.0  # from the first request to the last one sent


async def hold_streams(base: str, targets: list[tuple[ChatUser, int]], hold: float, every: float,
                       on_held, batch: int = 250, batch_every: float = 0.25) -> Held:
    """Open a stream on each (user, pending reply id), `batch` at a time; hold them all `hold` seconds while
    probing /healthz, then call on_held(held) (still holding: memory and connections are read there)."""
    held = Held(len(targets))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trace = aiohttp.TraceConfig()

    async def sent(session, context, params) -> None:
        held.sent += 1
    trace.on_request_headers_sent.append(sent)

    def fail(reason: str) -> None:
        held.failed += 1
        held.failures[reason] = held.failures.get(reason, 0) + 1

    async def one(user: ChatUser, reply_id: int, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(f"{base}/chatroom/{user.room}/message/{reply_id}/stream",
                                   headers=auth(user.token)) as response:
                if response.status != 200:
                    fail(f"answered {response.status}")
                    return
                held.answered += 1
                async for _ in response.content:  # keep-alive comments, until cancelled
                    pass
                fail("stream ended")
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            fail(type(exc).__name__)

    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector(), timeout=aiohttp.ClientTimeout(total=None),
                                     trace_configs=[trace]) as session, \
            aiohttp.ClientSession(connector=connector(fresh=True),
                                  timeout=aiohttp.ClientTimeout(total=None)) as probes:
        tasks = []
        for i in range(0, len(targets), batch):
            tasks += [asyncio.create_task(one(user, reply_id, session)) for user, reply_id in targets[i:i + batch]]
            await asyncio.sleep(batch_every)
        # Every stream answers its headers at once (an opening comment), so "open" is seen by the client: wait
        # until all are (or have failed), then probe while they are held, not while the server is opening them.
        deadline = time.perf_counter() + 120
        while held.answered + held.failed < len(targets) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        held.open_seconds = time.perf_counter() - wall0
        await asyncio.sleep(0.5)
        probing = asyncio.create_task(sampler(probes, f"{base}/healthz", {}, every, stop, held.health))
        await asyncio.sleep(hold)
        try:
            held.server_open = await open_streams_gauge(probes, base)
        except Exception:
            held.server_open = None
        await asyncio.get_running_loop().run_in_executor(None, on_held, held)
        stop.set()
        await probing
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    held.client_cpu = time.process_time() - cpu0
    held.wall = time.perf_counter() - wall0
    return held


async def open_streams_gauge(session: aiohttp.ClientSession, base: str) -> int | None:
    """gemini_backend_open_streams from GET /metrics, when the app serves it there."""
    async with asyncio.timeout(20):
        async with session.get(f"{base}/metrics") as response:
            if response.status != 200:
                return None
            for line in (await response.text()).splitlines():
                if line.startswith("gemini_backend_open_streams"):
                    return int(float(line.split()[-1]))
    return None
