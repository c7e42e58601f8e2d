"""A server killed with SIGKILL under load loses no message it had acknowledged."""

from __future__ import annotations

import json
import re
import smtplib
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from dnsserver import KnotServer
from mwserver import ServerProcess, mw

CLIENTS = 6
LOAD_SECONDS = 3.0


def sender(port: int, acked: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                while not stop.is_set():
                    mid = uuid.uuid4().hex
                    msg = (
                        f"From: load@nowhere.test\r\nMessage-ID: <{mid}@load.test>\r\n"
                        f"Subject: {mid}\r\n\r\n" + "payload line\r\n" * 100
                    ).encode()
                    s.sendmail("load@nowhere.test", ["alice@example.test"], msg)
                    acked.append(mid)  # only after the 250
        except (OSError, smtplib.SMTPException):
            time.sleep(0.01)  # killed mid-transaction: that message was never acknowledged


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_under_load_loses_nothing_acknowledged(
    workers: int, tmp_path: Path, test_tld: KnotServer
) -> None:
    mw(tmp_path, "init", "--hostname", "mail.example.test", check=True)
    mw(tmp_path, "domain", "add", "example.test", check=True)
    mw(
        tmp_path,
        "user",
        "add",
        "alice@example.test",
        "--password-stdin",
        stdin="s3cret-pass\n",
        check=True,
    )
    cfg_path = tmp_path / "mailwarden.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["listeners"] = {"mx": {"protocol": "smtp", "address": "127.0.0.1", "port": 0}}
    cfg["dns"] = {"nameservers": [test_tld.nameserver]}
    cfg["workers"] = workers  # with 2, the supervisor is killed and its workers die with it
    cfg_path.write_text(yaml.safe_dump(cfg))

    proc = ServerProcess(cfg_path, tmp_path / "server.log")
    proc.start()
    port = int(re.findall(rb"mx=127\.0\.0\.1:(\d+)", (tmp_path / "server.log").read_bytes())[0])
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(port, acked, stop)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS)
    proc.kill()  # SIGKILL in the middle of the load
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20, "the load did not get going"

    listed = json.loads(
        mw(
            tmp_path,
            "message",
            "list",
            "alice@example.test",
            "--json",
            "--limit",
            "1000000",
            check=True,
        ).stdout
    )
    stored = {m["subject"] for m in listed}
    lost = [mid for mid in acked if mid not in stored]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged messages lost"
    # and the store is usable again after the crash: restart and accept more mail
    proc2 = ServerProcess(cfg_path, tmp_path / "server2.log")
    proc2.start()
    try:
        port2 = int(
            re.findall(rb"mx=127\.0\.0\.1:(\d+)", (tmp_path / "server2.log").read_bytes())[0]
        )
        with smtplib.SMTP("127.0.0.1", port2, timeout=30) as s:
            s.sendmail("x@nowhere.test", ["alice@example.test"], b"Subject: after\r\n\r\nok\r\n")
    finally:
        assert proc2.signal(15) == 0
