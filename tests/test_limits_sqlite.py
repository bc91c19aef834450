"""The SQLite `limits` storage that embedded mode uses counts exactly across processes."""
import multiprocessing
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

import gemini_backend.limits_sqlite  # noqa: F401


def _hit_many(uri: str, n: int, out) -> None:
    import gemini_backend.limits_sqlite  # noqa: F401  registers the sqlite:// scheme in this new process
    limiter = FixedWindowRateLimiter(storage_from_string(uri))
    item = parse("50/day")
    out.put(sum(1 for _ in range(n) if limiter.hit(item, "user-1")))


def test_counts_exactly_across_processes(tmp_path):
    """4 processes x 30 hits on a 50/day limit: exactly 50 succeed, as with one Redis."""
    uri = f"sqlite:///{tmp_path / 'limits.db'}"
    storage_from_string(uri)  # creates the table once
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_hit_many, args=(uri, 30, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(out.get(timeout=5) for _ in procs) == 50


def test_window_expires_and_decr_gives_back(tmp_path):
    """A counter resets when its window ends; decr takes a unit back but never below zero."""
    storage = storage_from_string(f"sqlite:///{tmp_path / 'l.db'}")
    assert storage.incr("k", 1) == 1 and storage.incr("k", 1) == 2
    assert storage.decr("k") == 1 and storage.decr("k", 5) == 0
    storage.incr("k", 1)
    time.sleep(1.1)
    assert storage.get("k") == 0 and storage.incr("k", 60) == 1
    assert storage.check()
    storage.clear("k")
    assert storage.get("k") == 0
