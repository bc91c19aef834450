"""The billing story end to end: a Basic user hits the daily limit, pays, is Pro at once, and goes back."""
from tests.factories import auth_headers, create_user
from tests.test_webhooks import deliver


def test_basic_user_upgrades_and_downgrades(billing_app, bclient, fake):
    """6th message refused with a helpful 429; checkout + signed webhooks make the next one accepted; a
    customer.subscription.deleted makes the user Basic (and limited) again."""
    uid = create_user(billing_app)
    headers = auth_headers(billing_app, uid)
    room = bclient.post("/chatroom", json={"name": "r"}, headers=headers).json["id"]
    for i in range(5):
        assert bclient.post(f"/chatroom/{room}/message", json={"content": f"m{i}"}, headers=headers).status_code == 202
    refused = bclient.post(f"/chatroom/{room}/message", json={"content": "sixth"}, headers=headers)
    assert refused.status_code == 429 and "/subscribe/pro" in refused.json["message"]

    checkout = bclient.post("/subscribe/pro", headers=headers)
    assert checkout.status_code == 200 and checkout.json["checkout_url"].startswith("https://")
    completed = fake.checkout_session_completed_event(checkout.json["session_id"])
    subscription = fake.subscription(completed["data"]["object"]["subscription"])
    assert deliver(bclient, completed).status_code == 200
    assert deliver(bclient, fake.subscription_event("customer.subscription.created", subscription["id"])).status_code == 200

    assert bclient.get("/user/me", headers=headers).json["tier"] == "pro"
    accepted = bclient.post(f"/chatroom/{room}/message", json={"content": "sixth"}, headers=headers)
    assert accepted.status_code == 202

    fake.set_subscription_status(subscription["id"], "canceled")
    assert deliver(bclient, fake.subscription_event("customer.subscription.deleted", subscription["id"])).status_code == 200
    me = bclient.get("/user/me", headers=headers).json
    assert me["tier"] == "basic" and me["subscription"]["status"] == "canceled"
    again = bclient.post(f"/chatroom/{room}/message", json={"content": "seventh"}, headers=headers)
    assert again.status_code == 429 and again.json["error"] == "daily_limit_reached"
