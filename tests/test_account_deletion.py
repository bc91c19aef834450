"""Account deletion (API.md "Files and your data", QUALITY.md S13): DELETE /user/me with the password or a code of
purpose delete; the Stripe subscription is cancelled first (through the real SDK against the fake Stripe server),
then every row of the user goes in one transaction; tokens are refused, the number may sign up again, and late
Stripe events change nothing.

The S13 check reads the tables from db.metadata, so a table added later is checked too: it must either hold rows
of the user before the deletion (the test then makes some) or be named global in GLOBAL_TABLES.
"""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest
import stripe
from sqlalchemy import select, text

from gemini_backend.extensions import db
from gemini_backend.models import (Chatroom, IdempotencyKey, Message, MessageAttachment, OtpChallenge, Share,
                                   StoredFile, StripeEvent, Subscription, User, utcnow)
from tests.conftest import STRIPE_CONFIG
from tests.factories import create_user, new_phone, tokens_for
from tests.test_billing import NO_RETRY
from tests.test_webhooks import deliver

PASSWORD = "a long enough secret"
# Tables that hold no row of any one user: Stripe's event ids are the webhook's global ledger.
GLOBAL_TABLES = {"stripe_events"}


# --------------------------------------------------------------------------- helpers

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def delete_me(client, token: str, **body):
    return client.delete("/user/me", json=body, headers=bearer(token))


def code_for(client, phone: str, purpose: str) -> str:
    """A live code (OTP_DELIVERY=response in tests)."""
    r = client.post("/auth/send-otp", json={"phone": phone, "purpose": purpose})
    assert r.status_code == 200, r.json
    return r.json["otp"]


def marker(user_id: int) -> str:
    """A word only this user's messages hold."""
    return f"zanzibar{user_id}"


def search_index_exists(app) -> bool:
    """Whether SQLite's full-text index (messages_fts, kept by triggers) is there; PostgreSQL's tsvector is a column
    of messages itself."""
    with app.app_context():
        found = db.engine.dialect.name == "sqlite" and db.session.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'")).first() is not None
        db.session.remove()
        return found


def search_index_hits(app, word: str) -> int:
    """Rows of the full-text index that match word (0 without one)."""
    if not search_index_exists(app):
        return 0
    with app.app_context():
        hits = db.session.execute(text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :w"),
                                  {"w": word}).scalar()
        db.session.remove()
        return hits


def populate(app, client, user_id: int) -> dict:
    """Rows of the user in every per-user table: two rooms (messages with a reply, a second branch), a file
    attached to a message, a share, an idempotency record, codes of two purposes, revoked tokens, a
    subscription; and a Stripe event (global). Returns a live token pair of the user and its live delete code."""
    with app.app_context():
        user = db.session.get(User, user_id)
        phone = user.phone
        now = utcnow()
        for name in ("Trip", "Work"):
            room = Chatroom(user_id=user_id, name=name, last_activity_at=now, message_count=3)
            db.session.add(room)
            db.session.flush()
            question = Message(chatroom_id=room.id, role="user", content=f"Hello {marker(user_id)}", status="complete")
            db.session.add(question)
            db.session.flush()
            answer = Message(chatroom_id=room.id, role="model", content="Hi!", status="complete",
                             reply_to=question.id, parent_id=question.id, completed_at=now)
            db.session.add(answer)
            db.session.flush()
            follow_up = Message(chatroom_id=room.id, role="user", content="More", status="complete",
                                parent_id=answer.id)
            db.session.add(follow_up)
            db.session.flush()
            room.active_leaf_id = follow_up.id
            data = f"notes of {user_id} for {name}".encode()
            stored = StoredFile(user_id=user_id, name=f"{name}.txt", mime_type="text/plain", size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), data=data)
            db.session.add(stored)
            db.session.flush()
            db.session.add(MessageAttachment(message_id=question.id, file_id=stored.id, position=0))
            db.session.add(Share(id=secrets.token_urlsafe(32), chatroom_id=room.id, user_id=user_id,
                                 chatroom_name=name, messages=[{"id": question.id, "content": "Hello"}]))
        db.session.add(IdempotencyKey(user_id=user_id, key=f"key-{user_id}", request_hash="0" * 64,
                                      response_status=202, response_body={"ok": True}))
        if user.subscription is None:
            db.session.add(Subscription(user_id=user_id, status="canceled", stripe_customer_id=f"cus_old{user_id}"))
        db.session.add(StripeEvent(id=f"evt_of_{user_id}", type="invoice.paid", created=1))
        db.session.commit()
    code_for(client, phone, "login")
    delete_code = code_for(client, phone, "delete")
    # A logout (revoked session) and a rotation (spent refresh token): revoked_tokens rows of the user.
    client.post("/auth/logout", headers=bearer(tokens_for(app, user_id)["access_token"]))
    rotated = client.post("/auth/refresh", headers=bearer(tokens_for(app, user_id)["refresh_token"]))
    assert rotated.status_code == 200, rotated.json
    return {**rotated.json, "delete_code": delete_code}


def frozen(row) -> tuple:
    """A row as a hashable tuple (JSON columns as their canonical text)."""
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for v in row)


def snapshot(app) -> dict[str, set[tuple]]:
    """Every row of every table (all columns), by table name."""
    with app.app_context():
        rows = {table.name: {frozen(row) for row in db.session.execute(select(table)).all()}
                for table in db.metadata.sorted_tables}
        db.session.remove()
        return rows


def rows_of(app, user_id: int, phone: str) -> dict[str, set[tuple]]:
    """The rows that belong to the user, by table, found from the schema alone: the user's row, rows whose user_id
    or phone is the user's, and rows whose foreign key points at a row found so far (parents are read first)."""
    found: dict[str, set[tuple]] = {}
    keys: dict[str, dict[str, set]] = {}  # table -> column -> values of the user's rows
    with app.app_context():
        for table in db.metadata.sorted_tables:
            rows = set()
            for row in db.session.execute(select(table)).mappings():
                mine = (table.name == "users" and row["id"] == user_id) or row.get("user_id") == user_id or (
                    table.name != "users" and row.get("phone") == phone)
                for fk in table.foreign_keys:
                    parent = fk.column.table.name
                    if parent != table.name and row[fk.parent.name] in keys.get(parent, {}).get(fk.column.name, ()):
                        mine = True
                if mine:
                    rows.add(frozen(row.values()))
            # Self references (a message's parent) are not followed: the user's messages are found through the room.
            cols = [c.name for c in table.c]
            found[table.name] = rows
            keys[table.name] = {col: {r[i] for r in rows} for i, col in enumerate(cols)}
        db.session.remove()
    return found


def phone_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).phone


def pro_via_checkout(app, client, fake, user_id: int) -> str:
    """Make the user Pro the real way: a Checkout Session, then its checkout.session.completed webhook.
    Returns the Stripe subscription id."""
    token = tokens_for(app, user_id)["access_token"]
    session = client.post("/subscribe/pro", headers=bearer(token))
    assert session.status_code == 200, session.json
    event = fake.checkout_session_completed_event(session.json["session_id"])
    assert deliver(client, event).status_code == 200
    assert client.get("/user/me", headers=bearer(token)).json["tier"] == "pro"
    return event["data"]["object"]["subscription"]


# --------------------------------------------------------------------------- proofs

def test_delete_with_the_password(app, client):
    """The password deletes the account: 204 with no body, and the user is gone."""
    uid = create_user(app, password=PASSWORD)
    token = tokens_for(app, uid)["access_token"]
    r = delete_me(client, token, password=PASSWORD)
    assert r.status_code == 204 and r.data == b""
    with app.app_context():
        assert db.session.get(User, uid) is None


def test_delete_with_a_delete_code_and_never_a_login_code(app, client):
    """A login code does not delete (400 otp_invalid, nothing deleted); a code of purpose delete does, also for an
    account that has a password (either proof works)."""
    uid = create_user(app, password=PASSWORD)
    phone, token = phone_of(app, uid), tokens_for(app, uid)["access_token"]
    login_code = code_for(client, phone, "login")
    r = delete_me(client, token, otp=login_code)
    assert r.status_code == 400 and r.json["error"] == "otp_invalid"
    assert client.get("/user/me", headers=bearer(token)).status_code == 200
    r = delete_me(client, token, code=code_for(client, phone, "delete"))  # the `code` alias
    assert r.status_code == 204
    assert client.get("/user/me", headers=bearer(token)).status_code == 401


def test_an_account_without_password_deletes_with_a_code(app, client):
    """An OTP-only account proves itself with a delete code; a password it does not have is refused."""
    uid = create_user(app)
    phone, token = phone_of(app, uid), tokens_for(app, uid)["access_token"]
    r = delete_me(client, token, password="anything at all")
    assert r.status_code == 400 and r.json["error"] == "wrong_password" and "no password" in r.json["message"]
    assert delete_me(client, token, otp=code_for(client, phone, "delete")).status_code == 204


@pytest.mark.parametrize("body, status, error", [
    ({"password": "not the password"}, 400, "wrong_password"),
    ({"otp": "000000"}, 400, "otp_invalid"),
    ({"password": PASSWORD, "otp": "000000"}, 400, "otp_invalid"),  # every proof sent must be right
    ({}, 422, "validation_error"),
    ({"password": None, "otp": None}, 422, "validation_error"),
    ({"otp": "12ab56"}, 422, "validation_error"),
    ({"password": ""}, 422, "validation_error"),
])
def test_wrong_or_missing_proof_deletes_nothing(app, client, body, status, error):
    """A wrong password or code is 400 (as a password change answers), no proof 422; in the error shape, and not
    one row changes."""
    uid = create_user(app, password=PASSWORD)
    tokens = populate(app, client, uid)
    before = snapshot(app)
    r = delete_me(client, tokens["access_token"], **body)
    assert r.status_code == status and r.json["error"] == error and r.json["code"] == status, r.json
    after = snapshot(app)
    if error == "otp_invalid":  # a wrong guess is counted on the live code, nothing else moves
        assert {t: rows for t, rows in after.items() if t != "otp_challenges"} == \
            {t: rows for t, rows in before.items() if t != "otp_challenges"}
        assert len(after["otp_challenges"]) == len(before["otp_challenges"])
    else:
        assert after == before
    assert client.get("/user/me", headers=bearer(tokens["access_token"])).status_code == 200


def test_without_a_token_is_401(client):
    r = client.delete("/user/me", json={"password": PASSWORD})
    assert r.status_code == 401 and r.json["error"] == "token_missing"


def test_delete_codes_go_only_to_existing_accounts(app, client):
    """send-otp accepts purpose delete and answers an unknown number exactly alike, but stores no code for it."""
    known = phone_of(app, create_user(app))
    stranger = new_phone()
    a = client.post("/auth/send-otp", json={"phone": known, "purpose": "delete"})
    b = client.post("/auth/send-otp", json={"phone": stranger, "purpose": "delete"})
    assert a.status_code == b.status_code == 200
    assert set(a.json) == set(b.json) and a.json["message"] == b.json["message"]
    with app.app_context():
        phones = set(db.session.scalars(select(OtpChallenge.phone)))
    assert known in phones and stranger not in phones


def test_attempts_are_rate_limited_per_client(make_app):
    """DELETE /user/me is limited per client IP like the auth routes (AUTH_RATE_LIMIT): 429 with Retry-After."""
    limited = make_app(AUTH_RATE_LIMIT="3 per minute")
    client = limited.test_client()
    uid = create_user(limited, password=PASSWORD)
    token = tokens_for(limited, uid)["access_token"]
    statuses = [delete_me(client, token, password="guess number x").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    r = delete_me(client, token, password=PASSWORD)
    assert r.status_code == 429 and r.json["error"] == "rate_limited" and int(r.headers["Retry-After"]) > 0
    with limited.app_context():
        assert db.session.get(User, uid) is not None


# --------------------------------------------------------------------------- S13: every row, every token

def test_s13_no_row_of_the_user_remains_and_nothing_else_changes(app, client):
    """S13: before, the user has rows in every table but the global ones (so a new table must get rows here);
    after, none of them remains, and every other row, another user's in every table too, is exactly as it was."""
    victim = create_user(app, password=PASSWORD)
    bystander = create_user(app, password=PASSWORD)
    tokens = populate(app, client, victim)
    populate(app, client, bystander)
    phone = phone_of(app, victim)
    mine = rows_of(app, victim, phone)
    empty = sorted(t for t, rows in mine.items() if not rows and t not in GLOBAL_TABLES)
    assert not empty, f"populate() makes no row of the user in {empty}: add some (or list the table as global)"
    before = snapshot(app)

    indexed = search_index_hits(app, marker(victim))
    assert indexed == search_index_hits(app, marker(bystander)) == (2 if search_index_exists(app) else 0)
    assert delete_me(client, tokens["access_token"], password=PASSWORD).status_code == 204

    after = snapshot(app)
    assert search_index_hits(app, marker(victim)) == 0 and search_index_hits(app, marker(bystander)) == indexed
    assert rows_of(app, victim, phone) == {t: set() for t in mine}
    assert after == {t: rows - mine[t] for t, rows in before.items()}
    assert after["stripe_events"] == before["stripe_events"]


def test_s13_old_tokens_are_refused(app, client):
    """Every token of the deleted user is refused (401, never 500), even with its state cached just before: the
    access token on routes that load the user and on those that do not, the refresh token, a second deletion."""
    uid = create_user(app, password=PASSWORD)
    first = tokens_for(app, uid)
    tokens = populate(app, client, uid)
    assert client.get("/user/me", headers=bearer(tokens["access_token"])).status_code == 200  # state cached
    assert client.get("/chatroom", headers=bearer(tokens["access_token"])).status_code == 200  # list cached
    assert delete_me(client, tokens["access_token"], password=PASSWORD).status_code == 204
    for token in (tokens["access_token"], first["access_token"]):
        for path in ("/user/me", "/chatroom", "/user/usage"):
            r = client.get(path, headers=bearer(token))
            assert r.status_code == 401 and r.json["error"] in ("token_revoked", "token_invalid"), (path, r.json)
        assert delete_me(client, token, password=PASSWORD).status_code == 401
    for token in (tokens["refresh_token"], first["refresh_token"]):
        assert client.post("/auth/refresh", headers=bearer(token)).status_code == 401


def test_the_number_signs_up_again_as_a_new_account(app, client):
    """The same phone signs up again: a new id (never the old one, on SQLite too), no rooms, Basic, no
    subscription; the old tokens stay refused."""
    old = create_user(app, password=PASSWORD)
    phone = phone_of(app, old)
    tokens = populate(app, client, old)
    assert delete_me(client, tokens["access_token"], password=PASSWORD).status_code == 204
    r = client.post("/auth/signup", json={"phone": phone, "password": PASSWORD})
    assert r.status_code == 201, r.json
    new = r.json["user"]["id"]
    assert new > old
    login = client.post("/auth/login", json={"phone": phone, "password": PASSWORD})
    assert login.status_code == 200
    headers = bearer(login.json["access_token"])
    me = client.get("/user/me", headers=headers).json
    assert me["id"] == new and me["tier"] == "basic" and me["subscription"]["status"] == "none"
    assert client.get("/chatroom", headers=headers).json["chatrooms"] == []
    assert client.get("/user/me", headers=bearer(tokens["access_token"])).status_code == 401


# --------------------------------------------------------------------------- Stripe

def test_the_subscription_is_cancelled_at_stripe_before_the_rows_go(billing_app, bclient, fake):
    """A Pro user (through a real checkout): the fake Stripe receives DELETE /v1/subscriptions/{id} and the
    subscription is canceled there; a second live subscription of the customer that no webhook reported yet is
    cancelled too; then every row of the user is gone."""
    uid = create_user(billing_app, password=PASSWORD)
    phone = phone_of(billing_app, uid)
    sub_id = pro_via_checkout(billing_app, bclient, fake, uid)
    with billing_app.app_context():
        customer = db.session.get(User, uid).stripe_customer_id
    unreported = fake.add_subscription(customer, "incomplete")["id"]
    r = delete_me(bclient, tokens_for(billing_app, uid)["access_token"], password=PASSWORD)
    assert r.status_code == 204
    for sid in (sub_id, unreported):
        assert len(fake.requests_to(f"/v1/subscriptions/{sid}", "DELETE")) == 1
        assert fake.subscription(sid)["status"] == "canceled"
    assert fake.subscription(sub_id)["cancellation_details"]["comment"] == "account deleted"
    assert rows_of(billing_app, uid, phone) == {t: set() for t in snapshot(billing_app)}


UNREACHABLE = (500, None, NO_RETRY)
RATE_LIMITED = (429, {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"},
                NO_RETRY)
REFUSED = (400, {"type": "invalid_request_error", "code": "parameter_invalid", "message": "No."}, {})


@pytest.mark.parametrize("step", ["list", "cancel"])
@pytest.mark.parametrize("answer, status, error", [(UNREACHABLE, 503, "billing_unreachable"),
                                                   (RATE_LIMITED, 503, "billing_unreachable"),
                                                   (REFUSED, 502, "billing_error")])
def test_stripe_failing_deletes_nothing_and_the_retry_works(billing_app, bclient, fake, step, answer, status, error):
    """Stripe failing (5xx, rate limited, a refusal), whether listing the customer's subscriptions or cancelling
    one, is 503/502 in the error shape and not one row changes; the tokens still work; the retry with the same
    delete code succeeds once Stripe answers."""
    uid = create_user(billing_app)
    sub_id = pro_via_checkout(billing_app, bclient, fake, uid)
    tokens = populate(billing_app, bclient, uid)
    before = snapshot(billing_app)
    path = "/v1/subscriptions" if step == "list" else f"/v1/subscriptions/{sub_id}"
    fake.fail_request("GET" if step == "list" else "DELETE", path, *answer)
    r = delete_me(bclient, tokens["access_token"], otp=tokens["delete_code"])
    assert r.status_code == status and r.json["error"] == error and r.json["code"] == status, r.json
    if status == 503:  # Stripe's 10 s, or the per-IP limit's window when that ends later (Flask-Limiter)
        assert int(r.headers["Retry-After"]) >= 10
    assert fake.fail_requests == []
    assert snapshot(billing_app) == before
    assert fake.subscription(sub_id)["status"] == "active"
    assert bclient.get("/user/me", headers=bearer(tokens["access_token"])).json["tier"] == "pro"

    r = delete_me(bclient, tokens["access_token"], otp=tokens["delete_code"])
    assert r.status_code == 204
    assert fake.subscription(sub_id)["status"] == "canceled"
    with billing_app.app_context():
        assert db.session.get(User, uid) is None


def test_unreachable_stripe_is_503_and_deletes_nothing(make_app):
    """Stripe not answering at all (nothing listens) is 503 billing_unreachable; the user remains."""
    from tests.helpers import free_port
    unreachable = make_app(**STRIPE_CONFIG, STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}", STRIPE_TIMEOUT=2)
    client = unreachable.test_client()
    uid = create_user(unreachable, password=PASSWORD)
    with unreachable.app_context():
        db.session.get(User, uid).stripe_customer_id = "cus_somewhere"
        db.session.commit()
    r = delete_me(client, tokens_for(unreachable, uid)["access_token"], password=PASSWORD)
    assert r.status_code == 503 and r.json["error"] == "billing_unreachable"
    with unreachable.app_context():
        assert db.session.get(User, uid) is not None


def test_a_subscription_already_gone_at_stripe_does_not_block(billing_app, bclient, fake):
    """Stripe answers 404 for a subscription that already ended (or was deleted): nothing bills, so the deletion
    goes on."""
    uid = create_user(billing_app, password=PASSWORD)
    sub_id = pro_via_checkout(billing_app, bclient, fake, uid)
    fake.set_subscription_status(sub_id, "canceled")  # ended at Stripe; no webhook told us yet
    r = delete_me(bclient, tokens_for(billing_app, uid)["access_token"], password=PASSWORD)
    assert r.status_code == 204
    # The stored row still says active, so the cancel was sent; Stripe's 404 did not stop the deletion.
    assert len(fake.requests_to(f"/v1/subscriptions/{sub_id}", "DELETE")) == 1
    with billing_app.app_context():
        assert db.session.get(User, uid) is None


def test_without_billing_configured_stripe_is_skipped(app, client):
    """A server without STRIPE_SECRET_KEY deletes a user with a stored subscription without calling Stripe."""
    uid = create_user(app, password=PASSWORD)
    with app.app_context():
        db.session.add(Subscription(user_id=uid, status="active", stripe_subscription_id="sub_unreachable",
                                    stripe_customer_id="cus_unreachable"))
        db.session.get(User, uid).stripe_customer_id = "cus_unreachable"
        db.session.commit()
    assert delete_me(client, tokens_for(app, uid)["access_token"], password=PASSWORD).status_code == 204
    with app.app_context():
        assert db.session.get(User, uid) is None and db.session.scalar(select(Subscription.id)) is None


def test_late_stripe_events_change_nothing(billing_app, bclient, fake):
    """After the deletion, events about the deleted user or customer (the subscription made active again at
    Stripe, a checkout completed with the old user id, a paid invoice) are acknowledged with 200 and change no
    row but the event ledger: no user, subscription or customer link comes back."""
    uid = create_user(billing_app, password=PASSWORD)
    sub_id = pro_via_checkout(billing_app, bclient, fake, uid)
    with billing_app.app_context():
        customer = db.session.get(User, uid).stripe_customer_id
    survivor = create_user(billing_app)
    assert delete_me(bclient, tokens_for(billing_app, uid)["access_token"], password=PASSWORD).status_code == 204
    before = snapshot(billing_app)
    fake.set_subscription_status(sub_id, "active")  # whatever Stripe says now, the account stays gone
    session = {"id": "cs_test_late", "object": "checkout.session", "mode": "subscription", "customer": customer,
               "client_reference_id": str(uid), "metadata": {"user_id": str(uid)}}
    late = [fake.subscription_event("customer.subscription.updated", sub_id),
            fake.subscription_event("customer.subscription.deleted", sub_id),
            fake.checkout_session_completed_event(session, subscription=sub_id),
            fake.invoice_event("invoice.paid", sub_id)]
    for event in late:
        r = deliver(bclient, event)
        assert r.status_code == 200 and r.json == {"received": True}, r.json
    after = snapshot(billing_app)
    assert {t: rows for t, rows in after.items() if t != "stripe_events"} == \
        {t: rows for t, rows in before.items() if t != "stripe_events"}
    assert len(after["stripe_events"]) == len(before["stripe_events"]) + len(late)
    with billing_app.app_context():
        assert db.session.get(User, uid) is None
        assert db.session.get(User, survivor).stripe_customer_id is None


@pytest.mark.parametrize("reference", ["²", "9" * 30, "-1", "12 ", ""])
def test_odd_user_references_in_webhooks_are_acknowledged(billing_app, bclient, fake, reference):
    """A client_reference_id that is not a plain id (a superscript digit, more digits than a BIGINT, a sign,
    spaces) names no user: 200, nothing stored, never a 500."""
    session = {"id": f"cs_test_odd{abs(hash(reference))}", "object": "checkout.session", "mode": "subscription",
               "client_reference_id": reference, "metadata": {}, "customer": None}
    r = deliver(bclient, fake.checkout_session_completed_event(session))
    assert r.status_code == 200, r.json
    with billing_app.app_context():
        assert db.session.scalar(select(Subscription.id)) is None


def test_fake_stripe_cancels_like_stripe(fake):
    """The fake answers a second cancel with 404 resource_missing, as Stripe does, and lists a customer's
    subscriptions without the canceled ones."""
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.base_url}, max_network_retries=0)
    customer = fake.add_customer()["id"]
    live, ended = (fake.add_subscription(customer)["id"], fake.add_subscription(customer, "canceled")["id"])
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": customer})] == [live]
    assert {s.id for s in client.v1.subscriptions.list(params={"customer": customer, "status": "all"})} == \
        {live, ended}
    assert client.v1.subscriptions.cancel(live).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.cancel(live)
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.list(params={"customer": "cus_nobody"})


@pytest.mark.parametrize("data, content_type", [("password=" + PASSWORD, "application/x-www-form-urlencoded"),
                                                ('{"password": ', "application/json"),
                                                ('["password"]', "application/json")])
def test_a_body_that_is_not_the_object_is_a_client_error(app, client, data, content_type):
    """A form body, broken JSON or a JSON array never deletes and never fails with a 5xx."""
    uid = create_user(app, password=PASSWORD)
    token = tokens_for(app, uid)["access_token"]
    r = client.delete("/user/me", data=data, content_type=content_type, headers=bearer(token))
    assert r.status_code in (400, 415, 422) and r.json["code"] == r.status_code, r.json
    with app.app_context():
        assert db.session.get(User, uid) is not None
