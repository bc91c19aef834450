"""Attachment (file) schemas."""
from __future__ import annotations

import marshmallow as ma
from flask_smorest.fields import Upload

MAX_ID = 2**63 - 1


class FileUploadSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE  # other form parts are ignored

    file = Upload(required=True, metadata={"description": "The file: PNG, JPEG, WEBP, HEIC, GIF, PDF, plain text or "
                                                          "Markdown (ATTACHMENT_TYPES), up to UPLOAD_MAX_BYTES."})


class AttachmentSchema(ma.Schema):
    """A file as a message shows it."""

    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True, metadata={"example": "receipt.png"})
    mime_type = ma.fields.String(required=True, metadata={"example": "image/png"})
    size = ma.fields.Integer(required=True, metadata={"description": "Bytes."})


class FileSchema(AttachmentSchema):
    sha256 = ma.fields.String(required=True, metadata={"description": "The content's SHA-256, hex."})
    created_at = ma.fields.DateTime(required=True)


class FileListSchema(ma.Schema):
    files = ma.fields.List(ma.fields.Nested(FileSchema), required=True)
    has_more = ma.fields.Boolean(required=True)


class FileListQuerySchema(ma.Schema):
    before = ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_ID),
                               metadata={"description": "Files older than this one (the previous page's last id)."})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=500))
