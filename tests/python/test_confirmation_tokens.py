"""ConfirmationTokens through stripe-python, following seed 004 ("Finalize
payments on the server"): the browser (or Stripe's test helper) makes a token,
the server's `/create-confirm-intent` creates and confirms a PaymentIntent with it
in one call."""
import pytest
import requests
import stripe

from hosted import authenticate
from openapi import validate, validate_error

# A card as stripe.createConfirmationToken sends the Payment Element's fields.
CARD = {"payment_method_data[type]": "card",
        "payment_method_data[card][number]": "4242424242424242",
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "2040",
        "payment_method_data[card][cvc]": "123"}


def helper_token(api, **form):
    r = api.post("/v1/test_helpers/confirmation_tokens", data=form)
    assert r.status_code == 200, r.text
    validate("confirmation_token", r.json())
    return r.json()


def browser_token(server, account, **form):
    """What stripe.createConfirmationToken sends, with the publishable key."""
    r = requests.post(f"{server.url}/v1/confirmation_tokens", data=form, timeout=10,
                      headers={"Authorization": f"Bearer {account['publishable_key']}"})
    assert r.status_code == 200, r.text
    validate("confirmation_token", r.json())
    return r.json()


def create_confirm_intent(token_id, **kw):
    """The seed's /create-confirm-intent route."""
    return stripe.PaymentIntent.create(confirm=True, amount=1099, currency="usd",
                                       automatic_payment_methods={"enabled": True},
                                       confirmation_token=token_id, **kw)


def test_a_test_helper_token_confirms_a_payment_in_one_call(account, api):
    token = helper_token(api, payment_method="pm_card_visa")
    assert token["id"].startswith("ctoken_")
    assert token["expires_at"] == token["created"] + 12 * 3600
    assert token["payment_intent"] is None and token["use_stripe_sdk"] is True
    preview = token["payment_method_preview"]
    assert preview["type"] == "card" and preview["card"]["last4"] == "4242"
    assert preview["card"]["brand"] == "visa" and preview["card"]["funding"] == "credit"
    pi = create_confirm_intent(token["id"])
    validate("payment_intent", pi)
    assert pi.status == "succeeded" and pi.payment_method.startswith("pm_")
    pm = stripe.PaymentMethod.retrieve(pi.payment_method)
    assert pm.card.last4 == "4242"
    used = stripe.ConfirmationToken.retrieve(token["id"])
    validate("confirmation_token", used)
    assert used.payment_intent == pi.id and used.setup_intent is None


def test_a_browser_token_with_card_fields(server, account):
    token = browser_token(server, account, **CARD, **{
        "payment_method_data[billing_details][name]": "Jenny Rosen",
        "payment_method_data[billing_details][email]": "jenny@example.com",
        "return_url": "https://example.com/order/123/complete",
        "shipping[name]": "Jenny Rosen", "shipping[address][line1]": "1 Main St",
        "shipping[address][country]": "US"})
    preview = token["payment_method_preview"]
    assert preview["billing_details"]["name"] == "Jenny Rosen"
    assert preview["card"]["exp_year"] == 2040 and preview["card"]["checks"]["cvc_check"] == "unchecked"
    assert token["shipping"]["name"] == "Jenny Rosen" and token["return_url"].endswith("/complete")
    # Only the secret key reads a token.
    r = requests.get(f"{server.url}/v1/confirmation_tokens/{token['id']}", timeout=10,
                     headers={"Authorization": f"Bearer {account['publishable_key']}"})
    assert r.status_code == 403
    pi = create_confirm_intent(token["id"])
    assert pi.status == "succeeded"
    assert pi.shipping.name == "Jenny Rosen"
    pm = stripe.PaymentMethod.retrieve(pi.payment_method)
    assert pm.billing_details.email == "jenny@example.com" and pm.customer is None


def test_a_token_is_used_once(account, api):
    token = helper_token(api, payment_method="pm_card_visa")
    create_confirm_intent(token["id"])
    with pytest.raises(stripe.InvalidRequestError) as e:
        create_confirm_intent(token["id"])
    assert e.value.http_status == 400 and e.value.param == "confirmation_token"
    validate_error(e.value.json_body)
    assert len(stripe.PaymentIntent.list().data) == 1


def test_a_token_expires_after_twelve_hours_of_the_accounts_clock(account, api):
    token = helper_token(api, payment_method="pm_card_visa")
    r = api.post("/v1/test_helpers/clock/advance", data={"seconds": 12 * 3600 - 60})
    assert r.status_code == 200
    fresh = helper_token(api, payment_method="pm_card_visa")
    r = api.post("/v1/test_helpers/clock/advance", data={"seconds": 120})
    assert r.status_code == 200
    with pytest.raises(stripe.InvalidRequestError) as e:
        create_confirm_intent(token["id"])
    assert e.value.param == "confirmation_token" and "expired" in e.value.user_message
    assert stripe.PaymentIntent.list().data == []
    assert create_confirm_intent(fresh["id"]).status == "succeeded"


def test_three_d_secure_through_the_hosted_page(account, api):
    token = helper_token(api, payment_method="pm_card_threeDSecure2Required",
                         return_url="https://example.com/complete")
    pi = create_confirm_intent(token["id"])
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == "https://example.com/complete"
    r, query = authenticate(pi)
    assert r.status_code == 303 and query["redirect_status"] == "succeeded"
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"


def test_setup_future_usage_on_the_token_saves_the_card(server, account):
    customer = stripe.Customer.create(email="jenny@example.com")
    form = dict(CARD, **{"payment_method_data[allow_redisplay]": "always", "setup_future_usage": "off_session"})
    token = browser_token(server, account, **form)
    assert token["setup_future_usage"] == "off_session"
    assert token["payment_method_preview"]["allow_redisplay"] == "always"
    pi = create_confirm_intent(token["id"], customer=customer.id)
    assert pi.status == "succeeded" and pi.setup_future_usage == "off_session"
    pm = stripe.PaymentMethod.retrieve(pi.payment_method)
    assert pm.customer == customer.id and pm.allow_redisplay == "always"
    later = stripe.PaymentIntent.create(amount=500, currency="usd", customer=customer.id,
                                        payment_method=pm.id, off_session=True, confirm=True)
    assert later.status == "succeeded"


def test_the_payment_intents_setup_future_usage_wins(account, api):
    customer = stripe.Customer.create()
    token = helper_token(api, payment_method="pm_card_visa", setup_future_usage="off_session")
    pi = create_confirm_intent(token["id"], customer=customer.id, setup_future_usage="on_session")
    assert pi.setup_future_usage == "on_session"
    assert stripe.PaymentMethod.retrieve(pi.payment_method).customer == customer.id


def test_without_setup_future_usage_the_card_is_not_saved(account, api):
    customer = stripe.Customer.create()
    token = helper_token(api, payment_method="pm_card_visa")
    pi = create_confirm_intent(token["id"], customer=customer.id)
    assert pi.status == "succeeded" and pi.setup_future_usage is None
    assert stripe.PaymentMethod.retrieve(pi.payment_method).customer is None


def test_a_decline_uses_the_token(account, api):
    token = helper_token(api, payment_method="pm_card_chargeDeclined")
    with pytest.raises(stripe.CardError) as e:
        create_confirm_intent(token["id"])
    assert e.value.error.decline_code == "generic_decline"
    pi_id = e.value.error.payment_intent["id"]
    assert stripe.ConfirmationToken.retrieve(token["id"]).payment_intent == pi_id


def test_two_step_confirm_and_setup_intents_take_tokens(account, api):
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd")
    token = helper_token(api, payment_method="pm_card_mastercard")
    pi = stripe.PaymentIntent.confirm(pi.id, confirmation_token=token["id"])
    assert pi.status == "succeeded"
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id)
    token = helper_token(api, payment_method="pm_card_visa")
    si = stripe.SetupIntent.confirm(si.id, confirmation_token=token["id"])
    validate("setup_intent", si)
    assert si.status == "succeeded"
    assert stripe.PaymentMethod.retrieve(si.payment_method).customer == customer.id
    assert stripe.ConfirmationToken.retrieve(token["id"]).setup_intent == si.id


@pytest.mark.parametrize("create,param", [
    (lambda t: create_confirm_intent("ctoken_missing"), "confirmation_token"),
    (lambda t: create_confirm_intent(t, payment_method="pm_card_visa"), "payment_method"),
    (lambda t: stripe.PaymentIntent.create(amount=1099, currency="usd", confirmation_token=t), "confirmation_token"),
])
def test_refusals_leave_no_trace(account, api, create, param):
    token = helper_token(api, payment_method="pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as e:
        create(token["id"])
    assert e.value.http_status == 400 and e.value.param == param
    assert stripe.PaymentIntent.list().data == []
    assert stripe.ConfirmationToken.retrieve(token["id"]).payment_intent is None


@pytest.mark.parametrize("form,param", [
    ({}, "payment_method_data"),
    ({"payment_method": "pm_missing"}, "payment_method"),
    ({"payment_method": "pm_card_visa", "setup_future_usage": "always"}, "setup_future_usage"),
    ({"payment_method_data[type]": "card", "payment_method_data[card][number]": "4242424242424241",
      "payment_method_data[card][exp_month]": "1", "payment_method_data[card][exp_year]": "2040"}, "number"),
])
def test_bad_tokens_are_refused(account, api, form, param):
    r = api.post("/v1/test_helpers/confirmation_tokens", data=form)
    assert r.status_code in (400, 402) and r.json()["error"]["param"] == param, r.text
    validate_error(r.json())
