"""Starts payground for tests: a real process on a random port with a fresh database."""
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PAYGROUND_BIN", ROOT / "target" / "debug" / "payground"))
ADMIN_TOKEN = "admin_" + secrets.token_hex(8)


def postgres_url():
    return os.environ.get("PAYGROUND_TEST_DATABASE_URL") or None


def fresh_postgres_database(base_url):
    """Creates a database of its own for one server; returns its URL and a drop function."""
    import psycopg

    name = "payground_test_" + secrets.token_hex(6)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", base_url.split("://", 1)[1], count=1)
    url = base_url.split("://", 1)[0] + "://" + url

    def drop():
        try:
            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as e:  # best effort: a leftover test database is harmless
            print(f"could not drop {name}: {e}", file=sys.stderr)

    return url, drop


class Server:
    """One payground process. `url`, `secret_key`, `publishable_key` are the default account's."""

    def __init__(self, database, workdir, extra_args=(), env=None):
        self.database = database
        self.workdir = Path(workdir)
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.output = []
        self.listen = "127.0.0.1:0"

    def start(self, listen=None):
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `cargo build` first")
        args = [
            str(BINARY), "serve",
            "--listen", listen or self.listen,
            "--database", self.database,
            "--admin-token", ADMIN_TOKEN,
            *self.extra_args,
        ]
        self.output = []
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ready = threading.Event()
        fields = {}

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                m = re.match(r"payground \S+ listening on (http://\S+)", line)
                if m:
                    fields["url"] = m.group(1)
                for key in ("secret key", "publishable key", "account"):
                    m = re.match(rf"{key}:\s+(\S+)", line)
                    if m:
                        fields[key] = m.group(1)
                if line.startswith("ready"):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30) or self.proc.poll() is not None:
            raise RuntimeError("payground did not start:\n" + "".join(self.output))
        self.url = fields["url"]
        self.secret_key = fields["secret key"]
        self.publishable_key = fields["publishable key"]
        self.account_id = fields["account"]
        # Keep later restarts on the same port so clients need no reconfiguration.
        self.listen = self.url.removeprefix("http://")
        return self

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def new_account(self):
        """A fresh isolated account through the admin API: (secret_key, publishable_key)."""
        r = requests.post(f"{self.url}/admin/accounts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        r.raise_for_status()
        body = r.json()
        return body["secret_key"], body["publishable_key"]

    def wait_healthy(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("payground is not healthy")


def wait_until(check, timeout=15, what="condition"):
    """Polls `check` until it returns something truthy (and returns that) or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class WebhookHTTPServer(ThreadingHTTPServer):
    """The test suites' webhook receivers. A real server listens with a backlog of
    hundreds; http.server's default of 5 made the kernel drop the SYNs of the
    sixth and later of payground's concurrent attempts, which the client resends
    only after a second: 'timed out' at a healthy endpoint."""

    request_queue_size = 512
    daemon_threads = True
