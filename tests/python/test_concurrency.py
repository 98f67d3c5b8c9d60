"""Concurrent writes to one PaymentIntent leave only states Stripe allows.

50 threads, each with its own stripe-python StripeClient, wait on a barrier and
then all at once confirm, capture (in full or in part), cancel or refund (by charge
or by payment_intent, in full or in part) one manual-capture PaymentIntent; several
PaymentIntents in a row from a fixed seed. Then an automatic-capture PaymentIntent
is confirmed by 10 threads at once and refunded by 50 concurrent partial refunds
that together ask for more than its amount. Every answer must be a 200 or a Stripe
4xx with a code that fits (never a 5xx), and afterwards:

- at most one charge per PaymentIntent, and only if one confirm succeeded;
- canceled: nothing captured, no refunds; captured: amount_captured is what the one
  successful capture asked for, refunds never exceed it, and the charge's
  `amount_refunded` / `refunded` agree with the refunds list (plus the uncaptured
  part that a partial capture releases); the PaymentIntent agrees with its charge;
- a refund refused as too large or already refunded was rightly refused;
- the account's balance transactions add up: one per captured charge (net = amount
  - 2.9% - 30) and one per refund, nothing else;
- events: each state change exactly once, no duplicates.

Runs on SQLite and, with PAYGROUND_TEST_DATABASE_URL, PostgreSQL. Figures: -s."""
import collections
import random
import statistics
import threading
import time

import stripe

THREADS = 50
ROUNDS = 8
SEED = 20240410
PER_BACKEND_BUDGET_S = 60


def card_fee(amount):
    """Stripe's card pricing as payground applies it: 2.9% rounded half up, + 30."""
    return (amount * 29 + 500) // 1000 + 30


def client_for(server, key):
    """A client of its own (the default one also builds an httpx client for async
    calls, slow to make by the hundred)."""
    return stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=0,
                               http_client=stripe.RequestsClient())


class Outcome:
    def __init__(self, op, params):
        self.op, self.params = op, params
        self.status, self.code, self.obj, self.error, self.latency = None, None, None, None, None

    def __repr__(self):
        return f"<{self.op} {self.params} -> {self.status} {self.code or ''} {self.error or ''}>"


def run_at_once(server, key, ops, jitter=0.0, rng=None):
    """Runs each `(name, params, fn(client) -> object)` on its own thread, all released
    by one barrier (each after up to `jitter` seconds); returns their Outcomes."""
    outcomes = [Outcome(name, params) for name, params, _ in ops]
    delays = [rng.uniform(0, jitter) if jitter else 0.0 for _ in ops]
    clients = [client_for(server, key) for _ in ops]
    barrier = threading.Barrier(len(ops))

    def worker(i):
        fn = ops[i][2]
        out = outcomes[i]
        barrier.wait(timeout=30)
        if delays[i]:
            time.sleep(delays[i])
        start = time.perf_counter()
        try:
            out.obj = fn(clients[i])
            out.status = 200
        except stripe.StripeError as e:
            out.status = e.http_status
            # stripe-python leaves `code` unset on a 429; the envelope has it.
            out.code = e.code or ((e.json_body or {}).get("error") or {}).get("code")
            out.error = e.user_message or str(e)
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            out.error = repr(e)
        out.latency = time.perf_counter() - start

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(ops))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return outcomes


def latest_charge_of(client, pi_id):
    return client.payment_intents.retrieve(pi_id).latest_charge


# Which refusals each operation may meet, whatever the interleaving.
ALLOWED_CODES = {
    "confirm": {"payment_intent_unexpected_state"},
    "capture": {"payment_intent_unexpected_state", "amount_too_large"},
    "charge_capture": {"payment_intent_unexpected_state", "charge_already_captured", "amount_too_large"},
    "cancel": {"payment_intent_unexpected_state"},
    "refund": {"charge_not_refundable", "charge_already_refunded", "amount_too_large"},
}


def mixed_ops(rng, pi_id, amount):
    """50 random confirm / capture / cancel / refund requests for one PaymentIntent."""
    ops = []
    for _ in range(THREADS):
        kind = rng.choices(["confirm", "capture", "cancel", "refund"], weights=[3, 3, 0.4, 5])[0]
        if kind == "confirm":
            ops.append(("confirm", {}, lambda c: c.payment_intents.confirm(pi_id)))
        elif kind == "capture":
            r = rng.random()
            if r < 0.3:
                ops.append(("capture", {}, lambda c: c.payment_intents.capture(pi_id)))
            elif r < 0.85:
                part = rng.randint(50, amount)
                ops.append(("capture", {"amount_to_capture": part},
                            lambda c, p=part: c.payment_intents.capture(pi_id, params={"amount_to_capture": p})))
            elif r < 0.92:
                over = amount + rng.randint(1, 500)
                ops.append(("capture", {"amount_to_capture": over},
                            lambda c, p=over: c.payment_intents.capture(pi_id, params={"amount_to_capture": p})))
            else:
                # The charge's own capture route; the charge id is looked up first.
                def charge_capture(c):
                    charge = latest_charge_of(c, pi_id)
                    if charge is None:  # not confirmed yet: capture the intent instead
                        return c.payment_intents.capture(pi_id)
                    return c.charges.capture(charge)
                ops.append(("charge_capture", {}, charge_capture))
        elif kind == "cancel":
            ops.append(("cancel", {}, lambda c: c.payment_intents.cancel(pi_id)))
        else:
            params = {}
            if rng.random() < 0.7:
                params["amount"] = rng.randint(1, amount // 3)
            by_charge = rng.random() < 0.4

            def refund(c, params=params, by_charge=by_charge):
                p = dict(params)
                charge = latest_charge_of(c, pi_id) if by_charge else None
                if charge is not None:
                    p["charge"] = charge
                else:
                    p["payment_intent"] = pi_id
                return c.refunds.create(params=p)
            ops.append(("refund", dict(params, by="charge" if by_charge else "payment_intent"), refund))
    return ops


def check_answers(outcomes):
    for o in outcomes:
        assert o.status is not None, f"no HTTP answer: {o}"
        assert o.status < 500, f"server error: {o}"
        if o.status != 200:
            assert o.status in (400, 402), o
            assert o.code in ALLOWED_CODES[o.op], f"unexpected refusal: {o}"


def list_all(resource, **params):
    return list(resource.list(params=dict(params, limit=100)).auto_paging_iter())


def check_payment_intent(client, pi_id, amount, outcomes, automatic=False):
    """The end state of one PaymentIntent against what its requests were told."""
    ok = collections.defaultdict(list)
    for o in outcomes:
        if o.status == 200:
            ok[o.op].append(o)
    pi = client.payment_intents.retrieve(pi_id)
    charges = list_all(client.charges, payment_intent=pi_id)
    refunds = list_all(client.refunds, payment_intent=pi_id)
    captures = ok["capture"] + ok["charge_capture"]
    assert len(ok["confirm"]) <= 1 and len(captures) <= 1 and len(ok["cancel"]) <= 1, dict(ok)
    assert len(charges) == len(ok["confirm"]), (charges, ok["confirm"])
    assert not (captures and ok["cancel"]), "captured and canceled"
    assert {r.id for r in refunds} == {o.obj.id for o in ok["refund"]}, "refunds list vs answers"
    refunded = sum(r.amount for r in refunds)
    assert all(r.status == "succeeded" for r in refunds)
    state = {"status": pi.status, "refunds": len(refunds), "refunded": refunded}

    if not charges:
        assert pi.status in ("requires_confirmation", "canceled"), pi.status
        assert pi.latest_charge is None and not captures and not refunds
        assert (pi.status == "canceled") == bool(ok["cancel"])
        return state, None
    charge = charges[0]
    assert pi.latest_charge == charge.id
    assert charge.status == "succeeded" and charge.paid and charge.amount == amount
    if pi.status == "canceled":
        assert ok["cancel"] and not captures and not refunds
        assert not charge.captured and charge.amount_captured == 0
        assert charge.refunded and charge.amount_refunded == amount, "a canceled hold is released"
        assert pi.amount_received == 0 and pi.amount_capturable == 0
        assert charge.balance_transaction is None
    elif pi.status == "requires_capture":
        assert not ok["cancel"] and not captures and not refunds
        assert not charge.captured and charge.amount_captured == 0 and charge.amount_refunded == 0
        assert pi.amount_capturable == amount and pi.amount_received == 0
    else:
        assert pi.status == "succeeded", pi.status
        assert len(captures) == (0 if automatic else 1) and not ok["cancel"]
        asked = captures[0].params.get("amount_to_capture", amount) if captures else amount
        assert charge.captured and charge.amount_captured == asked <= amount
        assert pi.amount_received == asked and pi.amount_capturable == 0
        assert refunded <= charge.amount_captured, f"refunds {refunded} > captured {charge.amount_captured}"
        released = amount - charge.amount_captured
        assert charge.amount_refunded == released + refunded, (charge.amount_refunded, released, refunded)
        assert charge.refunded == (charge.amount_refunded == amount)
        remaining = charge.amount_captured - refunded
        for o in outcomes:
            if o.op == "refund" and o.code == "amount_too_large":
                assert o.params["amount"] > remaining, f"wrongly refused: {o}, remaining {remaining}"
            if o.op == "refund" and o.code == "charge_already_refunded":
                assert remaining == 0, f"wrongly refused: {o}, remaining {remaining}"
        state["captured"] = charge.amount_captured
    for o in outcomes:
        if o.op in ("capture", "charge_capture") and o.code == "amount_too_large":
            assert o.params.get("amount_to_capture", 0) > amount, f"wrongly refused: {o}"
    return state, charge


def check_balance(client, charges, refunds):
    """Every balance transaction of the account, against the charges and refunds."""
    txns = list_all(client.balance_transactions)
    by_source = collections.defaultdict(list)
    for t in txns:
        by_source[t.source].append(t)
        assert t.net == t.amount - t.fee, t
    captured = [c for c in charges if c.captured]
    for c in captured:
        (t,) = by_source[c.id]
        assert t.type == "charge" and t.id == c.balance_transaction
        assert t.amount == c.amount_captured and t.fee == card_fee(c.amount_captured), t
    for r in refunds:
        (t,) = by_source[r.id]
        assert t.type == "refund" and t.id == r.balance_transaction
        assert t.amount == -r.amount and t.fee == 0, t
    assert len(txns) == len(captured) + len(refunds), "balance transactions of nothing"
    charged = sum(t.amount for t in txns if t.type == "charge")
    refunded = -sum(t.amount for t in txns if t.type == "refund")
    fees = sum(t.fee for t in txns)
    assert charged == sum(c.amount_captured for c in captured)
    assert refunded == sum(r.amount for r in refunds)
    assert sum(t.net for t in txns) == charged - refunded - fees
    return {"transactions": len(txns), "charged": charged, "refunded": refunded, "fees": fees,
            "net": charged - refunded - fees}


def check_events(client, expected):
    """`expected[object id][type]` = count; every other (object, type) pair must be absent."""
    events = list_all(client.events)
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event listed twice"
    got = collections.defaultdict(collections.Counter)
    for e in events:
        got[e.data.object.id][e.type] += 1
    for obj, counts in expected.items():
        assert dict(got[obj]) == {t: n for t, n in counts.items() if n}, (obj, dict(got[obj]), counts)
    assert set(got) <= set(expected), f"events of unexpected objects: {set(got) - set(expected)}"
    return len(events)


def test_concurrent_operations_on_one_payment_intent(server):
    key, _ = server.new_account()
    client = client_for(server, key)
    rng = random.Random(SEED)
    started = time.perf_counter()
    latencies, answers, end_states = [], collections.Counter(), collections.Counter()
    charges, refunds, expected_events = [], [], {}

    # (a) Manual capture: confirm / capture / cancel / refund all at once.
    for round_no in range(ROUNDS):
        amount = rng.randint(1000, 9000)
        pi = client.payment_intents.create(params={
            "amount": amount, "currency": "usd", "payment_method": "pm_card_visa",
            "payment_method_types": ["card"], "capture_method": "manual",
        })
        if round_no % 2 == 1:  # some start already authorized
            client.payment_intents.confirm(pi.id)
        ops = mixed_ops(rng, pi.id, amount)
        jitter = 0.05 if round_no % 4 >= 2 else 0.0  # spread some rounds over 50 ms
        outcomes = run_at_once(server, key, ops, jitter=jitter, rng=rng)
        if round_no % 2 == 1:
            # The confirm made before the barrier counts as this PaymentIntent's one confirm.
            pre = Outcome("confirm", {})
            pre.status = 200
            outcomes.append(pre)
        check_answers(outcomes)
        state, charge = check_payment_intent(client, pi.id, amount, outcomes)
        latencies += [o.latency for o in outcomes if o.latency is not None]
        answers.update(f"{o.op}:{o.status if o.status == 200 else o.code}" for o in outcomes)
        end_states[state["status"]] += 1
        pi_refunds = list_all(client.refunds, payment_intent=pi.id)
        refunds += pi_refunds
        final = client.payment_intents.retrieve(pi.id)
        confirmed = charge is not None
        expected_events[pi.id] = {
            "payment_intent.created": 1,
            "payment_intent.amount_capturable_updated": int(confirmed),
            "payment_intent.succeeded": int(final.status == "succeeded"),
            "payment_intent.canceled": int(final.status == "canceled"),
        }
        if charge is not None:
            charges.append(charge)
            expected_events[charge.id] = {
                "charge.succeeded": 1,
                "charge.captured": int(charge.captured),
                # a canceled hold is released as a refund of the whole charge
                "charge.refunded": len(pi_refunds) + int(final.status == "canceled"),
            }
        for r in pi_refunds:
            expected_events[r.id] = {"refund.created": 1}
        print(f"[{server.backend}] round {round_no}: amount {amount}, end {state}")

    # (b) Automatic capture: 10 concurrent confirms, then 50 partial refunds worth
    # about twice the amount.
    amount = 5000
    pi = client.payment_intents.create(params={
        "amount": amount, "currency": "usd", "payment_method": "pm_card_visa",
        "payment_method_types": ["card"],
    })
    confirms = run_at_once(server, key, [("confirm", {}, lambda c: c.payment_intents.confirm(pi.id))] * 10)
    check_answers(confirms)
    assert [o.obj.status for o in confirms if o.status == 200] == ["succeeded"], confirms
    charge_id = client.payment_intents.retrieve(pi.id).latest_charge
    ops = []
    for i in range(THREADS):
        part = rng.randint(100, 300)
        target = {"charge": charge_id} if i % 2 else {"payment_intent": pi.id}
        ops.append(("refund", {"amount": part, **target},
                    lambda c, p=dict(target, amount=part): c.refunds.create(params=p)))
    outcomes = run_at_once(server, key, ops)
    check_answers(outcomes)
    asked = sum(params["amount"] for _, params, _ in ops)
    assert asked > amount
    state, charge = check_payment_intent(client, pi.id, amount, outcomes + confirms, automatic=True)
    assert state["status"] == "succeeded" and state["refunded"] <= amount
    latencies += [o.latency for o in confirms + outcomes]
    answers.update(f"{o.op}:{o.status if o.status == 200 else o.code}" for o in confirms + outcomes)
    pi_refunds = list_all(client.refunds, payment_intent=pi.id)
    charges.append(charge)
    refunds += pi_refunds
    expected_events[pi.id] = {"payment_intent.created": 1, "payment_intent.succeeded": 1}
    expected_events[charge.id] = {"charge.succeeded": 1, "charge.refunded": len(pi_refunds)}
    for r in pi_refunds:
        expected_events[r.id] = {"refund.created": 1}
    print(f"[{server.backend}] auto capture: {len(pi_refunds)} of {THREADS} refunds succeeded, "
          f"{state['refunded']} of {amount} refunded ({asked} asked)")

    balance = check_balance(client, charges, refunds)
    events = check_events(client, expected_events)
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(f"[{server.backend}] {len(latencies)} concurrent requests in {elapsed:.1f} s; "
          f"latency median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    print(f"[{server.backend}] end states {dict(end_states)}; answers {dict(sorted(answers.items()))}")
    print(f"[{server.backend}] balance {balance}; {events} events checked")
    assert elapsed < PER_BACKEND_BUDGET_S


def test_a_hundred_concurrent_refunds_of_one_charge(server):
    """Twice the writers that a request has attempts for: retries after a lost race
    queue per object instead of all retrying at once, so every refund commits (a
    writer that still ran out of attempts would get Stripe's 429 lock_timeout, never
    a 500)."""
    key, _ = server.new_account()
    client = client_for(server, key)
    writers = 2 * THREADS
    pi = client.payment_intents.create(params={
        "amount": 100 * writers, "currency": "usd", "payment_method": "pm_card_visa",
        "payment_method_types": ["card"], "confirm": True,
    })
    ops = [("refund", {"amount": 50}, lambda c: c.refunds.create(params={"payment_intent": pi.id, "amount": 50}))
           for _ in range(writers)]
    started = time.perf_counter()
    outcomes = run_at_once(server, key, ops)
    elapsed = time.perf_counter() - started
    statuses = collections.Counter((o.status, o.code) for o in outcomes)
    assert set(statuses) <= {(200, None), (429, "lock_timeout")}, statuses
    ok = [o for o in outcomes if o.status == 200]
    charge = client.charges.retrieve(pi.latest_charge)
    refunds = list_all(client.refunds, payment_intent=pi.id)
    assert {r.id for r in refunds} == {o.obj.id for o in ok}
    assert charge.amount_refunded == 50 * len(ok) and not charge.refunded
    latencies = sorted(o.latency for o in outcomes)
    print(f"[{server.backend}] {writers} concurrent refunds of one charge: {statuses[(200, None)]} committed, "
          f"{statuses[(429, 'lock_timeout')]} lock_timeout, in {elapsed:.1f} s (max latency {latencies[-1] * 1000:.0f} ms)")
    assert len(ok) >= writers * 0.9, statuses


def test_partial_capture_leaves_the_captured_amount_refundable(server):
    """Found by the test above: after capturing 600 of 1000, 400 is released (Stripe
    shows it in amount_refunded) and all 600 captured stay refundable."""
    key, _ = server.new_account()
    client = client_for(server, key)
    pi = client.payment_intents.create(params={
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa",
        "payment_method_types": ["card"], "capture_method": "manual", "confirm": True,
    })
    client.payment_intents.capture(pi.id, params={"amount_to_capture": 600})
    charge = client.charges.retrieve(pi.latest_charge)
    assert (charge.amount_captured, charge.amount_refunded, charge.refunded) == (600, 400, False)
    try:
        client.refunds.create(params={"payment_intent": pi.id, "amount": 601})
        raise AssertionError("refunded more than was captured")
    except stripe.InvalidRequestError as e:
        assert e.code == "amount_too_large" and "(600)" in e.user_message
    first = client.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    charge = client.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    rest = client.refunds.create(params={"charge": charge.id})
    assert (first.amount, rest.amount) == (100, 500)
    charge = client.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    txns = [client.balance_transactions.retrieve(r.balance_transaction) for r in (first, rest)]
    assert [t.amount for t in txns] == [-100, -500]
