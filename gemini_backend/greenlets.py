"""gevent for the processes that mostly wait (web workers, the consumer): psycopg2 has to cooperate too.

The patching itself comes first in each process: gunicorn's gevent worker does it before loading the app, and the
consumer's entry module (gemini_backend.worker) before importing anything else.
"""
from __future__ import annotations

import sys


def patched() -> bool:
    """Whether this process runs on gevent's patched sockets."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey
    return monkey.is_module_patched("socket")


def cooperate_with_database() -> None:
    """In a patched process, psycopg2 waits for PostgreSQL through gevent's hub (psycogreen) instead of blocking
    every greenlet of the process."""
    if patched():
        from psycogreen.gevent import patch_psycopg
        patch_psycopg()
