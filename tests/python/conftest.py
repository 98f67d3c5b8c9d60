"""Fixtures: payground started as a real process per backend (SQLite always,
PostgreSQL when PAYGROUND_TEST_DATABASE_URL is set), a fresh account per test,
and the official stripe-python SDK pointed at it."""
import os
import sys

import pytest
import requests
import stripe

sys.path.insert(0, os.path.dirname(__file__))
from server import Server, fresh_postgres_database, postgres_url  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


def pytest_report_header(config):
    if postgres_url():
        return "payground backends: sqlite, postgres"
    return ("payground backends: sqlite only (PostgreSQL tests skip: "
            "PAYGROUND_TEST_DATABASE_URL is not set)")


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, tmp_path_factory):
    backend = request.param
    drop = None
    if backend == "postgres":
        base = postgres_url()
        if not base:
            pytest.skip("PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set")
        database, drop = fresh_postgres_database(base)
    else:
        workdir = tmp_path_factory.mktemp("sqlite")
        database = f"sqlite:{workdir / 'payground.db'}"
    srv = Server(database, tmp_path_factory.mktemp("work")).start()
    srv.backend = backend
    yield srv
    srv.stop()
    if drop:
        drop()


class Api:
    """Hand-made HTTP for what an SDK hides (headers, raw envelopes)."""

    def __init__(self, url, key):
        self.url = url
        self.key = key

    def request(self, method, path, key=..., **kwargs):
        headers = kwargs.pop("headers", {})
        key = self.key if key is ... else key
        if key:
            headers.setdefault("Authorization", f"Bearer {key}")
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def account(server):
    """A fresh, isolated account; stripe-python is configured for it."""
    secret, publishable = server.new_account()
    stripe.api_key = secret
    stripe.api_base = server.url
    stripe.max_network_retries = 0
    return {"secret_key": secret, "publishable_key": publishable}


@pytest.fixture
def api(server, account):
    return Api(server.url, account["secret_key"])
