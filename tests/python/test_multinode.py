"""Two payground nodes on one PostgreSQL database, through stripe-python.

- Bank debits confirmed through both nodes settle exactly once although both nodes
  run the settlement job: one charge, one charge.succeeded / payment_intent.succeeded
  (or charge.failed / payment_intent.payment_failed) and one balance transaction per
  payment, nothing twice.
- The same Idempotency-Key sent at once to both nodes creates one PaymentIntent; every
  answer is that PaymentIntent (or a 409 while the first runs), later ones replays.
- Nodes booting at the same moment on an empty database with the same keys both come
  up, on one account.

(Webhook delivery across two nodes is tested in test_webhooks.py.) PostgreSQL only:
skipped unless PAYGROUND_TEST_DATABASE_URL is set."""
import collections
import threading
import time

import pytest
import stripe

from server import Server, fresh_postgres_database, postgres_url

SETTLEMENT_DELAY = "1"


def postgres_or_skip():
    base = postgres_url()
    if not base:
        pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
    return base


@pytest.fixture
def two_nodes(tmp_path_factory):
    """Two servers on one fresh database, started one after the other."""
    database, drop = fresh_postgres_database(postgres_or_skip())
    nodes = []
    try:
        for _ in range(2):
            nodes.append(Server(database, tmp_path_factory.mktemp("node"),
                                extra_args=["--settlement-delay", SETTLEMENT_DELAY]).start())
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        drop()


def client(node, key):
    return stripe.StripeClient(key, base_addresses={"api": node.url}, max_network_retries=0)


def every(listing):
    return list(listing.auto_paging_iter())


BANK_DEBITS = {
    # name: (currency, payment_method_data, settles)
    "ach": ("usd", {"type": "us_bank_account", "billing_details": {"name": "Jenny Rosen"},
                    "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                                        "account_holder_type": "individual"}}, True),
    "ach_insufficient_funds": ("usd", {"type": "us_bank_account", "billing_details": {"name": "Jenny Rosen"},
                                       "us_bank_account": {"routing_number": "110000000",
                                                           "account_number": "000111111116"}}, False),
    "sepa": ("eur", {"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"},
                     "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"}}, True),
}


def test_two_nodes_settle_each_bank_debit_once(two_nodes):
    key, _ = two_nodes[0].new_account()
    clients = [client(node, key) for node in two_nodes]
    kinds = ["ach"] * 24 + ["ach_insufficient_funds"] * 4 + ["sepa"] * 4
    expected = {}
    for i, kind in enumerate(kinds):
        currency, pm_data, settles = BANK_DEBITS[kind]
        pi = clients[i % 2].payment_intents.create(params={
            "amount": 1000 + i, "currency": currency, "confirm": True,
            "payment_method_types": [pm_data["type"]], "payment_method_data": pm_data,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        })
        assert pi.status == "processing", (kind, pi.status)
        expected[pi.id] = (kind, settles, 1000 + i)

    # Both nodes' settlement jobs see every debit due at the same pass.
    deadline = time.time() + 30
    while time.time() < deadline:
        pending = [p for p in every(clients[0].payment_intents.list(params={"limit": 100}))
                   if p.status == "processing"]
        if not pending:
            break
        time.sleep(0.2)
    assert not pending, f"{len(pending)} still processing after 30 s"
    time.sleep(1.5)  # three more passes of each node: a second settlement would show now

    reader = clients[1]
    pis = {p.id: p for p in every(reader.payment_intents.list(params={"limit": 100}))}
    assert set(pis) == set(expected)
    charges = every(reader.charges.list(params={"limit": 100}))
    events = every(reader.events.list(params={"limit": 100}))
    txns = every(reader.balance_transactions.list(params={"limit": 100}))
    assert len({e.id for e in events}) == len(events)
    counts = collections.Counter((e.type, e.data.object.id) for e in events)
    charges_of = collections.defaultdict(list)
    for c in charges:
        charges_of[c.payment_intent].append(c)
    txns_of = collections.Counter(t.source for t in txns)

    for pi_id, (kind, settles, amount) in expected.items():
        pi = pis[pi_id]
        assert len(charges_of[pi_id]) == 1, (kind, pi_id, [c.id for c in charges_of[pi_id]])
        charge = charges_of[pi_id][0]
        assert charge.id == pi.latest_charge
        if settles:
            assert (pi.status, charge.status, pi.amount_received) == ("succeeded", "succeeded", amount), kind
            assert counts[("payment_intent.succeeded", pi_id)] == 1, kind
            assert counts[("charge.succeeded", charge.id)] == 1, kind
            assert txns_of[charge.id] == 1, kind
            assert counts[("payment_intent.payment_failed", pi_id)] == 0
        else:
            assert (pi.status, charge.status) == ("requires_payment_method", "failed"), kind
            assert pi.last_payment_error.code == "insufficient_funds"
            assert counts[("payment_intent.payment_failed", pi_id)] == 1
            assert counts[("charge.failed", charge.id)] == 1
            assert counts[("payment_intent.succeeded", pi_id)] == 0
            assert txns_of[charge.id] == 0
    assert len(charges) == len(expected)
    assert len(txns) == sum(1 for _, settles, _ in expected.values() if settles)
    # Each state change once: no event type repeats for one object.
    assert [k for k, n in counts.items() if n > 1] == []


def test_an_idempotency_key_sent_to_both_nodes_at_once_creates_one_object(two_nodes):
    key, _ = two_nodes[0].new_account()
    keys = [f"order-{i}" for i in range(10)]
    per_node = 3
    params = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    results = collections.defaultdict(list)
    lock = threading.Lock()

    def send(node, idem, barrier):
        c = client(node, key)
        barrier.wait(timeout=30)
        try:
            pi = c.payment_intents.create(params=params, options={"idempotency_key": idem})
            out = (200, pi.id, pi.status)
        except stripe.StripeError as e:
            # stripe-python keeps the code of a 409 only in the error object.
            out = (e.http_status, e.error.code if e.error else e.code, None)
        with lock:
            results[idem].append(out)

    for idem in keys:
        barrier = threading.Barrier(2 * per_node)
        threads = [threading.Thread(target=send, args=(node, idem, barrier))
                   for node in two_nodes for _ in range(per_node)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    created = {}
    for idem in keys:
        answers = results[idem]
        assert len(answers) == 2 * per_node
        ok = [a for a in answers if a[0] == 200]
        others = [a for a in answers if a[0] != 200]
        # While the first request runs on one node, the same node refuses the key
        # with 409; the other node may run it too, but its commit loses and it
        # answers with the stored result.
        assert all(a[:2] == (409, "idempotency_key_in_use") for a in others), answers
        assert ok, answers
        assert len({a[1] for a in ok}) == 1, answers
        assert ok[0][2] == "succeeded"
        created[idem] = ok[0][1]

    # Afterwards every node replays the stored answer.
    for idem in keys:
        for node in two_nodes:
            pi = client(node, key).payment_intents.create(params=params, options={"idempotency_key": idem})
            assert pi.id == created[idem]
            assert pi.last_response.headers.get("Idempotent-Replayed") == "true"

    reader = client(two_nodes[1], key)
    pis = every(reader.payment_intents.list(params={"limit": 100}))
    assert sorted(p.id for p in pis) == sorted(created.values())
    charges = every(reader.charges.list(params={"limit": 100}))
    assert sorted(c.payment_intent for c in charges) == sorted(created.values())
    events = every(reader.events.list(params={"limit": 100, "type": "payment_intent.succeeded"}))
    assert sorted(e.data.object.id for e in events) == sorted(created.values())


def test_nodes_booting_at_once_with_the_same_keys_share_one_account(tmp_path_factory):
    """Both nodes find no account, both create it: the insert that loses must make
    its node use the winner's account instead of failing the boot."""
    base = postgres_or_skip()
    secret, publishable = "sk_test_bootrace0000000001", "pk_test_bootrace0000000001"
    for trial in range(12):
        database, drop = fresh_postgres_database(base)
        nodes = [Server(database, tmp_path_factory.mktemp("node"),
                        extra_args=["--secret-key", secret, "--publishable-key", publishable])
                 for _ in range(2)]
        errors = []

        def boot(node):
            try:
                node.start()
            except Exception as e:  # noqa: BLE001 - asserted on below
                errors.append(f"{e}")

        threads = [threading.Thread(target=boot, args=(n,)) for n in nodes]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == [], f"trial {trial}: " + "\n".join(errors)
            assert nodes[0].account_id == nodes[1].account_id
            assert nodes[0].secret_key == nodes[1].secret_key == secret
            for node in nodes:
                assert client(node, secret).customers.create(params={"name": "x"}).id
        finally:
            for node in nodes:
                node.stop()
            drop()
