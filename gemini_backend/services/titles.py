"""Room titles: a room still named "New chat" is named by Gemini after its first exchange, off the reply's path."""
from __future__ import annotations

import logging
import re

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from gemini_backend.ai import AiError, GeminiSettings, RoomSettings, Turn, get_client
from gemini_backend.caching import drop_chatroom_list
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message
from gemini_backend.taskqueue import app_task

log = logging.getLogger(__name__)
MAX_WORDS = 6
MAX_EXCHANGE_CHARS = 2000  # of the question and of the answer: a title needs the gist, not the whole text
PROMPT = ("Write a title of at most {words} words for the conversation below. Answer with the title only, "
          "without quotes or a final full stop.\n\nUser: {question}\n\nAssistant: {answer}")


def enqueue_title(room_id: int) -> None:
    """Queue name_room; a failure only leaves the room's name as it is."""
    try:
        name_room(room_id)
    except Exception as exc:
        log.warning("could not enqueue a title for room %s: %s", room_id, exc)


@app_task(retries=0)
def name_room(room_id: int) -> str | None:
    """The queued task: ask Gemini for a title and rename the room, unless it was renamed meanwhile; the title."""
    question = aliased(Message)
    exchange = db.session.execute(
        select(question.content.label("question"), Message.content.label("answer"), Chatroom.user_id)
        .join(Chatroom, Chatroom.id == Message.chatroom_id).join(question, question.id == Message.reply_to)
        .where(Message.chatroom_id == room_id, Chatroom.name == Chatroom.DEFAULT_NAME, Message.role == "model",
               Message.status == "complete").order_by(Message.id).limit(1)).first()
    db.session.commit()  # no connection held during the Gemini call
    if exchange is None:
        return None  # renamed, deleted, or nothing answered yet
    title = _ask_for_title(exchange.question, exchange.answer)
    if not title:
        return None
    renamed = db.session.execute(update(Chatroom).where(Chatroom.id == room_id,
                                                        Chatroom.name == Chatroom.DEFAULT_NAME).values(name=title))
    db.session.commit()
    if renamed.rowcount != 1:
        return None  # the user renamed it while Gemini was thinking: theirs wins
    drop_chatroom_list(exchange.user_id)
    return title


def _ask_for_title(question: str, answer: str) -> str | None:
    """Gemini's title for the exchange, cleaned (one line, no quotes, at most MAX_WORDS words); None on failure."""
    cfg = current_app.config
    settings = GeminiSettings.from_config(cfg)
    prompt = PROMPT.format(words=MAX_WORDS, question=question[:MAX_EXCHANGE_CHARS], answer=answer[:MAX_EXCHANGE_CHARS])
    try:
        text = get_client(settings).generate([Turn("user", prompt)], RoomSettings(model=cfg["TITLE_MODEL"]))
    except AiError as exc:
        log.info("no title for this room: %s", exc.message)
        return None
    return clean_title(text)


def clean_title(text: str) -> str | None:
    """The first line, without surrounding quotes, markdown or a final full stop, cut to MAX_WORDS words and 100
    characters (a room name's limit); None when nothing is left."""
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = re.sub(r"[*#`]", "", line)  # markdown emphasis, headings and code
    line = re.sub(r"^title:\s*", "", line.strip(), flags=re.IGNORECASE)
    line = line.strip("\"'“”‘’ ").rstrip(".").strip()
    words = line.split()[:MAX_WORDS]
    title = " ".join(words)[:100].strip()
    return title or None
