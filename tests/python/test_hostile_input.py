"""Hostile input: no body, header or query string may cause a 5xx, a hang or a
non-Stripe error. Random inputs are generated from a fixed seed so failures repeat."""
import random

import pytest
import requests

ROUTES = [
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/search"),
    ("POST", "/v1/payment_intents"),
    ("GET", "/v1/payment_intents"),
    ("POST", "/v1/payment_methods"),
    ("POST", "/v1/refunds"),
    ("GET", "/v1/charges"),
    ("POST", "/v1/payment_intents/pi_123/confirm"),
]

NASTY = [
    "", "0", "-1", "1e309", "NaN", "9" * 40, "-9223372036854775809", "true", "null", "[]", "{}",
    "' OR 1=1 --", "\"; DROP TABLE objects; --", "\x00", "\r\nSet-Cookie: x=1", "é" * 600, "pm_card_visa",
    "%ZZ", "a" * 5000, "usd", "jpy", "card",
]
KEYS = ["amount", "currency", "confirm", "customer", "metadata[k]", "metadata[" + "k" * 60 + "]", "expand[]",
        "limit", "starting_after", "created[gt]", "query", "payment_method", "payment_method_data[type]",
        "payment_method_data[card][number]", "card[exp_month]", "a[b][c][d][e][f][g][h][i][j][k][l][m]",
        "x[]", "x[0]", "x[a]", "[", "]", "a]b[", "email", "shipping[address]", "capture_method", "off_session"]


def random_body(rng):
    pairs = []
    for _ in range(rng.randint(0, 8)):
        pairs.append((rng.choice(KEYS), rng.choice(NASTY)))
    return pairs


def test_random_bodies_never_cause_a_5xx(server, account):
    rng = random.Random(20261201)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {account['secret_key']}"
    tried = 0
    for _ in range(400):
        method, path = rng.choice(ROUTES)
        pairs = random_body(rng)
        if method == "GET":
            r = session.get(server.url + path, params=pairs, timeout=10)
        else:
            r = session.post(server.url + path, data=pairs, timeout=10)
        tried += 1
        assert r.status_code < 500, (method, path, pairs, r.status_code, r.text)
        if r.status_code >= 400:
            body = r.json()
            assert body["error"]["type"] in ("invalid_request_error", "card_error", "idempotency_error"), body
    print(f"random requests tried: {tried}")


@pytest.mark.parametrize("body,content_type", [
    (b"\xff\xfe\xfd=\xc3\x28", "application/x-www-form-urlencoded"),
    (b"{not json", "application/json"),
    (b"[1,2,3]", "application/json"),
    (b"<xml/>", "text/xml"),
    (b"a=" + b"x" * (3 * 1024 * 1024), "application/x-www-form-urlencoded"),
    (b"a=" + b"x" * (10 * 1024 * 1024), "application/x-www-form-urlencoded"),
    (b"&".join(b"x[]=%d" % i for i in range(20000)), "application/x-www-form-urlencoded"),
    (b"a" + b"[a]" * 500 + b"=1", "application/x-www-form-urlencoded"),
])
def test_malformed_bodies(server, account, body, content_type):
    r = requests.post(f"{server.url}/v1/customers", data=body, timeout=10,
                      headers={"Authorization": f"Bearer {account['secret_key']}", "Content-Type": content_type})
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json()


def test_header_injection_and_odd_headers(server, account):
    r = requests.post(f"{server.url}/v1/customers", timeout=10,
                      data={"metadata[note]": "line1\r\nX-Injected: yes"},
                      headers={"Authorization": f"Bearer {account['secret_key']}"})
    assert r.status_code == 200
    assert "X-Injected" not in r.headers
    assert r.json()["metadata"]["note"] == "line1\r\nX-Injected: yes"
    for auth in ["Bearer", "Basic !!!", "Bearer " + "x" * 10000, "Digest abc", "bearer  " + account["secret_key"]]:
        r = requests.get(f"{server.url}/v1/customers", headers={"Authorization": auth}, timeout=10)
        assert r.status_code in (200, 401), (auth[:20], r.status_code)
    r = requests.post(f"{server.url}/v1/customers", timeout=10,
                      headers={"Authorization": f"Bearer {account['secret_key']}", "Idempotency-Key": "k" * 300})
    assert r.status_code == 400


@pytest.mark.parametrize("amount,currency,expected", [
    ("-100", "usd", 400), ("0", "usd", 400), ("49", "usd", 400), ("100000000", "usd", 400),
    ("NaN", "usd", 400), ("1.5", "usd", 400), ("99999999999999999999", "usd", 400),
    ("50", "jpy", 200), ("49", "jpy", 400), ("2000", "USD", 200), ("2000", "xyz", 400),
])
def test_amounts_and_currencies(server, account, amount, currency, expected):
    r = requests.post(f"{server.url}/v1/payment_intents", timeout=10,
                      data={"amount": amount, "currency": currency},
                      headers={"Authorization": f"Bearer {account['secret_key']}"})
    assert r.status_code == expected, r.text
    if expected == 400:
        assert r.json()["error"]["param"] in ("amount", "currency")
