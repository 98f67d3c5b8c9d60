"""SetupIntents and SetupAttempts through stripe-python: saving a card without a
payment, one step and two, with every test card whose setup behaviour Stripe
documents; then charging the saved card off-session; 3-D Secure on the hosted
page; bank debits; the publishable key; the exact events of each flow."""
import pytest
import requests
import stripe

from hosted import authenticate
from openapi import validate, validate_error, validate_list


def events_since(before):
    """The types of the account's events after `before` (an id or None), oldest first."""
    kw = {"limit": 100}
    if before:
        kw["ending_before"] = before
    events = stripe.Event.list(**kw).data
    return [e.type for e in reversed(events)]


def newest_event():
    events = stripe.Event.list(limit=1).data
    return events[0].id if events else None


def checked(si):
    validate("setup_intent", si)
    if si.latest_attempt:
        attempt = stripe.SetupAttempt.list(setup_intent=si.id).data[0]
        validate("setup_attempt", attempt)
    return si


def charge_off_session(customer, pm):
    return stripe.PaymentIntent.create(
        amount=1500, currency="usd", customer=customer, payment_method=pm,
        off_session=True, confirm=True)


def test_one_step_setup_attaches_and_marks_the_card(account):
    customer = stripe.Customer.create(email="jenny@example.com")
    before = newest_event()
    si = stripe.SetupIntent.create(customer=customer.id, payment_method="pm_card_visa", confirm=True,
                                   payment_method_types=["card"], description="save for later",
                                   metadata={"order": "1"})
    checked(si)
    assert si.status == "succeeded" and si.usage == "off_session"
    assert si.client_secret.startswith(si.id + "_secret_")
    assert si.payment_method.startswith("pm_") and si.last_setup_error is None and si.next_action is None
    pm = stripe.PaymentMethod.retrieve(si.payment_method)
    assert pm.customer == customer.id
    attempts = stripe.SetupAttempt.list(setup_intent=si.id)
    validate_list("setup_attempt", attempts)
    assert [a.id for a in attempts.data] == [si.latest_attempt]
    attempt = attempts.data[0]
    assert attempt.status == "succeeded" and attempt.setup_intent == si.id
    assert attempt.payment_method == pm.id and attempt.customer == customer.id
    assert attempt.payment_method_details.type == "card"
    assert attempt.payment_method_details.card.last4 == "4242"
    assert events_since(before) == ["setup_intent.created", "payment_method.attached", "setup_intent.succeeded"]
    expanded = stripe.SetupIntent.retrieve(si.id, expand=["latest_attempt", "payment_method", "customer"])
    assert expanded.latest_attempt.id == attempt.id and expanded.payment_method.id == pm.id
    assert expanded.customer.id == customer.id


def test_two_step_setup(account):
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id)
    checked(si)
    assert si.status == "requires_payment_method" and si.payment_method is None
    assert si.automatic_payment_methods.enabled is True
    assert si.latest_attempt is None
    si = stripe.SetupIntent.modify(si.id, payment_method="pm_card_mastercard", metadata={"k": "v"})
    assert si.status == "requires_confirmation" and si.metadata["k"] == "v"
    before = newest_event()
    si = stripe.SetupIntent.confirm(si.id)
    checked(si)
    assert si.status == "succeeded"
    assert events_since(before) == ["payment_method.attached", "setup_intent.succeeded"]
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.SetupIntent.confirm(si.id)
    assert e.value.code == "setup_intent_unexpected_state"
    assert "may be confirmed: requires_payment_method, requires_confirmation, requires_action" in e.value.user_message
    validate_error(e.value.json_body)
    pi = charge_off_session(customer.id, si.payment_method)
    assert pi.status == "succeeded"


def test_confirm_with_payment_method_data(account):
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id, confirm=True, payment_method_data={
        "type": "card", "card": {"number": "4000056655665556", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        "billing_details": {"name": "Jenny Rosen", "address": {"postal_code": "94107"}}})
    checked(si)
    assert si.status == "succeeded"
    pm = stripe.PaymentMethod.retrieve(si.payment_method)
    assert pm.card.funding == "debit" and pm.customer == customer.id
    assert pm.card.checks.cvc_check == "pass"


@pytest.mark.parametrize("card,code,decline_code", [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
])
def test_declining_cards_fail_the_setup(account, card, code, decline_code):
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id, payment_method_types=["card"])
    before = newest_event()
    with pytest.raises(stripe.CardError) as e:
        stripe.SetupIntent.confirm(si.id, payment_method=card)
    err = e.value.error
    assert e.value.http_status == 402 and err.code == code and err.decline_code == decline_code
    validate_error(e.value.json_body)
    failed = err.setup_intent
    validate("setup_intent", failed)
    assert failed["status"] == "requires_payment_method" and failed["payment_method"] is None
    assert failed["last_setup_error"]["code"] == code
    assert failed["last_setup_error"]["decline_code"] == decline_code
    assert failed["last_setup_error"]["payment_method"]["id"].startswith("pm_")
    si = checked(stripe.SetupIntent.retrieve(si.id))
    assert si.status == "requires_payment_method"
    attempt = stripe.SetupAttempt.list(setup_intent=si.id).data[0]
    assert attempt.status == "failed" and attempt.setup_error.code == code
    assert events_since(before) == ["setup_intent.setup_failed"]
    assert stripe.Customer.list_payment_methods(customer.id).data == []
    # The same intent takes another card.
    si = stripe.SetupIntent.confirm(si.id, payment_method="pm_card_visa")
    assert si.status == "succeeded"
    assert len(stripe.SetupAttempt.list(setup_intent=si.id).data) == 2


def test_0341_sets_up_then_every_charge_declines(account):
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id, payment_method="pm_card_chargeCustomerFail", confirm=True)
    assert si.status == "succeeded"
    with pytest.raises(stripe.CardError) as e:
        charge_off_session(customer.id, si.payment_method)
    assert e.value.error.code == "card_declined" and e.value.error.decline_code == "generic_decline"


def setup_with_authentication(customer, card, complete=True, return_url=None):
    kw = {"return_url": return_url} if return_url else {}
    before = newest_event()
    si = stripe.SetupIntent.create(customer=customer, payment_method=card, confirm=True,
                                   payment_method_types=["card"], **kw)
    checked(si)
    assert si.status == "requires_action"
    assert events_since(before) == ["setup_intent.created", "setup_intent.requires_action"]
    attempt = stripe.SetupAttempt.list(setup_intent=si.id).data[0]
    assert attempt.status == "requires_action"
    r, query = authenticate(si, complete=complete)
    return si, r, query


def test_3155_authenticates_during_setup_then_charges_off_session(account):
    customer = stripe.Customer.create()
    si, r, query = setup_with_authentication(customer.id, "pm_card_authenticationRequiredOnSetup",
                                             return_url="https://example.com/done")
    assert si.next_action.type == "redirect_to_url"
    assert si.next_action.redirect_to_url.return_url == "https://example.com/done"
    assert r.status_code == 303
    assert query["setup_intent"] == si.id and query["redirect_status"] == "succeeded"
    assert query["setup_intent_client_secret"] == si.client_secret
    si = checked(stripe.SetupIntent.retrieve(si.id))
    assert si.status == "succeeded"
    attempt = stripe.SetupAttempt.list(setup_intent=si.id).data[0]
    assert attempt.status == "succeeded"
    assert attempt.payment_method_details.card.three_d_secure.result == "authenticated"
    pi = charge_off_session(customer.id, si.payment_method)
    assert pi.status == "succeeded"


def test_3184_still_needs_authentication_off_session(account):
    customer = stripe.Customer.create()
    si, r, _ = setup_with_authentication(customer.id, "pm_card_authenticationRequired")
    assert si.next_action.type == "use_stripe_sdk"
    assert r.status_code == 200 and 'data-status="succeeded"' in r.text
    assert stripe.SetupIntent.retrieve(si.id).status == "succeeded"
    with pytest.raises(stripe.CardError) as e:
        charge_off_session(customer.id, si.payment_method)
    assert e.value.error.code == "authentication_required"


def test_3178_sets_up_then_declines_for_insufficient_funds(account):
    customer = stripe.Customer.create()
    si, _, _ = setup_with_authentication(customer.id,
                                         "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds")
    assert stripe.SetupIntent.retrieve(si.id).status == "succeeded"
    with pytest.raises(stripe.CardError) as e:
        charge_off_session(customer.id, si.payment_method)
    assert e.value.error.decline_code == "insufficient_funds"


def test_failed_authentication_fails_the_setup(account):
    customer = stripe.Customer.create()
    si, r, query = setup_with_authentication(customer.id, "pm_card_threeDSecure2Required", complete=False,
                                             return_url="https://example.com/back")
    assert query["redirect_status"] == "failed"
    si = checked(stripe.SetupIntent.retrieve(si.id))
    assert si.status == "requires_payment_method" and si.payment_method is None
    assert si.last_setup_error.code == "setup_intent_authentication_failure"
    attempt = stripe.SetupAttempt.list(setup_intent=si.id).data[0]
    assert attempt.status == "failed"
    types = [e.type for e in stripe.Event.list(limit=5).data]
    assert types[0] == "setup_intent.setup_failed"
    assert stripe.Customer.list_payment_methods(customer.id).data == []


def test_cancel(account):
    si = stripe.SetupIntent.create(payment_method="pm_card_authenticationRequired", confirm=True)
    assert si.status == "requires_action"
    before = newest_event()
    si = stripe.SetupIntent.cancel(si.id, cancellation_reason="requested_by_customer")
    checked(si)
    assert si.status == "canceled" and si.cancellation_reason == "requested_by_customer"
    assert si.next_action is None
    assert stripe.SetupAttempt.list(setup_intent=si.id).data[0].status == "abandoned"
    assert events_since(before) == ["setup_intent.canceled"]
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.SetupIntent.cancel(si.id)
    assert e.value.code == "setup_intent_unexpected_state"


@pytest.mark.parametrize("data,ends", [
    ({"type": "us_bank_account", "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                                                     "account_holder_type": "individual"},
      "billing_details": {"name": "Jenny Rosen"}}, "succeeded"),
    ({"type": "us_bank_account", "us_bank_account": {"routing_number": "110000000", "account_number": "000111111113"},
      "billing_details": {"name": "Jenny Rosen"}}, "requires_payment_method"),
    ({"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"},
      "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"}}, "succeeded"),
])
def test_bank_debits_process_then_settle(account, api, data, ends):
    customer = stripe.Customer.create()
    before = newest_event()
    si = stripe.SetupIntent.create(customer=customer.id, confirm=True, payment_method_data=data,
                                   payment_method_types=[data["type"]],
                                   mandate_data={"customer_acceptance": {"type": "offline"}})
    checked(si)
    assert si.status == "processing"
    assert stripe.SetupAttempt.list(setup_intent=si.id).data[0].status == "processing"
    r = api.post(f"/v1/test_helpers/setup_intents/{si.id}/settle")
    assert r.status_code == 200, r.text
    si = checked(stripe.SetupIntent.retrieve(si.id))
    assert si.status == ends
    if ends == "succeeded":
        assert events_since(before) == ["setup_intent.created", "payment_method.attached", "setup_intent.succeeded"]
        assert stripe.PaymentMethod.retrieve(si.payment_method).customer == customer.id
    else:
        assert events_since(before) == ["setup_intent.created", "setup_intent.setup_failed"]
        assert si.last_setup_error.code == "account_closed"
    r = api.post(f"/v1/test_helpers/setup_intents/{si.id}/settle")
    assert r.status_code == 400 and r.json()["error"]["code"] == "setup_intent_unexpected_state"


def test_publishable_key_retrieves_and_confirms_with_the_client_secret(server, account):
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id, payment_method_types=["card"])
    pk = {"Authorization": f"Bearer {account['publishable_key']}"}
    url = f"{server.url}/v1/setup_intents/{si.id}"
    r = requests.get(url, params={"client_secret": si.client_secret}, headers=pk, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == si.id and body["status"] == "requires_payment_method"
    assert "customer" not in body and "metadata" not in body
    wrong = requests.get(url, params={"client_secret": si.id + "_secret_wrong"}, headers=pk, timeout=10)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "resource_missing"
    none = requests.get(url, headers=pk, timeout=10)
    assert none.status_code == 404
    pm = requests.post(f"{server.url}/v1/payment_methods", headers=pk, timeout=10, data={
        "type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2040"}).json()
    r = requests.post(url + "/confirm", headers=pk, timeout=10,
                      data={"client_secret": si.client_secret, "payment_method": pm["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert stripe.PaymentMethod.retrieve(pm["id"]).customer == customer.id
    for path in ["", "/cancel"]:
        r = requests.post(url + path, headers=pk, timeout=10, data={"client_secret": si.client_secret})
        assert r.status_code == 403


def test_lists_and_filters(account):
    a = stripe.Customer.create()
    b = stripe.Customer.create()
    si1 = stripe.SetupIntent.create(customer=a.id, payment_method="pm_card_visa", confirm=True)
    si2 = stripe.SetupIntent.create(customer=a.id)
    si3 = stripe.SetupIntent.create(customer=b.id)
    validate_list("setup_intent", stripe.SetupIntent.list())
    assert [s.id for s in stripe.SetupIntent.list(customer=a.id).data] == [si2.id, si1.id]
    assert [s.id for s in stripe.SetupIntent.list(customer=b.id).data] == [si3.id]
    assert [s.id for s in stripe.SetupIntent.list(payment_method=si1.payment_method).data] == [si1.id]
    both = stripe.SetupIntent.list(customer=a.id, payment_method=si1.payment_method).data
    assert [s.id for s in both] == [si1.id]
    assert stripe.SetupIntent.list(customer=b.id, payment_method=si1.payment_method).data == []
    page = stripe.SetupIntent.list(limit=2)
    assert page.has_more and len(page.data) == 2


@pytest.mark.parametrize("params,param", [
    ({"usage": "sometimes"}, "usage"),
    ({"customer": "cus_missing"}, "customer"),
    ({"payment_method": "pm_missing"}, "payment_method"),
    ({"return_url": "https://example.com"}, "return_url"),
    ({"payment_method_types": ["bitcoin"]}, "payment_method_types[0]"),
    ({"flow_directions": ["sideways"]}, "flow_directions[0]"),
    ({"nonsense": "1"}, "nonsense"),
])
def test_bad_input_names_the_param(account, params, param):
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.SetupIntent.create(**params)
    assert e.value.http_status == 400 and e.value.param == param
    validate_error(e.value.json_body)
    assert stripe.SetupIntent.list().data == []


def test_setup_attempts_need_an_existing_setup_intent(account):
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.SetupAttempt.list()
    assert e.value.param == "setup_intent"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.SetupAttempt.list(setup_intent="seti_missing")
    assert e.value.http_status == 400 and e.value.param == "setup_intent"


def test_a_bank_debit_setup_settles_by_itself_after_the_delay(account, api):
    """The scheduled settlement of a bank-debit setup runs once --settlement-delay
    (5 s) has passed on the account's clock; moving the clock stands in for waiting."""
    import time
    customer = stripe.Customer.create()
    si = stripe.SetupIntent.create(customer=customer.id, confirm=True, payment_method_types=["us_bank_account"],
                                   payment_method_data={"type": "us_bank_account", "billing_details": {"name": "J R"},
                                                        "us_bank_account": {"routing_number": "110000000",
                                                                            "account_number": "000123456789"}},
                                   mandate_data={"customer_acceptance": {"type": "offline"}})
    assert si.status == "processing"
    time.sleep(1.2)
    assert stripe.SetupIntent.retrieve(si.id).status == "processing"
    assert api.post("/v1/test_helpers/clock/advance", data={"seconds": 10}).status_code == 200
    deadline = time.time() + 10
    while time.time() < deadline and stripe.SetupIntent.retrieve(si.id).status == "processing":
        time.sleep(0.1)
    si = stripe.SetupIntent.retrieve(si.id)
    assert si.status == "succeeded"
    assert stripe.PaymentMethod.retrieve(si.payment_method).customer == customer.id
