"""flask commands for operators: the worker, users, upkeep."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def register(app: Flask) -> None:
    """Attach the commands to the app's `flask` CLI."""
    from gemini_backend.billing_cli import billing_cli
    app.cli.add_command(worker)
    app.cli.add_command(purge_expired)
    app.cli.add_command(sweep_replies)
    app.cli.add_command(create_user)
    app.cli.add_command(billing_cli)


@click.command("worker")
@click.option("-w", "--workers", type=int, default=None, help="Worker threads (default WORKER_THREADS).")
@click.option("-k", "--worker-type", type=click.Choice(["thread", "greenlet", "process"]), default="thread")
@click.option("--graceful-signal", type=click.Choice(["INT", "TERM"]), default="INT",
              help="Signal that finishes running tasks before exit (TERM for Docker/Kubernetes).")
@with_appcontext
def worker(workers: int | None, worker_type: str, graceful_signal: str) -> None:
    """Run the Huey consumer that answers messages (SIGINT: finish running replies, then exit)."""
    from gemini_backend import tasks
    threads = workers or current_app.config["WORKER_THREADS"]
    if _started_as_flask_command():
        # This process imported the whole web app just to find this command. The consumer runs in a fresh
        # interpreter instead, with only the worker app (settings from the environment, as for huey_consumer),
        # and so needs less memory for as long as it runs.
        tasks.exec_consumer(threads, worker_type, graceful_signal)
    tasks.bind_app(current_app._get_current_object())  # type: ignore[attr-defined]
    tasks.run_consumer(threads, worker_type, graceful_signal)


def _started_as_flask_command() -> bool:
    """Whether this process is the `flask` command line (`flask ...` or `python -m flask ...`)."""
    main = Path(sys.argv[0])
    return main.stem == "flask" or (main.name == "__main__.py" and main.parent.name == "flask")


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
