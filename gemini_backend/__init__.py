"""gemini-backend: a REST backend for a Gemini-style chat product."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

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
    from gemini_backend.extensions import bind_extensions

    logs.configure(app)
    bind_extensions(app)
    http.install(app)
    register_blueprints(app)
    cli.register(app)
    return app
