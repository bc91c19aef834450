"""One Redis pub/sub reader per process for every local waiter: SSE streams and long-polls share it.

The listener keeps one pub/sub connection subscribed to the channels someone in this process waits on, and hands
each message to every watch of that channel. A waiter costs a queue, not a connection or a thread; one that
goes away unsubscribes when it was the channel's last.

Pub/sub delivers at most once (a reconnect loses what was published meanwhile), so a message is news, never the
record: services.streams chains its messages so a waiter sees a gap, and reads the Redis Stream to fill it.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

import redis

log = logging.getLogger(__name__)
RESYNC = "resync"  # put in every watch's queue after a reconnect: read the stream again from your cursor
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = 0.5


class Watch:
    """One waiter's view of one channel: its messages arrive in .queue as they were published, or RESYNC."""

    def __init__(self, listener: ReplyListener, channel: str) -> None:
        self.listener = listener
        self.channel = channel
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.subscribed = threading.Event()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, timeout: float) -> Any:
        """The next message or RESYNC; None when nothing came within timeout."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop watching (unsubscribing when this was the reply's last watch here)."""
        self.listener._leave(self)


class ReplyListener:
    """The process's pub/sub reader for one Redis: watch(channel) from any thread or greenlet."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._watches: dict[str, set[Watch]] = {}
        # Subscribe commands sent and not yet confirmed, per channel: a watch is ready when its channel's last
        # SUBSCRIBE is confirmed (an older confirmation may belong to a subscription about to be dropped).
        self._unconfirmed: dict[str, int] = {}
        self._pubsub: Any = None
        self._thread: threading.Thread | None = None

    def watch(self, channel: str) -> Watch:
        """A watch on channel, subscribed by the time this returns (or after SUBSCRIBE_TIMEOUT_SECONDS, when
        Redis is slow: the caller's catch-up reads cover what a late subscription misses)."""
        self._ensure_running()
        watch = Watch(self, channel)
        with self._lock:
            watchers = self._watches.setdefault(channel, set())
            watchers.add(watch)
            if len(watchers) == 1:
                self._subscribe(channel)
            elif not self._unconfirmed.get(channel):
                watch.subscribed.set()
        watch.subscribed.wait(SUBSCRIBE_TIMEOUT_SECONDS)
        return watch

    def watching(self) -> int:
        """How many replies this process follows now."""
        with self._lock:
            return len(self._watches)

    def _subscribe(self, channel: str) -> None:
        """Send SUBSCRIBE (under the lock); a broken connection is repaired by the reader, which resubscribes."""
        self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
        try:
            self._pubsub.subscribe(channel)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.warning("redis listener: subscribe failed (%s); resubscribing after reconnect", exc)

    def _leave(self, watch: Watch) -> None:
        with self._lock:
            watchers = self._watches.get(watch.channel)
            if watchers is None or watch not in watchers:
                return
            watchers.discard(watch)
            if watchers:
                return
            del self._watches[watch.channel]
            try:
                self._pubsub.unsubscribe(watch.channel)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass  # the reconnect resubscribes only channels still watched

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._pubsub = self._client.pubsub()
            # A daemon thread, or a greenlet under gevent's monkey-patching: it sleeps in the socket read.
            self._thread = threading.Thread(target=self._run, name="redis-listener", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Read forever; after a connection failure reconnect, resubscribe and tell every watch to resync."""
        while True:
            try:
                self._read_until_broken()
            except Exception as exc:  # a dead Redis must not kill the reader: waiters fall back to their heartbeats
                log.warning("redis listener lost Redis (%s); reconnecting", exc)
            time.sleep(RECONNECT_DELAY_SECONDS)
            self._reconnect()

    def _read_until_broken(self) -> None:
        while True:
            with self._lock:
                pubsub, watched = self._pubsub, bool(self._watches)
            if watched and pubsub.connection is None:  # its subscribe could not connect
                raise redis.ConnectionError("the pub/sub connection is not established")
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], _text(message["channel"])
        with self._lock:
            if kind == "subscribe":
                left = self._unconfirmed.get(channel, 1) - 1
                if left > 0:
                    self._unconfirmed[channel] = left
                    return
                self._unconfirmed.pop(channel, None)
                for watch in self._watches.get(channel, ()):
                    watch.subscribed.set()
                return
            if kind != "message":
                return
            watchers = list(self._watches.get(channel, ()))
        for watch in watchers:
            watch.queue.put(message["data"])

    def _reconnect(self) -> None:
        """A new pub/sub connection subscribed to every channel still watched; every watch resyncs."""
        with self._lock:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = self._client.pubsub()
            self._unconfirmed.clear()
            for channel in self._watches:
                self._subscribe(channel)
            for watchers in self._watches.values():
                for watch in watchers:
                    watch.subscribed.clear()  # set again by the new subscription's confirmation
                    watch.queue.put(RESYNC)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


_listeners: dict[str, ReplyListener] = {}
_listeners_lock = threading.Lock()


def listener_for(redis_url: str, make_client: Callable[[], redis.Redis]) -> ReplyListener:
    """The process's listener for this Redis URL (its client made with make_client() on first use)."""
    with _listeners_lock:
        found = _listeners.get(redis_url)
        if found is None:
            found = _listeners[redis_url] = ReplyListener(make_client())
        return found
