"""Events, webhook endpoints and signed at-least-once delivery, through stripe-python.

A real receiver on 127.0.0.1 verifies every delivery with
stripe.Webhook.construct_event. The server runs with a fast retry schedule so
retries take fractions of a second."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests
import stripe

from openapi import plain, validate, validate_error, validate_list
from server import BINARY, Server, WebhookHTTPServer, fresh_postgres_database, postgres_url, wait_until

FAST_RETRIES = "0.2,0.5,1"
TIMEOUT = "2"


def start_server(backend, tmp_path_factory, schedule=FAST_RETRIES):
    drop = None
    if backend == "postgres":
        base = postgres_url()
        if not base:
            pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
        database, drop = fresh_postgres_database(base)
    else:
        database = f"sqlite:{tmp_path_factory.mktemp('sqlite') / 'payground.db'}"
    srv = Server(database, tmp_path_factory.mktemp("work"),
                 extra_args=["--webhook-retry-schedule", schedule, "--webhook-timeout", TIMEOUT]).start()
    srv.backend = backend
    return srv, drop


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def wh_server(request, tmp_path_factory):
    srv, drop = start_server(request.param, tmp_path_factory)
    yield srv
    srv.stop()
    if drop:
        drop()


@pytest.fixture
def key(wh_server):
    """A fresh account; stripe-python points at it."""
    secret, _ = wh_server.new_account()
    stripe.api_key = secret
    stripe.api_base = wh_server.url
    stripe.max_network_retries = 0
    return secret


def call(server, key, method, path, **kw):
    return requests.request(method, server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


class Receiver:
    """An HTTP server on 127.0.0.1 that verifies each delivery with stripe-python.

    `secrets[path]` is the signing secret expected on that path; `plan[path]` lists
    what to answer first (a status, or ("sleep", seconds)); afterwards it answers 200."""

    def __init__(self, port=0, secrets=None):
        # Given before the server starts when deliveries may already be waiting for it.
        self.secrets = dict(secrets or {})
        self.plan = {}
        self.deliveries = []  # every request: path, headers, raw body, verified event or error
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path
                with receiver.cond:
                    planned = receiver.plan.get(path) or []
                    step = planned.pop(0) if planned else 200
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = 200
                entry = {"path": path, "headers": {k.lower(): v for k, v in self.headers.items()}, "raw": raw, "event": None, "error": None,
                         "answered": step, "at": time.time()}
                try:
                    entry["event"] = stripe.Webhook.construct_event(
                        raw.decode("utf-8"), self.headers.get("Stripe-Signature"), receiver.secrets.get(path))
                except Exception as e:  # recorded; tests assert there are none
                    entry["error"] = repr(e)
                    step = 400
                entry["answered"] = step
                body = b"received" if step < 300 else b"nope"
                try:
                    self.send_response(step)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the sender gave up (a timeout test)
                with receiver.cond:
                    receiver.deliveries.append(entry)
                    receiver.cond.notify_all()

            def log_message(self, *args):
                pass

        self.httpd = WebhookHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path):
        with self.cond:
            return [d for d in self.deliveries if d["path"] == path]

    def verified(self, path):
        """Verified events received on `path` with a 2xx answer."""
        return [d["event"] for d in self.on(path) if d["event"] is not None and d["answered"] < 300]

    def wait(self, predicate, timeout=15):
        deadline = time.time() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"timed out; received: {[(d['path'], d['answered'], d['error']) for d in self.deliveries]}")
                self.cond.wait(min(left, 0.2))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
    errors = [d["error"] for d in r.deliveries if d["error"]]
    assert not errors, f"deliveries failed verification: {errors}"


def endpoint(receiver, path, events=("*",), **kw):
    we = stripe.WebhookEndpoint.create(url=receiver.url(path), enabled_events=list(events), **kw)
    receiver.secrets[path] = we.secret
    return we


def types_of(events):
    return sorted(e.type for e in events)


# ---------------------------------------------------------------------------
# WebhookEndpoints API


def test_endpoint_lifecycle(key, receiver):
    we = endpoint(receiver, "/a", ["customer.created", "customer.updated"],
                  description="orders", metadata={"team": "payments"})
    assert re.fullmatch(r"we_[0-9A-Za-z]{24}", we.id)
    assert re.fullmatch(r"whsec_[0-9A-Za-z]{32}", we.secret)
    assert we.object == "webhook_endpoint" and we.status == "enabled" and we.livemode is False
    assert we.api_version is None and we.application is None
    assert we.enabled_events == ["customer.created", "customer.updated"]
    assert we.description == "orders" and we.metadata["team"] == "payments"
    assert we.url == receiver.url("/a")
    assert abs(we.created - time.time()) < 60
    validate("webhook_endpoint", we)

    got = stripe.WebhookEndpoint.retrieve(we.id)
    assert "secret" not in got, "the secret is only returned on create"
    validate("webhook_endpoint", got)

    up = stripe.WebhookEndpoint.modify(we.id, url=receiver.url("/b"), enabled_events=["*"], description="",
                                       disabled=True, metadata={"team": "", "tier": "gold"})
    assert up.status == "disabled" and up.url == receiver.url("/b") and up.enabled_events == ["*"]
    assert up.description is None and dict(up.metadata) == {"tier": "gold"}
    assert "secret" not in up
    validate("webhook_endpoint", up)
    assert stripe.WebhookEndpoint.modify(we.id, disabled=False).status == "enabled"

    other = stripe.WebhookEndpoint.create(url=receiver.url("/c"), enabled_events=["*"], api_version="2024-04-10")
    assert other.api_version == "2024-04-10"
    assert other.secret != we.secret
    listed = stripe.WebhookEndpoint.list(limit=1)
    validate_list("webhook_endpoint", listed)
    assert listed.has_more and listed.data[0].id == other.id and "secret" not in listed.data[0]
    assert [e.id for e in stripe.WebhookEndpoint.list().auto_paging_iter()] == [other.id, we.id]

    deleted = stripe.WebhookEndpoint.delete(we.id)
    validate("deleted_webhook_endpoint", deleted)
    assert deleted.deleted is True and deleted.id == we.id
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.WebhookEndpoint.retrieve(we.id)
    assert e.value.http_status == 404
    assert [e.id for e in stripe.WebhookEndpoint.list().data] == [other.id]


def test_endpoint_validation(wh_server, key):
    def refused(data, param, code=None):
        r = call(wh_server, key, "POST", "/v1/webhook_endpoints", data=data)
        assert r.status_code == 400, r.text
        validate_error(r.json())
        assert r.json()["error"]["param"] == param, r.text
        if code:
            assert r.json()["error"]["code"] == code, r.text

    ok_url = "http://127.0.0.1:9/hook"
    refused({"enabled_events[]": "*"}, "url", "parameter_missing")
    refused({"url": ok_url}, "enabled_events", "parameter_missing")
    refused({"url": "not a url", "enabled_events[]": "*"}, "url", "url_invalid")
    refused({"url": "ftp://127.0.0.1/x", "enabled_events[]": "*"}, "url", "url_invalid")
    refused({"url": ok_url, "enabled_events[0]": "customer.exploded"}, "enabled_events[0]")
    refused({"url": ok_url, "enabled_events[0]": "customer.created", "enabled_events[1]": "nope.nope"},
            "enabled_events[1]")
    refused({"url": ok_url, "enabled_events[]": "*", "bogus": "1"}, "bogus", "parameter_unknown")
    refused({"url": ok_url, "enabled_events[]": "*", "connect": "true"}, "connect")
    refused({"url": ok_url, "enabled_events[]": "*", "api_version": "yesterday"}, "api_version")
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.WebhookEndpoint.create(url=ok_url, enabled_events=["charge.nope"])
    assert e.value.param == "enabled_events[0]"
    we = stripe.WebhookEndpoint.create(url=ok_url, enabled_events=["*"], connect=False)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.WebhookEndpoint.modify(we.id, enabled_events=["*", "bad"])
    assert e.value.param == "enabled_events[1]"
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.WebhookEndpoint.retrieve("we_missing")
    assert e.value.http_status == 404


# ---------------------------------------------------------------------------
# Delivery


def test_customer_flow_is_delivered_signed_and_verified(wh_server, key, receiver):
    we = endpoint(receiver, "/hook")
    c = stripe.Customer.create(email="jenny@example.com", name="Jenny")
    stripe.Customer.modify(c.id, name="Jenny R.", metadata={"tier": "gold"})
    stripe.Customer.delete(c.id)
    receiver.wait(lambda: len(receiver.verified("/hook")) >= 3)
    time.sleep(0.5)  # nothing more arrives
    got = receiver.verified("/hook")
    assert types_of(got) == ["customer.created", "customer.deleted", "customer.updated"]
    assert all(e.data.object.id == c.id for e in got)

    by_type = {e.type: e for e in got}
    updated = by_type["customer.updated"]
    assert plain(updated.data.previous_attributes) == {"name": "Jenny", "metadata": {"tier": None}}
    assert updated.data.object.name == "Jenny R."
    assert by_type["customer.deleted"].data.object.email == "jenny@example.com"

    for d in receiver.on("/hook"):
        h = d["headers"]
        assert h["content-type"] == "application/json; charset=utf-8"
        assert h["user-agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
        parts = dict(p.split("=", 1) for p in h["stripe-signature"].split(","))
        assert set(parts) == {"t", "v1", "v0"} and parts["v0"] != parts["v1"]
        assert abs(int(parts["t"]) - time.time()) < 60, "real time, not the account clock"
        body = json.loads(d["raw"])
        assert body["object"] == "event" and body["pending_webhooks"] == 1
        validate("event", body)
        # The body is the stored event: the API shows the same object, delivered since.
        stored = call(wh_server, key, "GET", f"/v1/events/{body['id']}").json()
        assert stored == dict(body, pending_webhooks=stored["pending_webhooks"])

    # Tampering is caught by the SDK; so is the wrong secret.
    first = receiver.on("/hook")[0]
    sig = first["headers"]["stripe-signature"]
    tampered = first["raw"].decode().replace('"livemode":false', '"livemode":true', 1)
    assert tampered != first["raw"].decode()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, sig, we.secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(first["raw"].decode(), sig, "whsec_" + "x" * 32)

    # pending_webhooks comes down to 0 once delivered.
    for e in got:
        wait_until(lambda: stripe.Event.retrieve(e.id).pending_webhooks == 0, what="pending_webhooks 0")
    delivered = stripe.Event.list(delivery_success=True)
    assert {e.id for e in delivered.data} == {e.id for e in got}
    assert stripe.Event.list(delivery_success=False).data == []


def test_retries_until_success_and_records_attempts(wh_server, key, receiver):
    we = endpoint(receiver, "/flaky")
    receiver.plan["/flaky"] = [500, 500]
    c = stripe.Customer.create(name="retry me")
    receiver.wait(lambda: len(receiver.verified("/flaky")) == 1)
    answers = [d["answered"] for d in receiver.on("/flaky")]
    assert answers == [500, 500, 200]
    sigs = [d["headers"]["stripe-signature"] for d in receiver.on("/flaky")]
    assert len(set(sigs)) >= 1  # each attempt is signed anew (same second may give the same t)
    event = stripe.Event.list(type="customer.created").data[0]
    assert event.data.object.id == c.id
    wait_until(lambda: stripe.Event.retrieve(event.id).pending_webhooks == 0, what="pending_webhooks 0")

    r = call(wh_server, key, "GET", f"/v1/events/{event.id}/attempts")
    assert r.status_code == 200, r.text
    attempts = r.json()
    assert attempts["object"] == "list" and attempts["url"] == f"/v1/events/{event.id}/attempts"
    got = attempts["data"]
    assert [a["status_code"] for a in got] == [200, 500, 500], "newest first"
    assert [a["attempt"] for a in got] == [3, 2, 1]
    assert [a["succeeded"] for a in got] == [True, False, False]
    assert got[0]["response_body"] == "received" and got[1]["response_body"] == "nope"
    assert all(a["webhook_endpoint"] == we.id and a["event"] == event.id for a in got)
    assert all(isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0 and a["error"] is None for a in got)
    # Retries follow the schedule: 0.2 s, then 0.5 s.
    times = [a["attempted_at_ms"] for a in reversed(got)]
    assert times[1] - times[0] >= 150 and times[2] - times[1] >= 400

    by_endpoint = call(wh_server, key, "GET", f"/v1/webhook_endpoints/{we.id}/attempts", params={"limit": 2}).json()
    assert [a["id"] for a in by_endpoint["data"]] == [a["id"] for a in got[:2]] and by_endpoint["has_more"]
    rest = call(wh_server, key, "GET", f"/v1/webhook_endpoints/{we.id}/attempts",
                params={"starting_after": got[1]["id"]}).json()
    assert [a["id"] for a in rest["data"]] == [got[2]["id"]]
    assert call(wh_server, key, "GET", "/v1/events/evt_missing/attempts").status_code == 404


def test_gives_up_after_the_schedule_then_resend_delivers(wh_server, key, receiver):
    we = endpoint(receiver, "/down")
    receiver.plan["/down"] = [503] * 4
    stripe.Customer.create(name="unlucky")
    receiver.wait(lambda: len(receiver.on("/down")) == 4)
    time.sleep(1.0)  # the schedule (3 retries) is exhausted: no fifth attempt
    assert len(receiver.on("/down")) == 4
    event = stripe.Event.list().data[0]
    assert stripe.Event.retrieve(event.id).pending_webhooks == 1
    assert [e.id for e in stripe.Event.list(delivery_success=False).data] == [event.id]
    assert stripe.Event.list(delivery_success=True).data == []

    r = call(wh_server, key, "POST", f"/v1/events/{event.id}/resend", data={"webhook_endpoint": we.id})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == event.id
    receiver.wait(lambda: len(receiver.verified("/down")) == 1)
    wait_until(lambda: stripe.Event.retrieve(event.id).pending_webhooks == 0, what="pending_webhooks 0")
    assert stripe.Event.list(delivery_success=False).data == []

    bad = call(wh_server, key, "POST", f"/v1/events/{event.id}/resend", data={"webhook_endpoint": "we_missing"})
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "webhook_endpoint"
    assert call(wh_server, key, "POST", "/v1/events/evt_missing/resend",
                data={"webhook_endpoint": we.id}).status_code == 404
    assert call(wh_server, key, "POST", f"/v1/events/{event.id}/resend").status_code == 400
    stripe.WebhookEndpoint.modify(we.id, disabled=True)
    off = call(wh_server, key, "POST", f"/v1/events/{event.id}/resend", data={"webhook_endpoint": we.id})
    assert off.status_code == 400 and off.json()["error"]["param"] == "webhook_endpoint"


def test_resend_redelivers_a_delivered_event(wh_server, key, receiver):
    we = endpoint(receiver, "/again")
    stripe.Customer.create(name="twice")
    receiver.wait(lambda: len(receiver.verified("/again")) == 1)
    event_id = receiver.verified("/again")[0].id
    r = call(wh_server, key, "POST", f"/v1/events/{event_id}/resend", data={"webhook_endpoint": we.id})
    assert r.status_code == 200, r.text
    receiver.wait(lambda: len(receiver.verified("/again")) == 2)
    assert [e.id for e in receiver.verified("/again")] == [event_id, event_id]
    wait_until(lambda: stripe.Event.retrieve(event_id).pending_webhooks == 0, what="pending_webhooks 0")


def test_timeouts_count_as_failures(wh_server, key, receiver):
    endpoint(receiver, "/slow")
    receiver.plan["/slow"] = [("sleep", 2.5)]
    stripe.Customer.create(name="slow")
    receiver.wait(lambda: len(receiver.on("/slow")) == 2, timeout=20)
    event = stripe.Event.list().data[0]
    wait_until(lambda: stripe.Event.retrieve(event.id).pending_webhooks == 0, what="pending_webhooks 0")
    attempts = call(wh_server, key, "GET", f"/v1/events/{event.id}/attempts").json()["data"]
    assert [a["succeeded"] for a in attempts] == [True, False]
    assert attempts[1]["status_code"] is None and "timed out" in attempts[1]["error"]


def test_connection_refused_counts_as_failure(wh_server, key):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stripe.WebhookEndpoint.create(url=f"http://127.0.0.1:{port}/nobody", enabled_events=["*"])
    stripe.Customer.create(name="nobody home")
    event = stripe.Event.list().data[0]
    attempts = wait_until(
        lambda: call(wh_server, key, "GET", f"/v1/events/{event.id}/attempts").json()["data"], what="an attempt")
    assert attempts[0]["status_code"] is None and attempts[0]["error"]
    assert attempts[0]["succeeded"] is False


def test_enabled_events_filter_and_disabled_endpoints(key, receiver):
    endpoint(receiver, "/created", ["customer.created"])
    endpoint(receiver, "/updated", ["customer.updated", "charge.succeeded"])
    off = endpoint(receiver, "/off")
    stripe.WebhookEndpoint.modify(off.id, disabled=True)
    c = stripe.Customer.create(name="filtered")
    stripe.Customer.modify(c.id, name="filtered again")
    stripe.Customer.delete(c.id)
    receiver.wait(lambda: receiver.verified("/created") and receiver.verified("/updated"))
    time.sleep(0.7)
    assert types_of(receiver.verified("/created")) == ["customer.created"]
    assert types_of(receiver.verified("/updated")) == ["customer.updated"]
    assert receiver.on("/off") == []
    # An event only goes to endpoints that existed when it happened.
    late = endpoint(receiver, "/late")
    time.sleep(0.7)
    assert receiver.on("/late") == []
    # Events have a pending webhook per endpoint they went to.
    events = {e.type: e for e in stripe.Event.list().data}
    assert events["customer.deleted"].pending_webhooks == 0
    assert late.status == "enabled"


def test_events_api(wh_server, key):
    a = stripe.Customer.create(name="a")
    b = stripe.Customer.create(name="b")
    stripe.Customer.modify(a.id, name="a2")
    stripe.Customer.delete(b.id)
    all_events = stripe.Event.list()
    validate_list("event", all_events)
    assert all_events.url == "/v1/events"
    assert [e.type for e in all_events.data] == ["customer.deleted", "customer.updated", "customer.created",
                                                 "customer.created"]
    for e in all_events.data:
        assert re.fullmatch(r"evt_[0-9A-Za-z]{24}", e.id)
        assert e.api_version == "2024-04-10" and e.livemode is False
        assert e["request"]["id"].startswith("req_")
        validate("event", e)
    assert len(stripe.Event.list(type="customer.created").data) == 2
    assert len(stripe.Event.list(type="customer.*").data) == 4
    assert len(stripe.Event.list(type="*").data) == 4
    assert stripe.Event.list(type="charge.*").data == []
    assert [e.type for e in stripe.Event.list(types=["customer.updated", "customer.deleted"]).data] == [
        "customer.deleted", "customer.updated"]
    first = all_events.data[-1]
    assert stripe.Event.retrieve(first.id).id == first.id
    assert [e.id for e in stripe.Event.list(created={"gte": first.created}).data] == [e.id for e in all_events.data]
    assert [e.id for e in stripe.Event.list(limit=3).auto_paging_iter()] == [e.id for e in all_events.data]
    page = stripe.Event.list(limit=2, starting_after=all_events.data[1].id)
    assert [e.id for e in page.data] == [e.id for e in all_events.data[2:]] and page.has_more is False
    back = stripe.Event.list(limit=2, ending_before=all_events.data[3].id)
    assert [e.id for e in back.data] == [e.id for e in all_events.data[1:3]]

    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Event.retrieve("evt_missing")
    assert e.value.http_status == 404 and e.value.code == "resource_missing"
    r = call(wh_server, key, "GET", "/v1/events", params={"type": "customer.created", "types[]": "customer.updated"})
    assert r.status_code == 400
    validate_error(r.json())
    r = call(wh_server, key, "GET", "/v1/events", params={"type": "*.created"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "type"
    r = call(wh_server, key, "GET", "/v1/events", params={"bogus": "1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "bogus"
    r = call(wh_server, key, "GET", "/v1/events", params={"starting_after": "evt_missing"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "starting_after"

    # Kept 30 days: a month later (the account's clock) they are gone.
    r = call(wh_server, key, "POST", "/v1/test_helpers/clock/advance", data={"seconds": 31 * 24 * 3600})
    assert r.status_code == 200, r.text
    assert stripe.Event.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Event.retrieve(first.id)
    c = stripe.Customer.create(name="new month")
    assert [e.data.object.id for e in stripe.Event.list().data] == [c.id]


def test_accounts_do_not_see_each_other(wh_server, key, receiver):
    endpoint(receiver, "/mine")
    other_key, _ = wh_server.new_account()
    stripe.Customer.create(name="theirs", api_key=other_key)
    mine = stripe.Customer.create(name="mine")
    receiver.wait(lambda: receiver.verified("/mine"))
    time.sleep(0.5)
    assert [e.data.object.id for e in receiver.verified("/mine")] == [mine.id]
    theirs = stripe.Event.list(api_key=other_key).data[0]
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Event.retrieve(theirs.id)
    assert stripe.WebhookEndpoint.list(api_key=other_key).data == []


# ---------------------------------------------------------------------------
# Crash safety: what was committed is delivered, across a SIGKILL and a restart.


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_committed_event_survives_a_crash(backend, tmp_path_factory):
    srv, drop = start_server(backend, tmp_path_factory, schedule=",".join(["0.5"] + ["1"] * 30))
    try:
        key, _ = srv.new_account()
        stripe.api_key, stripe.api_base = key, srv.url
        with socket.socket() as s:  # a port nobody listens on yet
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        we = stripe.WebhookEndpoint.create(url=f"http://127.0.0.1:{port}/hook", enabled_events=["*"])
        acked = [stripe.Customer.create(name=f"c{i}").id for i in range(25)]
        srv.stop(kill=True)

        srv.start()
        receiver = Receiver(port, secrets={"/hook": we.secret})
        try:
            committed = {e.id for e in stripe.Event.list(limit=100).auto_paging_iter()}
            events_of_acked = {e.data.object.id for e in stripe.Event.list(limit=100).auto_paging_iter()}
            assert set(acked) <= events_of_acked, "every acknowledged customer has its event"
            receiver.wait(lambda: committed <= {e.id for e in receiver.verified("/hook")}, timeout=45)
            assert not [d["error"] for d in receiver.deliveries if d["error"]]
            wait_until(lambda: not stripe.Event.list(delivery_success=False).data, timeout=15,
                       what="every event marked delivered")
        finally:
            receiver.close()
    finally:
        srv.stop()
        if drop:
            drop()


def test_two_nodes_share_delivery_and_deliver_each_event_once(tmp_path_factory):
    """Two servers on one PostgreSQL database: claims skip each other's rows."""
    base = postgres_url()
    if not base:
        pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
    database, drop = fresh_postgres_database(base)
    args = ["--webhook-retry-schedule", FAST_RETRIES, "--webhook-timeout", TIMEOUT]
    nodes = [Server(database, tmp_path_factory.mktemp("node"), extra_args=args).start() for _ in range(2)]
    receiver = Receiver()
    try:
        key, _ = nodes[0].new_account()
        we = call(nodes[1], key, "POST", "/v1/webhook_endpoints",
                  data={"url": receiver.url("/both"), "enabled_events[]": "*"}).json()
        receiver.secrets["/both"] = we["secret"]
        for i in range(40):
            r = call(nodes[i % 2], key, "POST", "/v1/customers", data={"name": f"c{i}"})
            assert r.status_code == 200, r.text
        receiver.wait(lambda: len({e.id for e in receiver.verified("/both")}) == 40, timeout=30)
        time.sleep(1)
        ids = [e.id for e in receiver.verified("/both")]
        assert len(ids) == 40, "no event was delivered twice"
        assert not [d["error"] for d in receiver.deliveries if d["error"]]
    finally:
        receiver.close()
        for node in nodes:
            node.stop()
        drop()


# ---------------------------------------------------------------------------
# payground listen / payground trigger, as subprocesses.


class Listen:
    def __init__(self, server, key, forward_to, events=None):
        args = [str(BINARY), "listen", "--forward-to", forward_to, "--api-key", key, "--api-base", server.url]
        if events:
            args += ["--events", events]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.ready = threading.Event()
        self.secret = None

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.match(r"Ready! Your webhook signing secret is (whsec_[0-9A-Za-z]{32}) \(\^C to quit\)$", line.strip())
                if m:
                    self.secret = m.group(1)
                    self.ready.set()
            self.ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert self.ready.wait(15) and self.secret, "listen did not get ready:\n" + "\n".join(self.lines)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


def trigger(server, key, event):
    return subprocess.run([str(BINARY), "trigger", event, "--api-key", key, "--api-base", server.url],
                          capture_output=True, text=True, timeout=30)


def test_listen_forwards_what_trigger_causes(wh_server, key, receiver):
    url = receiver.url("/listen")
    listen = Listen(wh_server, key, url)
    try:
        receiver.secrets["/listen"] = listen.secret
        receiver.plan["/listen"] = [500]  # the first forward fails; the server retries it
        for event in ["customer.created", "customer.updated", "customer.deleted"]:
            done = trigger(wh_server, key, event)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"Running fixture for: {event}" in done.stdout
            assert re.search(r"POST /v1/customers -> customer cus_[0-9A-Za-z]{24}", done.stdout), done.stdout
            assert "Trigger succeeded!" in done.stdout
        receiver.wait(lambda: len(receiver.verified("/listen")) == 5)
        time.sleep(0.5)
        got = receiver.verified("/listen")
        assert types_of(got) == ["customer.created"] * 3 + ["customer.deleted", "customer.updated"]
        # Each event once (the failed forward was retried, not duplicated).
        assert len({e.id for e in got}) == 5
        out = "\n".join(listen.lines)
        for e in got:
            assert re.search(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d   --> {re.escape(e.type)} \[{e.id}\]$", out, re.M), out
            assert re.search(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  <--  \[200\] POST {re.escape(url)} \[{e.id}\]$", out, re.M), out
        assert "  <--  [500] POST " in out
        # A listener is no webhook endpoint: invisible there, and it does not hold events pending.
        assert stripe.WebhookEndpoint.list().data == []
        assert all(e.pending_webhooks == 0 for e in stripe.Event.list().data)
        assert stripe.Event.list(delivery_success=False).data == []
    finally:
        assert listen.stop() == 0

    # The secret is stable for the account and the URL, so CI can set it once.
    again = Listen(wh_server, key, url)
    try:
        assert again.secret == listen.secret
    finally:
        again.stop()
    other = Listen(wh_server, key, receiver.url("/only-deletes"), events="customer.deleted")
    try:
        assert other.secret != listen.secret
        receiver.secrets["/only-deletes"] = other.secret
        assert trigger(wh_server, key, "customer.deleted").returncode == 0
        receiver.wait(lambda: receiver.verified("/only-deletes"))
        time.sleep(0.5)
        assert types_of(receiver.verified("/only-deletes")) == ["customer.deleted"]
    finally:
        other.stop()
    # Stopped listeners get nothing.
    before = len(receiver.on("/listen"))
    assert trigger(wh_server, key, "customer.created").returncode == 0
    time.sleep(0.7)
    assert len(receiver.on("/listen")) == before


def test_trigger_refuses_unknown_events(wh_server, key):
    done = trigger(wh_server, key, "customer.exploded")
    assert done.returncode != 0
    assert "customer.created" in done.stderr, done.stderr
    bad_key = trigger(wh_server, "sk_test_wrong_key_123456", "customer.created")
    assert bad_key.returncode != 0 and "401" in bad_key.stderr


TRIGGER_EVENTS = [
    "customer.created", "customer.updated", "customer.deleted",
    "payment_intent.created", "payment_intent.succeeded", "payment_intent.canceled",
    "payment_intent.amount_capturable_updated", "payment_intent.payment_failed",
    "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded", "refund.created",
]


def test_trigger_causes_each_event_it_knows(wh_server, key):
    for event in TRIGGER_EVENTS:
        before = len(stripe.Event.list(type=event, limit=100).data)
        done = trigger(wh_server, key, event)
        assert done.returncode == 0, f"{event}: {done.stdout}{done.stderr}"
        assert "Trigger succeeded!" in done.stdout, done.stdout
        assert len(stripe.Event.list(type=event, limit=100).data) > before, f"{event}: {done.stdout}"
    failed = trigger(wh_server, key, "payment_intent.payment_failed")
    assert "declined as intended: generic_decline" in failed.stdout, failed.stdout
