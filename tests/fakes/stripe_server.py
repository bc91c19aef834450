"""A small fake of Stripe's v1 API on 127.0.0.1, speaking Stripe's wire format.

Standard library only. The real ``stripe`` SDK talks to it unchanged::

    fake = FakeStripe().start()
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.base_url},
                                 max_network_retries=0)
    # or, module level:
    stripe.api_key, stripe.api_base = "sk_test_x", fake.base_url

Wire format, as Stripe's:
* requests are ``application/x-www-form-urlencoded`` (query string for GET/DELETE)
  with bracketed nesting: ``metadata[user_id]=7``, ``line_items[0][price]=price_x``,
  ``expand[0]=customer``; they are parsed back into dicts and lists;
* ``Authorization: Bearer sk_test_...`` (or HTTP basic with the key as user) is
  required, otherwise 401 with ``{"error": {"type": "invalid_request_error", ...}}``;
* responses are JSON objects shaped like Stripe's (``id``, ``object``, ``created``,
  ``livemode: false`` ...), errors are ``{"error": {type, code, message, param,
  doc_url, request_id}}`` with Stripe's status codes (400 bad params, 401, 402
  card errors, 404 unknown object or URL, 500 ...);
* unknown top-level parameters are refused (``parameter_unknown``) as Stripe does,
  so a misspelt or removed parameter fails here as it would in production;
* ``Idempotency-Key`` is honoured: the same key and parameters replay the first
  answer (``Idempotent-Replayed: true``), other parameters give ``idempotency_error``.

Routes: ``POST/GET /v1/customers``, ``GET/POST /v1/customers/{id}``,
``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``,
``POST /v1/billing_portal/sessions``, ``GET /v1/subscriptions`` (list),
``GET/POST/DELETE /v1/subscriptions/{id}``, ``GET /v1/prices/{id}``, ``GET /v1/events/{id}``.

Cancelling (``DELETE``) a subscription that is already ``canceled`` or
``incomplete_expired`` answers 404 ``resource_missing`` "No such subscription",
as Stripe does.

Subscriptions: since API version 2025-03-31.basil ``current_period_start`` and
``current_period_end`` live on each subscription item (``items.data[i]``), not on
the subscription. The fake always puts them on the item; with
``top_level_period=True`` (the default) it also copies them to the subscription
(what pre-basil versions returned). Pass ``top_level_period=False`` for the exact
shape of the version the SDK pins, to prove code reads the item.

Run by hand: ``python -m tests.fakes.stripe_server --port 12111``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import http.server
import json
import re
import secrets
import string
import sys
import threading
import time
import urllib.parse
from typing import Any

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_PRICE_ID",
    "FakeStripe",
    "StripeAPIError",
    "parse_form",
]

#: The API version stripe-python 16.1.0 pins (stripe._api_version._ApiVersion.CURRENT).
DEFAULT_API_VERSION = "2026-10-28.endive"
DEFAULT_PRICE_ID = "price_pro_test"
DEFAULT_UNIT_AMOUNT = 999
DAY = 86400

_ALNUM = string.ascii_letters + string.digits

# Top-level parameters the real endpoints accept (from stripe-python 16.1.0's
# params/*CreateParams, generated from Stripe's OpenAPI spec).
CUSTOMER_CREATE_PARAMS = frozenset(
    "address balance business_name cash_balance description email expand "
    "individual_name invoice_prefix invoice_settings metadata name "
    "next_invoice_sequence payment_method phone preferred_locales shipping "
    "source tax tax_exempt tax_id_data test_clock validate".split()
)
CUSTOMER_UPDATE_PARAMS = (
    CUSTOMER_CREATE_PARAMS - {"payment_method", "tax_id_data", "test_clock"}
) | {"default_source"}
CUSTOMER_LIST_PARAMS = frozenset(
    "created email ending_before expand limit starting_after test_clock".split()
)
CHECKOUT_CREATE_PARAMS = frozenset(
    "adaptive_pricing after_expiration allow_promotion_codes "
    "allowed_payment_method_types automatic_tax billing_address_collection "
    "branding_settings cancel_url client_reference_id consent_collection "
    "currency custom_fields custom_text customer customer_account "
    "customer_creation customer_email customer_update discounts "
    "excluded_payment_method_types expand expires_at integration_identifier "
    "invoice_creation line_items locale managed_payments metadata mode "
    "name_collection optional_items origin_context payment_intent_data "
    "payment_method_collection payment_method_configuration "
    "payment_method_data payment_method_options permissions "
    "phone_number_collection redirect_on_completion return_url "
    "saved_payment_method_options setup_intent_data "
    "shipping_address_collection shipping_options submit_type "
    "subscription_data success_url tax_id_collection ui_mode "
    "wallet_options".split()
)
CHECKOUT_LINE_ITEM_PARAMS = frozenset(
    "adjustable_quantity metadata price price_data quantity tax_rates".split()
)
CHECKOUT_SUBSCRIPTION_DATA_PARAMS = frozenset(
    "application_fee_percent billing_cycle_anchor billing_cycle_anchor_config "
    "billing_mode default_tax_rates description invoice_settings metadata "
    "on_behalf_of pending_invoice_item_interval proration_behavior "
    "transfer_data trial_end trial_period_days trial_settings".split()
)
PORTAL_CREATE_PARAMS = frozenset(
    "after_expiration configuration customer customer_account expand "
    "flow_data locale on_behalf_of return_url".split()
)
SUBSCRIPTION_UPDATE_PARAMS = frozenset(
    "add_invoice_items application_fee_percent automatic_tax "
    "billing_cycle_anchor billing_schedules billing_thresholds cancel_at "
    "cancel_at_period_end cancellation_details collection_method "
    "days_until_due default_payment_method default_source default_tax_rates "
    "description discounts expand invoice_settings items metadata "
    "off_session on_behalf_of pause_collection payment_behavior "
    "payment_settings pending_invoice_item_interval proration_behavior "
    "proration_date transfer_data trial_end trial_from_plan "
    "trial_settings".split()
)
SUBSCRIPTION_CANCEL_PARAMS = frozenset(
    "cancellation_details expand invoice_now prorate".split()
)
SUBSCRIPTION_LIST_PARAMS = frozenset(
    "automatic_tax collection_method created current_period_end "
    "current_period_start customer customer_account ending_before expand limit "
    "price starting_after status test_clock".split()
)
RETRIEVE_PARAMS = frozenset({"expand"})

SUBSCRIPTION_STATUSES = frozenset(
    "incomplete incomplete_expired trialing active past_due canceled unpaid "
    "paused".split()
)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _new_id(prefix: str, n: int = 24) -> str:
    return prefix + _rand(n)


def _now() -> int:
    return int(time.time())


_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def _listify(node: Any) -> Any:
    """Turn dicts whose keys are all indices ("0", "1", ...) into lists."""
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def parse_form(body: str | bytes) -> dict[str, Any]:
    """Parse a Stripe form body (``a[b][0][c]=v``) into nested dicts/lists.

    ``key[]=v`` appends; a dict whose keys are all integers becomes a list in
    index order. Values stay strings, as on the wire.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    root: dict[str, Any] = {}
    for raw_key, value in urllib.parse.parse_qsl(
        body, keep_blank_values=True, strict_parsing=False
    ):
        m = _KEY_RE.match(raw_key)
        if m:
            parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        else:
            parts = [raw_key]
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[part] = nxt
                node = nxt
    return _listify(root)


class StripeAPIError(Exception):
    """Raised inside a route to answer with Stripe's error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        err: dict[str, Any] = {"type": type, "message": message}
        if code:
            err["code"] = code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace(
                "_", "-"
            )
        if param:
            err["param"] = param
        err.update(extra)
        self.error = err


def _missing(param: str) -> StripeAPIError:
    return StripeAPIError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _no_such(kind: str, obj_id: str, param: str, status: int = 400) -> StripeAPIError:
    return StripeAPIError(
        status, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param
    )


def _check_params(params: dict, allowed: frozenset, prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise StripeAPIError(
                400,
                f"Received unknown parameter: {name}",
                code="parameter_unknown",
                param=name,
            )


def _as_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise StripeAPIError(400, f"Invalid boolean: {value}", param=param)


def _as_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeAPIError(400, f"Invalid integer: {value}", param=param) from None


def _check_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Validate Stripe metadata; ``""`` (unset all) yields ``{}``."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise StripeAPIError(
            400, f"Invalid {param}: must be a hash of key-value pairs", param=param
        )
    if len(value) > 50:
        raise StripeAPIError(
            400, "Metadata can have up to 50 keys, but you passed in "
            f"{len(value)} keys.", param=param,
        )
    for k, v in value.items():
        if not isinstance(v, str):
            raise StripeAPIError(
                400, f"Invalid {param}[{k}]: must be a string", param=f"{param}[{k}]"
            )
        if len(k) > 40:
            raise StripeAPIError(
                400, "Metadata keys can have up to 40 characters, but you passed "
                f"in a key that is {len(k)} characters.", param=f"{param}[{k}]",
            )
        if len(v) > 500:
            raise StripeAPIError(
                400, "Metadata values can have up to 500 characters, but you "
                f"passed in a value that is {len(v)} characters.",
                param=f"{param}[{k}]",
            )
    return dict(value)


def _merge_metadata(current: dict, update: Any) -> dict:
    """Stripe's update semantics: keys merge, ``""`` deletes a key or all."""
    if update == "":
        return {}
    update = _check_metadata(update)
    merged = dict(current)
    for k, v in update.items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


class _Headers(dict):
    """A dict of request headers whose lookups ignore case."""

    def __init__(self, items):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key, default=None):
        return super().get(key.lower(), default)


# --------------------------------------------------------------------------- #
# the fake
# --------------------------------------------------------------------------- #
class FakeStripe:
    """An in-process fake Stripe API server plus helpers to drive it from tests.

    Attributes:
        base_url: ``"http://127.0.0.1:PORT"`` (valid after ``start()``).
        requests: every request received, in order, as
            ``{"method", "path", "params", "headers", "body"}``; ``params`` is
            the parsed form body (POST) or query string (GET/DELETE);
            ``headers`` looks up case-insensitively.
        prices: known price ids (all recurring monthly, USD); unknown ones give
            ``resource_missing`` "No such price".
        fail_next: queue of forced answers, each ``(status, body)`` or
            ``(status, body, headers)``; the next request (after the API-key
            check) pops one and gets it instead of the normal answer. ``body``
            may be a full ``{"error": {...}}`` or just the inner error dict.
        fail_requests: forced answers for one method and path only, each
            ``(method, path, answer)`` with ``answer`` as in ``fail_next``; the
            first request that matches pops it (see ``fail_request``).
        customers, checkout_sessions, portal_sessions, subscriptions, events:
            the stored objects by id.
        api_version: ``api_version`` written on events.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        prices: set[str] | None = None,
        api_key: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        top_level_period: bool = True,
    ):
        self.host = host
        self.port = port
        self.api_key = api_key  # None: any sk_test_/rk_test_ key is accepted
        self.api_version = api_version
        self.top_level_period = top_level_period
        self._lock = threading.RLock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._default_prices = set(prices) if prices is not None else {DEFAULT_PRICE_ID}
        self._init_state()

    def _init_state(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.prices: set[str] = set(self._default_prices)
        self.price_details: dict[str, dict[str, Any]] = {}
        self.fail_next: list[tuple] = []
        self.fail_requests: list[tuple[str, str, tuple]] = []
        self.customers: dict[str, dict] = {}
        self.checkout_sessions: dict[str, dict] = {}
        self.portal_sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self._session_extra: dict[str, dict] = {}
        self._idempotency: dict[tuple[str, str], tuple] = {}
        self._created: dict[str, int] = {}

    # ---- lifecycle -------------------------------------------------------- #
    def start(self) -> "FakeStripe":
        if self._server is not None:
            return self
        server = http.server.ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-stripe:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeStripe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    url = base_url

    def reset(self) -> None:
        """Forget every stored object, request and queued failure."""
        with self._lock:
            self._init_state()

    def fail_request(self, method: str, path: str, status: int, body: dict | None = None,
                     headers: dict[str, str] | None = None) -> None:
        """Answer the next ``method`` request to ``path`` (no query string) with ``status`` and ``body``."""
        with self._lock:
            self.fail_requests.append((method.upper(), path, (status, body, headers or {})))

    # ---- inspection ------------------------------------------------------- #
    def requests_to(self, path: str, method: str | None = None) -> list[dict]:
        """Recorded requests whose path is ``path`` (and method, if given)."""
        with self._lock:
            return [
                r for r in self.requests
                if r["path"] == path and (method is None or r["method"] == method.upper())
            ]

    # ---- prices ----------------------------------------------------------- #
    def add_price(
        self,
        price_id: str,
        *,
        unit_amount: int = DEFAULT_UNIT_AMOUNT,
        currency: str = "usd",
        interval: str | None = "month",
        product: str | None = None,
    ) -> dict:
        """Register a price (``interval=None`` makes it one-time)."""
        with self._lock:
            self.prices.add(price_id)
            self.price_details[price_id] = {
                "unit_amount": unit_amount,
                "currency": currency,
                "interval": interval,
                "product": product,
            }
            return self._price_obj(price_id)

    def _price_obj(self, price_id: str) -> dict:
        d = self.price_details.get(price_id, {})
        interval = d.get("interval", "month")
        unit_amount = d.get("unit_amount", DEFAULT_UNIT_AMOUNT)
        product = d.get("product") or "prod_" + (
            re.sub(r"[^A-Za-z0-9]", "", price_id)[-14:] or "fake"
        )
        recurring = None
        if interval:
            recurring = {
                "interval": interval,
                "interval_count": 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        return {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": self._created.setdefault(price_id, _now()),
            "currency": d.get("currency", "usd"),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": product,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }

    def _plan_obj(self, price: dict) -> dict:
        rec = price["recurring"] or {}
        return {
            "id": price["id"],
            "object": "plan",
            "active": True,
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": "per_unit",
            "created": price["created"],
            "currency": price["currency"],
            "interval": rec.get("interval", "month"),
            "interval_count": rec.get("interval_count", 1),
            "livemode": False,
            "metadata": {},
            "meter": None,
            "nickname": None,
            "product": price["product"],
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }

    # ---- customers -------------------------------------------------------- #
    def add_customer(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        phone: str | None = None,
        metadata: dict | None = None,
        **fields: Any,
    ) -> dict:
        """Store a Customer directly (as if created earlier) and return it."""
        with self._lock:
            cus = self._new_customer(
                {"email": email, "name": name, "phone": phone,
                 "metadata": metadata or {}}
            )
            cus.update(fields)
            self.customers[cus["id"]] = cus
            return copy.deepcopy(cus)

    def _new_customer(self, p: dict) -> dict:
        cid = _new_id("cus_", 14)
        return {
            "id": cid,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": _now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": p.get("description"),
            "discount": None,
            "email": p.get("email"),
            "invoice_prefix": _rand(8).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "name": p.get("name"),
            "next_invoice_sequence": 1,
            "phone": p.get("phone"),
            "preferred_locales": list(p.get("preferred_locales") or []),
            "shipping": None,
            "tax_exempt": p.get("tax_exempt") or "none",
            "test_clock": None,
        }

    # ---- subscriptions ---------------------------------------------------- #
    def add_subscription(
        self,
        customer: str,
        status: str = "active",
        metadata: dict | None = None,
        **fields: Any,
    ) -> dict:
        """Store a Stripe-shaped Subscription and return (a copy of) it.

        Special ``fields``: ``id``, ``price`` (default: a known price),
        ``quantity``, ``current_period_start`` / ``current_period_end`` (go on
        ``items.data[0]``, and on the subscription too when
        ``top_level_period``). Any other field overrides the top-level value
        (e.g. ``cancel_at_period_end=True``, ``created=...``).
        """
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"not a Stripe subscription status: {status!r}")
        with self._lock:
            now = _now()
            sub_id = fields.pop("id", None) or _new_id("sub_1", 23)
            price_id = fields.pop("price", None) or (
                DEFAULT_PRICE_ID if DEFAULT_PRICE_ID in self.prices
                else (sorted(self.prices)[0] if self.prices else DEFAULT_PRICE_ID)
            )
            created = fields.get("created", now)
            start = fields.pop("current_period_start", created)
            end = fields.pop("current_period_end", start + 30 * DAY)
            quantity = fields.pop("quantity", 1)
            price = self._price_obj(price_id)
            item = {
                "id": _new_id("si_", 14),
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": created,
                "current_period_end": end,
                "current_period_start": start,
                "discounts": [],
                "metadata": {},
                "plan": self._plan_obj(price),
                "price": price,
                "quantity": quantity,
                "subscription": sub_id,
                "tax_rates": [],
            }
            sub: dict[str, Any] = {
                "id": sub_id,
                "object": "subscription",
                "application": None,
                "application_fee_percent": None,
                "automatic_tax": {"disabled_reason": None, "enabled": False,
                                  "liability": None},
                "billing_cycle_anchor": start,
                "billing_cycle_anchor_config": None,
                "billing_mode": {"type": "classic"},
                "billing_thresholds": None,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "cancellation_details": {"comment": None, "feedback": None,
                                         "reason": None},
                "collection_method": "charge_automatically",
                "created": created,
                "currency": price["currency"],
                "customer": customer,
                "customer_account": None,
                "days_until_due": None,
                "default_payment_method": None,
                "default_source": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [],
                "ended_at": None,
                "invoice_settings": {"account_tax_ids": None,
                                     "issuer": {"type": "self"}},
                "items": {
                    "object": "list",
                    "data": [item],
                    "has_more": False,
                    "total_count": 1,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                },
                "latest_invoice": _new_id("in_1", 23),
                "livemode": False,
                "metadata": dict(metadata or {}),
                "next_pending_invoice_item_invoice": None,
                "on_behalf_of": None,
                "pause_collection": None,
                "payment_settings": {
                    "payment_method_options": None,
                    "payment_method_types": None,
                    "save_default_payment_method": "off",
                },
                "pending_invoice_item_interval": None,
                "pending_setup_intent": None,
                "pending_update": None,
                "schedule": None,
                "start_date": created,
                "status": status,
                "test_clock": None,
                "transfer_data": None,
                "trial_end": None,
                "trial_settings": {"end_behavior": {
                    "missing_payment_method": "create_invoice"}},
                "trial_start": None,
            }
            if self.top_level_period:
                sub["current_period_start"] = start
                sub["current_period_end"] = end
            if status == "canceled":
                sub["canceled_at"] = sub["ended_at"] = now
            sub.update(fields)
            self.subscriptions[sub_id] = sub
            return copy.deepcopy(sub)

    def set_subscription_status(self, sub_id: str, status: str, **fields: Any) -> dict:
        """Change a stored subscription (status and any fields) and return it.

        ``current_period_start`` / ``current_period_end`` update the item(s)
        (and the top level when ``top_level_period``); ``canceled`` fills
        ``canceled_at``/``ended_at`` unless given.
        """
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"not a Stripe subscription status: {status!r}")
        with self._lock:
            sub = self.subscriptions[sub_id]
            sub["status"] = status
            for key in ("current_period_start", "current_period_end"):
                if key in fields:
                    val = fields.pop(key)
                    for item in sub["items"]["data"]:
                        item[key] = val
                    if self.top_level_period:
                        sub[key] = val
            if status == "canceled":
                now = _now()
                if sub.get("canceled_at") is None:
                    sub["canceled_at"] = now
                if sub.get("ended_at") is None:
                    sub["ended_at"] = now
            sub.update(fields)
            return copy.deepcopy(sub)

    update_subscription = set_subscription_status

    def subscription(self, sub_id: str) -> dict:
        """A copy of the stored subscription."""
        with self._lock:
            return copy.deepcopy(self.subscriptions[sub_id])

    def checkout_session(self, session_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self.checkout_sessions[session_id])

    def checkout_session_params(self, session_id: str) -> dict:
        """The parsed parameters the session was created with."""
        with self._lock:
            return copy.deepcopy(self._session_extra[session_id]["params"])

    # ---- events ----------------------------------------------------------- #
    def event(
        self,
        type: str,
        obj: dict,
        created: int | None = None,
        *,
        previous_attributes: dict | None = None,
        id: str | None = None,
    ) -> dict:
        """Build (and store, for ``GET /v1/events/{id}``) a Stripe Event envelope."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(previous_attributes)
        evt = {
            "id": id or _new_id("evt_1", 23),
            "object": "event",
            "api_version": self.api_version,
            "created": _now() if created is None else int(created),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        with self._lock:
            self.events[evt["id"]] = evt
        return copy.deepcopy(evt)

    @staticmethod
    def payload(event: dict) -> bytes:
        """Serialise an event as Stripe's webhook body (sign these exact bytes)."""
        return json.dumps(event, indent=2).encode("utf-8")

    def checkout_session_completed_event(
        self,
        session: str | dict,
        subscription: dict | str | None = None,
        created: int | None = None,
        **session_fields: Any,
    ) -> dict:
        """Complete a Checkout Session and return its ``checkout.session.completed`` event.

        ``session`` is a stored session id or a session object. In subscription
        mode, without ``subscription`` an ``active`` one is created for the
        session's customer (a Customer is created if the session had none),
        carrying ``subscription_data[metadata]``. The stored session becomes
        ``status="complete"``, ``payment_status="paid"``.
        """
        with self._lock:
            if isinstance(session, str):
                sess = self.checkout_sessions[session]
            else:
                sess = self.checkout_sessions.get(session["id"]) or copy.deepcopy(session)
            extra = self._session_extra.get(sess["id"], {})
            customer = sess.get("customer")
            if not customer:
                cus = self._new_customer(
                    {"email": sess.get("customer_email")
                     or (sess.get("customer_details") or {}).get("email")}
                )
                self.customers[cus["id"]] = cus
                customer = cus["id"]
            sub_id = None
            if sess.get("mode") == "subscription":
                if subscription is None:
                    sub_md = (extra.get("subscription_data") or {}).get("metadata") or {}
                    price = (extra.get("prices") or [None])[0]
                    kw = {"price": price} if price else {}
                    subscription = self.add_subscription(
                        customer, "active", metadata=sub_md, **kw
                    )
                sub_id = subscription if isinstance(subscription, str) else subscription["id"]
            customer_obj = self.customers.get(customer, {})
            sess.update(
                {
                    "customer": customer,
                    "customer_details": {
                        "address": None,
                        "email": customer_obj.get("email") or sess.get("customer_email"),
                        "name": customer_obj.get("name"),
                        "phone": customer_obj.get("phone"),
                        "tax_exempt": "none",
                        "tax_ids": [],
                    },
                    "payment_status": "paid",
                    "status": "complete",
                    "subscription": sub_id,
                    "url": None,
                }
            )
            sess.update(session_fields)
            if sess["id"] not in self.checkout_sessions and isinstance(session, dict):
                self.checkout_sessions[sess["id"]] = sess
            return self.event("checkout.session.completed", sess, created)

    def subscription_event(
        self,
        type: str,
        subscription: str | dict,
        created: int | None = None,
        previous_attributes: dict | None = None,
    ) -> dict:
        """A ``customer.subscription.*`` event carrying the subscription's current state."""
        obj = self.subscription(subscription) if isinstance(subscription, str) else subscription
        return self.event(type, obj, created, previous_attributes=previous_attributes)

    def invoice(self, subscription: str | dict, status: str = "paid", **fields: Any) -> dict:
        """An Invoice for a subscription, shaped as in basil+ API versions.

        The subscription is referenced at ``parent.subscription_details.subscription``
        (and on each line's ``parent.subscription_item_details``); there is no
        top-level ``invoice.subscription`` in these versions.
        """
        sub = self.subscription(subscription) if isinstance(subscription, str) else subscription
        item = sub["items"]["data"][0]
        amount = item["price"]["unit_amount"] * (item.get("quantity") or 1)
        paid = status == "paid"
        now = _now()
        inv_id = sub.get("latest_invoice") or _new_id("in_1", 23)
        inv = {
            "id": inv_id,
            "object": "invoice",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "amount_remaining": 0 if paid else amount,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": "subscription_cycle",
            "collection_method": "charge_automatically",
            "created": now,
            "currency": sub["currency"],
            "customer": sub["customer"],
            "customer_email": self.customers.get(sub["customer"], {}).get("email"),
            "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_fake/test_{_rand(24)}",
            "lines": {
                "object": "list",
                "data": [{
                    "id": _new_id("il_1", 23),
                    "object": "line_item",
                    "amount": amount,
                    "currency": sub["currency"],
                    "invoice": inv_id,
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": sub["id"],
                            "subscription_item": item["id"],
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": item["current_period_end"],
                               "start": item["current_period_start"]},
                    "pricing": {"price_details": {"price": item["price"]["id"],
                                                  "product": item["price"]["product"]},
                                "type": "price_details",
                                "unit_amount_decimal": item["price"]["unit_amount_decimal"]},
                    "quantity": item.get("quantity") or 1,
                }],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/invoices/{inv_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * DAY,
            "parent": {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(sub.get("metadata") or {}),
                    "subscription": sub["id"],
                },
                "type": "subscription_details",
            },
            "period_end": item["current_period_start"],
            "period_start": item["current_period_start"],
            "status": "paid" if paid else "open",
            "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None,
                                   "paid_at": now if paid else None, "voided_at": None},
            "subtotal": amount,
            "total": amount,
        }
        inv.update(fields)
        return inv

    def invoice_event(
        self, type: str, subscription: str | dict, created: int | None = None, **fields: Any
    ) -> dict:
        """``invoice.paid`` / ``invoice.payment_failed`` (etc.) for a subscription."""
        status = "open" if type == "invoice.payment_failed" else "paid"
        return self.event(type, self.invoice(subscription, status, **fields), created)

    # ---- HTTP handling ---------------------------------------------------- #
    def _auth(self, headers: _Headers) -> None:
        auth = (headers.get("Authorization") or "").strip()
        if not auth:
            raise StripeAPIError(
                401,
                "You did not provide an API key. You need to provide your API key "
                "in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can "
                "help at https://support.stripe.com/.",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )
        scheme, _, cred = auth.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = cred.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(cred.strip()).decode("utf-8").split(":", 1)[0]
            except Exception:
                key = ""
        ok = bool(key) and key.startswith(("sk_test_", "rk_test_"))
        if self.api_key is not None:
            ok = key == self.api_key
        if not ok:
            masked = (key[:8] + "*" * 4 + key[-4:]) if len(key) > 12 else key
            raise StripeAPIError(
                401,
                f"Invalid API Key provided: {masked}",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )

    def _handle(self, method: str, raw_path: str, headers: _Headers, body: bytes):
        """Return ``(status, body_dict, extra_headers)`` for one request."""
        split = urllib.parse.urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            body_text = ""
        params = parse_form(split.query) if split.query else {}
        if method == "POST" and body_text:
            params.update(parse_form(body_text))
        request_id = _new_id("req_", 14)
        with self._lock:
            self.requests.append(
                {"method": method, "path": path, "params": params,
                 "headers": headers, "body": body_text}
            )
        extra_headers = {"Request-Id": request_id}
        try:
            self._auth(headers)
            with self._lock:
                forced = next((f for f in self.fail_requests if f[:2] == (method, path)), None)
                if forced is not None:
                    self.fail_requests.remove(forced)
                    forced = forced[2]
                elif self.fail_next:
                    forced = self.fail_next.pop(0)
            if forced is not None:
                status, err = forced[0], forced[1] if len(forced) > 1 else None
                fh = forced[2] if len(forced) > 2 else {}
                if err is None:
                    err = {"type": "api_error",
                           "message": "An unknown error occurred"}
                if "error" not in err:
                    err = {"error": err}
                err = copy.deepcopy(err)
                err["error"].setdefault("request_id", request_id)
                return status, err, {**extra_headers, **fh}

            idem = headers.get("Idempotency-Key") if method == "POST" else None
            idem_slot = None
            if idem:
                extra_headers["Idempotency-Key"] = idem
                idem_slot = (headers.get("Authorization") or "", idem)
                canon = json.dumps([method, path, params], sort_keys=True)
                with self._lock:
                    prior = self._idempotency.get(idem_slot)
                if prior is not None:
                    if prior[0] != canon:
                        raise StripeAPIError(
                            400,
                            "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with. Try using a "
                            f"key other than '{idem}' if you meant to execute a "
                            "different request.",
                            type="idempotency_error",
                        )
                    return prior[1], copy.deepcopy(prior[2]), {
                        **extra_headers, "Idempotent-Replayed": "true"}
            try:
                status, obj = self._route(method, path, params)
            except StripeAPIError as e:
                status, obj = e.status, {"error": {**e.error, "request_id": request_id}}
                extra_headers.update(e.headers)
            # Like Stripe, a request that failed validation saves no result.
            if idem_slot is not None and status < 400:
                with self._lock:
                    self._idempotency[idem_slot] = (canon, status, copy.deepcopy(obj))
            return status, obj, extra_headers
        except StripeAPIError as e:
            return e.status, {"error": {**e.error, "request_id": request_id}}, {
                **extra_headers, **e.headers}

    _ROUTES = [
        ("POST", re.compile(r"^/v1/customers$"), "_create_customer"),
        ("GET", re.compile(r"^/v1/customers$"), "_list_customers"),
        ("GET", re.compile(r"^/v1/customers/(?P<id>[^/]+)$"), "_get_customer"),
        ("POST", re.compile(r"^/v1/customers/(?P<id>[^/]+)$"), "_update_customer"),
        ("POST", re.compile(r"^/v1/checkout/sessions$"), "_create_checkout_session"),
        ("GET", re.compile(r"^/v1/checkout/sessions/(?P<id>[^/]+)$"),
         "_get_checkout_session"),
        ("POST", re.compile(r"^/v1/billing_portal/sessions$"), "_create_portal_session"),
        ("GET", re.compile(r"^/v1/subscriptions$"), "_list_subscriptions"),
        ("GET", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"), "_get_subscription"),
        ("POST", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"),
         "_update_subscription"),
        ("DELETE", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"),
         "_cancel_subscription"),
        ("GET", re.compile(r"^/v1/prices/(?P<id>[^/]+)$"), "_get_price"),
        ("GET", re.compile(r"^/v1/events/(?P<id>[^/]+)$"), "_get_event"),
    ]

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        for m, rx, name in self._ROUTES:
            match = rx.match(path)
            if match and m == method:
                with self._lock:
                    return getattr(self, name)(params, **match.groupdict())
        raise StripeAPIError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _expand(self, obj: dict, params: dict) -> dict:
        expand = params.get("expand") or []
        if isinstance(expand, str):
            expand = [expand]
        obj = copy.deepcopy(obj)
        stores = {"customer": self.customers, "subscription": self.subscriptions}
        for path in expand:
            store = stores.get(path)
            if store is not None and isinstance(obj.get(path), str) and obj[path] in store:
                obj[path] = copy.deepcopy(store[obj[path]])
        return obj

    # customers
    def _create_customer(self, params: dict) -> tuple[int, dict]:
        _check_params(params, CUSTOMER_CREATE_PARAMS)
        params = dict(params)
        params["metadata"] = _check_metadata(params.get("metadata"))
        email = params.get("email")
        if email and ("@" not in email or len(email) > 512):
            raise StripeAPIError(400, f"Invalid email address: {email}",
                                 code="email_invalid", param="email")
        if params.get("phone") and len(params["phone"]) > 20:
            raise StripeAPIError(400, "Invalid string: phone must be at most 20 characters",
                                 param="phone")
        cus = self._new_customer(params)
        self.customers[cus["id"]] = cus
        return 200, self._expand(cus, params)

    def _list_customers(self, params: dict) -> tuple[int, dict]:
        _check_params(params, CUSTOMER_LIST_PARAMS)
        limit = _as_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise StripeAPIError(400, "Invalid limit: must be between 1 and 100",
                                 param="limit")
        rows = sorted(self.customers.values(), key=lambda c: c["created"], reverse=True)
        if "email" in params:
            rows = [c for c in rows if c.get("email") == params["email"]]
        return 200, {"object": "list", "data": copy.deepcopy(rows[:limit]),
                     "has_more": len(rows) > limit, "url": "/v1/customers"}

    def _get_customer(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, RETRIEVE_PARAMS)
        if id not in self.customers:
            raise _no_such("customer", id, "id", 404)
        return 200, self._expand(self.customers[id], params)

    def _update_customer(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, CUSTOMER_UPDATE_PARAMS)
        if id not in self.customers:
            raise _no_such("customer", id, "id", 404)
        cus = self.customers[id]
        for key in ("email", "name", "phone", "description"):
            if key in params:
                cus[key] = params[key] or None
        if "metadata" in params:
            cus["metadata"] = _merge_metadata(cus["metadata"], params["metadata"])
        return 200, self._expand(cus, params)

    # checkout
    def _create_checkout_session(self, params: dict) -> tuple[int, dict]:
        _check_params(params, CHECKOUT_CREATE_PARAMS)
        mode = params.get("mode")
        if not mode:
            raise _missing("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeAPIError(
                400, "Invalid mode: must be one of payment, setup, or subscription",
                param="mode")
        ui_mode = params.get("ui_mode", "hosted_page")
        if ui_mode not in ("hosted_page", "embedded_page", "elements", "form"):
            raise StripeAPIError(
                400, "Invalid ui_mode: must be one of hosted_page, embedded_page, "
                "elements, or form", param="ui_mode")
        if ui_mode != "hosted_page":
            for p in ("success_url", "cancel_url"):
                if p in params:
                    raise StripeAPIError(
                        400, f"You cannot use `{p}` with `ui_mode={ui_mode}`.",
                        param=p)
        if params.get("customer") and params.get("customer_email"):
            raise StripeAPIError(
                400, "You may only specify one of these parameters: customer, "
                "customer_email.", param="customer_email")
        customer = params.get("customer")
        if customer and customer not in self.customers:
            raise _no_such("customer", customer, "customer")
        metadata = _check_metadata(params.get("metadata"))
        crid = params.get("client_reference_id")
        if crid is not None and not 1 <= len(crid) <= 200:
            raise StripeAPIError(
                400, "Invalid client_reference_id: must be between 1 and 200 "
                "characters", param="client_reference_id")

        line_items = params.get("line_items")
        prices: list[str] = []
        amount = 0
        currency = None
        if mode in ("payment", "subscription"):
            if not line_items:
                raise _missing("line_items")
            if not isinstance(line_items, list):
                raise StripeAPIError(400, "Invalid array", param="line_items")
            recurring = 0
            for i, li in enumerate(line_items):
                pfx = f"line_items[{i}]"
                if not isinstance(li, dict):
                    raise StripeAPIError(400, "Invalid object", param=pfx)
                _check_params(li, CHECKOUT_LINE_ITEM_PARAMS, pfx)
                if "price_data" in li:
                    raise StripeAPIError(
                        400, "The fake Stripe server supports `price` line items only.",
                        param=f"{pfx}[price_data]")
                price_id = li.get("price")
                if not price_id:
                    raise StripeAPIError(
                        400, "You must specify either `price` or `price_data` in "
                        "each line item.", code="parameter_missing",
                        param=f"{pfx}[price]")
                if price_id not in self.prices:
                    raise _no_such("price", price_id, f"{pfx}[price]")
                qty = _as_int(li.get("quantity", 1), f"{pfx}[quantity]")
                if qty < 1:
                    raise StripeAPIError(
                        400, "This value must be greater than or equal to 1.",
                        param=f"{pfx}[quantity]")
                price = self._price_obj(price_id)
                recurring += 1 if price["recurring"] else 0
                amount += price["unit_amount"] * qty
                currency = price["currency"]
                prices.append(price_id)
            if mode == "subscription" and not recurring:
                raise StripeAPIError(
                    400, "You must provide at least one recurring price in "
                    "`subscription` mode when using prices.", param="line_items")
            if mode == "payment" and recurring:
                raise StripeAPIError(
                    400, "You specified `payment` mode but passed a recurring price. "
                    "Either switch to `subscription` mode or use only one-time "
                    "prices.", param="mode")
        elif line_items:
            raise StripeAPIError(
                400, "You cannot pass `line_items` in `setup` mode.", param="line_items")

        sub_data = params.get("subscription_data")
        if sub_data is not None:
            if mode != "subscription":
                raise StripeAPIError(
                    400, "You can only pass in `subscription_data` in "
                    "`subscription` mode.", param="subscription_data")
            if not isinstance(sub_data, dict):
                raise StripeAPIError(400, "Invalid object", param="subscription_data")
            _check_params(sub_data, CHECKOUT_SUBSCRIPTION_DATA_PARAMS, "subscription_data")
            sub_data = dict(sub_data)
            sub_data["metadata"] = _check_metadata(
                sub_data.get("metadata"), "subscription_data[metadata]")

        now = _now()
        sid = "cs_test_a1" + _rand(56)
        sess = {
            "id": sid,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": amount if mode != "setup" else None,
            "amount_total": amount if mode != "setup" else None,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None,
                              "status": None},
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": crid,
            "client_secret": None if ui_mode == "hosted_page"
            else f"{sid}_secret_{_rand(24)}",
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "custom_fields": [],
            "custom_text": {"after_submit": None, "shipping_address": None,
                            "submit": None, "terms_of_service_acceptance": None},
            "customer": customer,
            "customer_creation": None if customer or mode == "subscription"
            else "if_required",
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": [],
            "expires_at": now + DAY,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": metadata,
            "mode": mode,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": params.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0,
                              "amount_tax": 0} if mode != "setup" else None,
            "ui_mode": ui_mode,
            "url": f"https://checkout.stripe.com/c/pay/{sid}#fid{_rand(40)}"
            if ui_mode == "hosted_page" else None,
        }
        self.checkout_sessions[sid] = sess
        self._session_extra[sid] = {
            "params": copy.deepcopy(params),
            "subscription_data": sub_data,
            "prices": prices,
        }
        return 200, self._expand(sess, params)

    def _get_checkout_session(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, RETRIEVE_PARAMS)
        if id not in self.checkout_sessions:
            raise _no_such("checkout.session", id, "session", 404)
        return 200, self._expand(self.checkout_sessions[id], params)

    # billing portal
    def _create_portal_session(self, params: dict) -> tuple[int, dict]:
        _check_params(params, PORTAL_CREATE_PARAMS)
        customer = params.get("customer")
        if not customer:
            raise _missing("customer")
        if customer not in self.customers:
            raise _no_such("customer", customer, "customer")
        bid = _new_id("bps_1", 23)
        obj = {
            "id": bid,
            "object": "billing_portal.session",
            "configuration": params.get("configuration") or "bpc_1" + _rand(23),
            "created": _now(),
            "customer": customer,
            "customer_account": None,
            "flow": None,
            "livemode": False,
            "locale": params.get("locale"),
            "on_behalf_of": None,
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{_rand(40)}",
        }
        self.portal_sessions[bid] = obj
        return 200, self._expand(obj, params)

    # subscriptions
    def _get_subscription(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, RETRIEVE_PARAMS)
        if id not in self.subscriptions:
            raise _no_such("subscription", id, "id", 404)
        return 200, self._expand(self.subscriptions[id], params)

    def _update_subscription(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, SUBSCRIPTION_UPDATE_PARAMS)
        if id not in self.subscriptions:
            raise _no_such("subscription", id, "id", 404)
        sub = self.subscriptions[id]
        if sub["status"] in ("canceled", "incomplete_expired") and set(params) - {
            "metadata", "cancellation_details", "expand"
        }:
            raise StripeAPIError(
                400, "A canceled subscription can only update its "
                "cancellation_details and metadata.")
        if "cancel_at_period_end" in params:
            flag = _as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"] if flag else None
            sub["canceled_at"] = _now() if flag else None
        if "metadata" in params:
            sub["metadata"] = _merge_metadata(sub["metadata"], params["metadata"])
        return 200, self._expand(sub, params)

    def _list_subscriptions(self, params: dict) -> tuple[int, dict]:
        """Newest first; without ``status`` every subscription but the canceled ones, as Stripe lists them."""
        _check_params(params, SUBSCRIPTION_LIST_PARAMS)
        for unsupported in ("automatic_tax", "collection_method", "created", "current_period_end",
                            "current_period_start", "customer_account", "ending_before", "test_clock"):
            if unsupported in params:
                raise StripeAPIError(
                    400, f"The fake Stripe server does not support `{unsupported}` here.",
                    param=unsupported)
        status = params.get("status")
        if status is not None and status not in SUBSCRIPTION_STATUSES | {"all", "ended"}:
            raise StripeAPIError(400, f"Invalid status: {status}", param="status")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            raise _no_such("customer", customer, "customer")
        limit = _as_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise StripeAPIError(
                400, "This value must be between 1 and 100.", param="limit")

        def listed(sub: dict) -> bool:
            if customer is not None and sub["customer"] != customer:
                return False
            if params.get("price") and all(
                    item["price"]["id"] != params["price"] for item in sub["items"]["data"]):
                return False
            if status is None:
                return sub["status"] != "canceled"
            if status == "ended":
                return sub["status"] in ("canceled", "incomplete_expired")
            return status == "all" or sub["status"] == status

        subs = sorted((s for s in self.subscriptions.values() if listed(s)),
                      key=lambda s: s["created"], reverse=True)
        after = params.get("starting_after")
        if after is not None:
            ids = [s["id"] for s in subs]
            if after not in ids:
                raise _no_such("subscription", after, "starting_after")
            subs = subs[ids.index(after) + 1:]
        page = subs[:limit]
        return 200, {"object": "list", "data": [self._expand(s, params) for s in page],
                     "has_more": len(subs) > limit, "url": "/v1/subscriptions"}

    def _cancel_subscription(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, SUBSCRIPTION_CANCEL_PARAMS)
        if id not in self.subscriptions:
            raise _no_such("subscription", id, "id", 404)
        sub = self.subscriptions[id]
        if sub["status"] in ("canceled", "incomplete_expired"):
            # Stripe treats an ended subscription as gone for cancellation.
            raise _no_such("subscription", id, "id", 404)
        if "cancellation_details" in params:
            details = params["cancellation_details"]
            if not isinstance(details, dict) or set(details) - {"comment", "feedback"}:
                raise StripeAPIError(400, "Invalid cancellation_details",
                                     param="cancellation_details")
            sub["cancellation_details"] = {**sub["cancellation_details"], **details}
        now = _now()
        sub["status"] = "canceled"
        sub["canceled_at"] = sub.get("canceled_at") or now
        sub["ended_at"] = now
        return 200, self._expand(sub, params)

    # prices, events
    def _get_price(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, RETRIEVE_PARAMS)
        if id not in self.prices:
            raise _no_such("price", id, "price", 404)
        return 200, self._price_obj(id)

    def _get_event(self, params: dict, id: str) -> tuple[int, dict]:
        _check_params(params, RETRIEVE_PARAMS)
        if id not in self.events:
            raise _no_such("event", id, "id", 404)
        return 200, copy.deepcopy(self.events[id])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    def _serve(self) -> None:
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = _Headers(self.headers.items())
        try:
            status, obj, extra = fake._handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: answer like a Stripe 500
            status, extra = 500, {}
            obj = {"error": {"type": "api_error",
                             "message": f"fake Stripe server error: {exc!r}"}}
        data = (json.dumps(obj, indent=2) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("Stripe-Version",
                         headers.get("Stripe-Version") or fake.api_version)
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Stripe API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--price", action="append", default=None,
                        help=f"a known price id (repeatable; default {DEFAULT_PRICE_ID})")
    parser.add_argument("--api-key", default=None,
                        help="accept only this key (default: any sk_test_/rk_test_ key)")
    args = parser.parse_args(argv)
    fake = FakeStripe(args.host, args.port, prices=set(args.price) if args.price else None,
                      api_key=args.api_key)
    fake.start()
    print(fake.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
