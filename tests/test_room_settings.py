"""Each chatroom's reply settings (model, system instruction, temperature, output length): validated, shown, changed
and sent to Gemini with every later reply; GET /models lists the choosable models."""
import pytest

from tests.chat_helpers import ChatUser

MODELS = ["gemini-2.5-flash", "gemini-2.5-pro"]
SETTINGS = {"model": "gemini-2.5-pro", "system_instruction": "Answer like a pirate.", "temperature": 0.3,
            "max_output_tokens": 64}


@pytest.fixture()
def chooser(make_app):
    """A web app whose rooms may choose between two models, and a user of it."""
    app = make_app(GEMINI_MODELS=MODELS)
    return ChatUser(app, app.test_client())


def _settings(room: dict) -> dict:
    return {key: room[key] for key in SETTINGS}


def test_models_lists_gemini_models_with_the_first_as_default(app, client, chooser):
    assert chooser.get("/models").json == {"models": MODELS, "default": MODELS[0]}
    alone = client.get("/models").json  # GEMINI_MODELS unset: GEMINI_MODEL alone
    assert alone == {"models": [app.config["GEMINI_MODEL"]], "default": app.config["GEMINI_MODEL"]}


def test_a_room_is_created_with_its_settings_and_lists_them(chooser):
    r = chooser.post("/chatroom", json={"name": "Pirates", **SETTINGS})
    assert r.status_code == 201, r.json
    assert _settings(r.json) == SETTINGS
    listed = chooser.get("/chatroom").json["chatrooms"]
    assert [_settings(room) for room in listed] == [SETTINGS]
    assert _settings(chooser.get(f"/chatroom/{r.json['id']}").json) == SETTINGS


@pytest.mark.parametrize("bad", [{"model": "gpt-4"}, {"temperature": 2.5}, {"temperature": -0.1},
                                 {"max_output_tokens": 0}, {"max_output_tokens": 65537},
                                 {"system_instruction": "x" * 4001}, {"temperature": "hot"}])
def test_bad_settings_are_422_and_create_nothing(chooser, bad):
    r = chooser.post("/chatroom", json={"name": "Bad", **bad})
    assert r.status_code == 422 and r.json["error"] == "validation_error", r.json
    assert set(r.json["errors"]["json"]) == set(bad)
    assert chooser.get("/chatroom").json["chatrooms"] == []


def test_patch_changes_only_what_it_is_given(chooser):
    room = chooser.post("/chatroom", json={"name": "Room"}).json
    path = f"/chatroom/{room['id']}"
    r = chooser.patch(path, json={"model": "gemini-2.5-pro", "temperature": 1.5})
    assert r.status_code == 200 and (r.json["name"], r.json["model"], r.json["temperature"]) == (
        "Room", "gemini-2.5-pro", 1.5)
    r = chooser.patch(path, json={"name": "Renamed"})
    assert (r.json["name"], r.json["model"], r.json["temperature"]) == ("Renamed", "gemini-2.5-pro", 1.5)
    r = chooser.patch(path, json={"model": None, "temperature": None})
    assert (r.json["model"], r.json["temperature"]) == (None, None)
    assert chooser.patch(path, json={}).status_code == 422
    assert chooser.patch(path, json={"model": "gpt-4"}).status_code == 422
    assert chooser.get("/chatroom").json["chatrooms"][0]["name"] == "Renamed"  # the cached list follows


def test_replies_use_the_rooms_settings_and_others_the_servers(app, chooser, gemini, worker):
    gemini.reset()
    tuned = chooser.post("/chatroom", json={"name": "Tuned", **SETTINGS}).json["id"]
    plain = chooser.post("/chatroom", json={"name": "Plain"}).json["id"]
    for room in (tuned, plain):
        posted = chooser.say(room, "Where is the treasure?")
        assert chooser.finished_reply(room, posted["reply"]["id"])["status"] == "complete"
    assert len(gemini.requests) == 2
    tuned_call, plain_call = gemini.requests[0]["body"], gemini.requests[1]["body"]
    assert gemini.requests[0]["model"] == "gemini-2.5-pro"
    assert tuned_call["systemInstruction"]["parts"][0]["text"] == "Answer like a pirate."
    assert tuned_call["generationConfig"]["temperature"] == 0.3
    assert tuned_call["generationConfig"]["maxOutputTokens"] == 64
    assert gemini.requests[1]["model"] == app.config["GEMINI_MODEL"]  # the consumer's default
    assert plain_call.get("systemInstruction", {}).get("parts", [{}])[0].get("text") != "Answer like a pirate."
    assert "temperature" not in plain_call.get("generationConfig", {})
