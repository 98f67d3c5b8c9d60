"""Faults of the database's disk: full, then read-only. Each must give clean 500
`api_error` responses (no hang, no crash) and payground must recover once fixed.
Needs root (a tmpfs mount, chattr); skipped otherwise."""
import os
import shutil
import subprocess
import time

import pytest
import requests

from server import Server


def _root_can(cmd):
    return os.geteuid() == 0 and shutil.which(cmd[0]) is not None


def _create(server, name):
    return requests.post(f"{server.url}/v1/customers", data={"name": name, "description": "x" * 2000},
                         headers={"Authorization": f"Bearer {server.secret_key}"}, timeout=15)


@pytest.fixture
def tiny_disk(tmp_path):
    if not _root_can(["mount"]):
        pytest.skip("disk fault tests need root to mount a small tmpfs")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)])


def test_disk_full_gives_api_errors_and_recovers(tiny_disk, tmp_path):
    server = Server(f"sqlite:{tiny_disk / 'payground.db'}", tmp_path).start()
    try:
        assert _create(server, "before").status_code == 200
        filler = tiny_disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # ENOSPC: the disk is full
        finally:
            os.close(fd)
        failures = []
        for i in range(200):
            r = _create(server, f"full-{i}")
            if r.status_code >= 500:
                failures.append(r)
                if len(failures) >= 3:
                    break
        assert failures, "the disk never filled up"
        for r in failures:
            assert r.status_code == 500
            assert r.json()["error"]["type"] == "api_error"
        filler.unlink()
        deadline = time.time() + 10
        while time.time() < deadline and _create(server, "after").status_code != 200:
            time.sleep(0.2)
        assert _create(server, "recovered").status_code == 200
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_read_only_database_gives_api_errors_and_recovers(tmp_path):
    if not _root_can(["chattr"]):
        pytest.skip("the read-only test needs root and chattr")
    db = tmp_path / "ro.db"
    server = Server(f"sqlite:{db}", tmp_path).start()
    wal = tmp_path / "ro.db-wal"
    try:
        assert _create(server, "before").status_code == 200
        if subprocess.run(["chattr", "+i", str(wal)]).returncode != 0:
            pytest.skip("chattr is not supported on this filesystem")
        try:
            r = _create(server, "read-only")
            assert r.status_code == 500 and r.json()["error"]["type"] == "api_error", r.text
            # Reads keep working while writes cannot.
            assert requests.get(f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {server.secret_key}"},
                                timeout=10).status_code == 200
        finally:
            subprocess.run(["chattr", "-i", str(wal)])
        deadline = time.time() + 10
        while time.time() < deadline and _create(server, "after").status_code != 200:
            time.sleep(0.2)
        assert _create(server, "recovered").status_code == 200
    finally:
        server.stop()
