"""Attachments: upload (type read from the bytes, per-tier size), download, dedupe, delete, attaching files to
messages, and the consumer sending them to Gemini as inline parts (QUALITY.md S11, S12)."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from sqlalchemy import func, select

from gemini_backend.extensions import db
from gemini_backend.models import Message, MessageAttachment, StoredFile
from tests.chat_helpers import ChatUser
from tests.fakes.gemini import inline_parts


def png(width: int = 1, height: int = 1, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid RGB PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(color) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png(2, 2)
PE_EXECUTABLE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"PE\x00\x00"
                 + b"\x00" * 200)
ELF_EXECUTABLE = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200


def upload(user: ChatUser, data: bytes, name: str = "pixel.png", content_type: str | None = "image/png"):
    """POST /files with one multipart part `file`."""
    part = (io.BytesIO(data), name, content_type) if content_type is not None else (io.BytesIO(data), name)
    return user.post("/files", data={"file": part}, content_type="multipart/form-data")


def stored_count(app, table=StoredFile) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(table))
        db.session.remove()
        return count


def test_upload_answers_the_metadata_and_download_returns_the_bytes(alice):
    r = upload(alice, PNG, "réceipt.png")
    assert r.status_code == 201, r.json
    body = r.json
    assert set(body) == {"id", "name", "mime_type", "size", "sha256", "created_at"}
    assert body["name"] == "réceipt.png" and body["mime_type"] == "image/png" and body["size"] == len(PNG)
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()

    got = alice.get(f"/files/{body['id']}")
    assert got.status_code == 200
    assert got.data == PNG
    assert got.headers["Content-Type"] == "image/png"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''r%C3%A9ceipt.png" in disposition

    listed = alice.get("/files")
    assert listed.status_code == 200 and [f["id"] for f in listed.json["files"]] == [body["id"]]


def test_text_and_markdown_are_accepted_as_utf8_without_nul(alice):
    r = upload(alice, "# Notes\n\n* café\n".encode(), "notes.md", "text/markdown")
    assert r.status_code == 201 and r.json["mime_type"] == "text/markdown", r.json
    r = upload(alice, b"plain words", "words.txt", "text/plain")
    assert r.status_code == 201 and r.json["mime_type"] == "text/plain", r.json
    got = alice.get(f"/files/{r.json['id']}")
    assert got.headers["Content-Type"] == "text/plain; charset=utf-8" and got.data == b"plain words"
    # No declared type: the bytes decide.
    r = upload(alice, PNG, "pixel.png", content_type=None)
    assert r.status_code == 201 and r.json["mime_type"] == "image/png", r.json


def test_the_same_bytes_are_stored_once_per_user(alice, bob, app):
    first = upload(alice, PNG, "one.png")
    again = upload(alice, PNG, "two.png")
    assert first.status_code == 201 and again.status_code == 200, again.json
    assert again.json["id"] == first.json["id"] and again.json["name"] == "one.png"
    other = upload(bob, PNG, "one.png")  # once per user: Bob's copy is his own
    assert other.status_code == 201 and other.json["id"] != first.json["id"]
    assert stored_count(app) == 2


@pytest.mark.parametrize("data, name, declared", [
    (PNG, "pixel.png", "image/jpeg"),  # a wrong declared type
    (PNG, "pixel.jpg", "application/octet-stream"),  # a name that says another type than the bytes
    (PE_EXECUTABLE, "cat.png", "image/png"),  # an executable renamed .png
    (ELF_EXECUTABLE, "cat.png", "application/octet-stream"),
    (b"#!/bin/sh\nrm -rf ~\n", "cat.png", "image/png"),  # a script renamed .png
    (b"#!/bin/sh\nrm -rf ~\n", "cat.png", "application/octet-stream"),
    (b"%PDF-1.7 not really\n", "report.pdf", "application/pdf"),  # a "PDF" that is not one
    (b"just text", "report.pdf", "application/pdf"),
    (b"GIF87a" + b"\x00" * 10, "x.txt", "text/plain"),  # a GIF (accepted) declared as text
    (b"ab\x00cd", "bin.txt", "text/plain"),  # NUL: not text
    (b"\xff\xfe\xfdinvalid utf-8", "bad.txt", "text/plain"),
    (b"PK\x03\x04" + b"\x00" * 40, "archive.zip", "application/zip"),  # a type that is not accepted
])
def test_s12_refused_uploads_store_nothing(alice, app, data, name, declared):
    r = upload(alice, data, name, declared)
    assert r.status_code == 415, r.json
    assert r.json["error"] == "unsupported_file_type" and r.json["code"] == 415
    assert stored_count(app) == 0


def test_s12_oversize_is_413_and_stores_nothing(make_app):
    app = make_app(UPLOAD_MAX_BYTES=1000, UPLOAD_MAX_BYTES_PRO=5000)
    basic, pro = ChatUser(app, app.test_client()), ChatUser(app, app.test_client(), pro=True)
    text = b"a" * 1500
    r = upload(basic, text, "big.txt", "text/plain")
    assert r.status_code == 413 and r.json["error"] == "file_too_large", r.json
    # Far beyond the limit: the body itself is refused before the form is read.
    r = upload(basic, b"a" * 300_000, "huge.txt", "text/plain")
    assert r.status_code == 413 and r.json["code"] == 413, r.json
    assert stored_count(app) == 0
    # Pro has its own limit.
    assert upload(pro, text, "big.txt", "text/plain").status_code == 201
    assert upload(pro, b"b" * 5001, "bigger.txt", "text/plain").status_code == 413
    assert stored_count(app) == 1


def test_the_upload_limit_is_the_upload_routes_own(alice):
    """/files takes a file larger than MAX_CONTENT_LENGTH (256 KiB); other routes keep that limit."""
    big = b"x" * (400 * 1024)
    assert upload(alice, big, "big.txt", "text/plain").status_code == 201
    r = alice.post("/chatroom", json={"name": "x" * (400 * 1024)})
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"


def test_upload_needs_multipart_and_a_file(alice, app):
    r = alice.post("/files", data=PNG, content_type="image/png")
    assert r.status_code == 415 and r.json["error"] == "unsupported_media_type"
    r = alice.post("/files", data={"other": "x"}, content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.json["errors"]["files"]
    assert upload(alice, b"", "empty.txt", "text/plain").status_code == 422
    # Multipart is for the upload route only.
    r = alice.post("/chatroom", data={"file": (io.BytesIO(PNG), "p.png")}, content_type="multipart/form-data")
    assert r.status_code == 415
    assert stored_count(app) == 0


def test_s11_another_users_file_is_404(alice, bob, app):
    file_id = upload(alice, PNG).json["id"]
    assert bob.get(f"/files/{file_id}").status_code == 404
    assert bob.delete(f"/files/{file_id}").status_code == 404
    assert bob.get("/files").json["files"] == []
    assert alice.get(f"/files/{file_id}").status_code == 200


def test_attaching_a_foreign_or_unknown_file_is_422_with_nothing_stored_and_no_quota(alice, bob, app):
    foreign = upload(alice, PNG).json["id"]
    own = upload(bob, png(3, 3)).json["id"]
    room = bob.room()
    for ids in ([foreign], [own, foreign], [own, 999_999]):
        r = bob.post(f"/chatroom/{room}/message", json={"content": "look", "attachment_ids": ids})
        assert r.status_code == 422, r.json
        assert r.json["error"] == "validation_error" and "attachment_ids" in r.json["errors"]["json"]
    assert bob.usage_used() == 0
    assert stored_count(app, Message) == 0 and stored_count(app, MessageAttachment) == 0
    # Another user's room is a 404 whatever the files.
    alice_room = alice.room()
    r = bob.post(f"/chatroom/{alice_room}/message", json={"content": "look", "attachment_ids": [own]})
    assert r.status_code == 404


@pytest.mark.parametrize("ids", [[1] * 2, list(range(1, 12)), ["a"], [0]])
def test_bad_attachment_ids_are_422(alice, ids):
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json={"content": "x", "attachment_ids": ids})
    assert r.status_code == 422 and "attachment_ids" in r.json["errors"]["json"], r.json
    assert alice.usage_used() == 0


def test_delete_a_file_in_use_is_409_and_an_unused_one_204(alice, app):
    used = upload(alice, PNG).json["id"]
    unused = upload(alice, png(5, 5)).json["id"]
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json={"content": "see", "attachment_ids": [used]})
    assert r.status_code == 202, r.json
    r = alice.delete(f"/files/{used}")
    assert r.status_code == 409 and r.json["error"] == "file_in_use"
    assert alice.get(f"/files/{used}").status_code == 200
    assert alice.delete(f"/files/{unused}").status_code == 204
    assert alice.get(f"/files/{unused}").status_code == 404
    assert alice.delete(f"/files/{unused}").status_code == 404
    # Once the room (and so the message) is gone, the file may go.
    assert alice.delete(f"/chatroom/{room}").status_code == 204
    assert alice.delete(f"/files/{used}").status_code == 204


def test_a_message_shows_its_attachments_everywhere(alice):
    image = upload(alice, PNG, "a.png").json
    notes = upload(alice, b"notes", "n.txt", "text/plain").json
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json={"content": "both", "attachment_ids": [notes["id"], image["id"]]})
    assert r.status_code == 202, r.json
    expected = [{k: f[k] for k in ("id", "name", "mime_type", "size")} for f in (notes, image)]
    message, reply = r.json["message"], r.json["reply"]
    assert message["attachments"] == expected and reply["attachments"] == []
    assert alice.get(f"/chatroom/{room}/message/{message['id']}").json["attachments"] == expected
    page = alice.get(f"/chatroom/{room}").json["messages"]
    assert [m["attachments"] for m in page] == [expected, []]
    assert alice.get(f"/chatroom/{room}/messages").json["messages"][0]["attachments"] == expected
    # Without attachments: an empty list, on the post and the pages alike.
    plain = alice.say(room, "no files")["message"]
    assert plain["attachments"] == []
    assert alice.get(f"/chatroom/{room}").json["messages"][-2]["attachments"] == []


def test_idempotency_hash_covers_the_attachments(alice):
    first, second = upload(alice, PNG).json["id"], upload(alice, png(4, 4)).json["id"]
    room = alice.room()
    headers = {"Idempotency-Key": "k-files"}
    r = alice.post(f"/chatroom/{room}/message", json={"content": "x", "attachment_ids": [first]}, headers=headers)
    assert r.status_code == 202
    replay = alice.post(f"/chatroom/{room}/message", json={"content": "x", "attachment_ids": [first]},
                        headers=headers)
    assert replay.status_code == 202 and replay.json == r.json
    other = alice.post(f"/chatroom/{room}/message", json={"content": "x", "attachment_ids": [second]},
                       headers=headers)
    assert other.status_code == 409 and other.json["error"] == "idempotency_key_reused"


def test_the_consumer_sends_the_files_inline_and_again_with_later_turns(alice, gemini, worker):
    image = png(2, 2)
    notes = "# Shopping\n- bread\n".encode()
    image_id = upload(alice, image, "pixel.png").json["id"]
    notes_id = upload(alice, notes, "list.md", "text/markdown").json["id"]
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message",
                   json={"content": "What is in these?", "attachment_ids": [image_id, notes_id]})
    assert r.status_code == 202, r.json
    assert alice.finished_reply(room, r.json["reply"]["id"])["status"] == "complete"
    body = gemini.requests[-1]["body"]
    # The files as inline parts (base64 data with their type; Markdown as text/plain), before the question.
    assert inline_parts(body) == [[("image/png", image), ("text/plain", notes)]]
    assert body["contents"][0]["parts"][-1] == {"text": "What is in these?"}

    later = alice.say(room, "And the colour?")
    assert alice.finished_reply(room, later["reply"]["id"])["status"] == "complete"
    body = gemini.requests[-1]["body"]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert inline_parts(body) == [[("image/png", image), ("text/plain", notes)], [], []]


def test_file_costs_follow_geminis_image_tiles():
    from gemini_backend.ai import attachment_tokens
    assert attachment_tokens("image/png", 100, png(384, 384)[:64]) == 258
    assert attachment_tokens("image/png", 100, png(1000, 800)[:64]) == 4 * 258  # 2 x 2 tiles of 768
    assert attachment_tokens("image/gif", 100, b"GIF89a" + struct.pack("<HH", 1600, 10)) == 3 * 258
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" \
           b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 700, 1600) + b"\x03" + b"\x00" * 9
    assert attachment_tokens("image/jpeg", 100, jpeg) == 3 * 1 * 258  # 1600 wide, 700 high
    assert attachment_tokens("image/heic", 100, b"") == 4 * 258  # size unknown: four tiles
    assert attachment_tokens("application/pdf", 250_000) == 3 * 258
    assert attachment_tokens("text/plain", 4001) == 1001


def test_the_response_cache_key_covers_the_files():
    from gemini_backend.ai import Attachment, GeminiSettings, RoomSettings, Turn
    from gemini_backend.services.replies import response_cache_key
    settings, room = GeminiSettings(api_key="k"), RoomSettings(model="m")
    plain = [Turn("user", "what is this?")]
    one = [Turn("user", "what is this?", (Attachment("image/png", "a" * 64, 258),))]
    other = [Turn("user", "what is this?", (Attachment("image/png", "b" * 64, 258),))]
    keys = {response_cache_key(settings, room, h) for h in (plain, one, other)}
    assert len(keys) == 3


MINIMAL_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
               b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
               b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>endobj\ntrailer<</Root 1 0 R>>\n"
               b"startxref\n0\n%%EOF\n")


def test_a_real_pdf_is_accepted(alice):
    r = upload(alice, MINIMAL_PDF, "doc.pdf", "application/pdf")
    assert r.status_code == 201 and r.json["mime_type"] == "application/pdf", r.json


def test_file_responses_match_the_openapi_document(alice):
    """The success bodies the fuzzing rarely reaches (a real file of the user's) conform to /openapi.json."""
    from schemathesis.checks import content_type_conformance
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    from tests.test_schema_fuzz import schema, status_code_documented
    checks = [status_code_documented, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    created = upload(alice, PNG)
    again = upload(alice, PNG)
    for response in (created, again):
        schema["/files"]["POST"].Case(media_type="multipart/form-data").validate_response(response, checks=checks)
    file_id = created.json["id"]
    text_id = upload(alice, b"hello", "h.txt", "text/plain").json["id"]
    for fid in (file_id, text_id):
        response = alice.get(f"/files/{fid}")
        schema["/files/{file_id}"]["GET"].Case(path_parameters={"file_id": fid}).validate_response(
            response, checks=checks)
    schema["/files"]["GET"].Case().validate_response(alice.get("/files"), checks=checks)
    room = alice.room()
    posted = alice.post(f"/chatroom/{room}/message", json={"content": "x", "attachment_ids": [file_id]})
    schema["/chatroom/{room_id}/message"]["POST"].Case(path_parameters={"room_id": room}).validate_response(
        posted, checks=checks)
    schema["/chatroom/{room_id}"]["GET"].Case(path_parameters={"room_id": room}).validate_response(
        alice.get(f"/chatroom/{room}"), checks=checks)
