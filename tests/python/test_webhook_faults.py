"""Webhook endpoints that hang, reset connections or answer 500 are retried on
`--webhook-retry-schedule` without slowing the API.

One server per backend, retry schedule 0.5,1,2 s and a 1 s attempt timeout. First
a baseline: N confirmed payments through stripe-python on an account whose only
endpoint is a healthy receiver. Then the same N payments on an account that has,
beside the healthy receiver, three faulty endpoints on 127.0.0.1: one that accepts
connections and never answers, one that resets every connection, one that answers
500. Asserted and printed (-s):

- the API's median latency with the faulty endpoints stays within 3x + 20 ms of the
  baseline (and the 95th percentile within 3x + 50 ms);
- the healthy receiver still gets every event (at least once), within 1 s of the
  last payment: the hanging endpoint holds at most its share of the node's delivery
  slots (`MIN_SHARE`, 4: a share grows only with successes), never all of them;
- every event reaches the resetting and the 500 endpoint exactly 1 + 3 times, each
  retry no sooner than its delay in the schedule after the previous attempt ended
  and less than 1 s later, with the failure recorded (a connection error, status
  500), and then gives up: `pending_webhooks` stays at 3 and the Events API lists it
  under `delivery_success=false`;
- the hanging endpoint never has more than 4 attempts in flight and keeps its 4
  busy: its 480 one-second attempts take about 120 s by design, so only the
  first ones are checked (numbered from 1, each `timed out`, none early). Its whole
  schedule is `test_webhooks.py::test_timeouts_count_as_failures`."""
import json
import socket
import statistics
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests
import stripe

from server import Server, WebhookHTTPServer, fresh_postgres_database, postgres_url, wait_until

SCHEDULE = [0.5, 1.0, 2.0]
TIMEOUT_S = 1.0
PAYMENTS = 40
EVENTS_PER_PAYMENT = 3  # payment_intent.created, charge.succeeded, payment_intent.succeeded
BUDGET_S = 60
# `MIN_SHARE` in src/jobs/delivery.rs: an endpoint that never succeeds keeps it; one
# node, so one share.
PER_ENDPOINT = 4


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fault_server(request, tmp_path_factory):
    drop = None
    if request.param == "postgres":
        base = postgres_url()
        if not base:
            pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
        database, drop = fresh_postgres_database(base)
    else:
        database = f"sqlite:{tmp_path_factory.mktemp('sqlite') / 'payground.db'}"
    srv = Server(database, tmp_path_factory.mktemp("work"), extra_args=[
        "--webhook-retry-schedule", ",".join(str(s) for s in SCHEDULE),
        "--webhook-timeout", str(TIMEOUT_S),
    ]).start()
    srv.backend = request.param
    yield srv
    srv.stop()
    if drop:
        drop()


class RawEndpoint:
    """A TCP listener on 127.0.0.1 that misbehaves: `hang` accepts and never answers
    (holding the connection open), `reset` reads the request and resets the
    connection (SO_LINGER 0)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/{self.mode}"

    def serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            if self.mode == "hang":
                self.held.append(conn)
                continue
            try:
                conn.settimeout(1)
                conn.recv(65536)
            except OSError:
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self):
        self.stopped.set()
        self.thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


class HttpEndpoint:
    """Answers every POST with `status`; records what arrived and when."""

    def __init__(self, status):
        self.received = []  # (monotonic time, event id, type)
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(raw)
                with endpoint.lock:
                    endpoint.received.append((time.monotonic(), event["id"], event["type"]))
                body = b"ok" if status < 300 else b"broken"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = WebhookHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def event_ids(self):
        with self.lock:
            return {e for _, e, _ in self.received}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pay(client, count):
    """`count` confirmed card payments, one after another; their latencies (s) and ids."""
    latencies, ids = [], []
    for i in range(count):
        start = time.perf_counter()
        pi = client.payment_intents.create(params={
            "amount": 1000 + i, "currency": "usd", "payment_method": "pm_card_visa",
            "payment_method_types": ["card"], "confirm": True,
        })
        latencies.append(time.perf_counter() - start)
        assert pi.status == "succeeded"
        ids.append(pi.id)
    return latencies, ids


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def attempts_of(server, key, event_id):
    r = requests.get(f"{server.url}/v1/events/{event_id}/attempts", params={"limit": 100},
                     headers={"Authorization": f"Bearer {key}"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def account_client(server):
    key, _ = server.new_account()
    client = stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=0,
                                 http_client=stripe.RequestsClient())
    return key, client


def test_faulty_endpoints_are_retried_on_schedule_without_slowing_the_api(fault_server):
    started = time.monotonic()
    healthy = HttpEndpoint(200)
    failing = HttpEndpoint(500)
    hang, reset = RawEndpoint("hang"), RawEndpoint("reset")
    try:
        # Baseline: a healthy endpoint only (after a few warm-up payments).
        base_key, base = account_client(fault_server)
        base.webhook_endpoints.create(params={"url": healthy.url("/baseline"), "enabled_events": ["*"]})
        pay(base, 5)
        baseline, _ = pay(base, PAYMENTS)
        base_done = time.monotonic()
        base_events = {e.id for e in base.events.list(params={"limit": 100}).auto_paging_iter()}
        wait_until(lambda: base_events <= healthy.event_ids(), 20, "the baseline's events")
        base_lag = time.monotonic() - base_done

        # The same payments with three faulty endpoints beside the healthy one.
        key, client = account_client(fault_server)
        client.webhook_endpoints.create(params={"url": healthy.url("/faults"), "enabled_events": ["*"]})
        faulty = {}
        for name, url in (("hang", hang.url()), ("reset", reset.url()), ("500", failing.url("/500"))):
            faulty[name] = client.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]}).id
        faults_started = time.monotonic()
        with_faults, _ = pay(client, PAYMENTS)
        api_done = time.monotonic()

        events = list(client.events.list(params={"limit": 100}).auto_paging_iter())
        assert len(events) == PAYMENTS * EVENTS_PER_PAYMENT
        event_ids = {e.id for e in events}
        wait_until(lambda: event_ids <= healthy.event_ids(), 20, "the healthy endpoint to get every event")
        healthy_done = time.monotonic()

        # Every event: 1 + 3 attempts at the resetting and the 500 endpoint, then
        # they give up; the hanging one works through its backlog 4 at a time.
        sample = [e.id for e in events]
        expected = 1 + len(SCHEDULE)
        schedule_time = sum(SCHEDULE) + expected * TIMEOUT_S
        quick = {name: faulty[name] for name in ("reset", "500")}
        healthy_id = next(we.id for we in client.webhook_endpoints.list().data if we.url == healthy.url("/faults"))

        def all_attempted():
            return all(len([a for a in attempts_of(fault_server, key, e) if a["webhook_endpoint"] in quick.values()])
                       == expected * len(quick) for e in sample)
        wait_until(all_attempted, schedule_time + 25, "every retry of every event")
        retries_done = time.monotonic()
        time.sleep(SCHEDULE[-1] + TIMEOUT_S)  # nothing after the last retry
        checked_at = time.monotonic()
        hang_connections = hang.connections

        lateness = []  # how long after its due time each retry started (s)
        errors = {name: set() for name in faulty}
        hang_attempts = []
        for event_id in sample:
            attempts = attempts_of(fault_server, key, event_id)
            for name, endpoint_id in faulty.items():
                mine = sorted((a for a in attempts if a["webhook_endpoint"] == endpoint_id),
                              key=lambda a: a["attempt"])
                if name == "hang":
                    assert [a["attempt"] for a in mine] == list(range(1, len(mine) + 1)), mine
                    assert len(mine) <= expected, mine
                    hang_attempts.extend(mine)
                else:
                    assert [a["attempt"] for a in mine] == list(range(1, expected + 1)), (name, mine)
                assert not any(a["succeeded"] for a in mine)
                for a in mine:
                    if name == "500":
                        assert a["status_code"] == 500 and a["response_body"] == "broken", a
                    else:
                        assert a["status_code"] is None and a["error"], a
                    errors[name].add((a["error"] or f"status {a['status_code']}").split(":")[0][:60])
                for prev, nxt, delay in zip(mine, mine[1:], SCHEDULE):
                    due_ms = prev["attempted_at_ms"] + prev["latency_ms"] + delay * 1000
                    late = (nxt["attempted_at_ms"] - due_ms) / 1000
                    assert late >= -0.05, f"{name} retry {nxt['attempt']} came {-late:.2f} s early"
                    if name != "hang":
                        lateness.append(late)
            ours = [a for a in attempts if a["webhook_endpoint"] == healthy_id]
            assert ours and ours[0]["succeeded"]
        for name in ("hang",):
            assert all("timed out" in e for e in errors[name]), errors
        pending = {client.events.retrieve(e).pending_webhooks for e in sample[:10]}
        assert pending == {len(faulty)}, pending
        failed = {e.id for e in client.events.list(params={"delivery_success": False, "limit": 100}).auto_paging_iter()}
        assert failed == event_ids

        # The hanging endpoint's attempts, as recorded: never more than its share at
        # once, and that share kept busy (about 4 one-second attempts a second).
        edges = sorted([(a["attempted_at_ms"], 1) for a in hang_attempts]
                       + [(a["attempted_at_ms"] + a["latency_ms"], -1) for a in hang_attempts])
        overlap = peak = 0
        for _, step in edges:
            overlap += step
            peak = max(peak, overlap)
        hang_rate = hang_connections / (checked_at - faults_started)
        b_med, f_med = statistics.median(baseline), statistics.median(with_faults)
        b_p95, f_p95 = percentile(baseline, 0.95), percentile(with_faults, 0.95)
        lateness.sort()
        print(f"\n[{fault_server.backend}] {PAYMENTS} confirmed payments: median {b_med * 1000:.1f} ms, "
              f"p95 {b_p95 * 1000:.1f} ms with a healthy endpoint; median {f_med * 1000:.1f} ms, "
              f"p95 {f_p95 * 1000:.1f} ms with hanging, resetting and 500 endpoints too")
        print(f"[{fault_server.backend}] {len(sample)} events x 2 quick faulty endpoints x {expected} attempts = "
              f"{len(sample) * 2 * expected} failed attempts (reset: {reset.connections} reset, "
              f"500: {len(failing.received)} answered); retry lateness median "
              f"{statistics.median(lateness) * 1000:.0f} ms, p95 {percentile(lateness, 0.95) * 1000:.0f} ms, "
              f"max {lateness[-1] * 1000:.0f} ms; errors {errors}")
        print(f"[{fault_server.backend}] hanging endpoint: {hang_connections} connections in "
              f"{checked_at - faults_started:.1f} s ({hang_rate:.1f}/s), at most {peak} attempts in flight, "
              f"{len(hang_attempts)} recorded")
        print(f"[{fault_server.backend}] healthy endpoint had every event {healthy_done - api_done:.1f} s after the "
              f"last payment ({base_lag:.1f} s without the faulty endpoints); every retry done "
              f"{retries_done - api_done:.1f} s after (schedule + timeouts: {schedule_time:.1f} s)")
        # The hanging endpoint holds at most its share of the node's delivery slots,
        # so the healthy endpoint and the other endpoints' retries do not wait for it.
        assert healthy_done - api_done < 1.0, healthy_done - api_done
        # Retries start when due: an endpoint whose whole share was in flight gets its
        # waiting retries claimed as its attempts end, not at the next poll (0.5 s).
        assert lateness[-1] < 0.5, lateness[-1]
        assert peak <= PER_ENDPOINT, peak
        assert hang_rate > 0.6 * PER_ENDPOINT / TIMEOUT_S, hang_rate
        assert f_med < 3 * b_med + 0.020, (b_med, f_med)
        assert f_p95 < 3 * b_p95 + 0.050, (b_p95, f_p95)
        assert time.monotonic() - started < BUDGET_S
    finally:
        for endpoint in (healthy, failing, hang, reset):
            endpoint.close()
