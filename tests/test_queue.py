"""The Huey side: a real consumer process runs tasks inside an app context."""
from datetime import timedelta

from gemini_backend.extensions import db
from gemini_backend.models import OtpChallenge, utcnow
from gemini_backend.tasks import purge_expired
from tests.helpers import start_worker, stop, wait_for


def _otp_count(app) -> int:
    with app.app_context():
        count = db.session.query(OtpChallenge).count()
        db.session.remove()
        return count


def test_consumer_runs_task_in_app_context(app):
    """`flask worker` picks up a task enqueued by the web side and runs it with database access."""
    with app.app_context():
        old = utcnow() - timedelta(days=2)
        db.session.add(OtpChallenge(phone="+15550000001", purpose="login", code_hash="x", expires_at=old))
        db.session.add(OtpChallenge(phone="+15550000002", purpose="login", code_hash="y", expires_at=utcnow()))
        db.session.commit()
    purge_expired()  # enqueued before any consumer runs
    worker = start_worker()
    try:
        wait_for(lambda: _otp_count(app) == 1, timeout=30, what="the consumer to purge the expired OTP", proc=worker)
    finally:
        output = stop(worker)
    assert "purged expired rows" in output and "Traceback" not in output, output
