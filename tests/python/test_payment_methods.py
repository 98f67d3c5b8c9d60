"""PaymentMethods through stripe-python: cards (raw numbers, tokens, pm_card_* ids),
bank debits, attach/detach, update, lists, and a customer's payment methods."""
import time

import pytest
import stripe

from openapi import plain, validate, validate_error, validate_list

# Stripe's succeeding test cards by brand: number, brand, funding, issuing country.
BRANDS = [
    ("4242424242424242", "visa", "credit", "US"),
    ("4000056655665556", "visa", "debit", "US"),
    ("5555555555554444", "mastercard", "credit", "US"),
    ("2223003122003222", "mastercard", "credit", "US"),
    ("5200828282828210", "mastercard", "debit", "US"),
    ("5105105105105100", "mastercard", "prepaid", "US"),
    ("378282246310005", "amex", "credit", "US"),
    ("371449635398431", "amex", "credit", "US"),
    ("6011111111111117", "discover", "credit", "US"),
    ("6011000990139424", "discover", "credit", "US"),
    ("3056930009020004", "diners", "credit", "US"),
    ("36227206271667", "diners", "credit", "US"),
    ("3566002020360505", "jcb", "credit", "JP"),
    ("6200000000000005", "unionpay", "credit", "CN"),
]
DISPLAY_BRAND = {"amex": "american_express", "diners": "diners_club", "unionpay": "union_pay"}
EXP_YEAR = time.gmtime().tm_year + 3


def card(number="4242424242424242", **extra):
    params = {"number": number, "exp_month": 12, "exp_year": EXP_YEAR,
              "cvc": "1234" if number.startswith("3") and len(number) == 15 else "123"}
    params.update(extra)
    return params


def new_card(number="4242424242424242", api_key=None, **kwargs):
    pm = stripe.PaymentMethod.create(type="card", card=card(number), api_key=api_key, **kwargs)
    validate("payment_method", pm)
    return pm


def sepa(**kwargs):
    pm = stripe.PaymentMethod.create(
        type="sepa_debit", sepa_debit={"iban": "DE89370400440532013000"},
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com"}, **kwargs)
    validate("payment_method", pm)
    return pm


def events(api, event_type, object_id):
    """Events of `event_type` about `object_id` from GET /v1/events, oldest first."""
    r = api.get("/v1/events", params={"type": event_type, "limit": 100})
    assert r.status_code == 200, r.text
    validate_list("event", r.json())
    found = [e for e in r.json()["data"] if e["data"]["object"]["id"] == object_id]
    return list(reversed(found))


# ---- creating -------------------------------------------------------------------

@pytest.mark.parametrize("number,brand,funding,country", BRANDS, ids=[b[0] for b in BRANDS])
def test_create_from_raw_numbers_for_every_brand(account, number, brand, funding, country):
    pm = new_card(number, billing_details={"name": "Jenny Rosen"}, metadata={"row": number})
    assert pm.id.startswith("pm_") and len(pm.id) == 3 + 24
    assert pm.object == "payment_method" and pm.type == "card"
    assert pm.customer is None and pm.livemode is False
    assert pm.allow_redisplay == "unspecified"
    assert pm.billing_details.name == "Jenny Rosen"
    assert pm.metadata["row"] == number
    c = pm.card
    assert (c.brand, c.funding, c.country) == (brand, funding, country)
    assert c.display_brand == DISPLAY_BRAND.get(brand, brand)
    assert c.last4 == number[-4:]
    assert (c.exp_month, c.exp_year) == (12, EXP_YEAR)
    assert c.networks.available == [brand]
    assert len(c.fingerprint) == 16
    # Stripe runs the CVC check when the card is first attached or charged.
    assert c.checks.cvc_check == "unchecked"
    assert c.checks.address_line1_check is None
    again = stripe.PaymentMethod.retrieve(pm.id)
    assert plain(again) == plain(pm)


def test_fingerprints_are_stable_per_number_and_account(server, account):
    first = {n: new_card(n).card.fingerprint for n, *_ in BRANDS}
    assert len(set(first.values())) == len(BRANDS)
    for n, *_ in BRANDS[:4]:
        assert new_card(n).card.fingerprint == first[n]
    # Spaces in the number are the same card.
    spaced = stripe.PaymentMethod.create(type="card", card=card("4242 4242 4242 4242"))
    assert spaced.card.fingerprint == first["4242424242424242"]
    other_key, _ = server.new_account()
    elsewhere = new_card("4242424242424242", api_key=other_key)
    assert elsewhere.card.fingerprint != first["4242424242424242"]


def test_tokens_and_test_payment_method_ids(account, api):
    raw = new_card("4242424242424242")
    tok = stripe.PaymentMethod.create(type="card", card={"token": "tok_visa"})
    validate("payment_method", tok)
    assert (tok.card.brand, tok.card.last4) == ("visa", "4242")
    assert tok.card.fingerprint == raw.card.fingerprint
    for token, brand, last4 in [("tok_mastercard", "mastercard", "4444"), ("tok_amex", "amex", "0005"),
                                ("tok_visa_debit", "visa", "5556")]:
        pm = stripe.PaymentMethod.create(type="card", card={"token": token})
        assert (pm.card.brand, pm.card.last4) == (brand, last4)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card", card={"token": "tok_nonsense"})
    assert e.value.http_status == 400 and e.value.code == "resource_missing"
    assert e.value.param == "card[token]"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card", card={"token": "pm_card_visa"})
    assert e.value.param == "card[token]"

    # A pm_card_* id stands for a fresh PaymentMethod each time it is used.
    a = stripe.PaymentMethod.retrieve("pm_card_visa")
    b = stripe.PaymentMethod.retrieve("pm_card_visa")
    validate("payment_method", a)
    assert a.id.startswith("pm_") and a.id != "pm_card_visa" and a.id != b.id
    assert (a.card.brand, a.card.last4, a.card.fingerprint) == ("visa", "4242", raw.card.fingerprint)
    assert stripe.PaymentMethod.retrieve(a.id).id == a.id
    amex = stripe.PaymentMethod.retrieve("pm_card_amex")
    assert (amex.card.brand, amex.card.last4) == ("amex", "0005")
    assert stripe.PaymentMethod.retrieve("pm_card_mastercard_prepaid").card.funding == "prepaid"
    r = api.get("/v1/payment_methods/pm_card_nonsense")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "No such PaymentMethod: 'pm_card_nonsense'"
    assert r.json()["error"]["code"] == "resource_missing"
    validate_error(r.json())


def test_incorrect_number_is_a_card_error(account, api):
    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.create(type="card", card=card("4242424242424241"))
    assert e.value.http_status == 402
    assert e.value.code == "incorrect_number"
    assert e.value.user_message == "Your card number is incorrect."
    r = api.post("/v1/payment_methods", data={"type": "card", "card[number]": "4242424242424241",
                                              "card[exp_month]": "12", "card[exp_year]": str(EXP_YEAR)})
    assert r.status_code == 402 and r.json()["error"]["type"] == "card_error"
    validate_error(r.json())
    assert stripe.PaymentMethod.list(type="card").data == []


def test_expiry_and_cvc_checks(account):
    def refused(code, **fields):
        with pytest.raises(stripe.CardError) as e:
            stripe.PaymentMethod.create(type="card", card=card(**fields))
        assert e.value.http_status == 402 and e.value.code == code, e.value
        return e.value

    assert refused("invalid_expiry_month", exp_month=13).param == "exp_month"
    assert refused("invalid_expiry_month", exp_month=0).param == "exp_month"
    assert refused("invalid_expiry_year", exp_year=2001).param == "exp_year"
    assert refused("invalid_expiry_year", exp_year=time.gmtime().tm_year - 1).param == "exp_year"
    now = time.gmtime()
    if now.tm_mon > 1:
        refused("invalid_expiry_month", exp_month=now.tm_mon - 1, exp_year=now.tm_year)
    refused("invalid_cvc", cvc="12a")
    refused("invalid_cvc", cvc="12")
    # This month still works; two-digit years are this century; far years are fine.
    ok = stripe.PaymentMethod.create(type="card", card=card(exp_month=now.tm_mon, exp_year=now.tm_year))
    assert ok.card.exp_month == now.tm_mon
    assert stripe.PaymentMethod.create(type="card", card=card(exp_year=EXP_YEAR % 100)).card.exp_year == EXP_YEAR
    assert stripe.PaymentMethod.create(type="card", card=card(exp_year=2099)).card.exp_year == 2099

    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card", card={"number": "4242424242424242", "exp_year": EXP_YEAR})
    assert e.value.code == "parameter_missing" and e.value.param == "card[exp_month]"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card")
    assert e.value.param == "card"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(card=card())
    assert e.value.code == "parameter_missing" and e.value.param == "type"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card", card=card(), sepa_debit={"iban": "DE89370400440532013000"})
    assert e.value.param == "sepa_debit"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="card", card=card(colour="red"))
    assert e.value.code == "parameter_unknown" and e.value.param == "card[colour]"


def test_billing_address_checks_run_on_attach(account):
    cus = stripe.Customer.create()
    pm = stripe.PaymentMethod.create(
        type="card", card=card("4000000000000101"),
        billing_details={"address": {"line1": "1 Main St", "postal_code": "12345", "country": "US"}})
    assert plain(pm.card.checks) == {
        "address_line1_check": "unchecked", "address_postal_code_check": "unchecked", "cvc_check": "unchecked"}
    attached = stripe.PaymentMethod.attach(pm.id, customer=cus.id)
    validate("payment_method", attached)
    assert plain(attached.card.checks) == {
        "address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "fail"}
    zip_fail = stripe.PaymentMethod.create(
        type="card", card=card("4000000000000036"), billing_details={"address": {"postal_code": "12345"}})
    zip_fail = stripe.PaymentMethod.attach(zip_fail.id, customer=cus.id)
    assert zip_fail.card.checks.address_postal_code_check == "fail"
    assert zip_fail.card.checks.address_line1_check is None
    assert zip_fail.card.checks.cvc_check == "pass"


def test_us_bank_account(account):
    pm = stripe.PaymentMethod.create(
        type="us_bank_account",
        us_bank_account={"routing_number": "110000000", "account_number": "000123456789"},
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com"})
    validate("payment_method", pm)
    assert pm.type == "us_bank_account" and "card" not in pm
    b = pm.us_bank_account
    assert (b.routing_number, b.last4, b.bank_name) == ("110000000", "6789", "STRIPE TEST BANK")
    assert (b.account_holder_type, b.account_type) == ("individual", "checking")
    assert b.networks.supported == ["ach"]
    company = stripe.PaymentMethod.create(
        type="us_bank_account",
        us_bank_account={"routing_number": "110000000", "account_number": "000123456789",
                         "account_holder_type": "company", "account_type": "savings"},
        billing_details={"name": "Rocket Rides"})
    assert (company.us_bank_account.account_holder_type, company.us_bank_account.account_type) == ("company", "savings")
    assert company.us_bank_account.fingerprint == b.fingerprint

    def refused(param, **bank):
        details = {"routing_number": "110000000", "account_number": "000123456789", **bank}
        with pytest.raises(stripe.InvalidRequestError) as e:
            stripe.PaymentMethod.create(type="us_bank_account", us_bank_account=details,
                                        billing_details={"name": "Jenny Rosen"})
        assert e.value.http_status == 400 and e.value.param == param, e.value
        return e.value

    assert refused("us_bank_account[routing_number]", routing_number="12345").code == "routing_number_invalid"
    assert refused("us_bank_account[routing_number]", routing_number="123456789").code == "routing_number_invalid"
    assert refused("us_bank_account[account_number]", account_number="12ab").code == "account_number_invalid"
    assert refused("us_bank_account[account_holder_type]", account_holder_type="person").code == "parameter_invalid_string"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="us_bank_account",
                                    us_bank_account={"routing_number": "110000000", "account_number": "000123456789"})
    assert e.value.code == "parameter_missing" and e.value.param == "billing_details[name]"


def test_sepa_debit(account):
    pm = sepa()
    assert pm.type == "sepa_debit"
    s = pm.sepa_debit
    assert (s.country, s.last4, s.bank_code) == ("DE", "3000", "37040044")
    assert pm.billing_details.email == "jenny@example.com"
    spaced = stripe.PaymentMethod.create(
        type="sepa_debit", sepa_debit={"iban": "de89 3704 0044 0532 0130 00"},
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com"})
    assert spaced.sepa_debit.fingerprint == s.fingerprint
    failing = stripe.PaymentMethod.create(
        type="sepa_debit", sepa_debit={"iban": "DE62370400440532013001"},
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com"})
    assert failing.sepa_debit.last4 == "3001" and failing.sepa_debit.fingerprint != s.fingerprint
    for iban in ["DE89370400440532013001", "DE8937040044", "DE€9370400440532013000"]:
        with pytest.raises(stripe.InvalidRequestError) as e:
            stripe.PaymentMethod.create(type="sepa_debit", sepa_debit={"iban": iban},
                                        billing_details={"name": "J", "email": "j@example.com"})
        assert e.value.param == "sepa_debit[iban]" and e.value.code == "invalid_bank_account_iban"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="sepa_debit", sepa_debit={"iban": "DE89370400440532013000"},
                                    billing_details={"name": "Jenny Rosen"})
    assert e.value.code == "parameter_missing" and e.value.param == "billing_details[email]"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(type="sepa_debit", billing_details={"name": "J", "email": "j@example.com"})
    assert e.value.param == "sepa_debit"


# ---- attach, detach, update ------------------------------------------------------

def test_attach_and_detach(account, api):
    cus = stripe.Customer.create(email="jenny@example.com")
    pm = new_card()
    attached = stripe.PaymentMethod.attach(pm.id, customer=cus.id)
    validate("payment_method", attached)
    assert attached.id == pm.id and attached.customer == cus.id
    assert stripe.PaymentMethod.retrieve(pm.id).customer == cus.id
    # Attaching again to the same customer changes nothing.
    assert stripe.PaymentMethod.attach(pm.id, customer=cus.id).customer == cus.id
    [event] = events(api, "payment_method.attached", pm.id)
    assert event["data"]["object"]["customer"] == cus.id
    assert "previous_attributes" not in event["data"]

    expanded = stripe.PaymentMethod.retrieve(pm.id, expand=["customer"])
    assert expanded.customer.id == cus.id and expanded.customer.email == "jenny@example.com"

    other = stripe.Customer.create()
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.attach(pm.id, customer=other.id)
    assert e.value.http_status == 400 and e.value.code == "payment_method_unexpected_state"

    detached = stripe.PaymentMethod.detach(pm.id)
    validate("payment_method", detached)
    assert detached.customer is None
    [event] = events(api, "payment_method.detached", pm.id)
    assert event["data"]["object"]["customer"] is None
    assert event["data"]["previous_attributes"] == {"customer": cus.id}
    assert stripe.Customer.list_payment_methods(cus.id).data == []
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.detach(pm.id)
    assert e.value.http_status == 400 and e.value.code == "payment_method_unexpected_state"

    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.attach(new_card().id, customer="cus_doesnotexist")
    assert e.value.code == "resource_missing" and e.value.param == "customer"
    r = api.post(f"/v1/payment_methods/{pm.id}/attach", data={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "customer"
    assert r.json()["error"]["code"] == "parameter_missing"
    for path in ["/v1/payment_methods/pm_missing/attach", "/v1/payment_methods/pm_missing/detach"]:
        r = api.post(path, data={"customer": cus.id} if path.endswith("attach") else {})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["message"] == "No such PaymentMethod: 'pm_missing'"
        assert r.json()["error"]["param"] == "id"

    # A pm_card_* id attaches a fresh PaymentMethod.
    fresh = stripe.PaymentMethod.attach("pm_card_mastercard", customer=cus.id)
    assert fresh.id != "pm_card_mastercard" and fresh.customer == cus.id
    assert [p.id for p in stripe.Customer.list_payment_methods(cus.id).data] == [fresh.id]


def test_declining_cards_fail_to_attach(account):
    cus = stripe.Customer.create()
    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.attach("pm_card_chargeDeclined", customer=cus.id)
    assert e.value.http_status == 402 and e.value.code == "card_declined"
    assert e.value.error.decline_code == "generic_decline"
    insufficient = new_card("4000000000009995")
    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.attach(insufficient.id, customer=cus.id)
    assert e.value.error.decline_code == "insufficient_funds"
    assert stripe.PaymentMethod.retrieve(insufficient.id).customer is None
    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.attach("pm_card_chargeDeclinedExpiredCard", customer=cus.id)
    assert e.value.code == "expired_card"
    # This one exists to attach and then fail every charge.
    ok = stripe.PaymentMethod.attach("pm_card_chargeCustomerFail", customer=cus.id)
    assert ok.customer == cus.id
    assert [p.id for p in stripe.Customer.list_payment_methods(cus.id).data] == [ok.id]


def test_detaching_the_default_payment_method_clears_it(account, api):
    cus = stripe.Customer.create()
    pm = stripe.PaymentMethod.attach(new_card().id, customer=cus.id)
    cus = stripe.Customer.modify(cus.id, invoice_settings={"default_payment_method": pm.id})
    assert cus.invoice_settings.default_payment_method == pm.id
    stripe.PaymentMethod.detach(pm.id)
    assert stripe.Customer.retrieve(cus.id).invoice_settings.default_payment_method is None
    updates = events(api, "customer.updated", cus.id)
    assert updates[-1]["data"]["previous_attributes"] == {"invoice_settings": {
        "custom_fields": None, "default_payment_method": pm.id, "footer": None, "rendering_options": None}}


def test_update(account, api):
    pm = stripe.PaymentMethod.create(type="card", card=card(), billing_details={"name": "Jenny"},
                                     metadata={"keep": "1", "drop": "2"})
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.modify(pm.id, metadata={"x": "y"})
    assert e.value.http_status == 400 and "customer" in e.value.user_message
    cus = stripe.Customer.create()
    stripe.PaymentMethod.attach(pm.id, customer=cus.id)
    year = EXP_YEAR + 2
    up = stripe.PaymentMethod.modify(
        pm.id,
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com",
                         "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"}},
        allow_redisplay="always",
        card={"exp_month": 6, "exp_year": year},
        metadata={"drop": "", "new": "3"},
    )
    validate("payment_method", up)
    assert up.billing_details.name == "Jenny Rosen" and up.billing_details.address.city == "Springfield"
    assert up.allow_redisplay == "always"
    assert (up.card.exp_month, up.card.exp_year) == (6, year)
    assert dict(up.metadata) == {"keep": "1", "new": "3"}
    assert plain(stripe.PaymentMethod.retrieve(pm.id)) == plain(up)
    [event] = events(api, "payment_method.updated", pm.id)
    prev = event["data"]["previous_attributes"]
    assert prev["allow_redisplay"] == "unspecified"
    assert prev["metadata"] == {"drop": "2", "new": None}
    assert prev["card"]["exp_month"] == 12
    assert prev["billing_details"]["name"] == "Jenny"

    cleared = stripe.PaymentMethod.modify(pm.id, billing_details={"email": ""}, metadata="")
    assert cleared.billing_details.email is None and dict(cleared.metadata) == {}
    # An update that changes nothing emits nothing.
    stripe.PaymentMethod.modify(pm.id, allow_redisplay="always")
    assert len(events(api, "payment_method.updated", pm.id)) == 2

    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.modify(pm.id, card={"exp_month": 13})
    assert e.value.code == "invalid_expiry_month"
    with pytest.raises(stripe.CardError) as e:
        stripe.PaymentMethod.modify(pm.id, card={"exp_year": 2001})
    assert e.value.code == "invalid_expiry_year"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.modify(pm.id, card={"number": "4000056655665556"})
    assert e.value.code == "parameter_unknown" and e.value.param == "card[number]"

    bank = sepa()
    stripe.PaymentMethod.attach(bank.id, customer=cus.id)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.modify(bank.id, card={"exp_month": 1})
    assert e.value.param == "card"
    ach = stripe.PaymentMethod.create(
        type="us_bank_account", billing_details={"name": "Jenny Rosen"},
        us_bank_account={"routing_number": "110000000", "account_number": "000123456789"})
    stripe.PaymentMethod.attach(ach.id, customer=cus.id)
    ach = stripe.PaymentMethod.modify(ach.id, us_bank_account={"account_type": "savings"})
    assert ach.us_bank_account.account_type == "savings"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.modify("pm_missing", metadata={"a": "b"})
    assert e.value.http_status == 404


# ---- lists ---------------------------------------------------------------------

def test_list_by_customer_and_type(account, api):
    a = stripe.Customer.create(name="a")
    b = stripe.Customer.create(name="b")
    a_card1 = stripe.PaymentMethod.attach(new_card().id, customer=a.id)
    loose = new_card("5555555555554444")
    a_sepa = stripe.PaymentMethod.attach(sepa().id, customer=a.id)
    b_card = stripe.PaymentMethod.attach(new_card().id, customer=b.id)
    a_card2 = stripe.PaymentMethod.attach(new_card("378282246310005").id, customer=a.id)

    page = stripe.PaymentMethod.list(customer=a.id)
    validate_list("payment_method", page)
    assert page.url == "/v1/payment_methods"
    assert [p.id for p in page.data] == [a_card2.id, a_sepa.id, a_card1.id]
    assert [p.id for p in stripe.PaymentMethod.list(customer=a.id, type="card").data] == [a_card2.id, a_card1.id]
    assert [p.id for p in stripe.PaymentMethod.list(customer=a.id, type="sepa_debit").data] == [a_sepa.id]
    assert stripe.PaymentMethod.list(customer=a.id, type="us_bank_account").data == []
    assert stripe.PaymentMethod.list(customer=a.id, type="ideal").data == []
    assert [p.id for p in stripe.PaymentMethod.list(customer=b.id, type="card").data] == [b_card.id]
    every_card = [a_card2.id, b_card.id, loose.id, a_card1.id]
    assert [p.id for p in stripe.PaymentMethod.list(type="card").data] == every_card
    assert len(stripe.PaymentMethod.list().data) == 5

    first = stripe.PaymentMethod.list(customer=a.id, type="card", limit=1)
    assert first.has_more is True and [p.id for p in first.data] == [a_card2.id]
    rest = stripe.PaymentMethod.list(customer=a.id, type="card", limit=1, starting_after=a_card2.id)
    assert rest.has_more is False and [p.id for p in rest.data] == [a_card1.id]
    assert [p.id for p in stripe.PaymentMethod.list(type="card", limit=2).auto_paging_iter()] == every_card

    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.list(customer="cus_doesnotexist")
    assert e.value.param == "customer" and e.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.list(type="crypto")
    assert e.value.param == "type" and e.value.code == "parameter_invalid_string"
    r = api.get("/v1/payment_methods", params={"created[gt]": "0"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_unknown"
    r = api.get("/v1/payment_methods", params={"limit": "101"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"

    # Detaching moves a PaymentMethod out of every customer list at once.
    stripe.PaymentMethod.detach(a_card1.id)
    assert [p.id for p in stripe.PaymentMethod.list(customer=a.id, type="card").data] == [a_card2.id]
    assert [p.id for p in stripe.Customer.list_payment_methods(a.id, type="card").data] == [a_card2.id]


def test_customer_payment_methods_and_allow_redisplay(account, api):
    cus = stripe.Customer.create()
    always = stripe.PaymentMethod.attach(new_card(allow_redisplay="always").id, customer=cus.id)
    limited = stripe.PaymentMethod.attach(new_card(allow_redisplay="limited").id, customer=cus.id)
    plain = stripe.PaymentMethod.attach(new_card().id, customer=cus.id)
    bank = stripe.PaymentMethod.attach(sepa(allow_redisplay="always").id, customer=cus.id)
    assert (always.allow_redisplay, limited.allow_redisplay, plain.allow_redisplay) == ("always", "limited", "unspecified")

    page = stripe.Customer.list_payment_methods(cus.id)
    validate_list("payment_method", page)
    assert page.url == f"/v1/customers/{cus.id}/payment_methods"
    assert [p.id for p in page.data] == [bank.id, plain.id, limited.id, always.id]
    ids = lambda **kw: [p.id for p in stripe.Customer.list_payment_methods(cus.id, **kw).data]  # noqa: E731
    assert ids(allow_redisplay="always") == [bank.id, always.id]
    assert ids(allow_redisplay="always", type="card") == [always.id]
    assert ids(allow_redisplay="limited") == [limited.id]
    assert ids(allow_redisplay="unspecified", type="card") == [plain.id]
    assert ids(type="sepa_debit") == [bank.id]
    assert ids(type="card", limit=2) == [plain.id, limited.id]

    stripe.PaymentMethod.modify(plain.id, allow_redisplay="always")
    assert ids(allow_redisplay="always", type="card") == [plain.id, always.id]
    assert ids(allow_redisplay="unspecified") == []

    got = stripe.Customer.retrieve_payment_method(cus.id, limited.id)
    validate("payment_method", got)
    assert got.id == limited.id and got.customer == cus.id
    other = stripe.Customer.create()
    theirs = stripe.PaymentMethod.attach(new_card().id, customer=other.id)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.retrieve_payment_method(cus.id, theirs.id)
    assert e.value.http_status == 404 and e.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.retrieve_payment_method(cus.id, new_card().id)
    assert e.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.list_payment_methods("cus_doesnotexist")
    assert e.value.http_status == 404 and "No such customer" in e.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.retrieve_payment_method("cus_doesnotexist", theirs.id)
    assert e.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.list_payment_methods(cus.id, allow_redisplay="sometimes")
    assert e.value.param == "allow_redisplay"
    stripe.Customer.delete(other.id)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.list_payment_methods(other.id)
    assert e.value.http_status == 404


def test_paginating_a_customers_payment_methods(account):
    cus = stripe.Customer.create()
    noise = stripe.Customer.create()
    mine, cards = [], []
    for i in range(30):
        if i % 3 == 2:
            pm = stripe.PaymentMethod.attach(sepa().id, customer=cus.id)
        else:
            pm = stripe.PaymentMethod.attach(new_card().id, customer=cus.id)
            cards.append(pm.id)
        mine.append(pm.id)
        if i % 5 == 0:
            stripe.PaymentMethod.attach(new_card().id, customer=noise.id)
    newest_first = list(reversed(mine))

    seen, page = [], stripe.Customer.list_payment_methods(cus.id, limit=7)
    while True:
        assert len(page.data) == 7 or not page.has_more
        seen.extend(p.id for p in page.data)
        if not page.has_more:
            break
        page = stripe.Customer.list_payment_methods(cus.id, limit=7, starting_after=page.data[-1].id)
    assert seen == newest_first
    assert [p.id for p in stripe.Customer.list_payment_methods(cus.id, limit=4).auto_paging_iter()] == newest_first
    assert [p.id for p in stripe.Customer.list_payment_methods(cus.id, type="card", limit=3).auto_paging_iter()] == \
        list(reversed(cards))
    page = stripe.Customer.list_payment_methods(cus.id, type="card", limit=20)
    assert page.has_more is False and len(page.data) == 20
    page = stripe.Customer.list_payment_methods(cus.id, type="card", limit=19)
    assert page.has_more is True

    # Backwards from the oldest, the page just newer.
    back = stripe.Customer.list_payment_methods(cus.id, limit=5, ending_before=mine[0])
    assert [p.id for p in back.data] == list(reversed(mine[1:6])) and back.has_more is True
    assert [p.id for p in stripe.PaymentMethod.list(customer=cus.id, limit=100).data] == newest_first


# ---- keys, customers, cloning ---------------------------------------------------

def test_publishable_key_creates_but_cannot_read(account, api):
    pk = account["publishable_key"]
    pm = stripe.PaymentMethod.create(type="card", card=card(), api_key=pk)
    validate("payment_method", pm)
    assert pm.card.last4 == "4242"
    assert stripe.PaymentMethod.retrieve(pm.id).id == pm.id
    bank = stripe.PaymentMethod.create(
        type="sepa_debit", sepa_debit={"iban": "DE89370400440532013000"},
        billing_details={"name": "Jenny Rosen", "email": "jenny@example.com"}, api_key=pk)
    assert bank.type == "sepa_debit"
    with pytest.raises(stripe.CardError):
        stripe.PaymentMethod.create(type="card", card=card("4242424242424241"), api_key=pk)

    cus = stripe.Customer.create()
    for call in [
        lambda: stripe.PaymentMethod.retrieve(pm.id, api_key=pk),
        lambda: stripe.PaymentMethod.list(api_key=pk),
        lambda: stripe.PaymentMethod.list(customer=cus.id, type="card", api_key=pk),
        lambda: stripe.PaymentMethod.attach(pm.id, customer=cus.id, api_key=pk),
        lambda: stripe.PaymentMethod.detach(pm.id, api_key=pk),
        lambda: stripe.PaymentMethod.modify(pm.id, metadata={"a": "b"}, api_key=pk),
        lambda: stripe.Customer.list_payment_methods(cus.id, api_key=pk),
        lambda: stripe.Customer.retrieve_payment_method(cus.id, pm.id, api_key=pk),
    ]:
        with pytest.raises(stripe.PermissionError) as e:
            call()
        assert e.value.http_status == 403
    assert stripe.PaymentMethod.retrieve(pm.id).customer is None


def test_customer_create_attaches_its_payment_method(account, api):
    pm = new_card()
    cus = stripe.Customer.create(payment_method=pm.id, invoice_settings={"default_payment_method": pm.id})
    validate("customer", cus)
    assert cus.invoice_settings.default_payment_method == pm.id
    assert stripe.PaymentMethod.retrieve(pm.id).customer == cus.id
    [created] = events(api, "customer.created", cus.id)
    assert created["data"]["object"]["invoice_settings"]["default_payment_method"] == pm.id
    [attached] = events(api, "payment_method.attached", pm.id)
    assert attached["data"]["object"]["customer"] == cus.id

    # The test ids work too, as the default in the same call.
    c2 = stripe.Customer.create(payment_method="pm_card_visa", invoice_settings={"default_payment_method": "pm_card_visa"})
    [saved] = stripe.Customer.list_payment_methods(c2.id).data
    assert c2.invoice_settings.default_payment_method == saved.id and saved.id != "pm_card_visa"
    c3 = stripe.Customer.create(payment_method="pm_card_mastercard")
    assert c3.invoice_settings.default_payment_method is None
    assert stripe.Customer.list_payment_methods(c3.id).data[0].card.brand == "mastercard"

    before = len(stripe.Customer.list(limit=100).data)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(payment_method="pm_doesnotexist")
    assert e.value.http_status == 400 and e.value.code == "resource_missing" and e.value.param == "payment_method"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(payment_method=pm.id)
    assert e.value.code == "payment_method_unexpected_state"
    with pytest.raises(stripe.CardError) as e:
        stripe.Customer.create(email="declined@example.com", payment_method="pm_card_visa_chargeDeclined")
    assert e.value.code == "card_declined"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(invoice_settings={"default_payment_method": new_card().id})
    assert e.value.param == "invoice_settings[default_payment_method]"
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.create(payment_method=new_card().id, email="not-an-email")
    # None of the refused calls left a customer behind.
    assert len(stripe.Customer.list(limit=100).data) == before
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.modify(cus.id, payment_method=new_card().id)
    assert e.value.code == "parameter_unknown"


def test_cloning_needs_a_connected_account(account, api):
    cus = stripe.Customer.create()
    pm = stripe.PaymentMethod.attach(new_card().id, customer=cus.id)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(customer=cus.id, payment_method=pm.id)
    assert e.value.http_status == 400 and e.value.param == "payment_method"
    assert "Stripe-Account" in e.value.user_message
    r = api.post("/v1/payment_methods", data={"customer": cus.id, "payment_method": pm.id},
                 headers={"Stripe-Account": "acct_connected"})
    assert r.status_code == 400 and "connected accounts" in r.json()["error"]["message"]
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.PaymentMethod.create(customer=cus.id, type="card", card=card())
    assert e.value.param == "customer"
    assert [p.id for p in stripe.PaymentMethod.list().data] == [pm.id]


def test_idempotent_create(account, api):
    body = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
            "card[exp_year]": str(EXP_YEAR)}
    first = api.post("/v1/payment_methods", data=body, headers={"Idempotency-Key": "pm-key"})
    again = api.post("/v1/payment_methods", data=body, headers={"Idempotency-Key": "pm-key"})
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    declined = {**body, "card[number]": "4242424242424241"}
    r1 = api.post("/v1/payment_methods", data=declined, headers={"Idempotency-Key": "pm-bad"})
    r2 = api.post("/v1/payment_methods", data=declined, headers={"Idempotency-Key": "pm-bad"})
    assert r1.status_code == r2.status_code == 402 and r2.headers.get("Idempotent-Replayed") == "true"
    assert len(stripe.PaymentMethod.list().data) == 1
