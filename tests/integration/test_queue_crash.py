"""SIGKILL while the queue is delivering 1,000 messages: after a restart every one arrives."""

from __future__ import annotations

import json
import re
import smtplib
import socket
import time
from pathlib import Path

import pytest
import yaml

from dnsserver import KnotServer
from mwserver import ServerProcess, mw
from sinks import SinkServer

N = 1000
SINK_IP = "127.0.0.2"


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def message_ids(sink: SinkServer) -> set[str]:
    out = set()
    for r in sink.received:
        m = re.search(rb"^Message-ID: <([^>]+)>", r.data, re.M | re.I)
        assert m is not None
        out.add(m.group(1).decode())
    return out


def listed(cwd: Path) -> list[dict[str, object]]:
    res = mw(cwd, "queue", "list", "--json", "--limit", "5000", check=True)
    return list(json.loads(res.stdout))


@pytest.mark.slow
def test_sigkill_during_delivery_loses_no_queued_message(
    tmp_path: Path, test_tld: KnotServer
) -> None:
    mw(tmp_path, "init", "--hostname", "mail.example.test", check=True)
    mw(tmp_path, "domain", "add", "example.test", check=True)
    port = free_port(SINK_IP)
    cfg_path = tmp_path / "mailwarden.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["listeners"] = {
        "submission": {"protocol": "submission", "address": "127.0.0.1", "port": 0, "tls": "none"}
    }
    cfg["dns"] = {"nameservers": [test_tld.nameserver]}
    cfg["submission"] = {"relay_networks": ["127.0.0.1/32"]}  # an app on this host
    cfg["delivery"] = {
        "transports": {"*": f"smtp://{SINK_IP}:{port}"},
        "poll_interval": 0.1,
        "connect_timeout": 2,
        "command_timeout": 5,
    }
    cfg_path.write_text(yaml.safe_dump(cfg))

    proc = ServerProcess(cfg_path, tmp_path / "server.log")
    proc.start()
    sub = int(re.findall(rb"submission=127\.0\.0\.1:(\d+)", proc.log_path.read_bytes())[0])
    # 1. Queue 1,000 messages while the destination is down: all are deferred.
    with smtplib.SMTP("127.0.0.1", sub, timeout=30) as s:
        for i in range(N):
            msg = (
                f"From: app@example.test\r\nTo: user{i}@far.test\r\nSubject: {i}\r\n"
                f"Message-ID: <crash-{i}@example.test>\r\n\r\n" + "line\r\n" * 30
            ).encode()
            s.sendmail("app@example.test", [f"user{i}@far.test"], msg)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(m["pending"] for m in listed(tmp_path)):
        time.sleep(0.2)
    assert len(listed(tmp_path)) == N

    with SinkServer(SINK_IP, port) as sink:
        sink.configure(delay=0.002)  # slow enough to be caught mid-delivery
        # 2. Release them all and kill the server in the middle of delivering them.
        mw(tmp_path, "queue", "flush", "--config", str(cfg_path), check=True)
        deadline = time.monotonic() + 30
        while len(sink.received) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        before = message_ids(sink)
        assert 0 < len(before) < N, "the kill did not land during delivery"
        # 3. Restart: interrupted deliveries are released and retried.
        proc.start()
        deadline = time.monotonic() + 90
        while len(message_ids(sink)) < N and time.monotonic() < deadline:
            time.sleep(0.1)
        got = message_ids(sink)
        assert got == {f"crash-{i}@example.test" for i in range(N)}
        deadline = time.monotonic() + 30
        while listed(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listed(tmp_path) == []
        proc.signal(15)
