"""The provider simulator (tests/provsim.py), driven by smtplib over loopback."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dnsserver import ZoneSet
from provsim import REPLIES, Provider, Script, Simulator, per_minute, render, zone_records
from shared_data import SHARED

SENDER = "news@sender.test"
BODY = "Subject: hi\r\n\r\nhello\r\n"


def connect(prov: Provider) -> smtplib.SMTP:
    client = smtplib.SMTP(prov.host, prov.port, local_hostname="client.test", timeout=10)
    client.ehlo()
    return client


def send(client: smtplib.SMTP, *rcpts: str) -> dict[str, tuple[int, bytes]]:
    return client.sendmail(SENDER, list(rcpts), BODY)


def refused(client: smtplib.SMTP, rcpt: str) -> tuple[int, str]:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(client, rcpt)
    code, text = info.value.recipients[rcpt]
    return code, text.decode()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    scripts = {name: Script() for name in ("gmail", "microsoft", "yahoo", "generic")}
    with Simulator(scripts) as s:
        yield s


def test_providers_share_one_port_on_their_own_ips(sim: Simulator) -> None:
    hosts = [p.host for p in sim.providers.values()]
    assert hosts == ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"]
    assert {p.port for p in sim.providers.values()} == {sim.port}
    assert [p.profile for p in sim.providers.values()] == ["gmail", "microsoft", "yahoo", "generic"]
    for prov in sim.providers.values():
        with connect(prov) as c:
            assert send(c, f"a@d0.{prov.name}.test") == {}
        assert prov.stats()["accepted"] == 1


def test_gmail_throttles_above_n_per_minute_with_its_multiline_reply(sim: Simulator) -> None:
    gmail = sim["gmail"]
    gmail.configure(throttle_per_minute=5)
    with connect(gmail) as c:
        for i in range(5):
            assert send(c, f"u{i}@d0.gmail.test") == {}
        code, text = refused(c, "u5@d0.gmail.test")
        assert code == 450
        assert "is receiving mail at a rate" in text
        assert "\n4.2.1 " in text  # smtplib joins the lines of a multi-line reply with \n
        assert refused(c, "u6@d1.gmail.test") == (450, text)
    st = gmail.stats()
    assert st["accepted"] == 5
    assert st["replies"]["throttled"] == 2
    assert st["peak_per_minute"] == 5


def test_microsoft_throttle_names_the_client_ip(sim: Simulator) -> None:
    ms = sim["microsoft"]
    ms.configure(throttle_per_minute=1)
    with connect(ms) as c:
        send(c, "a@d0.microsoft.test")
        code, text = refused(c, "b@d0.microsoft.test")
    assert code == 451
    assert text.startswith("4.7.500 Server busy. Please try again later from [127.0.0.1]. (S77714)")


def test_yahoo_421_throttle_closes_the_connection(sim: Simulator) -> None:
    yahoo = sim["yahoo"]
    yahoo.configure(throttle_per_minute=1)
    with connect(yahoo) as c:
        send(c, "a@d0.yahoo.test")
        code, text = refused(c, "b@d0.yahoo.test")  # smtplib closes on 421
        assert code == 421
        assert "[GL01] Message from (127.0.0.1) temporarily deferred" in text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()


def test_throttle_at_mail_and_throttle_disconnect(sim: Simulator) -> None:
    gmail = sim["gmail"]
    gmail.configure(throttle_per_minute=1, throttle_at="mail", throttle_disconnect=True)
    with connect(gmail) as c:
        send(c, "a@d0.gmail.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            send(c, "b@d0.gmail.test")
        assert info.value.smtp_code == 450
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()  # the 450 was followed by a close
    assert gmail.stats()["replies"]["throttled"] == 1


def test_unknown_users_get_the_providers_own_reply(sim: Simulator) -> None:
    want = {
        "gmail": (550, "5.1.1 The email account that you tried to reach does not exist."),
        "microsoft": (550, "5.5.0 Requested action not taken: mailbox unavailable"),
        "yahoo": (554, "delivery error: dd This user doesn't have a yahoo.com account"),
        "generic": (550, "5.1.1 Sorry, user address unknown"),
    }
    for name, (code, start) in want.items():
        prov = sim[name]
        rcpt = f"unknown7@d0.{name}.test"
        with connect(prov) as c:
            got_code, text = refused(c, rcpt)
            assert (got_code, text[: len(start)]) == (code, start)
            assert send(c, "known@d0.test") == {}
        st = prov.stats()
        assert st["replies"]["unknown_user"] == 1
        assert st["unknown_addresses"] == [rcpt]
        assert st["accepted"] == 1
    assert "(unknown7@d0.yahoo.test)" in render(
        REPLIES["yahoo"]["unknown_user"].template, "", "unknown7@d0.yahoo.test"
    )


def test_unknown_prefix_and_predicate(sim: Simulator) -> None:
    gen = sim["generic"]
    gen.configure(unknown_prefix="nobody")
    with connect(gen) as c:
        assert send(c, "unknown1@d.test") == {}
        assert refused(c, "nobody1@d.test")[0] == 550
        gen.configure(unknown_users=lambda a: a.endswith("@gone.test"))
        assert refused(c, "x@gone.test")[0] == 550
        assert send(c, "nobody2@d.test") == {}


def test_block_after_unknown_users(sim: Simulator) -> None:
    ms = sim["microsoft"]
    ms.configure(block_after_unknown=2, block_seconds=60)
    with connect(ms) as c:
        for i in range(3):  # the third one is "more than 2"
            assert refused(c, f"unknown{i}@d0.microsoft.test")[0] == 550
        code, text = refused(c, "known@d0.microsoft.test")
    assert code == 550
    assert text.startswith("5.7.708 Service unavailable. Access denied, traffic not accepted")
    st = ms.stats()
    assert st["replies"]["blocked"] == 1
    assert st["replies"]["unknown_user"] == 3
    assert st["blocked_ips"] == ["127.0.0.1"]

    ms.configure(block_at="greeting")
    with pytest.raises(smtplib.SMTPConnectError) as info:
        connect(ms)
    assert info.value.smtp_code == 550

    ms.reset_counters(state=True)  # forgets the block
    with connect(ms) as c:
        assert send(c, "known@d0.microsoft.test") == {}


def test_block_ends_after_block_seconds(sim: Simulator) -> None:
    yahoo = sim["yahoo"]
    yahoo.configure(block_after_unknown=0, block_seconds=0.3)
    with connect(yahoo) as c:
        refused(c, "unknown@d0.yahoo.test")
    with connect(yahoo) as c:
        code, text = refused(c, "a@d0.yahoo.test")
    assert (code, text) == (421, "4.7.1 [TS03] All messages from 127.0.0.1 permanently deferred")
    time.sleep(0.4)
    with connect(yahoo) as c:
        assert send(c, "a@d0.yahoo.test") == {}


def test_spike_deferral(sim: Simulator) -> None:
    ms = sim["microsoft"]
    ms.configure(spike_defer=(60, 3))
    with connect(ms) as c:
        assert send(c, "a@d.test", "b@d.test", "c@d.test") == {}
        code, text = refused(c, "d@d.test")
        assert (code, text[:22]) == (451, "4.7.500 Server busy. P")
        assert "(S77719)" in text
    st = ms.stats()
    assert st["replies"]["deferred_spike"] == 1
    assert st["replies"]["throttled"] == 0
    assert st["messages"] == 1
    assert st["accepted"] == 3


def test_max_connections(sim: Simulator) -> None:
    gen = sim["generic"]
    gen.configure(max_connections=2)
    first, second = connect(gen), connect(gen)
    with pytest.raises(smtplib.SMTPConnectError) as info:
        connect(gen)
    assert info.value.smtp_code == 421
    assert b"Too many concurrent SMTP connections" in info.value.smtp_error
    first.quit()
    deadline = time.monotonic() + 5
    while gen.stats()["live_connections"] > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with connect(gen) as third:
        assert send(third, "a@d.test") == {}
    second.quit()
    st = gen.stats()
    assert st["replies"]["too_many_connections"] == 1
    assert st["connections"] == 4
    assert st["peak_connections"] == 2  # open sessions past the greeting


def test_configure_while_a_session_is_open(sim: Simulator) -> None:
    gmail = sim["gmail"]
    with connect(gmail) as c:
        assert send(c, "a@d.test", "b@d.test") == {}
        gmail.configure(throttle_per_minute=2)
        assert refused(c, "c@d.test")[0] == 450
        gmail.configure(throttle_per_minute=None)
        assert send(c, "c@d.test") == {}
    assert gmail.script.throttle_per_minute is None
    with pytest.raises(TypeError):
        gmail.configure(no_such_field=1)


def test_counters_and_reset(sim: Simulator) -> None:
    gen = sim["generic"]
    gen.configure(keep_bodies=True)
    with connect(gen) as c:
        send(c, "a@d.test", "b@d.test")
        send(c, "a@d.test")  # at-least-once: a duplicate
    assert gen.wait_for(3) == 3
    st = gen.stats()
    assert (st["accepted"], st["unique"], st["duplicates"]) == (3, 2, 1)
    assert st["accepted_addresses"] == {"a@d.test": 2, "b@d.test": 1}
    assert (st["messages"], st["transactions"], st["connections"]) == (2, 2, 1)
    assert len(st["accept_times"]) == 3
    assert st["per_minute"] == [3]
    assert st["last_accept"] >= st["first_accept"]
    assert [r.rcpts for r in gen.received] == [["a@d.test", "b@d.test"], ["a@d.test"]]
    assert gen.received[0].data.endswith(b"hello\r\n")
    json.dumps(st)  # plain data
    gen.reset_counters()
    assert gen.stats()["accepted"] == 0
    assert gen.received == []
    with pytest.raises(AssertionError, match="0 accepted"):
        gen.wait_for(1, timeout=0.05)


def test_per_minute_buckets() -> None:
    assert per_minute([]) == []
    assert per_minute([100.0, 110.0, 161.0, 290.0]) == [2, 1, 0, 1]


def test_zones_for_knot(dns_zones: ZoneSet) -> None:
    suffix = f"sim.{dns_zones.domain}"
    with Simulator({"gmail": None, "acme": "microsoft"}, suffix=suffix) as sim:
        assert sim.pattern("gmail") == f"*.gmail.{suffix}"
        assert sim["acme"].profile == "microsoft"
        dom = f"d0.{dns_zones.domain}"
        zones = sim.publish(dns_zones, {"acme": [dom]}, ttl=5)
        assert zones[f"acme.{suffix}"] == ["mx1 A 127.0.0.11", "mx2 A 127.0.0.11"]
        assert zones[dom] == [f"@ MX 10 mx1.acme.{suffix}.", f"@ MX 20 mx2.acme.{suffix}."]
        mx = dns_zones.server.query(dom, "MX").answer[0]
        assert sorted(str(r.exchange) for r in mx) == [f"mx1.acme.{suffix}.", f"mx2.acme.{suffix}."]
        a = dns_zones.server.query(f"mx2.acme.{suffix}", "A").answer[0]
        assert [r.address for r in a] == ["127.0.0.11"]
    with pytest.raises(KeyError):
        zone_records({"gmail": "127.0.0.10"}, {"yahoo": ["x.test"]})


def test_replies_come_from_the_replies_file() -> None:
    path = SHARED / "reputation" / "replies" / "replies.yaml"
    known = {(e["text"], e["class"]) for e in yaml.safe_load(path.read_text())}
    used = [r for kinds in REPLIES.values() for r in kinds.values()]
    assert all((r.template, r.cls) in known for r in used if r.source == "replies.yaml")
    assert sum(r.source != "replies.yaml" for r in used) == 1  # Gmail's NoSuchUser


def test_gmail_lines_are_wrapped_like_gmail() -> None:
    text = render(REPLIES["gmail"]["throttled"].template, "127.0.0.5", multiline=True)
    lines = text.split("\r\n")
    assert len(lines) > 3
    assert all(ln.startswith("450-4.2.1 ") for ln in lines[:-1])
    assert lines[-1].startswith("450 4.2.1 ")
    assert max(map(len, lines)) <= 80


def test_cli_runs_until_sigterm_and_writes_stats(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.json"
    out = tmp_path / "stats.json"
    cfg.write_text(json.dumps({"providers": {"gmail": {"throttle_per_minute": 1}, "yahoo": {}}}))
    script = Path(__file__).resolve().parents[1] / "provsim.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--config", str(cfg), "--stats-out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("READY gmail=127.0.0.10:")
        port = int(ready.split()[1].rpartition(":")[2])
        with smtplib.SMTP("127.0.0.10", port, local_hostname="client.test", timeout=10) as c:
            send(c, "a@d.test")
            assert refused(c, "b@d.test")[0] == 450
        live = json.loads(out.read_text())
        assert live["final"] is False and live["port"] == port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    final = json.loads(out.read_text())
    assert final["final"] is True
    assert final["providers"]["gmail"]["accepted_addresses"] == {"a@d.test": 1}
    assert final["providers"]["gmail"]["replies"]["throttled"] == 1
