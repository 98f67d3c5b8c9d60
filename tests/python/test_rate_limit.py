"""--rate-limit: past the limit, Stripe's 429 that the SDKs know how to handle."""
import pytest
import requests
import stripe

from server import Server


def test_rate_limit_answers_429_per_account(tmp_path):
    server = Server(f"sqlite:{tmp_path / 'rl.db'}", tmp_path, extra_args=["--rate-limit", "5"]).start()
    try:
        statuses = []
        for _ in range(20):
            r = requests.get(f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {server.secret_key}"}, timeout=5)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "rate_limit"
                assert r.headers["Stripe-Should-Retry"] == "true"
        assert statuses.count(200) >= 5 and statuses.count(429) >= 10, statuses
        # Another account has a bucket of its own.
        other, _ = server.new_account()
        assert requests.get(f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {other}"}, timeout=5).status_code == 200
        stripe.api_base = server.url
        with pytest.raises(stripe.RateLimitError):
            for _ in range(20):
                stripe.Customer.list(api_key=server.secret_key)
    finally:
        server.stop()
