"""Downloads: a chatroom as JSON or Markdown, and everything stored about the signed-in user."""
from __future__ import annotations

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.api.shares import share_url
from gemini_backend.errors import document_errors
from gemini_backend.http import BEARER, Blueprint
from gemini_backend.schemas.export import ExportQuerySchema, RoomExportSchema, UserExportSchema
from gemini_backend.services import chat, export
from gemini_backend.services.tokens import current_account, current_user_id

blp = Blueprint("exports", __name__, description="Download a chatroom or everything stored about you")
DOWNLOAD_HEADERS = {"Content-Disposition": {
    "description": "`attachment; filename=\"...\"`: a download, with a name safe on any system.",
    "schema": {"type": "string"}, "required": True}}


def _download(body, mimetype: str, filename: str) -> Response:
    return Response(body, 200, {"Content-Disposition": f'attachment; filename="{filename}"'}, mimetype=mimetype)


@blp.route("/chatroom/<id:room_id>/export")
class RoomExport(MethodView):
    @jwt_required()
    @blp.arguments(ExportQuerySchema, location="query")
    @blp.response(200, RoomExportSchema, headers=DOWNLOAD_HEADERS,
                  description="format=json: the room's fields and every message of every branch (follow parent_id "
                              "for the tree), as a JSON download. format=markdown: the active branch to read (the "
                              "title, then each turn under a heading, stopped and failed replies marked), as a "
                              "text/markdown download.")
    @blp.alt_response(200, content_type="text/markdown", headers=DOWNLOAD_HEADERS,
                      schema={"type": "string", "example": "# Trip to Lisbon\n\n## You\n\nPlan a 3-day trip."})
    @document_errors(blp, 401, 404, 422)
    @blp.doc(security=BEARER)
    def get(self, args, room_id):
        """Download a chatroom: JSON (the whole message tree) or Markdown (the active branch)."""
        room = chat.get_room(current_user_id(), room_id)
        if args["format"] == "markdown":
            return _download(export.room_markdown(room), "text/markdown", export.export_filename(room, "md"))
        filename = export.export_filename(room, "json")
        return _download(stream_with_context(export.room_json(room)), "application/json", filename)


@blp.route("/user/export")
class UserExport(MethodView):
    @jwt_required()
    @blp.response(200, UserExportSchema, headers=DOWNLOAD_HEADERS,
                  description="Everything stored about you as one JSON download, written as it is read: profile, "
                              "subscription, usage, file metadata (no bytes), share links, and every room with its "
                              "whole message tree.")
    @document_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self):
        """Download everything stored about you (JSON, streamed)."""
        user = current_account()
        filename = export.user_export_filename(user.id)
        pieces = export.user_export(user, share_url)
        return _download(stream_with_context(pieces), "application/json", filename)
