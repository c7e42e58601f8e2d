"""`mailwarden domain dns`, `dkim`, `queue`, `auth` and `events` against a running server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sending import ALICE, SUBMISSION_LISTENERS, delivery, message, submit, wait_until

from dnsserver import KnotServer, unique_domain
from mwserver import LOCAL_DOMAIN, ServerThread, make_config, mw, settings_for, write_config
from sinks import SinkServer


@pytest.fixture
def setup(tmp_path: Path, test_tld: KnotServer) -> Iterator[tuple[ServerThread, Path, SinkServer]]:
    with SinkServer("127.0.0.2") as sink:
        cfg = make_config(
            tmp_path,
            nameserver=test_tld.nameserver,
            extra={"listeners": SUBMISSION_LISTENERS, "delivery": delivery(sink.port)},
        )
        path = write_config(tmp_path, cfg)
        mw(tmp_path, "domain", "add", LOCAL_DOMAIN, "--config", str(path), check=True)
        mw(
            tmp_path,
            "user",
            "add",
            ALICE,
            "--password-stdin",
            "--config",
            str(path),
            stdin="correct horse battery\n",
            check=True,
        )
        srv = ServerThread(settings_for(tmp_path, cfg)).start()
        yield srv, path, sink
        srv.stop()


def cli(path: Path, *args: str) -> object:
    res = mw(path.parent, *args, "--config", str(path), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_domain_dns_lists_every_record_and_rotation_keeps_the_old_selector(
    setup: tuple[ServerThread, Path, SinkServer],
) -> None:
    _srv, path, _sink = setup
    records = cli(path, "domain", "dns", LOCAL_DOMAIN)
    assert isinstance(records, list)
    kinds = {(r["name"], r["type"]) for r in records}
    assert (LOCAL_DOMAIN, "MX") in kinds
    assert (f"_dmarc.{LOCAL_DOMAIN}", "TXT") in kinds
    assert (f"_smtp._tls.{LOCAL_DOMAIN}", "TXT") in kinds
    dkim = [r for r in records if "._domainkey." in r["name"]]
    assert len(dkim) == 2
    assert {r["value"].split(";")[1].strip() for r in dkim} == {"k=rsa", "k=ed25519"}
    spf = next(r for r in records if r["name"] == LOCAL_DOMAIN and r["type"] == "TXT")
    assert spf["value"].startswith("v=spf1 mx") and spf["value"].endswith("~all")

    res = mw(path.parent, "dkim", "rotate", LOCAL_DOMAIN, "--config", str(path))
    assert res.returncode == 0 and "still published" in res.stdout, res.stderr
    keys = cli(path, "dkim", "list", LOCAL_DOMAIN)
    assert isinstance(keys, list)
    assert sorted(k["state"] for k in keys) == ["active", "active", "retiring", "retiring"]
    after = [r for r in cli(path, "domain", "dns", LOCAL_DOMAIN) if "_domainkey" in r["name"]]
    assert len(after) == 4  # old selectors stay published for the grace period
    text = mw(path.parent, "domain", "dns", LOCAL_DOMAIN, "--config", str(path)).stdout
    assert "IN MX 10 mx.mailwarden.test." in text and "_domainkey" in text


def test_new_keys_sign_after_rotation(
    setup: tuple[ServerThread, Path, SinkServer], test_tld: KnotServer
) -> None:
    srv, path, sink = setup
    mw(path.parent, "dkim", "rotate", LOCAL_DOMAIN, "--config", str(path), check=True)
    active = {
        k["selector"] for k in cli(path, "dkim", "list", LOCAL_DOMAIN) if k["state"] == "active"
    }  # type: ignore[union-attr,index]
    srv.services.dkim.forget_cached_keys()  # else the running server waits out its cache
    dest = unique_domain("rotated")
    test_tld.set_zone(dest, ["@ MX 10 mx", "mx A 127.0.0.2"])
    submit(srv, message("rotated", to=f"x@{dest}"), [f"x@{dest}"])
    data = sink.wait_for(1)[0].data
    assert {s.decode() for s in _selectors(data)} == active


def _selectors(data: bytes) -> list[bytes]:
    import re

    return re.findall(rb"\bs=([A-Za-z0-9.-]+);", data)


def test_queue_commands(setup: tuple[ServerThread, Path, SinkServer], test_tld: KnotServer) -> None:
    srv, path, sink = setup
    sink.configure(tempfail_first=1000)
    dest = unique_domain("queuecli")
    test_tld.set_zone(dest, ["@ MX 10 mx", "mx A 127.0.0.2"])
    submit(srv, message("queued", to=f"x@{dest}"), [f"x@{dest}"])
    rows = wait_until(
        lambda: [r for r in cli(path, "queue", "list") if r["last_reply"]],  # type: ignore[union-attr]
        what="a deferred message",
    )
    qid = rows[0]["queue_id"]
    assert rows[0]["pending"] == 1 and rows[0]["last_reply"].startswith("451 4.3.0")
    shown = cli(path, "queue", "show", qid)
    assert isinstance(shown, dict)
    (r,) = shown["recipient_states"]
    assert (r["recipient"], r["state"], r["attempts"]) == (f"x@{dest}", "deferred", 1)

    assert cli(path, "queue", "hold", qid) == {"action": "hold", "count": 1}
    assert cli(path, "queue", "list", "--held")[0]["held"] is True  # type: ignore[index]
    sink.configure(tempfail_first=0)
    assert cli(path, "queue", "retry", qid) == {"action": "retry", "count": 1}
    time.sleep(0.5)
    assert sink.received == []  # held: not delivered even though it is due
    assert cli(path, "queue", "release", qid) == {"action": "release", "count": 1}
    sink.wait_for(1)
    wait_until(lambda: cli(path, "queue", "list") == [], what="an empty queue")

    sink.configure(tempfail_first=1000)
    submit(srv, message("to delete", to=f"y@{dest}"), [f"y@{dest}"])
    rows = wait_until(lambda: cli(path, "queue", "list"), what="a queued message")
    assert cli(path, "queue", "delete", rows[0]["queue_id"])["count"] == 1  # type: ignore[index,call-overload]
    assert cli(path, "queue", "list") == []
    assert cli(path, "queue", "flush") == {"action": "flush", "count": 0}
    missing = mw(path.parent, "queue", "show", "NOSUCHID", "--config", str(path))
    assert missing.returncode == 3 and "no message NOSUCHID" in missing.stderr

    evs = cli(path, "events", "list", "--where", f"recipient_domain={dest}", "--since", "1h")
    assert isinstance(evs, list) and {e["outcome"] for e in evs} == {"deferred", "delivered"}
    bad = mw(path.parent, "events", "list", "--where", "colour=red", "--config", str(path))
    assert bad.returncode == 1 and "cannot filter events by 'colour'" in bad.stderr


def test_auth_lockouts_visible_and_unlockable(setup: tuple[ServerThread, Path, SinkServer]) -> None:
    srv, path, _sink = setup
    for _ in range(5):
        srv.call(srv.services.guard.failed("192.0.2.7", ALICE, "submission"))
    rows = cli(path, "auth", "lockouts")
    assert rows == [
        {"kind": "account", "key": ALICE, "failures": 5, "last": rows[0]["last"], "locked": True}  # type: ignore[index]
    ]
    res = mw(path.parent, "auth", "unlock", ALICE, "--config", str(path))
    assert res.returncode == 0 and "5 failed logins forgotten" in res.stdout
    assert cli(path, "auth", "lockouts") == []
