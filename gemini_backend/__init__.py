"""gemini-backend: a REST backend for a Gemini-style chat product."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

from gemini_backend import metrics  # first: it chooses PROMETHEUS_MULTIPROC_DIR before prometheus_client loads
from gemini_backend.config import check_production, load_config


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: load config, bind extensions, register blueprints, errors and CLI."""
    settings = load_config()
    settings.update(config or {})
    check_production(settings)

    app = Flask(__name__, instance_path=settings["INSTANCE_PATH"], instance_relative_config=False)
    app.config.update(settings)
    app.url_map.strict_slashes = False

    from gemini_backend import cli, http, logs
    from gemini_backend.api import register_blueprints

    logs.configure(app)
    bind_extensions(app)
    http.install(app)
    metrics.install(app)
    register_blueprints(app)
    cli.register(app)
    return app


def bind_extensions(app: Flask) -> None:
    """init_app the storage the consumer shares, then the web's own extensions (migrations, OpenAPI, JWT, errors)."""
    from pathlib import Path

    from gemini_backend import models  # noqa: F401  the models must be known to Migrate and the API
    from gemini_backend.errors import register_error_handlers, register_jwt_loaders
    from gemini_backend.extensions import api, bind_storage, db, jwt, migrate
    from gemini_backend.services import tokens  # noqa: F401  registers the JWT revocation and user loaders

    bind_storage(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"),
                     render_as_batch=True, compare_type=True)
    api.init_app(app)
    jwt.init_app(app)
    register_jwt_loaders(jwt)
    register_error_handlers(app)
