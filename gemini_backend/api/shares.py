"""Share links: the owner creates, lists and revokes them; anyone holding one reads its snapshot, without a token."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import document_errors
from gemini_backend.extensions import limiter
from gemini_backend.http import BEARER, Blueprint, json_response
from gemini_backend.schemas.shares import ShareListSchema, ShareSchema, SharedSnapshotSchema
from gemini_backend.services import shares
from gemini_backend.services.tokens import current_user_id

blp = Blueprint("shares", __name__, description="Read-only share links of a chatroom's conversation")
SHARE_ID_PARAMETER = {"in": "path", "name": "share_id", "required": True,
                      "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
# Nobody but the link's holders should find a conversation: search engines are asked not to index it, and no
# cache keeps it once it is revoked (the app's default Cache-Control: no-store).
PUBLIC_HEADERS = {"X-Robots-Tag": "noindex, nofollow, noarchive"}


def _share_rate_limit() -> str:
    """Per client IP (the real one behind TRUSTED_PROXY_HOPS): a public, unauthenticated read; plenty for people
    following links, not for a scraper hammering the database."""
    return current_app.config["SHARE_RATE_LIMIT"]


def share_url(share_id: str) -> str:
    """The public link of a share: this API's GET /shared/{share_id}, on the scheme and host the request came to
    (the scheme as the trusted proxies report it)."""
    return url_for("shares.SharedSnapshot", share_id=share_id, _external=True)


def _with_url(share) -> dict:
    return {"id": share.id, "url": share_url(share.id), "created_at": share.created_at}


@blp.route("/chatroom/<id:room_id>/shares")
class RoomShares(MethodView):
    @jwt_required()
    @blp.response(201, ShareSchema)
    @document_errors(blp, 401, 404, 415,
                     notes={409: "nothing_to_share: the room has no message to share yet."})
    @blp.doc(security=BEARER)
    def post(self, room_id):
        """Share the room's conversation as it is now: a read-only snapshot of its active branch (later messages,
        other branches, attachments, ratings and token counts are not shared); anyone with the link may read it."""
        return _with_url(shares.create_share(current_user_id(), room_id))

    @jwt_required()
    @blp.response(200, ShareListSchema)
    @document_errors(blp, 401, 404)
    @blp.doc(security=BEARER)
    def get(self, room_id):
        """The room's share links, newest first."""
        return {"shares": [_with_url(share) for share in shares.list_shares(current_user_id(), room_id)]}


@blp.route("/chatroom/<id:room_id>/shares/<share_id>")
class RoomShare(MethodView):
    @jwt_required()
    @blp.response(204)
    @document_errors(blp, 401, 404)
    @blp.doc(security=BEARER, parameters=[SHARE_ID_PARAMETER])
    def delete(self, room_id, share_id):
        """Revoke a share link: it answers 404 from now on."""
        shares.revoke_share(current_user_id(), room_id, share_id)


@blp.route("/shared/<share_id>")
class SharedSnapshot(MethodView):
    @blp.response(200, SharedSnapshotSchema, headers={
        "X-Robots-Tag": {"description": "noindex: a shared conversation is for the link's holders only.",
                         "schema": {"type": "string"}, "required": True}})
    @document_errors(blp, 404, 429, notes={404: "share_not_found: no such link, or it was revoked or its room "
                                                "deleted."})
    @blp.doc(parameters=[SHARE_ID_PARAMETER])
    @limiter.limit(_share_rate_limit)
    def get(self, share_id):
        """A shared conversation: the snapshot behind a share link (no token needed)."""
        return json_response(shares.shared_snapshot(share_id), 200, PUBLIC_HEADERS)
