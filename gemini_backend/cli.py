"""flask commands for operators: the worker, users, upkeep."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from gemini_backend.config import DEFAULT_WORKER_CONCURRENCY


def register(app: Flask) -> None:
    """Attach the commands to the app's `flask` CLI."""
    from gemini_backend.billing_cli import billing_cli
    app.cli.add_command(worker)
    app.cli.add_command(purge_expired)
    app.cli.add_command(sweep_replies)
    app.cli.add_command(create_user)
    app.cli.add_command(billing_cli)


@click.command("worker")
@click.option("-w", "--workers", type=int, default=None,
              help="Replies answered at once (default WORKER_CONCURRENCY: 256 greenlets, 8 threads).")
@click.option("-k", "--worker-type", type=click.Choice(["greenlet", "thread", "process"]), default=None,
              help="Greenlets (default WORKER_TYPE): a reply waiting on Gemini costs a greenlet, not a thread.")
@click.option("--graceful-signal", type=click.Choice(["INT", "TERM"]), default="INT",
              help="Signal that finishes running tasks before exit (TERM for Docker/Kubernetes).")
@with_appcontext
def worker(workers: int | None, worker_type: str | None, graceful_signal: str) -> None:
    """Run the Huey consumer that answers messages (SIGINT: finish running replies, then exit)."""
    cfg = current_app.config
    worker_type = worker_type or cfg["WORKER_TYPE"]
    if workers is None:
        workers = cfg["WORKER_CONCURRENCY"] if worker_type == cfg["WORKER_TYPE"] else DEFAULT_WORKER_CONCURRENCY[worker_type]
    # Greenlets: gevent's launcher patches the standard library before Huey's consumer loads anything.
    launcher = ["-m", "gevent.monkey", "--module"] if worker_type == "greenlet" else ["-m"]
    argv = [sys.executable, *launcher, "huey.bin.huey_consumer", "gemini_backend.worker.huey",
            "--worker-type", worker_type, "--workers", str(workers), "--graceful-signal", graceful_signal]
    if not cfg["QUEUE_URL"]:
        # The SQLite queue is polled, not blocked on: poll it often, so replies start within half a second.
        argv += ["--delay", "0.05", "--max-delay", "0.5"]
    # This process loaded the whole web app to find this command, unpatched, and greenlet workers need gevent's
    # patches before anything is loaded. So Huey's own consumer takes over this process (same pid: signals and
    # supervisors still reach it) in a fresh interpreter, on the worker entry module.
    package_root = str(Path(__file__).resolve().parent.parent)  # importable even when FLASK_APP found it elsewhere
    pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    os.execve(sys.executable, argv, {**os.environ, "WORKER_TYPE": worker_type, "PYTHONPATH": pythonpath})


@click.command("purge-expired")
@with_appcontext
def purge_expired() -> None:
    """Delete expired OTPs, revocations and idempotency keys now."""
    from gemini_backend.services.upkeep import purge_expired_rows
    click.echo(purge_expired_rows())


@click.command("sweep-replies")
@with_appcontext
def sweep_replies() -> None:
    """Re-enqueue stuck replies now (the worker also does this every minute)."""
    from gemini_backend.services.replies import sweep_replies as sweep
    click.echo(sweep())


@click.command("create-user")
@click.argument("phone")
@click.option("--name", default=None)
@click.option("--password", default=None, help="Optional; prompts are better than shell history.")
@click.option("--pro", is_flag=True, help="Grant Pro by hand (no Stripe subscription).")
@with_appcontext
def create_user(phone: str, name: str | None, password: str | None, pro: bool) -> None:
    """Create an account for PHONE (E.164 or a national number in PHONE_DEFAULT_REGION)."""
    from gemini_backend.schemas.auth import SignupSchema
    from gemini_backend.services.auth import sign_up
    import marshmallow as ma
    try:
        data = SignupSchema().load({"phone": phone, "name": name, "password": password})
    except ma.ValidationError as exc:
        raise click.ClickException(str(exc.messages)) from None
    user = sign_up(**data)
    if pro:
        from gemini_backend.extensions import db
        user.pro_override = True
        db.session.commit()
    click.echo(f"created user {user.id} {user.phone} tier={user.tier}")
