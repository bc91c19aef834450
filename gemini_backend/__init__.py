"""gemini-backend: a REST backend for a Gemini-style chat product.

Importing the package loads no library that opens sockets or makes locks: the consumer's entry module
(gemini_backend.worker) must be able to apply gevent's patches after it, before everything else.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from gemini_backend.config import export_metrics_directory

# Before anything loads prometheus_client (which picks its multi-process mode from the environment at import).
export_metrics_directory()

Profile = Literal["web", "worker"]


def create_app(config: Mapping[str, Any] | None = None, profile: Profile = "web"):
    """Application factory. The web profile serves HTTP; the worker profile (the Huey consumer) binds only the
    storage tasks use, leaving out routes, OpenAPI, JWT and migrations, whose imports would only add memory."""
    from gemini_backend import logs, metrics
    from gemini_backend.config import check_production, load_config
    from gemini_backend.extensions import bind_storage
    from flask import Flask

    settings = load_config()
    settings.update(config or {})
    check_production(settings)

    app = Flask(__name__, instance_path=settings["INSTANCE_PATH"], instance_relative_config=False)
    app.config.update(settings)
    logs.configure(app)
    bind_storage(app)
    if profile == "worker":
        return app

    from gemini_backend import cli, http
    from gemini_backend.api import register_blueprints

    app.url_map.strict_slashes = False
    bind_web_extensions(app)
    http.install(app)
    metrics.install(app)
    register_blueprints(app)
    cli.register(app)
    return app


def bind_web_extensions(app) -> None:
    """init_app what only the web uses: migrations, OpenAPI, JWT and the error handlers."""
    from pathlib import Path

    from gemini_backend import models  # noqa: F401  the models must be known to Migrate and the API
    from gemini_backend.errors import register_error_handlers, register_jwt_loaders
    from gemini_backend.extensions import api, db, jwt, migrate
    from gemini_backend.services import tokens  # noqa: F401  registers the JWT revocation and user loaders

    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"),
                     render_as_batch=True, compare_type=True)
    api.init_app(app)
    jwt.init_app(app)
    register_jwt_loaders(jwt)
    register_error_handlers(app)
