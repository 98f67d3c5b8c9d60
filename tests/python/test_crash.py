"""Crash safety: SIGKILL the server under a steady load of confirmed payments made
with idempotency keys, restart it on the same database, and check that nothing
acknowledged was lost and no retry charged twice."""
import random
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from server import Server, fresh_postgres_database, postgres_url

KILLS = 20


def _load(url, key, acked, pending, stop):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    while not stop.is_set():
        idem = str(uuid.uuid4())
        amount = random.randint(100, 100000)
        pending[idem] = amount
        try:
            r = session.post(f"{url}/v1/payment_intents", timeout=5,
                             data={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
                             headers={"Idempotency-Key": idem})
        except requests.RequestException:
            continue  # the server died mid-request: the key stays pending
        if r.status_code == 200:
            acked[idem] = r.json()
            pending.pop(idem, None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_loses_no_acknowledged_payment(tmp_path, backend):
    drop = None
    if backend == "postgres":
        if not postgres_url():
            pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
        database, drop = fresh_postgres_database(postgres_url())
    else:
        database = f"sqlite:{tmp_path / 'crash.db'}"
    server = Server(database, tmp_path).start()
    key = server.secret_key
    acked, pending = {}, {}
    try:
        for _ in range(KILLS):
            stop = threading.Event()
            workers = [threading.Thread(target=_load, args=(server.url, key, acked, pending, stop)) for _ in range(4)]
            for w in workers:
                w.start()
            time.sleep(random.uniform(0.05, 0.25))
            server.stop(kill=True)
            stop.set()
            for w in workers:
                w.join()
            server.start()
        assert len(acked) > 50, f"too little load got through: {len(acked)}"

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        # Every acknowledged payment exists as acknowledged, and its key replays it.
        for idem, body in acked.items():
            got = session.get(f"{server.url}/v1/payment_intents/{body['id']}", timeout=10)
            assert got.status_code == 200, (idem, got.text)
            assert got.json()["status"] == "succeeded"
            assert got.json()["amount_received"] == body["amount"]
        for idem in random.sample(list(acked), min(50, len(acked))):
            body = acked[idem]
            again = session.post(f"{server.url}/v1/payment_intents", timeout=10,
                                 data={"amount": body["amount"], "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
                                 headers={"Idempotency-Key": idem})
            assert again.status_code == 200 and again.json()["id"] == body["id"]
            assert again.headers.get("Idempotent-Replayed") == "true"
        # Requests cut off by a kill: a retry with the same key yields one payment, charged once.
        for idem, amount in list(pending.items()):
            r = session.post(f"{server.url}/v1/payment_intents", timeout=10,
                             data={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
                             headers={"Idempotency-Key": idem})
            assert r.status_code == 200, r.text
            charges = session.get(f"{server.url}/v1/charges", params={"payment_intent": r.json()["id"]}, timeout=10).json()
            assert len(charges["data"]) == 1
        server.stop()
        if backend == "sqlite":
            conn = sqlite3.connect(database.removeprefix("sqlite:"))
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
        print(f"kills survived: {KILLS}, acknowledged payments checked: {len(acked)}, cut-off requests retried: {len(pending)}")
    finally:
        server.stop()
        if drop:
            drop()
