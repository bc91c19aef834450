"""Chatrooms and their messages."""
from __future__ import annotations

import re

from flask import Response, request, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.errors import InvalidField, document_errors
from gemini_backend.http import BEARER, Blueprint, json_response
from gemini_backend.schemas.billing import RATE_LIMIT_HEADERS
from gemini_backend.schemas.chat import (ActiveLeafSchema, ChatroomCreateSchema, ChatroomDetailSchema, ChatroomListSchema,
                                         ChatroomSchema, ChatroomUpdateSchema, FeedbackUpdateSchema,
                                         MessageCreateSchema, MessagePageSchema,
                                         MessageSchema, PageQuerySchema, PostedMessageSchema, RoomQuerySchema,
                                         WaitQuerySchema)
from gemini_backend.services import chat, messages, quota, sse
from gemini_backend.services.tokens import current_user_id

blp = Blueprint("chatrooms", __name__, url_prefix="/chatroom", description="Chatrooms and messages")
IDEMPOTENCY_HEADER = {"in": "header", "name": "Idempotency-Key", "required": False,
                      "schema": {"type": "string", "maxLength": 255},
                      "description": "Retrying with the same key within 24 h returns the first response. "
                                     "Printable text; longer keys are cut to 255 characters."}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")



def _idempotency_key() -> str | None:
    """The Idempotency-Key header, trimmed (422 when it holds control characters, which no store keeps safely)."""
    key = (request.headers.get("Idempotency-Key") or "").strip()[:255] or None
    if key and _CONTROL_CHARACTERS.search(key):
        raise InvalidField("Idempotency-Key", "Must not contain control characters.", location="headers")
    return key


@blp.route("")
class ChatroomList(MethodView):
    @jwt_required()
    @blp.response(200, ChatroomListSchema, headers={"X-Cache": {"schema": {"type": "string"}}})
    @document_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self):
        """List your chatrooms, newest activity first (cached per user)."""
        body, hit = chat.list_rooms(current_user_id())
        return Response(body, 200, {"X-Cache": "HIT" if hit else "MISS"}, mimetype="application/json")

    @jwt_required()
    @blp.arguments(ChatroomCreateSchema, required=False)
    @blp.response(201, ChatroomSchema)
    @document_errors(blp, 400, 401, 413, 415, 422)
    @blp.doc(security=BEARER)
    def post(self, data):
        """Create a chatroom."""
        return chat.create_room(current_user_id(), **data)


@blp.route("/<id:room_id>")
class ChatroomById(MethodView):
    @jwt_required()
    @blp.arguments(RoomQuerySchema, location="query")
    @blp.response(200, ChatroomDetailSchema)
    @document_errors(blp, 401, 404, 422)
    @blp.doc(security=BEARER)
    def get(self, args, room_id):
        """A chatroom with its newest messages (oldest first)."""
        return chat.room_with_messages(current_user_id(), room_id, args["limit"])

    @jwt_required()
    @blp.arguments(ChatroomUpdateSchema)
    @blp.response(200, ChatroomSchema)
    @document_errors(blp, 400, 401, 404, 413, 415, 422)
    @blp.doc(security=BEARER)
    def patch(self, data, room_id):
        """Rename a chatroom or change its reply settings (model, system instruction, temperature, output length)."""
        return chat.update_room(current_user_id(), room_id, data)

    @jwt_required()
    @blp.response(204)
    @document_errors(blp, 401, 404)
    @blp.doc(security=BEARER)
    def delete(self, room_id):
        """Delete a chatroom and its messages."""
        chat.delete_room(current_user_id(), room_id)


@blp.route("/<id:room_id>/messages")
class MessagePage(MethodView):
    @jwt_required()
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, MessagePageSchema)
    @document_errors(blp, 401, 404, 422)
    @blp.doc(security=BEARER)
    def get(self, args, room_id):
        """A page of the active branch, oldest first: the newest messages, or those before/after a message id."""
        page, has_more = chat.page_messages(current_user_id(), room_id, args.get("before"), args.get("after"),
                                            args["limit"])
        return {"messages": page, "has_more": has_more}


@blp.route("/<id:room_id>/message")
class MessagePost(MethodView):
    @jwt_required()
    @blp.arguments(MessageCreateSchema)
    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(202, PostedMessageSchema, headers=RATE_LIMIT_HEADERS,
                  description="Accepted: the reply is pending (or already finished, when replayed).")
    @blp.alt_response(200, schema=PostedMessageSchema, headers=RATE_LIMIT_HEADERS,
                      description="The reply finished within `wait` seconds")
    @document_errors(blp, 400, 401, 404, 413, 415, 422, notes={
        409: "idempotency_key_reused: this Idempotency-Key was used for a different request.",
        429: "daily_limit_reached (Basic: BASIC_DAILY_LIMIT a UTC day; Retry-After is the time to midnight UTC) "
             "or rate_limited (Pro: the per-minute throttle)."}, headers={429: RATE_LIMIT_HEADERS})
    @blp.doc(security=BEARER, parameters=[IDEMPOTENCY_HEADER])
    def post(self, data, args, room_id):
        """Send a message; the reply is generated in the background (202), or awaited with ?wait=N.

        With `parent_id` the message follows that reply instead of the active leaf: posting under an earlier
        message's parent edits it, starting a branch that becomes the active one. With `attachment_ids` your files
        (POST /files) go to Gemini with it; an unknown id is a 422 that stores nothing and uses no quota."""
        user_id = current_user_id()
        body, usage = messages.post_message(user_id, room_id, data["content"], _idempotency_key(),
                                            data.get("parent_id", messages.ACTIVE_LEAF),
                                            data.get("attachment_ids") or ())
        status = 202
        if args["wait"] > 0 and body["reply"]["status"] == "pending":
            reply = messages.wait_until_finished(body["reply"]["id"], args["wait"])
            body = {"message": body["message"], "reply": messages.dump_message(reply)}
        if body["reply"]["status"] != "pending" and args["wait"] > 0:
            status = 200
        return json_response(body, status, quota.rate_limit_headers(usage))


@blp.route("/<id:room_id>/message/<id:message_id>")
class MessageById(MethodView):
    @jwt_required()
    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(200, MessageSchema)
    @document_errors(blp, 401, 404, 422)
    @blp.doc(security=BEARER)
    def get(self, args, room_id, message_id):
        """One message; with ?wait=N on a pending reply, answers when it finishes or after N seconds."""
        message = messages.get_message(current_user_id(), room_id, message_id)
        if message.status == "pending" and args["wait"] > 0:
            return messages.wait_until_finished(message.id, args["wait"])
        return message


@blp.route("/<id:room_id>/message/<id:message_id>/retry")
class MessageRetry(MethodView):
    @jwt_required()
    @blp.response(202, MessageSchema)
    @document_errors(blp, 401, 404, 415, notes={
        409: "not_retryable: the reply is not failed or blocked, or is already being retried."})
    @blp.doc(security=BEARER)
    def post(self, room_id, message_id):
        """Start a new attempt for a failed or blocked reply (uses no quota)."""
        return messages.retry_reply(current_user_id(), room_id, message_id)


@blp.route("/<id:room_id>/message/<id:message_id>/regenerate")
class MessageRegenerate(MethodView):
    @jwt_required()
    @blp.response(202, MessageSchema, headers=RATE_LIMIT_HEADERS)
    @document_errors(blp, 401, 404, 415, notes={
        409: "reply_in_progress: a reply to this message is still being written.",
        429: "daily_limit_reached or rate_limited, as for a message post."}, headers={429: RATE_LIMIT_HEADERS})
    @blp.doc(security=BEARER)
    def post(self, room_id, message_id):
        """Answer a user message again (give it or one of its replies): a new reply beside the earlier ones, which
        becomes the active leaf. Uses one quota unit."""
        reply, usage = messages.regenerate_reply(current_user_id(), room_id, message_id)
        return json_response(messages.dump_message(reply), 202, quota.rate_limit_headers(usage))


@blp.route("/<id:room_id>/message/<id:message_id>/stop")
class MessageStop(MethodView):
    @jwt_required()
    @blp.response(200, MessageSchema, description="The reply, ended `stopped` with the text generated so far.")
    @blp.alt_response(202, schema=MessageSchema, description="The stop is recorded; the attempt running the reply "
                      "ends it at its next chunk (it is still pending here).")
    @document_errors(blp, 401, 404, 415, notes={409: "not_stoppable: the reply has already ended."})
    @blp.doc(security=BEARER)
    def post(self, room_id, message_id):
        """Stop a pending reply (give it or its user message): it ends `stopped` with the text so far; one that had
        not started never calls Gemini and gives its quota unit back. Works whichever machine runs it."""
        reply = messages.stop_reply(current_user_id(), room_id, message_id)
        return json_response(messages.dump_message(reply), 202 if reply.status == "pending" else 200)


@blp.route("/<id:room_id>/active-leaf")
class ActiveLeaf(MethodView):
    @jwt_required()
    @blp.arguments(ActiveLeafSchema)
    @blp.arguments(RoomQuerySchema, location="query")
    @blp.response(200, ChatroomDetailSchema)
    @document_errors(blp, 400, 401, 404, 413, 415, 422)
    @blp.doc(security=BEARER)
    def put(self, data, args, room_id):
        """Switch the room to the branch through a message (it continues to that message's newest descendant);
        the room along it."""
        return chat.switch_branch(current_user_id(), room_id, data["message_id"], args["limit"])


@blp.route("/<id:room_id>/message/<id:message_id>/feedback")
class MessageFeedback(MethodView):
    @jwt_required()
    @blp.arguments(FeedbackUpdateSchema)
    @blp.response(200, MessageSchema)
    @document_errors(blp, 400, 401, 404, 413, 415, 422, notes={409: "not_a_reply: only a reply takes feedback."})
    @blp.doc(security=BEARER)
    def put(self, data, room_id, message_id):
        """Rate a reply up or down, with an optional comment (rating null and no comment: take it back)."""
        return messages.rate_reply(current_user_id(), room_id, message_id, data["rating"], data["comment"])


@blp.route("/<id:room_id>/message/<id:message_id>/stream")
class MessageStream(MethodView):
    @jwt_required()
    @blp.response(200, description="Server-Sent Events: `delta` {text}, `reset` {attempt}, then `done` or "
                  "`error` with the Message; a comment every 15 s. Resume with Last-Event-ID.",
                  content_type="text/event-stream")
    @document_errors(blp, 401, 404)
    @blp.doc(security=BEARER, parameters=[{"in": "header", "name": "Last-Event-ID", "required": False,
                                           "schema": {"type": "string"}}])
    def get(self, room_id, message_id):
        """Stream a reply as Gemini produces it (Server-Sent Events)."""
        reply = messages.find_reply(current_user_id(), room_id, message_id)
        events = sse.reply_events(reply, request.headers.get("Last-Event-ID"))
        return Response(stream_with_context(events), mimetype="text/event-stream", headers=sse.stream_headers())
