"""The events each seed payment flow delivers: the exact set of types, each signed
(verified by stripe.Webhook.construct_event), each an `event` of Stripe's spec
whose `data.object` is valid too, in Stripe's order within a request."""
import pytest
import requests
import stripe

from hosted import authenticate
from openapi import plain, validate
from test_webhooks import Receiver, endpoint, start_server, wait_until

OBJECT_SCHEMAS = {"payment_intent": "payment_intent", "charge": "charge", "refund": "refund",
                  "payment_method": "payment_method", "customer": "customer"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def events_server(request, tmp_path_factory):
    srv, drop = start_server(request.param, tmp_path_factory)
    yield srv
    srv.stop()
    if drop:
        drop()


@pytest.fixture
def hook(events_server):
    """A fresh account with a `*` endpoint on a verifying receiver."""
    secret, _ = events_server.new_account()
    stripe.api_key = secret
    stripe.api_base = events_server.url
    stripe.max_network_retries = 0
    receiver = Receiver()
    endpoint(receiver, "/hook")
    yield receiver
    receiver.close()
    assert not [d["error"] for d in receiver.deliveries if d["error"]]


def delivered(receiver, count):
    """Waits for `count` verified deliveries; checks each against the spec."""
    wait_until(lambda: len(receiver.verified("/hook")) >= count, what=f"{count} deliveries")
    events = receiver.verified("/hook")
    for e in events:
        body = plain(e)
        validate("event", body)
        kind = body["data"]["object"]["object"]
        if kind in OBJECT_SCHEMAS:
            validate(OBJECT_SCHEMAS[kind], body["data"]["object"])
    return events


def types(events):
    return sorted(e.type for e in events)


def order_of(pi_id=None):
    """Event types newest first, as the Events API lists them."""
    return [e.type for e in stripe.Event.list(limit=100).data]


def test_successful_payment(hook):
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True,
                                     idempotency_key="flow-ok")
    events = delivered(hook, 3)
    assert types(events) == ["charge.succeeded", "payment_intent.created", "payment_intent.succeeded"]
    assert order_of() == ["payment_intent.succeeded", "charge.succeeded", "payment_intent.created"]
    for e in events:
        assert e["request"]["idempotency_key"] == "flow-ok" and e["request"]["id"].startswith("req_")
    succeeded = [e for e in events if e.type == "payment_intent.succeeded"][0]
    assert succeeded.data.object.id == pi.id and succeeded.data.object.status == "succeeded"


def test_decline(hook):
    with pytest.raises(stripe.CardError):
        stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method="pm_card_chargeDeclined", confirm=True)
    events = delivered(hook, 3)
    assert types(events) == ["charge.failed", "payment_intent.created", "payment_intent.payment_failed"]
    failed = [e for e in events if e.type == "payment_intent.payment_failed"][0]
    assert failed.data.object.last_payment_error.decline_code == "generic_decline"


def test_three_d_secure(hook):
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method="pm_card_threeDSecure2Required",
                                     confirm=True, return_url="https://merchant.example/r")
    authenticate(pi)
    events = delivered(hook, 4)
    assert types(events) == ["charge.succeeded", "payment_intent.created", "payment_intent.requires_action",
                             "payment_intent.succeeded"]
    # The hosted page is not an API request: its events carry request.id = null.
    page_events = [e for e in events if e.type in ("charge.succeeded", "payment_intent.succeeded")]
    assert all(e["request"]["id"] is None for e in page_events)


def test_manual_capture(hook):
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True,
                                     capture_method="manual")
    delivered(hook, 3)
    stripe.PaymentIntent.capture(pi.id, amount_to_capture=1500)
    events = delivered(hook, 5)
    assert types(events) == ["charge.captured", "charge.succeeded", "payment_intent.amount_capturable_updated",
                             "payment_intent.created", "payment_intent.succeeded"]


def test_refund(hook):
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True)
    stripe.Refund.create(payment_intent=pi.id, amount=500)
    events = delivered(hook, 5)
    assert types(events) == ["charge.refunded", "charge.succeeded", "payment_intent.created",
                             "payment_intent.succeeded", "refund.created"]
    refunded = [e for e in events if e.type == "charge.refunded"][0]
    assert refunded.data.object.amount_refunded == 500
    assert refunded.data.previous_attributes.amount_refunded == 0


def test_saving_a_card_attaches_it(hook):
    customer = stripe.Customer.create()
    stripe.PaymentIntent.create(amount=2000, currency="usd", customer=customer.id, payment_method="pm_card_visa",
                                setup_future_usage="off_session", confirm=True)
    events = delivered(hook, 5)
    assert types(events) == ["charge.succeeded", "customer.created", "payment_intent.created",
                             "payment_intent.succeeded", "payment_method.attached"]


@pytest.mark.parametrize("account_number,outcome", [("000123456789", "succeeded"), ("000111111116", "failed")])
def test_bank_debit(hook, events_server, account_number, outcome):
    pi = stripe.PaymentIntent.create(
        amount=2000, currency="usd", payment_method_types=["us_bank_account"], confirm=True,
        payment_method_data={"type": "us_bank_account", "billing_details": {"name": "J R"},
                             "us_bank_account": {"routing_number": "110000000", "account_number": account_number}},
        mandate_data={"customer_acceptance": {"type": "offline"}})
    first = delivered(hook, 3)
    assert types(first) == ["charge.pending", "payment_intent.created", "payment_intent.processing"]
    r = requests.post(f"{events_server.url}/v1/test_helpers/payment_intents/{pi.id}/settle",
                      headers={"Authorization": f"Bearer {stripe.api_key}"}, timeout=10)
    assert r.status_code == 200
    events = delivered(hook, 5)
    settled = sorted(e.type for e in events if e.type not in {"charge.pending", "payment_intent.created", "payment_intent.processing"})
    if outcome == "succeeded":
        assert settled == ["charge.succeeded", "payment_intent.succeeded"]
    else:
        assert settled == ["charge.failed", "payment_intent.payment_failed"]
