"""The consumer's periodic upkeep: the reply sweeper and the purge of expired rows (the reply task itself lives
with the reply logic, in services.replies, where the web enqueues it)."""
from __future__ import annotations

import logging

from huey import crontab

from gemini_backend.services import replies, upkeep
from gemini_backend.taskqueue import app_periodic_task

log = logging.getLogger(__name__)


@app_periodic_task(crontab(minute="*"))
def sweep_replies() -> dict[str, int]:
    """Re-enqueue stuck replies and fail those out of attempts (every minute)."""
    return replies.sweep_replies()


@app_periodic_task(crontab(minute="*/15"))
def purge_expired() -> dict[str, int]:
    """Delete expired OTP challenges, revoked-token rows past expiry and idempotency keys over 24 h old."""
    counts = upkeep.purge_expired_rows()
    log.info("purged expired rows: %s", counts)
    return counts
