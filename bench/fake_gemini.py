"""A light fake Gemini for the conversation figures: one asyncio process, same wire format as tests/fakes/gemini.py.

The threaded fake of the tests (a thread per connection) spends about 1.8 ms of CPU per streamed answer, which is
a fifth of a core at 100 answers a second on a 2-core machine that the server needs. This one serves
``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` (and ``:generateContent``) with the very same
bodies (it builds them with the test fake's functions): the first chunk ``first_chunk_delay`` seconds after the
request arrived, then the others ``chunk_delay`` apart on a fixed schedule, the last one with finishReason and
usageMetadata, as ``data: {...}\\r\\n\\r\\n`` events over chunked HTTP/1.1 with keep-alive.

    python -m bench.fake_gemini --port 8091 --first-chunk-delay 1 --chunk-count 9 --chunk-delay 0.3
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from tests.fakes.gemini import _answer, _finish, _invalid_request, default_reply, error_body, split_text

_ROUTE = re.compile(r"^/[^/]+/(?:models|tunedModels)/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")


class Paced:
    """The fake's knobs and its counters."""

    def __init__(self, first_chunk_delay: float, chunk_count: int, chunk_delay: float):
        self.first_chunk_delay, self.chunk_count, self.chunk_delay = first_chunk_delay, chunk_count, chunk_delay
        self.answered = 0
        self.open = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 connection, kept alive for as long as the client wants."""
        self.open += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                arrived = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                if not await self.answer(writer, method, target, headers, raw, arrived):
                    return
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open -= 1
            writer.close()

    async def answer(self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str],
                     raw: bytes, arrived: float) -> bool:
        """Answer one request; False when the connection must close."""
        url = urlsplit(target)
        query = parse_qs(url.query)
        match = _ROUTE.match(url.path)
        if method != "POST" or match is None:
            return await _json(writer, 404, error_body(404, f"Method not found: {method} {url.path}"))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not (headers.get("x-goog-api-key") or query.get("key")):
            return await _json(writer, 403, error_body(403, "Method doesn't allow unregistered callers."))
        problem = _invalid_request(body)
        if problem:
            return await _json(writer, 400, error_body(400, problem))
        model, stream = match["model"], match["method"] == "streamGenerateContent"
        text = default_reply(body)
        events = [_answer(model, piece) for piece in split_text(text, self.chunk_count if stream else 1)]
        _finish(events[-1], "STOP", body, text)
        response_id = uuid.uuid4().hex[:22]
        for event in events:
            event["responseId"] = response_id
        await asyncio.sleep(max(0.0, arrived + self.first_chunk_delay - time.monotonic()))
        if not stream or (query.get("alt") or [""])[0] != "sse":
            return await _json(writer, 200, events[0] if not stream else events)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                     b"Server: FakeGemini/1.0 (bench)\r\n\r\n")
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(max(0.0, arrived + self.first_chunk_delay + i * self.chunk_delay - time.monotonic()))
            data = f"data: {json.dumps(event)}\r\n\r\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.answered += 1
        return True


async def _json(writer: asyncio.StreamWriter, status: int, payload: object) -> bool:
    data = json.dumps(payload).encode()
    writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s"
                 % (status, b"OK" if status == 200 else b"Error", len(data), data))
    await writer.drain()
    return True


async def run(host: str, port: int, fake: Paced) -> None:
    """Serve until SIGINT or SIGTERM."""
    server = await asyncio.start_server(fake.serve, host, port, backlog=4096, limit=1 << 20)
    print(f"Fake Gemini (paced, asyncio) on http://{host}:{port}: first chunk after {fake.first_chunk_delay} s, "
          f"{fake.chunk_count} chunks {fake.chunk_delay} s apart", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    print(f"answered {fake.answered}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--first-chunk-delay", type=float, default=1.0, help="F: seconds to the first chunk")
    parser.add_argument("--chunk-count", type=int, default=9, help="chunks per streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.3, help="seconds between chunks")
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.port, Paced(args.first_chunk_delay, args.chunk_count, args.chunk_delay)))


if __name__ == "__main__":
    main()
