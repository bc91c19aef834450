"""A fake Gemini API on 127.0.0.1 that speaks Google's REST wire format, for tests and benchmarks.

It serves ``POST /{version}/models/{model}:generateContent`` and
``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` the way
generativelanguage.googleapis.com does: camelCase GenerateContentResponse JSON,
SSE ``data: {...}\\r\\n\\r\\n`` events over chunked HTTP/1.1, and errors shaped
``{"error": {"code", "message", "status"}}``. The real google-genai SDK talks to
it through ``GEMINI_BASE_URL``. Standard library only.

By hand: ``python -m tests.fakes.gemini --port 8090 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_ROUTE = re.compile(
    r"^/(?P<version>[^/]+)/(?:models|tunedModels)/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)

# google.rpc.Code names and the messages Google sends with them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    408: ("DEADLINE_EXCEEDED", "Request timed out."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    501: ("NOT_IMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

_UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API."
)

Behaviour = tuple[Any, ...]


def default_reply(body: dict[str, Any]) -> str:
    """Deterministic answer: 'Echo: ' + the text of the last user content."""
    for content in reversed(body.get("contents") or []):
        if content.get("role", "user") == "user":
            text = "".join(part.get("text", "") for part in content.get("parts") or [])
            return f"Echo: {text}"
    return "Echo: "


def error_body(code: int, message: str | None = None) -> dict[str, Any]:
    """Google's error envelope for an HTTP status."""
    status, default_message = _ERRORS.get(code, ("UNKNOWN", "Unknown error."))
    return {"error": {"code": code, "message": message or default_message, "status": status}}


def split_text(text: str, count: int) -> list[str]:
    """Split text into at most count non-empty pieces of near-equal length whose join is text."""
    count = max(1, min(count, len(text))) if text else 1
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


class FakeGemini:
    """A Gemini-compatible HTTP server in a background thread, with knobs for latency, errors and blocks.

    ``script`` is a queue of one-shot behaviours, each consumed by one request:
    ``("reply", text)``, ``("error", status[, message])``, ``("timeout", seconds)`` (stall, then answer),
    ``("block_prompt", reason)``, ``("block_finish", reason)``, ``("empty",)``,
    ``("error_mid_stream", status)`` (streams: one chunk, then an error event),
    ``("disconnect",)`` (hang up without a complete response).
    When the script is empty, ``reply_fn(body)`` gives the answer.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None, log_requests: bool = False
    ):
        self.host = host
        self.port = port
        self.api_key = api_key  # when set, any other key is refused as Google refuses an invalid key
        self.log_requests = log_requests
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.reset()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeGemini:
        """Bind and serve in a daemon thread; returns self."""
        handler = type("Handler", (_Handler,), {"fake": self})  # each server's handlers see their own fake
        self._stopping.clear()
        server = self._server = _Server((self.host, self.port), handler)
        self.port = server.server_address[1]
        # A short poll interval keeps stop() (and so each test) fast.
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="fake-gemini", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake stalled handlers and drop open connections."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What GEMINI_BASE_URL should be set to."""
        return f"http://{self.host}:{self.port}"

    # -- knobs and records ---------------------------------------------------

    def reset(self) -> None:
        """Forget requests and restore every knob to its default."""
        with self._lock:
            self._requests: list[dict[str, Any]] = []
            self.script: list[Behaviour] = []
        self.latency = 0.0
        self.reply_fn: Callable[[dict[str, Any]], str] = default_reply
        self.chunk_count = 3
        self.chunk_delay = 0.0

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of every request received: path, version, model, stream, body, api_key, client_port."""
        with self._lock:
            return list(self._requests)

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)

    def _next_behaviour(self) -> Behaviour | None:
        with self._lock:
            return self.script.pop(0) if self.script else None

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open many connections at once


class _Handler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection (kept alive, as the SDK's connection pool expects)."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeGemini/1.0"
    fake: FakeGemini

    def setup(self) -> None:
        super().setup()
        # Small writes (headers, then body, then SSE chunks) must not wait for delayed ACKs (~40 ms each).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._send_json(404, error_body(404, f"Method not found: GET {self.path}"))

    def do_POST(self) -> None:
        arrived = time.monotonic()
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = _ROUTE.match(url.path)
        if match is None:
            self._send_json(404, error_body(404, f"Method not found: {url.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        api_key = self.headers.get("x-goog-api-key") or next(iter(query.get("key", [])), None)
        stream = match["method"] == "streamGenerateContent"
        sse = stream and (query.get("alt") or [""])[0] == "sse"
        self.fake._record(
            {
                "path": url.path,
                "version": match["version"],
                "model": match["model"],
                "stream": stream,
                "body": body,
                "api_key": api_key,
                "client_port": self.client_address[1],  # same port = the client reused its connection
            }
        )

        if not api_key:
            self._send_json(403, error_body(403, _UNREGISTERED_CALLER))
            return
        if self.fake.api_key is not None and api_key != self.fake.api_key:
            self._send_json(400, error_body(400, "API key not valid. Please pass a valid API key."))
            return
        problem = _invalid_request(body)
        if problem:
            self._send_json(400, error_body(400, problem))
            return

        behaviour = self.fake._next_behaviour() or ("reply", None)
        kind, args = behaviour[0], behaviour[1:]
        if kind == "timeout":  # stall, then answer normally (the client has usually given up by then)
            self.fake._sleep(self.fake.latency + float(args[0]))
            if self.fake._stopping.is_set():
                self.close_connection = True
                return
            kind, args = "reply", (None,)
        # The answer is ready `latency` seconds after the request arrived, whatever this fake spent on it: the
        # latency is the model's, the fake's own work is no part of it.
        events = _events(self.fake, kind, args, body, match["model"], stream)
        self.fake._sleep(arrived + self.fake.latency - time.monotonic())
        if kind == "error" or (kind == "error_mid_stream" and not stream):
            status = int(args[0])
            self._send_json(status, error_body(status, args[1] if len(args) > 1 else None))
            return
        if kind == "disconnect" and not stream:
            self._hang_up()
            return
        if events is None:
            self._send_json(500, error_body(500, f"FakeGemini: unknown script behaviour {behaviour!r}"))
        elif not stream:
            self._send_json(200, events[0])
        elif sse:
            self._send_sse(events)
        else:  # without alt=sse Google streams one JSON array
            self._send_json(200, [event for event in events if event is not None])

    # -- writing -------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _send_sse(self, events: Sequence[dict[str, Any] | None]) -> None:
        """Stream events as SSE over chunked encoding; a None event means hang up mid-stream."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, event in enumerate(events):
                if i:
                    self.fake._sleep(self.fake.chunk_delay)
                if event is None:
                    self._hang_up()
                    return
                data = f"data: {json.dumps(event)}\r\n\r\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _events(
    fake: FakeGemini, kind: str, args: tuple[Any, ...], body: dict[str, Any], model: str, stream: bool
) -> list[dict[str, Any] | None] | None:
    """The response bodies (one, or a stream's chunks) for a behaviour; None ends the stream by hanging up."""
    events: list[dict[str, Any] | None]
    if kind == "reply":
        text = args[0] if args and args[0] is not None else fake.reply_fn(body)
        answers = [_answer(model, piece) for piece in split_text(text, fake.chunk_count if stream else 1)]
        _finish(answers[-1], "STOP", body, text)
        events = list(answers)
    elif kind == "block_prompt":
        events = [_prompt_blocked(model, str(args[0]), body)]
    elif kind == "block_finish":  # streams show some text before the filter stops them
        events = [_answer(model, "Here is")] if stream else []
        events.append(_finish_blocked(model, str(args[0]), body))
    elif kind == "empty":
        empty = {"candidates": [{"content": {"role": "model"}, "index": 0}], "modelVersion": model}
        events = [_finish(empty, "STOP", body, "")]
    elif kind == "error_mid_stream":
        events = [_answer(model, "Partial "), error_body(int(args[0]))]
    elif kind == "disconnect":
        events = [_answer(model, "Partial "), None]
    else:
        return None
    response_id = uuid.uuid4().hex[:22]  # one id for all chunks of a response, as Google does
    for event in events:
        if event is not None and "error" not in event:
            event["responseId"] = response_id
    return events


def _invalid_request(body: Any) -> str | None:
    """The INVALID_ARGUMENT message Google would give for a malformed GenerateContentRequest, if any."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if content.get("role", "user") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role)"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            if isinstance(part, dict) and "text" in part and part["text"] == "":
                return (
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].data:"
                    " required oneof field 'data' must have one initialized field"
                )
            blob = part.get("inlineData", part.get("inline_data")) if isinstance(part, dict) else None
            if blob is not None and (_blob_mime_type(blob) is None or _blob_bytes(blob) is None):
                return (f"* GenerateContentRequest.contents[{i}].parts[{j}].inline_data:"
                        " mime_type and base64 data are required")
    return None


def _blob_mime_type(blob: Any) -> str | None:
    """A Blob's type: proto JSON accepts the camelCase and the original (snake_case) field name; the SDK sends the
    latter."""
    value = blob.get("mimeType", blob.get("mime_type")) if isinstance(blob, dict) else None
    return value if isinstance(value, str) and value else None


def _blob_bytes(blob: Any) -> bytes | None:
    """A Blob's data: proto JSON bytes are base64, standard or URL-safe (the SDK sends URL-safe), padded or not."""
    data = blob.get("data") if isinstance(blob, dict) else None
    if not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4), validate=True)
    except ValueError:
        return None


def inline_parts(body: dict[str, Any]) -> list[list[tuple[str, bytes]]]:
    """Per content of a recorded request body, its inline files as (mime type, bytes)."""
    found = []
    for content in body.get("contents") or []:
        blobs = [part.get("inlineData", part.get("inline_data")) for part in content.get("parts") or []]
        found.append([(_blob_mime_type(b), _blob_bytes(b)) for b in blobs if b is not None])
    return found


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _answer(model: str, text: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
        "modelVersion": model,
    }


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = _tokens(json.dumps(body.get("contents")) + json.dumps(body.get("systemInstruction") or ""))
    answered = _tokens(answer)
    return {"promptTokenCount": prompt, "candidatesTokenCount": answered, "totalTokenCount": prompt + answered}


def _finish(chunk: dict[str, Any], reason: str, body: dict[str, Any], answer: str) -> dict[str, Any]:
    """Mark the last chunk finished with reason and usage, as Google's final chunk is."""
    chunk["candidates"][0]["finishReason"] = reason
    chunk["usageMetadata"] = _usage(body, answer)
    return chunk


def _safety_ratings(blocked: bool) -> list[dict[str, Any]]:
    rating = {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH" if blocked else "NEGLIGIBLE"}
    return [{**rating, "blocked": True} if blocked else rating]


def _prompt_blocked(model: str, reason: str, body: dict[str, Any]) -> dict[str, Any]:
    feedback: dict[str, Any] = {"blockReason": reason}
    if reason == "SAFETY":
        feedback["safetyRatings"] = _safety_ratings(True)
    return {"promptFeedback": feedback, "usageMetadata": _usage(body, ""), "modelVersion": model}


def _finish_blocked(model: str, reason: str, body: dict[str, Any]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
    if reason == "SAFETY":
        candidate["safetyRatings"] = _safety_ratings(True)
    return {"candidates": [candidate], "usageMetadata": _usage(body, ""), "modelVersion": model}


def main(argv: list[str] | None = None) -> None:
    """Serve a fake Gemini until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Fake Gemini API for local runs: point GEMINI_BASE_URL at it.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--chunk-count", type=int, default=3, help="chunks per streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    fake = FakeGemini(args.host, args.port, api_key=args.api_key, log_requests=not args.quiet)
    fake.latency, fake.chunk_count, fake.chunk_delay = args.latency, args.chunk_count, args.chunk_delay
    fake.start()
    print(f"Fake Gemini on {fake.base_url}", flush=True)
    print(f"Set GEMINI_BASE_URL={fake.base_url} and any GEMINI_API_KEY; Ctrl-C stops.", flush=True)
    done = threading.Event()
    # Ctrl-C and a plain `kill` both stop it cleanly (a backgrounded process may have SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    try:
        done.wait()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
