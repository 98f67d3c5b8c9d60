"""Customers and the wire conventions, through stripe-python."""
import threading
import time
import uuid

import pytest
import stripe

from openapi import validate, validate_error, validate_list, validate_search


def test_create_retrieve_update_delete(account):
    c = stripe.Customer.create(
        email="jenny.rosen@example.com",
        name="Jenny Rosen",
        phone="+15555550123",
        description="a test customer",
        address={"line1": "1 Main St", "city": "Springfield", "country": "US", "postal_code": "12345"},
        shipping={"name": "Jenny Rosen", "address": {"line1": "1 Main St", "country": "US"}},
        metadata={"order_id": "6735"},
        preferred_locales=["en", "fr"],
    )
    assert c.id.startswith("cus_") and len(c.id) == 4 + 24
    assert c.object == "customer"
    assert c.livemode is False
    assert c.email == "jenny.rosen@example.com"
    assert c.address.city == "Springfield"
    assert c.shipping.address.line1 == "1 Main St"
    assert c.metadata["order_id"] == "6735"
    assert c.invoice_settings.default_payment_method is None
    assert c.balance == 0
    assert abs(c.created - time.time()) < 60
    validate("customer", c)

    got = stripe.Customer.retrieve(c.id)
    assert got.id == c.id and got.name == "Jenny Rosen"

    updated = stripe.Customer.modify(c.id, name="Jenny R.", metadata={"order_id": "", "tier": "gold"}, description="")
    assert updated.name == "Jenny R."
    assert updated.description is None
    assert dict(updated.metadata) == {"tier": "gold"}
    validate("customer", updated)

    cleared = stripe.Customer.modify(c.id, metadata="")
    assert dict(cleared.metadata) == {}

    deleted = stripe.Customer.delete(c.id)
    assert deleted.deleted is True and deleted.id == c.id
    validate("deleted_customer", deleted)
    again = stripe.Customer.retrieve(c.id)
    assert again.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.modify(c.id, name="x")
    assert e.value.http_status == 404
    assert stripe.Customer.list(limit=100).data == []


def test_metadata_limits(account):
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(metadata={f"k{i}": "v" for i in range(51)})
    assert e.value.http_status == 400 and e.value.param == "metadata"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(metadata={"k" * 41: "v"})
    assert e.value.param.startswith("metadata[")
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.create(metadata={"k": "v" * 501})
    assert e.value.param == "metadata[k]"


def test_pagination_through_250_customers_both_ways(account):
    created = [stripe.Customer.create(email=f"c{i}@example.com").id for i in range(250)]
    newest_first = list(reversed(created))

    seen = []
    page = stripe.Customer.list(limit=100)
    validate_list("customer", page)
    while True:
        seen.extend(c.id for c in page.data)
        if not page.has_more:
            break
        page = stripe.Customer.list(limit=100, starting_after=page.data[-1].id)
    assert seen == newest_first

    # auto_paging_iter walks the same order through the SDK's own cursor logic.
    assert [c.id for c in stripe.Customer.list(limit=37).auto_paging_iter()] == newest_first

    # Backwards from the oldest: ending_before returns the page just newer, newest first.
    back = []
    page = stripe.Customer.list(limit=100, ending_before=created[0])
    while True:
        back = [c.id for c in page.data] + back
        if not page.has_more:
            break
        page = stripe.Customer.list(limit=100, ending_before=page.data[0].id)
    assert back == newest_first[:-1]

    assert len(stripe.Customer.list().data) == 10
    only = stripe.Customer.list(email="c7@example.com")
    assert [c.id for c in only.data] == [created[7]]


def test_created_filters(account, api):
    a = stripe.Customer.create(name="a")
    r = api.post("/v1/test_helpers/clock/advance", data={"seconds": 100})
    assert r.status_code == 200, r.text
    b = stripe.Customer.create(name="b")
    assert b.created >= a.created + 100
    assert [c.id for c in stripe.Customer.list(created={"gt": a.created}).data] == [b.id]
    assert [c.id for c in stripe.Customer.list(created={"lte": a.created}).data] == [a.id]
    assert [c.id for c in stripe.Customer.list(created=b.created).data] == [b.id]


def test_expand(account, api):
    c = stripe.Customer.create(name="x")
    # Expanding a null expandable field leaves it null; expanding a non-id field is refused.
    got = stripe.Customer.retrieve(c.id, expand=["invoice_settings.default_payment_method"])
    assert got.invoice_settings.default_payment_method is None
    r = api.get(f"/v1/customers/{c.id}", params={"expand[]": "name"})
    assert r.status_code == 400
    validate_error(r.json())
    r = api.get("/v1/customers", params={"expand[]": "data.a.b.c.d.e"})
    assert r.status_code == 400


def test_search(account):
    jane = stripe.Customer.create(email="jane@example.com", name="Jane Doe", metadata={"plan": "pro"})
    john = stripe.Customer.create(email="john@example.com", name="John Doe", metadata={"plan": "free"})
    stripe.Customer.create(email="ann@example.org", name="Ann Smith")

    r = stripe.Customer.search(query="email:'jane@example.com'")
    validate_search("customer", r)
    assert [c.id for c in r.data] == [jane.id]
    assert {c.id for c in stripe.Customer.search(query="name~'doe'").data} == {jane.id, john.id}
    assert [c.id for c in stripe.Customer.search(query="metadata['plan']:'pro'").data] == [jane.id]
    assert {c.id for c in stripe.Customer.search(query="metadata['plan']:'pro' OR email:'ann@example.org'").data} == {
        jane.id, stripe.Customer.search(query="email:'ann@example.org'").data[0].id}
    assert [c.id for c in stripe.Customer.search(query="name~'doe' AND metadata['plan']:'free'").data] == [john.id]
    assert len(stripe.Customer.search(query=f"created>={jane.created}").data) == 3

    page = stripe.Customer.search(query="name~'doe'", limit=1)
    assert page.has_more and page.next_page
    rest = stripe.Customer.search(query="name~'doe'", limit=1, page=page.next_page)
    assert rest.data[0].id != page.data[0].id
    assert [c.id for c in stripe.Customer.search(query="name~'doe'", limit=1).auto_paging_iter()] == [john.id, jane.id]

    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.search(query="bogus:'x'")
    assert e.value.param == "query"


def test_idempotent_replay_and_mismatch(account, api):
    key = str(uuid.uuid4())
    first = api.post("/v1/customers", data={"email": "a@example.com"}, headers={"Idempotency-Key": key})
    again = api.post("/v1/customers", data={"email": "a@example.com"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert len(stripe.Customer.list().data) == 1

    # Through the SDK too: the same key returns the same customer.
    c1 = stripe.Customer.create(name="n", idempotency_key="sdk-key")
    c2 = stripe.Customer.create(name="n", idempotency_key="sdk-key")
    assert c1.id == c2.id

    other = api.post("/v1/customers", data={"email": "b@example.com"}, headers={"Idempotency-Key": key})
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    with pytest.raises(stripe.IdempotencyError):
        stripe.Customer.create(name="different", idempotency_key="sdk-key")

    # Another endpoint with the same key is a mismatch as well.
    cid = first.json()["id"]
    r = api.post(f"/v1/customers/{cid}", data={"email": "a@example.com"}, headers={"Idempotency-Key": key})
    assert r.status_code == 400 and r.json()["error"]["type"] == "idempotency_error"

    # Validation failures are not stored: the key stays usable.
    k2 = str(uuid.uuid4())
    bad = api.post("/v1/customers", data={"bogus": "1"}, headers={"Idempotency-Key": k2})
    assert bad.status_code == 400
    ok = api.post("/v1/customers", data={"name": "fine"}, headers={"Idempotency-Key": k2})
    assert ok.status_code == 200


def test_idempotency_keys_expire_after_24_hours(account, api):
    key = str(uuid.uuid4())
    first = api.post("/v1/customers", data={"name": "a"}, headers={"Idempotency-Key": key})
    assert api.post("/v1/test_helpers/clock/advance", data={"seconds": 24 * 3600 + 1}).status_code == 200
    second = api.post("/v1/customers", data={"name": "b"}, headers={"Idempotency-Key": key})
    assert second.status_code == 200, second.text
    assert second.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in second.headers


def test_concurrent_requests_with_one_key_create_one_customer(account, api):
    key = str(uuid.uuid4())
    results = []
    # 200 at once, as the reliability promise says: one customer, the rest 409 or a replay.
    start = threading.Barrier(200)

    def go():
        start.wait()
        r = api.post("/v1/customers", data={"email": "same@example.com"}, headers={"Idempotency-Key": key})
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted({s for s, _ in results})
    assert set(statuses) <= {200, 409}, statuses
    ids = {body["id"] for s, body in results if s == 200}
    assert len(ids) == 1
    for s, body in results:
        if s == 409:
            assert body["error"]["code"] == "idempotency_key_in_use"
    assert len(results) == 200
    replays = [body for s, body in results if s == 200]
    assert all(body == replays[0] for body in replays)
    assert len(stripe.Customer.list().data) == 1


def test_error_envelopes(server, account, api):
    r = api.get("/v1/customers", key=None)
    assert r.status_code == 401
    validate_error(r.json())
    assert r.headers["Request-Id"].startswith("req_")
    r = api.get("/v1/customers", key="sk_test_unknownunknown")
    assert r.status_code == 401 and "sk_test_" in r.json()["error"]["message"]
    r = api.get("/v1/customers", key=account["publishable_key"])
    assert r.status_code == 403
    r = api.get("/v1/customers/cus_doesnotexist")
    assert r.status_code == 404
    assert r.json()["error"] == {
        "type": "invalid_request_error", "code": "resource_missing", "param": "id",
        "message": "No such customer: 'cus_doesnotexist'",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
    }
    r = api.get("/v1/nothing_here")
    assert r.status_code == 404 and "Unrecognized request URL" in r.json()["error"]["message"]
    r = api.post("/v1/customers", data={"balance": "lots"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "parameter_invalid_integer"
    assert r.json()["error"]["param"] == "balance"
    r = api.post("/v1/customers", data={"address[planet]": "mars"})
    assert r.json()["error"]["param"] == "address[planet]"
    assert r.json()["error"]["code"] == "parameter_unknown"
    r = api.post("/v1/customers", data={"shipping[address][city]": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_missing"
    assert r.json()["error"]["param"] == "shipping[name]"
    r = api.post("/v1/customers", data={"email": "not-an-email"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "email"
    r = api.post("/v1/customers", data="x" * (2 * 1024 * 1024), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    validate_error(r.json())
    r = api.post("/v1/customers", json={"name": "via json", "metadata": {"a": "b"}})
    assert r.status_code == 200 and r.json()["metadata"] == {"a": "b"}
    r = api.get("/v1/customers", headers={"Stripe-Version": "2023-10-16"})
    assert r.headers["Stripe-Version"] == "2023-10-16"

    with pytest.raises(stripe.AuthenticationError):
        stripe.Customer.list(api_key="sk_test_nope_nope_nope")
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.retrieve("cus_missing")
    assert e.value.http_status == 404 and e.value.code == "resource_missing"


def test_basic_auth(server, account):
    import requests
    r = requests.get(f"{server.url}/v1/customers", auth=(account["secret_key"], ""), timeout=10)
    assert r.status_code == 200


def test_accounts_are_isolated(server):
    a_secret, _ = server.new_account()
    b_secret, _ = server.new_account()
    stripe.api_base = server.url
    mine = stripe.Customer.create(name="a's", api_key=a_secret, idempotency_key="shared-key")
    theirs = stripe.Customer.create(name="b's", api_key=b_secret, idempotency_key="shared-key")
    assert mine.id != theirs.id
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Customer.retrieve(mine.id, api_key=b_secret)
    assert e.value.http_status == 404
    assert [c.id for c in stripe.Customer.list(api_key=b_secret).data] == [theirs.id]
    assert [c.id for c in stripe.Customer.search(query='name~"b\'s"', api_key=b_secret).data] == [theirs.id]
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.list(starting_after=mine.id, api_key=b_secret)
