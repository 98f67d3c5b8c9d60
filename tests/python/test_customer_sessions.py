"""CustomerSessions through stripe-python, and what their client secret lets the
Payment Element do with the publishable key (seed 004, "Save and retrieve
customer payment methods"): list the saved cards its filters allow, save one,
remove one; and nothing for another customer, after expiry, or for another
account."""
import pytest
import requests
import stripe

from openapi import validate, validate_error

PAYMENT_ELEMENT = {"payment_element": {"enabled": True, "features": {
    "payment_method_redisplay": "enabled", "payment_method_save": "enabled",
    "payment_method_save_usage": "off_session", "payment_method_remove": "enabled"}}}


def saved_card(customer, allow_redisplay, card="pm_card_visa"):
    pm = stripe.PaymentMethod.attach(card, customer=customer)
    return stripe.PaymentMethod.modify(pm.id, allow_redisplay=allow_redisplay)


class Browser:
    """The Payment Element's calls: the publishable key, no secret key."""

    def __init__(self, server, publishable_key):
        self.url = server.url
        self.headers = {"Authorization": f"Bearer {publishable_key}"}

    def session(self, **params):
        params.setdefault("type", "deferred_intent")
        if params["type"] == "deferred_intent":
            params.setdefault("deferred_intent[mode]", "payment")
            params.setdefault("deferred_intent[amount]", "1099")
            params.setdefault("deferred_intent[currency]", "usd")
        return requests.get(f"{self.url}/v1/elements/sessions", params=params, headers=self.headers, timeout=10)

    def saved(self, secret, **params):
        r = self.session(customer_session_client_secret=secret, **params)
        assert r.status_code == 200, r.text
        return [pm["id"] for pm in r.json()["customer"]["payment_methods"]]

    def detach(self, pm, secret):
        return requests.post(f"{self.url}/v1/elements/payment_methods/{pm}/detach", headers=self.headers,
                             data={"customer_session_client_secret": secret}, timeout=10)


@pytest.fixture
def browser(server, account):
    return Browser(server, account["publishable_key"])


def test_create_fills_in_stripes_defaults(account):
    customer = stripe.Customer.create()
    session = stripe.CustomerSession.create(customer=customer.id, components={"payment_element": {"enabled": True}})
    validate("customer_session", session)
    assert session.client_secret.startswith("cuss_secret_")
    assert session.customer == customer.id and session.expires_at == session.created + 30 * 60
    assert session.components.buy_button.enabled is False and session.components.pricing_table.enabled is False
    features = session.components.payment_element.features
    assert features.payment_method_allow_redisplay_filters == ["always"]
    assert features.payment_method_redisplay == "disabled" and features.payment_method_redisplay_limit == 3
    assert features.payment_method_remove == "disabled" and features.payment_method_save == "disabled"
    assert features.payment_method_save_usage is None
    other = stripe.CustomerSession.create(customer=customer.id, components={"pricing_table": {"enabled": True}})
    assert other.components.pricing_table.enabled is True and other.components.payment_element.enabled is False


def test_the_session_lists_redisplayable_cards_newest_first(account, browser):
    customer = stripe.Customer.create()
    a = saved_card(customer.id, "always")
    b = saved_card(customer.id, "always", "pm_card_mastercard")
    limited = saved_card(customer.id, "limited")
    saved_card(customer.id, "unspecified")
    session = stripe.CustomerSession.create(customer=customer.id, components=PAYMENT_ELEMENT)
    assert browser.saved(session.client_secret) == [b.id, a.id]
    r = browser.session(customer_session_client_secret=session.client_secret)
    body = r.json()
    assert body["customer"]["id"] == customer.id
    assert "client_secret" not in body["customer"]["customer_session"]
    assert body["customer"]["customer_session"]["components"]["payment_element"]["features"]["payment_method_save"] == "enabled"
    assert body["amount"] == 1099 and body["currency"] == "usd" and body["ordered_payment_method_types"] == ["card"]
    for pm in body["customer"]["payment_methods"]:
        validate("payment_method", pm)
    wider = stripe.CustomerSession.create(customer=customer.id, components={"payment_element": {"enabled": True, "features": {
        "payment_method_redisplay": "enabled", "payment_method_redisplay_limit": 2,
        "payment_method_allow_redisplay_filters": ["always", "limited"]}}})
    assert browser.saved(wider.client_secret) == [limited.id, b.id]
    hidden = stripe.CustomerSession.create(customer=customer.id, components={"payment_element": {"enabled": True}})
    assert browser.saved(hidden.client_secret) == []


def test_a_card_saved_through_a_token_shows_next_time(server, account, browser):
    customer = stripe.Customer.create()
    session = stripe.CustomerSession.create(customer=customer.id, components=PAYMENT_ELEMENT)
    assert browser.saved(session.client_secret) == []
    # The buyer ticks "save": stripe.js makes the token with the session's save usage.
    r = requests.post(f"{server.url}/v1/confirmation_tokens", headers=browser.headers, timeout=10, data={
        "payment_method_data[type]": "card", "payment_method_data[card][number]": "4242424242424242",
        "payment_method_data[card][exp_month]": "12", "payment_method_data[card][exp_year]": "2040",
        "payment_method_data[allow_redisplay]": "always", "setup_future_usage": "off_session"})
    assert r.status_code == 200, r.text
    pi = stripe.PaymentIntent.create(amount=1099, currency="usd", customer=customer.id, confirm=True,
                                     confirmation_token=r.json()["id"])
    assert pi.status == "succeeded"
    assert browser.saved(session.client_secret) == [pi.payment_method]


def test_remove_detaches_only_what_the_session_allows(account, browser):
    customer = stripe.Customer.create()
    card = saved_card(customer.id, "always")
    stranger = stripe.Customer.create()
    theirs = saved_card(stranger.id, "always")
    session = stripe.CustomerSession.create(customer=customer.id, components=PAYMENT_ELEMENT)
    r = browser.detach(theirs.id, session.client_secret)
    assert r.status_code == 404
    assert stripe.PaymentMethod.retrieve(theirs.id).customer == stranger.id
    no_remove = stripe.CustomerSession.create(customer=customer.id, components={"payment_element": {"enabled": True, "features": {
        "payment_method_redisplay": "enabled"}}})
    r = browser.detach(card.id, no_remove.client_secret)
    assert r.status_code == 400 and r.json()["error"]["param"] == "customer_session_client_secret"
    assert stripe.PaymentMethod.retrieve(card.id).customer == customer.id
    r = browser.detach(card.id, session.client_secret)
    assert r.status_code == 200, r.text
    assert r.json()["customer"] is None
    assert stripe.PaymentMethod.retrieve(card.id).customer is None
    assert browser.saved(session.client_secret) == []


def test_expired_foreign_or_wrong_secrets_get_nothing(server, account, browser):
    customer = stripe.Customer.create()
    saved_card(customer.id, "always")
    session = stripe.CustomerSession.create(customer=customer.id, components=PAYMENT_ELEMENT)
    for secret in ["cuss_secret_wrong", "nonsense", session.client_secret + "x"]:
        r = browser.session(customer_session_client_secret=secret)
        assert r.status_code == 400 and r.json()["error"]["param"] == "customer_session_client_secret"
        validate_error(r.json())
    _, other_pk = server.new_account()
    other = Browser(server, other_pk)
    r = other.session(customer_session_client_secret=session.client_secret)
    assert r.status_code == 400 and "payment_methods" not in r.text
    r = requests.post(f"{server.url}/v1/test_helpers/clock/advance", data={"seconds": 30 * 60},
                      headers={"Authorization": f"Bearer {account['secret_key']}"}, timeout=10)
    assert r.status_code == 200
    r = browser.session(customer_session_client_secret=session.client_secret)
    assert r.status_code == 400 and r.json()["error"]["code"] == "resource_missing"
    r = requests.post(f"{server.url}/v1/customer_sessions", headers=browser.headers, timeout=10,
                      data={"customer": customer.id, "components[payment_element][enabled]": "true"})
    assert r.status_code == 403


def test_the_session_of_an_intent(server, account, browser):
    pi = stripe.PaymentIntent.create(amount=2500, currency="eur", payment_method_types=["card", "sepa_debit"])
    r = browser.session(type="payment_intent", client_secret=pi.client_secret)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "payment" and body["amount"] == 2500 and body["currency"] == "eur"
    assert body["ordered_payment_method_types"] == ["card", "sepa_debit"]
    assert body["payment_intent"]["id"] == pi.id and "customer" not in body["payment_intent"]
    assert body["customer"] is None
    r = browser.session(type="payment_intent", client_secret=pi.id + "_secret_wrong")
    assert r.status_code == 400 and r.json()["error"]["param"] == "client_secret"
    si = stripe.SetupIntent.create(payment_method_types=["card"])
    body = browser.session(type="setup_intent", client_secret=si.client_secret).json()
    assert body["mode"] == "setup" and body["setup_intent"]["id"] == si.id


DEFERRED = {"type": "deferred_intent", "deferred_intent[mode]": "payment",
            "deferred_intent[amount]": "1099", "deferred_intent[currency]": "usd"}


@pytest.mark.parametrize("change,param", [
    ({"deferred_intent[amount]": None}, "deferred_intent[amount]"),
    ({"type": "payment_intent"}, "client_secret"),
    ({"deferred_intent[mode]": "rent"}, "deferred_intent[mode]"),
    ({"deferred_intent[payment_method_types][0]": "bitcoin"}, "deferred_intent[payment_method_types][0]"),
    ({"nonsense": "1"}, "nonsense"),
])
def test_bad_session_requests_name_the_param(browser, change, param):
    params = {k: v for k, v in {**DEFERRED, **change}.items() if v is not None}
    r = requests.get(f"{browser.url}/v1/elements/sessions", headers=browser.headers, params=params, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("kw,param", [
    ({"components": {"payment_element": {"enabled": True}}, "customer": "cus_missing"}, "customer"),
    ({"components": {}}, "components"),
    ({"components": {"payment_element": {"enabled": True}, "pricing_table": {"enabled": True}}}, "components"),
    ({"components": {"payment_element": {"enabled": True, "features": {"payment_method_redisplay_limit": 11}}}},
     "components[payment_element][features][payment_method_redisplay_limit]"),
    ({"components": {"payment_element": {"enabled": True, "features": {"payment_method_save": "maybe"}}}},
     "components[payment_element][features][payment_method_save]"),
])
def test_bad_input_names_the_param(account, kw, param):
    kw = {"customer": stripe.Customer.create().id, **kw}
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.CustomerSession.create(**kw)
    assert e.value.http_status == 400 and e.value.param == param
    validate_error(e.value.json_body)
