"""PaymentIntents, Charges, Refunds and balance transactions through stripe-python,
following seeds 000 (existing customers), 001 (save during payment, off-session,
recovery) and 003 (payment status, manual capture)."""
import threading

import pytest
import requests
import stripe

from hosted import authenticate
from openapi import validate, validate_list, validate_error


def pi_create(**kw):
    kw.setdefault("amount", 2000)
    kw.setdefault("currency", "usd")
    return stripe.PaymentIntent.create(**kw)


def test_on_session_payment_succeeds(account):
    pi = pi_create(payment_method="pm_card_visa", confirm=True, description="order 6735", metadata={"order": "6735"})
    validate("payment_intent", pi)
    assert pi.status == "succeeded"
    assert pi.amount_received == 2000 and pi.amount_capturable == 0
    assert pi.client_secret.startswith(pi.id + "_secret_")
    assert pi.latest_charge.startswith("ch_")
    charge = stripe.Charge.retrieve(pi.latest_charge, expand=["balance_transaction"])
    validate("charge", charge)
    assert charge.paid and charge.captured and charge.status == "succeeded"
    assert charge.amount_captured == 2000
    assert charge.payment_method_details.card.brand == "visa"
    assert charge.payment_method_details.card.last4 == "4242"
    assert charge.outcome.type == "authorized" and charge.outcome.network_status == "approved_by_network"
    txn = charge.balance_transaction
    validate("balance_transaction", txn)
    assert (txn.amount, txn.fee, txn.net) == (2000, 88, 1912)
    assert txn.source == charge.id
    expanded = stripe.PaymentIntent.retrieve(pi.id, expand=["latest_charge.balance_transaction", "payment_method"])
    assert expanded.latest_charge.balance_transaction.fee == 88
    assert expanded.payment_method.card.last4 == "4242"


def test_create_then_confirm(account):
    pi = pi_create(payment_method_types=["card"])
    assert pi.status == "requires_payment_method" and pi.automatic_payment_methods is None
    pi = stripe.PaymentIntent.modify(pi.id, amount=3000, metadata={"k": "v"})
    assert pi.amount == 3000
    pi = stripe.PaymentIntent.confirm(pi.id, payment_method="pm_card_mastercard")
    assert pi.status == "succeeded" and pi.amount_received == 3000
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.modify(pi.id, amount=100)
    assert e.value.code == "payment_intent_unexpected_state"
    assert stripe.PaymentIntent.modify(pi.id, metadata={"after": "1"}).metadata["after"] == "1"


def test_decline_is_402_with_the_payment_intent_and_can_be_retried(account):
    customer = stripe.Customer.create(email="jenny@example.com")
    with pytest.raises(stripe.CardError) as e:
        pi_create(customer=customer.id, payment_method="pm_card_visa_chargeDeclinedInsufficientFunds", confirm=True)
    err = e.value.error
    assert e.value.http_status == 402
    assert err.code == "card_declined" and err.decline_code == "insufficient_funds"
    assert err.message == "Your card has insufficient funds."
    assert err.charge.startswith("ch_")
    pi = err.payment_intent
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.decline_code == "insufficient_funds"
    assert pi.last_payment_error.payment_method.id.startswith("pm_")
    assert pi.last_payment_error.charge == err.charge
    assert pi.latest_charge == err.charge
    validate("payment_intent", pi)

    retried = stripe.PaymentIntent.confirm(pi.id, payment_method="pm_card_visa")
    assert retried.status == "succeeded"
    assert retried.last_payment_error is None
    charges = stripe.Charge.list(payment_intent=pi.id)
    validate_list("charge", charges)
    assert [c.status for c in charges.data] == ["succeeded", "failed"]
    assert charges.data[1].failure_code == "card_declined"
    assert charges.data[1].outcome.type == "issuer_declined"
    assert retried.latest_charge == charges.data[0].id
    assert [c.id for c in stripe.Charge.list(customer=customer.id).data] == [c.id for c in charges.data]


@pytest.mark.parametrize("alias,code,decline_code", [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_radarBlock", "card_declined", "fraudulent"),
    ("pm_card_chargeCustomerFail", "card_declined", "generic_decline"),
])
def test_declines(account, alias, code, decline_code):
    with pytest.raises(stripe.CardError) as e:
        pi_create(payment_method=alias, confirm=True)
    assert e.value.code == code
    assert e.value.error.decline_code == decline_code
    charge = stripe.Charge.retrieve(e.value.error.charge)
    assert charge.status == "failed" and charge.failure_code == code
    if alias == "pm_card_radarBlock":
        assert charge.outcome.type == "blocked"


def hosted(pi, complete=True):
    r, query = authenticate(pi, complete)
    return r, query


@pytest.mark.parametrize("number,initial,later", [
    ("4000002500003155", "requires_action", "succeeded"),
    ("4000002760003184", "requires_action", "authentication_required"),
    ("4000008260003178", "requires_action", "insufficient_funds"),
    ("4000000000009995", "insufficient_funds", None),
])
def test_seed_001_saved_cards_on_and_off_session(account, number, initial, later):
    """Each card of seed 001's table: the initial purchase with setup_future_usage, then an off-session charge."""
    customer = stripe.Customer.create(email="saved@example.com")
    pm = stripe.PaymentMethod.create(type="card", card={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"})
    if initial == "insufficient_funds":
        with pytest.raises(stripe.CardError) as e:
            pi_create(customer=customer.id, payment_method=pm.id, setup_future_usage="off_session", confirm=True,
                      return_url="https://merchant.example/return")
        assert e.value.error.decline_code == "insufficient_funds"
        return
    pi = pi_create(customer=customer.id, payment_method=pm.id, setup_future_usage="off_session", confirm=True,
                   return_url="https://merchant.example/return")
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == "https://merchant.example/return"
    r, query = hosted(pi)
    assert r.status_code == 303
    assert r.headers["Location"].startswith("https://merchant.example/return?")
    assert query == {"payment_intent": pi.id, "payment_intent_client_secret": pi.client_secret, "redirect_status": "succeeded"}
    pi = stripe.PaymentIntent.retrieve(pi.id)
    assert pi.status == "succeeded"
    charge = stripe.Charge.retrieve(pi.latest_charge)
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"
    assert stripe.PaymentMethod.retrieve(pm.id).customer == customer.id

    # Later, off-session: the seed's try/except around PaymentIntent.create(off_session=True, confirm=True).
    if later == "succeeded":
        later_pi = pi_create(customer=customer.id, payment_method=pm.id, off_session=True, confirm=True)
        assert later_pi.status == "succeeded"
        return
    with pytest.raises(stripe.CardError) as e:
        pi_create(customer=customer.id, payment_method=pm.id, off_session=True, confirm=True)
    err = e.value.error
    assert err.code == ("authentication_required" if later == "authentication_required" else "card_declined")
    assert err.decline_code == later
    assert err.payment_intent.id.startswith("pi_")
    assert err.payment_intent.status == "requires_payment_method"


def test_recovery_flow_with_the_publishable_key(server, account):
    """Seed 001: after an authentication_required decline off-session, the customer comes
    back and confirms the same PaymentIntent in the browser with its client secret."""
    customer = stripe.Customer.create()
    first = pi_create(customer=customer.id, payment_method="pm_card_authenticationRequired",
                      setup_future_usage="off_session", confirm=True, return_url="https://m.example/r")
    hosted(first)
    pm_id = stripe.PaymentIntent.retrieve(first.id).payment_method
    with pytest.raises(stripe.CardError) as e:
        pi_create(customer=customer.id, payment_method=pm_id, off_session=True, confirm=True, metadata={"secret": "x"})
    declined = e.value.error.payment_intent

    pk = account["publishable_key"]
    browser = requests.Session()
    browser.headers["Authorization"] = f"Bearer {pk}"
    r = browser.get(f"{server.url}/v1/payment_intents/{declined.id}", params={"client_secret": declined.client_secret})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["status"] == "requires_payment_method"
    assert seen["last_payment_error"]["payment_method"]["id"] == pm_id
    assert "metadata" not in seen and "customer" not in seen and "latest_charge" not in seen

    r = browser.get(f"{server.url}/v1/payment_intents/{declined.id}", params={"client_secret": declined.id + "_secret_wrong"})
    assert r.status_code == 404
    validate_error(r.json())
    r = browser.get(f"{server.url}/v1/payment_intents/{declined.id}")
    assert r.status_code == 404
    r = browser.post(f"{server.url}/v1/payment_intents/{declined.id}/capture")
    assert r.status_code == 403

    r = browser.post(f"{server.url}/v1/payment_intents/{declined.id}/confirm", data={
        "client_secret": declined.client_secret, "payment_method": pm_id, "return_url": "https://m.example/r"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["status"] == "requires_action"
    r, query = authenticate(seen)
    assert query["redirect_status"] == "succeeded"
    assert stripe.PaymentIntent.retrieve(declined.id).status == "succeeded"


def test_authentication_failure(account):
    pi = pi_create(payment_method="pm_card_threeDSecure2Required", confirm=True, return_url="https://m.example/r")
    r, query = authenticate(pi, complete=False)
    assert query["redirect_status"] == "failed"
    pi = stripe.PaymentIntent.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"
    assert pi.last_payment_error.payment_method.id.startswith("pm_")
    assert pi.latest_charge is None


def test_use_stripe_sdk_without_return_url_and_decline_after_authentication(account):
    pi = pi_create(payment_method="pm_card_threeDSecureRequiredChargeDeclined", confirm=True)
    assert pi.status == "requires_action" and pi.next_action.type == "use_stripe_sdk"
    r, query = authenticate(pi)
    assert r.status_code == 200 and query is None
    pi = stripe.PaymentIntent.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "card_declined"


def test_error_on_requires_action(account):
    with pytest.raises(stripe.CardError) as e:
        pi_create(payment_method="pm_card_threeDSecure2Required", confirm=True, error_on_requires_action=True)
    assert e.value.code == "authentication_required"


def test_manual_capture_full_and_partial(account):
    pi = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual")
    assert pi.status == "requires_capture" and pi.amount_capturable == 2000 and pi.amount_received == 0
    charge = stripe.Charge.retrieve(pi.latest_charge)
    assert charge.captured is False and charge.balance_transaction is None
    pi = stripe.PaymentIntent.capture(pi.id)
    assert pi.status == "succeeded" and pi.amount_received == 2000 and pi.amount_capturable == 0
    assert stripe.Charge.retrieve(pi.latest_charge).captured is True

    old_style = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual")
    charge = stripe.Charge.capture(old_style.latest_charge, amount=1200)
    assert charge.captured and charge.amount_captured == 1200
    assert stripe.PaymentIntent.retrieve(old_style.id).status == "succeeded"

    partial = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.capture(partial.id, amount_to_capture=5000)
    assert e.value.param == "amount_to_capture"
    partial = stripe.PaymentIntent.capture(partial.id, amount_to_capture=1500)
    assert partial.amount_received == 1500
    charge = stripe.Charge.retrieve(partial.latest_charge, expand=["balance_transaction"])
    assert charge.amount_captured == 1500 and charge.amount_refunded == 500
    assert charge.balance_transaction.amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.capture(partial.id)
    assert e.value.code == "payment_intent_unexpected_state"


def test_cancel(account):
    pi = pi_create()
    pi = stripe.PaymentIntent.cancel(pi.id, cancellation_reason="requested_by_customer")
    assert pi.status == "canceled" and pi.cancellation_reason == "requested_by_customer" and pi.canceled_at
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.confirm(pi.id, payment_method="pm_card_visa")
    assert e.value.code == "payment_intent_unexpected_state"

    held = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual")
    held = stripe.PaymentIntent.cancel(held.id)
    assert held.status == "canceled"
    charge = stripe.Charge.retrieve(held.latest_charge)
    assert charge.refunded and charge.amount_refunded == 2000

    done = pi_create(payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError):
        stripe.PaymentIntent.cancel(done.id)


def test_refunds(account):
    pi = pi_create(payment_method="pm_card_visa", confirm=True)
    r1 = stripe.Refund.create(payment_intent=pi.id, amount=500, reason="requested_by_customer")
    validate("refund", r1)
    assert r1.status == "succeeded" and r1.amount == 500 and r1.charge == pi.latest_charge
    charge = stripe.Charge.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 500 and charge.refunded is False
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Refund.create(charge=charge.id, amount=1600)
    assert e.value.param == "amount"
    r2 = stripe.Refund.create(charge=charge.id)
    assert r2.amount == 1500
    charge = stripe.Charge.retrieve(charge.id)
    assert charge.refunded is True and charge.amount_refunded == 2000
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Refund.create(payment_intent=pi.id)
    assert e.value.code == "charge_already_refunded"
    refunds = stripe.Refund.list(payment_intent=pi.id)
    validate_list("refund", refunds)
    assert [r.id for r in refunds.data] == [r2.id, r1.id]
    txn = stripe.BalanceTransaction.retrieve(stripe.Refund.retrieve(r1.id).balance_transaction)
    assert txn.amount == -500 and txn.type == "refund"
    assert stripe.Refund.modify(r1.id, metadata={"why": "late"}).metadata["why"] == "late"
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Refund.create(payment_intent=pi_create().id)


def test_balance_adds_up(account):
    for amount in (1000, 2500, 999):
        pi = pi_create(amount=amount, payment_method="pm_card_visa", confirm=True)
    stripe.Refund.create(payment_intent=pi.id, amount=300)
    txns = list(stripe.BalanceTransaction.list(limit=100).auto_paging_iter())
    charges = [t for t in txns if t.type == "charge"]
    refunds = [t for t in txns if t.type == "refund"]
    assert sum(t.amount for t in charges) == 1000 + 2500 + 999
    assert sum(t.amount for t in refunds) == -300
    assert sum(t.fee for t in charges) == (30 + 29) + (30 + 73) + (30 + 29)
    for t in txns:
        assert t.net == t.amount - t.fee
        validate("balance_transaction", t)


def test_bank_debits_process_then_settle(account, api):
    ok = pi_create(payment_method_types=["us_bank_account"], confirm=True,
                   payment_method_data={"type": "us_bank_account", "billing_details": {"name": "Jenny Rosen"},
                                        "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                                                            "account_holder_type": "individual"}},
                   mandate_data={"customer_acceptance": {"type": "offline"}})
    assert ok.status == "processing"
    assert stripe.Charge.retrieve(ok.latest_charge).status == "pending"
    r = api.post(f"/v1/test_helpers/payment_intents/{ok.id}/settle")
    assert r.status_code == 200, r.text
    assert stripe.PaymentIntent.retrieve(ok.id).status == "succeeded"
    assert stripe.Charge.retrieve(ok.latest_charge).status == "succeeded"

    bad = pi_create(payment_method_types=["us_bank_account"], confirm=True,
                    payment_method_data={"type": "us_bank_account", "billing_details": {"name": "Jenny Rosen"},
                                         "us_bank_account": {"routing_number": "110000000", "account_number": "000111111116"}},
                    mandate_data={"customer_acceptance": {"type": "offline"}})
    assert bad.status == "processing"
    api.post(f"/v1/test_helpers/payment_intents/{bad.id}/settle")
    bad = stripe.PaymentIntent.retrieve(bad.id)
    assert bad.status == "requires_payment_method"
    assert bad.last_payment_error.code == "insufficient_funds"

    sepa = pi_create(currency="eur", payment_method_types=["sepa_debit"], confirm=True,
                     payment_method_data={"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"},
                                          "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"}},
                     mandate_data={"customer_acceptance": {"type": "offline"}})
    assert sepa.status == "processing"
    api.post(f"/v1/test_helpers/payment_intents/{sepa.id}/settle")
    assert stripe.PaymentIntent.retrieve(sepa.id).status == "succeeded"


def test_two_concurrent_confirms_charge_once(account):
    pi = pi_create(payment_method="pm_card_visa")
    results = []

    def go():
        try:
            results.append(stripe.PaymentIntent.confirm(pi.id).status)
        except stripe.InvalidRequestError as e:
            results.append(e.code)

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("succeeded") == 1, results
    assert set(results) <= {"succeeded", "payment_intent_unexpected_state"}
    assert len(stripe.Charge.list(payment_intent=pi.id).data) == 1


def test_parameter_validation(account):
    with pytest.raises(stripe.InvalidRequestError) as e:
        pi_create(amount=10)
    assert e.value.code == "amount_too_small" and e.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as e:
        pi_create(currency="zzz")
    assert e.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.create(currency="usd")
    assert e.value.code == "parameter_missing" and e.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as e:
        pi_create(capture_method="later")
    assert e.value.param == "capture_method"
    with pytest.raises(stripe.InvalidRequestError) as e:
        pi_create(payment_method="pm_nope", confirm=True)
    assert e.value.http_status == 400 and e.value.code == "resource_missing" and e.value.param == "payment_method"
    with pytest.raises(stripe.InvalidRequestError) as e:
        pi_create(confirm=True)
    assert e.value.code == "payment_intent_unexpected_state"
    jpy = pi_create(amount=500, currency="jpy", payment_method="pm_card_visa", confirm=True)
    assert jpy.amount_received == 500


def test_list_and_search(account):
    c = stripe.Customer.create()
    a = pi_create(customer=c.id, amount=1500, payment_method="pm_card_visa", confirm=True, metadata={"order": "1"})
    b = pi_create(amount=5000)
    assert [p.id for p in stripe.PaymentIntent.list(customer=c.id).data] == [a.id]
    listed = stripe.PaymentIntent.list(limit=2)
    validate_list("payment_intent", listed)
    assert [p.id for p in listed.data] == [b.id, a.id]
    assert [p.id for p in stripe.PaymentIntent.search(query="status:'succeeded'").data] == [a.id]
    assert [p.id for p in stripe.PaymentIntent.search(query="amount>2000").data] == [b.id]
    assert [p.id for p in stripe.PaymentIntent.search(query=f"customer:'{c.id}' AND metadata['order']:'1'").data] == [a.id]


def test_bank_debit_settles_by_itself_after_the_delay(account, api):
    """The settlement job settles processing debits once --settlement-delay (5 s) has
    passed on the account's clock; moving the clock forward stands in for waiting."""
    import time
    pi = pi_create(payment_method_types=["us_bank_account"], confirm=True,
                   payment_method_data={"type": "us_bank_account", "billing_details": {"name": "J R"},
                                        "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789"}},
                   mandate_data={"customer_acceptance": {"type": "offline"}})
    assert pi.status == "processing"
    time.sleep(1.2)
    assert stripe.PaymentIntent.retrieve(pi.id).status == "processing"
    assert api.post("/v1/test_helpers/clock/advance", data={"seconds": 10}).status_code == 200
    deadline = time.time() + 10
    while time.time() < deadline and stripe.PaymentIntent.retrieve(pi.id).status == "processing":
        time.sleep(0.1)
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"


def test_charges_report_cvc_and_address_checks(account):
    pm = stripe.PaymentMethod.create(type="card", card={"number": "4000000000000028", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                                     billing_details={"address": {"line1": "1 Main St", "postal_code": "12345"}})
    pi = pi_create(payment_method=pm.id, confirm=True)
    checks = stripe.Charge.retrieve(pi.latest_charge).payment_method_details.card.checks
    assert (checks.cvc_check, checks.address_line1_check, checks.address_postal_code_check) == ("pass", "fail", "pass")
    bad_cvc = stripe.PaymentMethod.create(type="card", card={"number": "4000000000000101", "exp_month": 12, "exp_year": 2034, "cvc": "123"})
    with pytest.raises(stripe.CardError) as e:
        pi_create(payment_method=bad_cvc.id, confirm=True)
    assert e.value.code == "incorrect_cvc"


def test_seed_000_existing_customer_on_session(account):
    """Seed 000: list the customer's reusable cards (allow_redisplay), charge the one
    they pick on-session; a 402 means declined, requires_action means authenticate."""
    customer = stripe.Customer.create(email="returning@example.com")
    shown = stripe.PaymentMethod.create(type="card", allow_redisplay="always",
                                        card={"number": "4000002760003184", "exp_month": 12, "exp_year": 2034})
    hidden = stripe.PaymentMethod.create(type="card", allow_redisplay="limited",
                                         card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2034})
    for pm in (shown, hidden):
        stripe.PaymentMethod.attach(pm.id, customer=customer.id)
    listed = stripe.Customer.list_payment_methods(customer.id, allow_redisplay="always")
    assert [pm.id for pm in listed.data] == [shown.id]
    pi = pi_create(customer=customer.id, payment_method=listed.data[0].id, confirm=True,
                   return_url="https://merchant.example/checkout/done")
    assert pi.status == "requires_action"
    _, query = authenticate(pi)
    assert query["redirect_status"] == "succeeded"
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"
    declined_card = stripe.PaymentMethod.create(type="card", card={"number": "4000000000000341", "exp_month": 12, "exp_year": 2034})
    stripe.PaymentMethod.attach(declined_card.id, customer=customer.id)
    with pytest.raises(stripe.CardError) as e:
        pi_create(customer=customer.id, payment_method=declined_card.id, confirm=True)
    assert e.value.http_status == 402


def test_increment_authorization(account):
    pi = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual",
                   payment_method_options={"card": {"request_incremental_authorization": "if_available"}})
    pi = stripe.PaymentIntent.increment_authorization(pi.id, amount=2500)
    assert pi.amount == 2500 and pi.amount_capturable == 2500
    with pytest.raises(stripe.InvalidRequestError):
        stripe.PaymentIntent.increment_authorization(pi.id, amount=2000)
    assert stripe.PaymentIntent.capture(pi.id).amount_received == 2500
    plain_pi = pi_create(payment_method="pm_card_visa", confirm=True, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentIntent.increment_authorization(plain_pi.id, amount=3000)
    assert e.value.code == "payment_intent_unexpected_state"
