"""A `limits` storage on SQLite (`sqlite:///path`), so embedded mode counts correctly across processes.

The `limits` package ships memory, Redis, Memcached and MongoDB storages; only the memory one works
without a server, and it is per-process, which would let each gunicorn worker and the Huey consumer
keep its own count. This registers the `sqlite` scheme with the package's own Storage registry.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from limits.storage import Storage

_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL)"


class SQLiteStorage(Storage):
    """Fixed-window counters in one SQLite table; every update is one IMMEDIATE transaction."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = (uri or "sqlite:///limits.db").split("sqlite:///", 1)[-1]
        self.path = str(Path(path))
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _connect(self) -> sqlite3.Connection:
        """One connection per thread and process (connections must not cross a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add amount to key (starting a new window when it has expired) and return the new value."""
        now = time.time()
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM counters WHERE key = ? AND expires_at <= ?", (key, now))
            conn.execute(
                "INSERT INTO counters (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            (value,) = conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(value)

    def decr(self, key: str, amount: int = 1) -> int:
        """Take amount back from a live key, never below zero."""
        conn = self._connect()
        conn.execute(
            "UPDATE counters SET value = MAX(value - ?, 0) WHERE key = ? AND expires_at > ?",
            (amount, key, time.time()),
        )
        return self.get(key)

    def get(self, key: str) -> int:
        """Current value of a live key, 0 when absent or expired."""
        row = self._connect().execute(
            "SELECT value FROM counters WHERE key = ? AND expires_at > ?", (key, time.time())
        ).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        """Epoch second at which key's window ends (now when absent)."""
        row = self._connect().execute(
            "SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?", (key, time.time())
        ).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        """True when the database answers."""
        try:
            self._connect().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        """Drop every counter."""
        cur = self._connect().execute("DELETE FROM counters")
        return cur.rowcount

    def clear(self, key: str) -> None:
        """Drop one counter."""
        self._connect().execute("DELETE FROM counters WHERE key = ?", (key,))
