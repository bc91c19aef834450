"""The Gemini client (google-genai): chat history in, reply text out, provider failures mapped to AiError."""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

DEFAULT_MODEL = "gemini-2.5-flash"

# Finish reasons that mean "stopped by a safety or policy filter" rather than "done"; a retry
# gets the same answer, so these end the reply as blocked (names from google.genai.types.FinishReason).
BLOCKING_FINISH_REASONS = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "MODEL_ARMOR"}
    | {"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
)


def preload(config: Mapping[str, Any] | None = None) -> None:
    """Import the SDK now, in one thread: concurrent first imports from worker threads can deadlock.

    Given the app's config, also build its client: the SDK's HTTP stack imports more on its first use.
    """
    from google import genai  # noqa: F401
    from google.genai import errors, types  # noqa: F401
    _transport_error_types()
    if config is None:
        return
    try:
        settings = GeminiSettings.from_config(config)
    except ValueError:
        return  # a bad setting is reported by every reply, as without preloading
    if settings.api_key:
        get_client(settings)._client()


@dataclass(frozen=True)
class GeminiSettings:
    """How to reach Gemini; frozen and hashable so one client can be cached per distinct settings."""

    api_key: str | None
    model: str = DEFAULT_MODEL
    base_url: str | None = None  # None = Google's endpoint
    timeout: float = 30.0  # seconds per call (per read gap when streaming)
    system_instruction: str | None = None
    history_token_budget: int = 8000
    max_connections: int = 100  # concurrent calls (and so HTTP connections) the client allows: the consumer's

    def __post_init__(self) -> None:
        # A zero timeout would silently mean "no timeout" to the SDK, so refuse it loudly.
        if not self.timeout > 0:
            raise ValueError(f"GEMINI_TIMEOUT must be a positive number of seconds, got {self.timeout!r}")
        if self.history_token_budget < 1:
            raise ValueError(
                f"GEMINI_HISTORY_TOKEN_BUDGET must be a positive integer, got {self.history_token_budget!r}"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GeminiSettings:
        """Read the GEMINI_* keys of a dict-like config (Flask app.config); blank strings count as unset."""

        def text(key: str) -> str | None:
            value = config.get(key)
            return (str(value).strip() or None) if value is not None else None

        timeout = config.get("GEMINI_TIMEOUT")
        return cls(
            api_key=text("GEMINI_API_KEY"),
            model=choosable_models(config)[0],
            base_url=text("GEMINI_BASE_URL"),
            timeout=float(timeout) if timeout not in (None, "") else 30.0,
            system_instruction=text("GEMINI_SYSTEM_INSTRUCTION"),
            history_token_budget=history_budget(config),
            max_connections=int(config.get("WORKER_CONCURRENCY") or 100),
        )

    def for_room(self, room: RoomSettings | None = None) -> RoomSettings:
        """What a call for this room sends: the room's choices, with the server's model and system instruction
        where the room has none."""
        room = room or RoomSettings()
        return dataclasses.replace(room, model=room.model or self.model,
                                   system_instruction=room.system_instruction or self.system_instruction)


@dataclass(frozen=True)
class RoomSettings:
    """What a chatroom chose for its replies; None: the server's setting (model, system instruction) or the
    model's own default (temperature, output length)."""

    model: str | None = None
    system_instruction: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


def history_budget(config: Mapping[str, Any]) -> int:
    """GEMINI_HISTORY_TOKEN_BUDGET: the estimated tokens of history (text and files) a request sends."""
    budget = config.get("GEMINI_HISTORY_TOKEN_BUDGET")
    return int(budget) if budget not in (None, "") else 8000


def choosable_models(config: Mapping[str, Any]) -> list[str]:
    """GEMINI_MODELS, the models a room may choose (the first is the default), else GEMINI_MODEL alone."""
    return list(config.get("GEMINI_MODELS") or [config.get("GEMINI_MODEL") or DEFAULT_MODEL])


@dataclass(frozen=True)
class Attachment:
    """A file sent with a user turn as an inline part; data is loaded only for the turns a request sends."""

    mime_type: str
    sha256: str
    tokens: int  # its cost against the history budget (attachment_tokens)
    data: bytes | None = None
    file_id: int = 0

    @property
    def wire_mime_type(self) -> str:
        """The type Gemini is told: Markdown is plain text to it."""
        return "text/plain" if self.mime_type.startswith("text/") else self.mime_type


@dataclass(frozen=True)
class Turn:
    """One message of a chatroom's history, oldest first."""

    role: str  # "user" or "model"
    text: str
    attachments: tuple[Attachment, ...] = ()

    @property
    def tokens(self) -> int:
        """Its estimated cost: the text's and its files'."""
        return estimate_tokens(self.text) + sum(a.tokens for a in self.attachments)


@dataclass
class Usage:
    """Token counts of one streamed answer, as the newest chunk carrying usage_metadata reported them."""

    prompt_tokens: int = 0
    output_tokens: int = 0  # the answer
    thinking_tokens: int = 0  # the model's thoughts, billed as output too
    cached_tokens: int = 0  # the part of the prompt served from Gemini's context cache
    total_tokens: int = 0
    reported: bool = False  # whether Gemini reported any usage at all

    def record(self, metadata: Any) -> None:
        """Keep the newest counts: Gemini reports running totals, complete on the final chunk."""
        if metadata is None:
            return
        self.reported = True
        self.prompt_tokens = metadata.prompt_token_count or self.prompt_tokens
        self.output_tokens = metadata.candidates_token_count or self.output_tokens
        self.thinking_tokens = metadata.thoughts_token_count or self.thinking_tokens
        self.cached_tokens = metadata.cached_content_token_count or self.cached_tokens
        self.total_tokens = metadata.total_token_count or (
            self.prompt_tokens + self.output_tokens + self.thinking_tokens)

    @property
    def billed_output_tokens(self) -> int:
        """The answer and the thoughts: both are billed as output."""
        return self.output_tokens + self.thinking_tokens

    def as_record(self) -> dict[str, int] | None:
        """The counts as the reply's `usage` (None when Gemini reported none)."""
        if not self.reported:
            return None
        return {"prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "thinking_tokens": self.thinking_tokens, "cached_tokens": self.cached_tokens,
                "total_tokens": self.total_tokens}


class AiError(Exception):
    """A reply that could not be produced; .code is a stable snake_case code, .message readable, .transient says whether a retry may help."""

    def __init__(self, code: str, message: str, transient: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        # Task queues pickle exceptions; the default reduce would call __init__ with the message only.
        return (type(self), (self.code, self.message, self.transient))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, transient={self.transient})"


class AiBlocked(AiError):
    """Gemini refused the prompt or stopped the answer for safety/policy reasons; retrying will not help."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message, transient=False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


def estimate_tokens(text: str) -> int:
    """Estimate tokens as ceil(UTF-8 bytes / 4), about right for Gemini on English and safe for other scripts."""
    # An estimate on purpose: the SDK's local tokenizer downloads model files and count_tokens costs a call.
    return math.ceil(len(text.encode("utf-8")) / 4)


# Gemini's per-image cost: 258 tokens for an image within 384x384 pixels, else 258 per 768x768 tile.
IMAGE_TILE_TOKENS = 258
IMAGE_TILE_PIXELS = 768
SMALL_IMAGE_PIXELS = 384
UNKNOWN_IMAGE_TILES = 4  # an image whose size its first bytes do not tell (HEIC, a JPEG with a large EXIF block)
PDF_PAGE_TOKENS = 258
PDF_BYTES_PER_PAGE = 100_000  # pages are estimated from the size: the bytes are read only for the turns sent
IMAGE_HEAD_BYTES = 64  # enough of a PNG, GIF or WEBP to read its size
JPEG_HEAD_BYTES = 65536  # a JPEG's size sits in its SOF segment, after its EXIF block


def attachment_tokens(mime_type: str, size: int, head: bytes | None = None) -> int:
    """A file's estimated cost in prompt tokens (head: its first bytes, for an image's size)."""
    if mime_type.startswith("image/"):
        dimensions = image_size(head or b"")
        if dimensions is None:
            return UNKNOWN_IMAGE_TILES * IMAGE_TILE_TOKENS
        width, height = dimensions
        if width <= SMALL_IMAGE_PIXELS and height <= SMALL_IMAGE_PIXELS:
            return IMAGE_TILE_TOKENS
        return math.ceil(width / IMAGE_TILE_PIXELS) * math.ceil(height / IMAGE_TILE_PIXELS) * IMAGE_TILE_TOKENS
    if mime_type == "application/pdf":
        return max(1, math.ceil(size / PDF_BYTES_PER_PAGE)) * PDF_PAGE_TOKENS
    return math.ceil(size / 4)  # text, as estimate_tokens counts it


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, GIF, WEBP or JPEG; None when they do not tell."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
        return None
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk a JPEG's segments to its SOF (start of frame), which holds the height and width."""
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[at + 7:at + 9], "big"), int.from_bytes(head[at + 5:at + 7], "big")
        at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def fit_history(history: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """The turns a request sends: the newest that fit in the budget (always the last user turn with its files,
    its text truncated from the front if that alone exceeds the budget), up to the last user turn."""
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
    for turn in history:
        if turn.role not in ("user", "model"):
            raise ValueError(f"unknown turn role {turn.role!r}; expected 'user' or 'model'")
    # Gemini rejects empty parts, and anything after the last user turn is not what we are answering.
    turns = [turn for turn in history if turn.text.strip() or turn.attachments]
    last_user = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "user"), None)
    if last_user is None:
        return []
    turns = turns[: last_user + 1]

    newest = turns[-1]
    if estimate_tokens(newest.text) > budget_tokens:
        newest = dataclasses.replace(newest, text=_keep_tail(newest.text, budget_tokens))
    # The question's own files always go: they are what it asks about (they may take it over the budget).
    used = newest.tokens
    kept = [newest]
    for turn in reversed(turns[:-1]):
        cost = turn.tokens
        if used + cost > budget_tokens:
            break  # keep a contiguous recent window: a gap would make the conversation incoherent
        kept.append(turn)
        used += cost
    kept.reverse()
    return kept


def build_contents(history: Sequence[Turn], budget_tokens: int) -> list[types.Content]:
    """The request contents: fit_history's turns, consecutive same-role turns merged, leading model turns dropped
    so the first content is a user turn; each turn's files as inline parts before its text."""
    from google.genai import types

    merged: list[Turn] = []
    for turn in fit_history(history, budget_tokens):
        if merged and merged[-1].role == turn.role:
            previous = merged[-1]
            text = "\n\n".join(t for t in (previous.text, turn.text) if t.strip())
            merged[-1] = Turn(turn.role, text, previous.attachments + turn.attachments)
        else:
            merged.append(turn)
    while merged and merged[0].role == "model":
        merged.pop(0)
    return [types.Content(role=t.role, parts=_parts(t)) for t in merged]


def _parts(turn: Turn) -> list[types.Part]:
    """A turn's files (inline data, sent base64 as inlineData), then its text."""
    from google.genai import types

    parts = [types.Part.from_bytes(data=a.data, mime_type=a.wire_mime_type)
             for a in turn.attachments if a.data is not None]
    if turn.text.strip():
        parts.append(types.Part(text=turn.text))
    return parts


def _keep_tail(text: str, budget_tokens: int) -> str:
    """The end of text within budget_tokens by estimate_tokens (the question usually sits at the end)."""
    tail = text.encode("utf-8")[-budget_tokens * 4 :]
    return tail.decode("utf-8", errors="ignore")  # drops a character cut in half at the front


class GeminiClient:
    """Generates replies with google-genai; one SDK client and its connection pool serve all calls and threads."""

    def __init__(self, settings: GeminiSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._sdk: genai.Client | None = None
        self._sdk_pid: int | None = None

    def generate(self, history: Sequence[Turn], room: RoomSettings | None = None) -> str:
        """Return Gemini's whole answer to the history, or raise AiError/AiBlocked (room: as for stream)."""
        call = self.settings.for_room(room)
        sdk, contents = self._prepare(history)
        try:
            response = sdk.models.generate_content(model=call.model, contents=contents, config=self._config(call))
        except Exception as exc:
            _raise_mapped(exc)
        _raise_if_blocked(response)
        text = response.text
        if not text or not text.strip():
            raise _empty_response()
        return text

    def stream(self, history: Sequence[Turn], usage: Usage | None = None,
               room: RoomSettings | None = None) -> Iterator[str]:
        """Yield Gemini's answer in text chunks as they arrive; raises the same errors as generate, also mid-stream.

        A given usage is kept up to date with the token counts Gemini reports (also for a blocked answer); room:
        the chatroom's own model and generation settings over the server's.
        """
        call = self.settings.for_room(room)
        sdk, contents = self._prepare(history)
        # A generator: nothing is sent until the first next(), where any error surfaces.
        chunks = sdk.models.generate_content_stream(model=call.model, contents=contents, config=self._config(call))
        answered = False
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:
                    _raise_mapped(exc)
                if usage is not None:
                    usage.record(chunk.usage_metadata)
                # A block can come after some text was yielded: the caller must drop what it got.
                _raise_if_blocked(chunk)
                text = chunk.text
                if text:
                    answered = answered or bool(text.strip())
                    yield text
        finally:
            # Closing the SDK generator closes its HTTP response, so an abandoned or blocked
            # stream releases its connection now rather than whenever it is garbage-collected.
            if isinstance(chunks, Generator):
                chunks.close()
        if not answered:
            raise _empty_response()

    def close(self) -> None:
        """Close the SDK client's connections (tests, shutdown); the next call opens a new one."""
        with self._lock:
            sdk, self._sdk = self._sdk, None
        if sdk is not None:
            sdk.close()

    def _prepare(self, history: Sequence[Turn]) -> tuple[genai.Client, list[types.Content]]:
        """Check the key before anything else, then build the request contents."""
        if not self.settings.api_key:
            raise AiError("ai_not_configured", "Gemini is not configured: set GEMINI_API_KEY.", transient=False)
        contents = build_contents(history, self.settings.history_token_budget)
        if not contents:
            raise AiError("empty_prompt", "There is no user message to answer.", transient=False)
        return self._client(), contents

    def _client(self) -> genai.Client:
        """The SDK client, built once per process: a forked child must not share the parent's sockets."""
        with self._lock:
            if self._sdk is None or self._sdk_pid != os.getpid():
                self._sdk = _new_sdk_client(self.settings)
                self._sdk_pid = os.getpid()
            return self._sdk

    def _config(self, call: RoomSettings | None = None) -> types.GenerateContentConfig:
        """Per-call config (the SDK may copy or adjust it, so it is not shared between threads)."""
        from google.genai import types

        call = self.settings.for_room(call)
        return types.GenerateContentConfig(
            system_instruction=call.system_instruction or None,
            temperature=call.temperature,
            max_output_tokens=call.max_output_tokens,
            # No tools are passed; disabling AFC skips the SDK's function-calling loop.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            # Continuation re-sends a broken stream on its own; Huey owns retries.
            automatic_continuation=False,
        )


def _new_sdk_client(settings: GeminiSettings) -> genai.Client:
    """A google-genai client for the Gemini Developer API with the SDK's own retries off."""
    # Imported here: google-genai costs ~50 MiB and ~0.5 s, which web workers that never call it should not pay.
    from google import genai
    from google.genai import types

    return genai.Client(
        # Explicit vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute us.
        vertexai=False,
        api_key=settings.api_key,
        http_options=types.HttpOptions(
            base_url=settings.base_url,
            timeout=max(1, round(settings.timeout * 1000)),  # the SDK takes milliseconds
            # One attempt: Huey retries with backoff; SDK retries would multiply the wait inside a worker.
            retry_options=types.HttpRetryOptions(attempts=1),
            # The HTTP client's default of 100 connections would queue a greenlet consumer's calls behind each other.
            client_args={"limits": _http_limits(settings.max_connections)},
        ),
    )


def _http_limits(max_connections: int) -> Any:
    """Connection limits for the SDK's HTTP client (httpx2 by default, httpx when the SDK is told to use it)."""
    import importlib
    import os

    order = ("httpx", "httpx2") if os.environ.get("GOOGLE_GENAI_HTTP_CLIENT") == "httpx" else ("httpx2", "httpx")
    for name in order:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    raise ImportError("google-genai needs httpx2 or httpx")


_clients: dict[GeminiSettings, GeminiClient] = {}
_clients_lock = threading.Lock()


def get_client(settings: GeminiSettings) -> GeminiClient:
    """The process-wide GeminiClient for these settings, so every task reuses one connection pool."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            client = _clients[settings] = GeminiClient(settings)
        return client


def _raise_if_blocked(response: types.GenerateContentResponse) -> None:
    """Raise AiBlocked when the prompt was refused or the first candidate was stopped by a filter."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise _blocked(_enum_name(feedback.block_reason), "the prompt")
    if response.candidates:
        reason = response.candidates[0].finish_reason
        if reason is not None and _enum_name(reason) in BLOCKING_FINISH_REASONS:
            raise _blocked(_enum_name(reason), "the answer")


def _blocked(reason: str, what: str) -> AiBlocked:
    """AiBlocked with a code that names the reason, e.g. blocked_safety."""
    slug = "".join(c if c.isalnum() else "_" for c in reason.lower()).strip("_")
    if not slug or slug.endswith("unspecified"):
        return AiBlocked("safety_blocked", f"Gemini blocked {what} (reason not given).")
    return AiBlocked(f"blocked_{slug}", f"Gemini blocked {what} (reason: {reason}).")


def _enum_name(value: Any) -> str:
    """The wire name of an SDK enum, or the raw string the SDK kept for a value it does not know."""
    return str(getattr(value, "value", value))


def _empty_response() -> AiError:
    return AiError("empty_response", "Gemini returned no text.", transient=True)


def _raise_mapped(exc: Exception) -> NoReturn:
    """Raise the AiError for an SDK or transport failure; anything else propagates as is (a bug, not an outage)."""
    from google.genai import errors

    mapped: AiError | None = None
    if isinstance(exc, errors.APIError):
        mapped = _api_error(exc)
    elif isinstance(exc, errors.UnknownApiResponseError):
        mapped = AiError("provider_bad_response", "Gemini sent a response that is not JSON.", transient=True)
    else:
        timeouts, unreachable = _transport_error_types()
        if isinstance(exc, timeouts):
            mapped = AiError("provider_timeout", f"Gemini did not answer in time ({type(exc).__name__}).", True)
        elif isinstance(exc, unreachable):
            mapped = AiError("provider_unreachable", f"Connection to Gemini failed ({type(exc).__name__}): {exc}", True)
    if mapped is None:
        raise exc
    raise mapped from exc


def _api_error(exc: Any) -> AiError:
    """Map an HTTP error status from Gemini (google.genai.errors.APIError) to an AiError."""
    status = exc.code if isinstance(exc.code, int) else 0
    detail = exc.message or str(exc)
    if status == 429:
        return AiError("rate_limited", f"Gemini rate limit or quota reached: {detail}", transient=True)
    if status == 408:
        return AiError("provider_timeout", f"Gemini timed out: {detail}", transient=True)
    if 400 <= status < 500:
        return AiError("provider_rejected", f"Gemini rejected the request ({status} {exc.status}): {detail}")
    # 5xx, and any other status a proxy in between might invent.
    return AiError("provider_unavailable", f"Gemini is unavailable ({status} {exc.status}): {detail}", transient=True)


@functools.cache
def _transport_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, connection failures) that the SDK's sync client lets through unwrapped."""
    # httpx2 is the SDK's default, httpx is used with GOOGLE_GENAI_HTTP_CLIENT=httpx; requests
    # (Vertex mTLS only) and aiohttp (async client only) are never on our path.
    import importlib

    timeouts: list[type[BaseException]] = [TimeoutError]
    unreachable: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)  # connect, read, write and pool timeouts
        unreachable.append(module.TransportError)  # refused, reset, server hung up mid-response
    return tuple(timeouts), tuple(unreachable)
