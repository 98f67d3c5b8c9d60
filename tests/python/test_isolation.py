"""Isolation and auth: every route against no key, a wrong key, another account's
secret key, the publishable key, and the publishable key with another object's
client secret. Nothing leaks; every refusal is Stripe's envelope and status."""
import pytest
import requests
import stripe

from openapi import validate_error


@pytest.fixture
def world(server, account):
    """Objects of one account, and the keys of another."""
    customer = stripe.Customer.create(email="owner@example.com")
    pm = stripe.PaymentMethod.create(type="card", card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2034})
    stripe.PaymentMethod.attach(pm.id, customer=customer.id)
    pi = stripe.PaymentIntent.create(amount=2000, currency="usd", customer=customer.id, payment_method=pm.id, confirm=True)
    other_pi = stripe.PaymentIntent.create(amount=3000, currency="usd")
    refund = stripe.Refund.create(payment_intent=pi.id, amount=100)
    other_secret, other_publishable = server.new_account()
    return {
        "cus": customer.id, "pm": pm.id, "pi": pi.id, "pi_secret": pi.client_secret, "ch": pi.latest_charge,
        "re": refund.id, "other_pi_secret": other_pi.client_secret,
        "other_secret": other_secret, "other_publishable": other_publishable,
    }


ROUTES = [
    ("GET", "/v1/customers/{cus}"), ("POST", "/v1/customers/{cus}"), ("DELETE", "/v1/customers/{cus}"),
    ("GET", "/v1/customers/{cus}/payment_methods"), ("GET", "/v1/customers/{cus}/payment_methods/{pm}"),
    ("GET", "/v1/payment_methods/{pm}"), ("POST", "/v1/payment_methods/{pm}"), ("POST", "/v1/payment_methods/{pm}/detach"),
    ("GET", "/v1/payment_intents/{pi}"), ("POST", "/v1/payment_intents/{pi}"), ("POST", "/v1/payment_intents/{pi}/confirm"),
    ("POST", "/v1/payment_intents/{pi}/capture"), ("POST", "/v1/payment_intents/{pi}/cancel"),
    ("GET", "/v1/charges/{ch}"), ("POST", "/v1/charges/{ch}"), ("GET", "/v1/refunds/{re}"), ("POST", "/v1/refunds/{re}"),
]
LISTS = ["/v1/customers", "/v1/payment_intents", "/v1/charges", "/v1/refunds", "/v1/balance_transactions",
         "/v1/customers/search?query=email:'owner@example.com'", "/v1/payment_intents/search?query=status:'succeeded'"]
# Calls stripe.js makes with the publishable key and the object's client secret.
BROWSER = {("GET", "/v1/payment_intents/{pi}"), ("POST", "/v1/payment_intents/{pi}/confirm")}


def call(server, method, path, key, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, server.url + path, headers=headers, timeout=10, **kw)


def test_every_route_refuses_the_wrong_caller(server, account, world):
    checked = 0
    for method, template in ROUTES:
        path = template.format(**world)
        for key, expected in [(None, 401), ("sk_test_wrongwrongwrong", 401), (world["other_secret"], 404)]:
            r = call(server, method, path, key)
            assert r.status_code == expected, (method, path, key, r.status_code, r.text)
            validate_error(r.json())
            assert world["cus"] not in r.text or "No such" in r.text
            checked += 1
        r = call(server, method, path, account["publishable_key"])
        if (method, template) in BROWSER:
            assert r.status_code == 404, (method, path, r.text)  # no client secret: nothing revealed
            r = call(server, method, path, account["publishable_key"], params={"client_secret": world["other_pi_secret"]})
            assert r.status_code == 404, (method, path, r.text)
            r = call(server, method, path, world["other_publishable"], params={"client_secret": world["pi_secret"]})
            assert r.status_code == 404, (method, path, r.text)
        else:
            assert r.status_code == 403, (method, path, r.text)
        validate_error(r.json())
        checked += 1
    for path in LISTS:
        assert call(server, "GET", path, None).status_code == 401
        assert call(server, "GET", path, account["publishable_key"]).status_code == 403
        r = call(server, "GET", path, world["other_secret"])
        assert r.status_code == 200 and r.json()["data"] == [], (path, r.text)
        checked += 3
    print(f"auth cases checked: {checked}")
