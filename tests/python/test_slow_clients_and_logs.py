"""Slow clients cannot starve others; secrets never reach the logs."""
import re
import socket
import time

import requests
import stripe

from server import Server


def test_stalled_clients_do_not_starve_others(server, account):
    stalled = []
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(50):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall((f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account['secret_key']}\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nname=").encode())
        stalled.append(s)
    try:
        started = time.time()
        for i in range(20):
            assert stripe.Customer.create(name=f"fast {i}").id.startswith("cus_")
        assert time.time() - started < 5, "requests slowed down behind stalled clients"
    finally:
        for s in stalled:
            s.close()


def test_a_stalled_body_times_out_with_an_envelope(server, account):
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall((f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account['secret_key']}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=").encode())
    started = time.time()
    answer = s.recv(4096).decode()
    s.close()
    assert answer.startswith("HTTP/1.1 408"), answer[:100]
    assert '"type":"invalid_request_error"' in answer
    assert 9 <= time.time() - started < 20


def test_secrets_never_reach_the_logs(tmp_path):
    server = Server(f"sqlite:{tmp_path / 'logs.db'}", tmp_path, env={"PAYGROUND_LOG": "debug"}).start()
    try:
        stripe.api_key = server.secret_key
        stripe.api_base = server.url
        number = "4000002500003155"
        pm = stripe.PaymentMethod.create(type="card", card={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "314"})
        pi = stripe.PaymentIntent.create(amount=2000, currency="usd", payment_method=pm.id, confirm=True,
                                         return_url="https://m.example/r")
        we = stripe.WebhookEndpoint.create(url="http://127.0.0.1:9/hook", enabled_events=["*"])
        requests.get(pi.next_action.redirect_to_url.url, timeout=10)
        requests.get(f"{server.url}/v1/payment_intents/{pi.id}", params={"client_secret": pi.client_secret},
                     headers={"Authorization": f"Bearer {server.publishable_key}"}, timeout=10)
        requests.get(f"{server.url}/v1/customers", headers={"Authorization": "Bearer sk_test_wrongwrongwrongwrong"}, timeout=10)
        time.sleep(0.5)
    finally:
        server.stop()
    log = "".join(server.output)
    assert "listening on" in log
    for secret in [number, pi.client_secret, we.secret, "sk_test_wrongwrongwrongwrong"]:
        assert secret not in log, f"{secret[:12]}... appears in the log"
    # The keys themselves are printed once at start-up, by design, and nowhere else.
    assert log.count(server.secret_key) == 1
    assert not re.search(r"\b4[0-9]{15}\b", log)
