"""Attachments: upload, list, download and delete the files a user sends to Gemini with messages."""
from __future__ import annotations

from urllib.parse import quote

from flask import Response
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from gemini_backend.config import DEFAULT_ATTACHMENT_TYPES
from gemini_backend.errors import document_errors
from gemini_backend.http import BEARER, Blueprint, json_response, multipart_body
from gemini_backend.schemas.files import FileListQuerySchema, FileListSchema, FileSchema, FileUploadSchema
from gemini_backend.services import files
from gemini_backend.services.tokens import current_user_id

blp = Blueprint("files", __name__, url_prefix="/files", description="Attachments: files to send with messages")
_file_schema = FileSchema()
_BYTES = {"schema": {"type": "string", "format": "binary"}}



def _upload_body_limit() -> int:
    """The upload's body limit: the user's file limit and the multipart framing around it."""
    return files.upload_limit(current_user_id()) + files.MULTIPART_OVERHEAD


@blp.route("")
class FileList(MethodView):
    @jwt_required()
    @blp.arguments(FileListQuerySchema, location="query")
    @blp.response(200, FileListSchema)
    @document_errors(blp, 401, 422)
    @blp.doc(security=BEARER)
    def get(self, args):
        """List your files (metadata only), newest first."""
        page, has_more = files.list_files(current_user_id(), args.get("before"), args["limit"])
        return {"files": page, "has_more": has_more}

    @jwt_required()
    @multipart_body(_upload_body_limit)
    @blp.arguments(FileUploadSchema, location="files")
    @blp.response(201, FileSchema, description="Stored.")
    @blp.alt_response(200, schema=FileSchema, description="You had already uploaded these bytes: the file stored "
                                                          "then (with its first name).")
    @document_errors(blp, 400, 401, 422, notes={
        413: "file_too_large: the file is larger than UPLOAD_MAX_BYTES (UPLOAD_MAX_BYTES_PRO on Pro); or "
             "payload_too_large: the body is larger than that and the multipart framing.",
        415: "unsupported_file_type: the bytes are not an accepted type, or not the type the part's Content-Type "
             "or the file name says; or unsupported_media_type: the body is not multipart/form-data."})
    @blp.doc(security=BEARER)
    def post(self, data):
        """Upload a file to attach to messages (multipart/form-data, field `file`). Its type is read from its
        bytes; nothing is stored when it is refused. Stored once per content: the same bytes again answer 200 with
        the file stored the first time."""
        upload = data["file"]
        stored, created = files.store_upload(current_user_id(), upload.stream, upload.filename, upload.content_type)
        return json_response(_file_schema.dump(stored), 201 if created else 200)


@blp.route("/<id:file_id>")
class FileById(MethodView):
    @jwt_required()
    @document_errors(blp, 401, 404)
    @blp.doc(security=BEARER, responses={"200": {
        "description": "The file's bytes, with its type and `Content-Disposition: attachment` with its name.",
        "content": {mime_type: _BYTES for mime_type in DEFAULT_ATTACHMENT_TYPES}}})
    def get(self, file_id):
        """Download one of your files."""
        stored = files.get_file(current_user_id(), file_id, with_data=True)
        mimetype = f"{stored.mime_type}; charset=utf-8" if stored.mime_type.startswith("text/") else stored.mime_type
        return Response(stored.data, 200, {"Content-Type": mimetype, "Content-Disposition": _disposition(stored.name),
                                           "ETag": f'"{stored.sha256}"'})

    @jwt_required()
    @blp.response(204)
    @document_errors(blp, 401, 404, notes={409: "file_in_use: a message uses this file."})
    @blp.doc(security=BEARER)
    def delete(self, file_id):
        """Delete one of your files that no message uses."""
        files.delete_file(current_user_id(), file_id)


def _disposition(name: str) -> str:
    """`attachment` with the name: an ASCII fallback and the UTF-8 name (RFC 6266), so a browser saves it rather
    than rendering it in the API's origin."""
    fallback = name.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "") or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
