"""The Gemini models a chatroom may choose."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from gemini_backend.ai import choosable_models
from gemini_backend.http import Blueprint
from gemini_backend.schemas.chat import ModelListSchema

blp = Blueprint("models", __name__, url_prefix="/models", description="The Gemini models a chatroom may choose")


@blp.route("")
class ModelList(MethodView):
    @blp.response(200, ModelListSchema)
    def get(self):
        """The models a room may choose (GEMINI_MODELS) and the default, used by rooms whose model is null."""
        models = choosable_models(current_app.config)
        return {"models": models, "default": models[0]}
