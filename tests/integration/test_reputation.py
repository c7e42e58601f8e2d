"""The reputation engine end to end: the real server sends campaigns through its queue into
simulated mailbox providers (tests/provsim.py) found by MX in the loopback DNS server.

Each test scripts a provider the way real ones behave (Gmail's 421 4.7.28 above a rate,
Microsoft's S3150 block after too many unknown users) and checks what mailwarden did: the
remediation log, lane state, alerts, and that every message was delivered or bounced with a
DSN, none lost. Nothing here asserts on timing.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dnsserver import KnotServer, unique_domain
from integration.sending import ALICE, SUBMISSION_LISTENERS, client_tls, delivery, message
from integration.sending import wait_until as _wait_until
from mailwarden.core.clock import FakeClock
from mwserver import LOCAL_DOMAIN, PASSWORD, ServerThread, make_config, mw, settings_for
from mwserver import write_config as write_cfg
from provsim import Simulator


def wait_until(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    return _wait_until(check, timeout, what)


class RunningClock(FakeClock):
    """Real time plus whatever the test adds: lets a test jump whole days while the
    server's rate limits, retries and timeouts keep running."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC))
        self._base = time.time()

    def now(self) -> datetime:
        return super().now() + (datetime.fromtimestamp(time.time(), UTC) - _epoch(self._base))


def _epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator({"gmail": "gmail", "microsoft": "microsoft", "other": "generic"}) as s:
        yield s


def start(
    tmp: Path,
    dns: KnotServer,
    sim: Simulator,
    reputation: dict[str, Any],
    clock: Any = None,
    fresh: bool = True,
    **extra: Any,
) -> tuple[ServerThread, Path]:
    providers = {n: [sim.pattern(n)] for n in ("gmail", "microsoft", "other")}
    rep = {"providers": providers, "tick": 0.2, "max_token_wait": 2.0, **reputation}
    cfg = make_config(
        tmp,
        nameserver=dns.nameserver,
        extra={
            "listeners": SUBMISSION_LISTENERS,
            "delivery": delivery(sim.port, retry_initial=1, retry_max=2),
            "reputation": rep,
            **extra,
        },
    )
    path = write_cfg(tmp, cfg)
    srv = ServerThread(settings_for(tmp, cfg), clock=clock).start()
    if fresh:
        acc = srv.services.accounts
        srv.call(acc.add_domain(LOCAL_DOMAIN))
        srv.call(acc.add_user(ALICE, PASSWORD))
    return srv, path


def send(srv: ServerThread, rcpts: list[str], n_each: int = 1) -> list[str]:
    """Submit one message per recipient over one session; returns the queue replies."""
    out = []
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=client_tls())
        s.login(ALICE, PASSWORD)
        for rcpt in rcpts:
            for _ in range(n_each):
                s.sendmail(ALICE, [rcpt], message(f"m {rcpt}", to=rcpt))
                out.append(rcpt)
    return out


def actions(srv: ServerThread, **kw: Any) -> list[Any]:
    return list(srv.call(srv.services.reputation_store.actions(limit=1000, **kw)))


def kinds(srv: ServerThread) -> list[str]:
    return [a.kind for a in reversed(actions(srv))]


def cli(path: Path, *args: str) -> Any:
    res = mw(path.parent, "reputation", *args, "--config", str(path))
    assert res.returncode == 0, res.stderr
    return res.stdout


def queue_empty(srv: ServerThread) -> bool:
    counts = srv.call(srv.services.queue.counts())
    return not any(counts.get(s) for s in ("queued", "deferred"))


def test_throttled_lane_slows_down_then_recovers_and_loses_nothing(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    # Gmail's "receiving mail too quickly" deferral above 5 recipients in 5 seconds (a
    # short window, so the test does not wait for a real minute to pass).
    sim["gmail"].configure(spike_defer=(5.0, 5))
    doms = [unique_domain("gm") for _ in range(2)]
    sim.publish(test_tld, {"gmail": doms})
    srv, path = start(
        tmp_path,
        test_tld,
        sim,
        {
            "warmup": {"enabled": False},
            # Start well above the provider's real limit, so the engine has to find it.
            "limits": {
                "gmail": {
                    "messages_per_hour": 36000,
                    "floor_per_hour": 2400,
                    "cap_per_hour": 72000,
                    "connections": 2,
                }
            },
            "aimd": {"cut_cooldown": 1, "increase_after": 3, "increase_fraction": 0.2},
        },
    )
    try:
        rcpts = [f"user{i}@{doms[i % 2]}" for i in range(20)]
        send(srv, rcpts)
        wait_until(lambda: sim["gmail"].stats()["accepted"] >= 20, 90, "all 20 delivered")
        st = sim["gmail"].stats()
        assert sorted(st["accepted_addresses"]) == sorted(rcpts)  # none lost
        assert st["replies"]["deferred_spike"] >= 1  # the provider did push back ...
        log = actions(srv)
        cuts = [a for a in log if a.kind == "throttle"]
        assert cuts, [a.kind for a in log]
        # ... and the engine cut the lane's rate with the reply as its reason.
        assert all(a.target.startswith(f"lane:{LOCAL_DOMAIN}|") for a in cuts)
        assert any("4.2.1" in a.reason and "throttl" in a.reason for a in cuts)
        lanes = json.loads(cli(path, "lanes", "--json"))
        gm = [x for x in lanes if x["provider"] == "gmail"]
        assert gm and gm[0]["rate_per_hour"] < 36000
        low = gm[0]["rate_per_hour"]
        # The provider lifts its limit: successes ramp the rate back up.
        sim["gmail"].configure(spike_defer=None)
        more = [f"again{i}@{doms[0]}" for i in range(15)]
        send(srv, more)
        wait_until(lambda: sim["gmail"].stats()["accepted"] >= 35, 60, "15 more delivered")
        wait_until(lambda: any(a.kind == "ramp" for a in actions(srv)), 30, "a ramp action")
        srv.call(srv.app.engine.flush())
        lanes = json.loads(cli(path, "lanes", "--json"))
        assert next(x for x in lanes if x["provider"] == "gmail")["rate_per_hour"] > low
        wait_until(lambda: queue_empty(srv), 30, "an empty queue")
        assert srv.call(srv.services.queue.counts()).get("bounced", 0) == 0
    finally:
        srv.stop()


def test_blocked_lane_opens_its_breaker_and_resumes_through_half_open_probes(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    sim["microsoft"].configure(block_after_unknown=2, block_seconds=8.0)
    dom = unique_domain("ms")
    sim.publish(test_tld, {"microsoft": [dom]})
    srv, path = start(
        tmp_path,
        test_tld,
        sim,
        {
            "warmup": {"enabled": False},
            "breaker": {"backoffs": [2, 4, 8], "probes": 2, "block_count": 3},
            # One connection: transactions in order, so the trip comes after exactly 3 blocks.
            "limits": {
                "microsoft": {"connections": 1, "messages_per_hour": 36000, "cap_per_hour": 72000}
            },
        },
    )
    try:
        bad = [f"unknown{i}@{dom}" for i in range(3)]
        send(srv, bad)
        good = [f"user{i}@{dom}" for i in range(8)]
        send(srv, good)
        wait_until(lambda: "breaker_open" in kinds(srv), 60, "the breaker to open")
        # A critical alert is raised (once per target while it is not resolved).
        wait_until(
            lambda: any(
                a.type == "breaker_open" and a.severity == "critical"
                for a in srv.call(srv.services.alerts.list("all"))
            ),
            10,
            "the alert",
        )
        # Held mail waits in the queue; half-open probes go out after the backoff; once the
        # provider's block expires the probes succeed and the breaker closes.
        wait_until(lambda: "breaker_close" in kinds(srv), 90, "the breaker to close")
        seq = kinds(srv)
        assert "breaker_half_open" in seq
        assert seq.index("breaker_open") < seq.index("breaker_half_open")
        wait_until(lambda: queue_empty(srv), 90, "an empty queue")
        st = sim["microsoft"].stats()
        blocked = st["replies"]["blocked"]
        delivered = set(st["accepted_addresses"])
        bounced = {
            e.recipient for e in srv.call(srv.services.events.query(filters={"outcome": "bounced"}))
        }
        # Nothing lost: each good recipient was delivered, or was refused with a 5xx block
        # (the 3 that tripped the breaker, then one per failed probe) and bounced with a
        # DSN to the sender. Without the breaker all 8 would have been refused.
        assert set(good) <= delivered | bounced
        trips = sum(1 for a in actions(srv) if a.kind == "breaker_open" and "lane:" in a.target)
        assert len(set(good) & bounced) == blocked <= 3 + (trips - 1)
        assert len(set(good) & delivered) >= 8 - blocked > 0
        out = cli(path, "explain", f"lane:{LOCAL_DOMAIN}|*|microsoft")
        assert "breaker_open" in out and "breaker_close" in out
        # One provider's blocks pause that provider's lane, not the whole domain.
        assert not [a for a in actions(srv) if a.target == f"domain:{LOCAL_DOMAIN}"]
        alerts = srv.call(srv.services.alerts.list("all"))
        assert any(a.type == "breaker_open" and a.status == "resolved" for a in alerts)
    finally:
        srv.stop()


def test_warmup_caps_a_new_lane_per_simulated_day_and_holds_the_rest(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("wu")
    sim.publish(test_tld, {"other": [dom]})
    clock = RunningClock()
    srv, path = start(
        tmp_path,
        test_tld,
        sim,
        {"warmup": {"schedule": "tiny", "custom": {"tiny": [3, 5]}}},
        clock=clock,
    )
    try:
        rcpts = [f"user{i}@{dom}" for i in range(11)]
        send(srv, rcpts)
        other = sim["other"]
        wait_until(lambda: other.stats()["accepted"] >= 3, 30, "day 1's cap")
        time.sleep(1.0)  # the rest stays held: the cap is 3 on day 1
        assert other.stats()["accepted"] == 3
        counts = srv.call(srv.services.queue.counts())
        assert counts.get("bounced", 0) == 0 and counts.get("queued", 0) == 8
        clock.advance(86_400 + 1)  # day 2: cap 5
        wait_until(lambda: other.stats()["accepted"] >= 8, 30, "day 2's cap")
        time.sleep(1.0)
        assert other.stats()["accepted"] == 8
        clock.advance(86_400 + 1)  # past the schedule: no cap
        wait_until(lambda: other.stats()["accepted"] >= 11, 30, "the rest")
        assert sorted(other.stats()["accepted_addresses"]) == sorted(rcpts)
        steps = wait_until(
            lambda: len([a for a in actions(srv) if a.kind == "warmup_step"]) >= 2, 10, "steps"
        )
        assert steps
        # Held time does not count toward the message lifetime (held_seconds recorded).
        seq = kinds(srv)
        assert "warmup_start" in seq
        log = json.loads(cli(path, "log", "--json"))
        assert any(x["kind"] == "warmup_step" and x["actor"] == "auto" for x in log)
    finally:
        srv.stop()


def test_operator_pause_resume_and_warmup_override_are_logged_with_their_author(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("op")
    sim.publish(test_tld, {"other": [dom]})
    srv, path = start(tmp_path, test_tld, sim, {})
    try:
        cli(path, "pause", f"domain:{LOCAL_DOMAIN}", "--reason", "DNS change", "--by", "carol")
        send(srv, [f"a@{dom}", f"b@{dom}"])
        time.sleep(1.5)
        assert sim["other"].stats()["accepted"] == 0  # held in the queue, not bounced
        assert srv.call(srv.services.queue.counts()).get("queued", 0) == 2
        cli(path, "resume", f"domain:{LOCAL_DOMAIN}", "--by", "carol")
        # A paused target is re-checked after PAUSE_RECHECK; the resume wakes the runner
        # only at the next claim, so allow a minute.
        wait_until(lambda: sim["other"].stats()["accepted"] >= 2, 90, "delivery after resume")
        cli(path, "warmup", "set", f"domain:{LOCAL_DOMAIN}", "20", "--by", "carol")
        log = json.loads(cli(path, "log", "--json"))
        mine = {(x["kind"], x["actor"]) for x in log}
        assert {("pause", "carol"), ("resume", "carol"), ("warmup_set", "carol")} <= mine
        res = mw(path.parent, "reputation", "pause", "nonsense", "--config", str(path))
        assert res.returncode != 0 and "KIND:VALUE" in res.stderr
    finally:
        srv.stop()


def test_tenant_volume_spike_pauses_the_account_with_451_and_an_alert(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("sp")
    sim.publish(test_tld, {"other": [dom]})
    srv, path = start(
        tmp_path,
        test_tld,
        sim,
        {"warmup": {"enabled": False}, "guardrails": {"spike_min": 4, "hourly_limit": 1000}},
    )
    try:
        # No baseline yet: a spike is 2 × spike_min recipients in the hour.
        codes = []
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
            s.starttls(context=client_tls())
            s.login(ALICE, PASSWORD)
            for i in range(12):
                try:
                    s.sendmail(ALICE, [f"r{i}@{dom}"], message(f"s{i}", to=f"r{i}@{dom}"))
                    codes.append(250)
                except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                    # the spike is caught at DATA; afterwards MAIL FROM itself is refused
                    codes.append(exc.smtp_code)
                    assert b"4.7.1" in exc.smtp_error and b"paused" in exc.smtp_error
                    s.rset()
            # Once paused, MAIL FROM itself is refused with 451 4.7.1: the client retries.
            code, text = s.mail(ALICE)
            assert code == 451 and b"4.7.1" in text
        assert 451 in codes and codes[0] == 250
        alerts = srv.call(srv.services.alerts.list("all"))
        assert any(a.type == "guardrail" and a.target == f"tenant:{ALICE}" for a in alerts)
        assert any(a.kind == "guardrail_pause" for a in actions(srv))
        status = json.loads(cli(path, "status", "--json"))
        assert f"tenant:{ALICE}" in status["paused"]
        cli(path, "resume", f"tenant:{ALICE}", "--by", "dave")
        time.sleep(2.5)  # the submission side re-reads pauses every 2 s
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
            s.starttls(context=client_tls())
            s.login(ALICE, PASSWORD)
            code, _ = s.mail(ALICE)
            assert code == 250
    finally:
        srv.stop()


def test_hourly_ceiling_defers_with_451_without_pausing(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("hc")
    sim.publish(test_tld, {"other": [dom]})
    srv, _path = start(
        tmp_path,
        test_tld,
        sim,
        {"warmup": {"enabled": False}, "guardrails": {"hourly_limit": 3}},
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
            s.starttls(context=client_tls())
            s.login(ALICE, PASSWORD)
            for i in range(3):
                s.sendmail(ALICE, [f"r{i}@{dom}"], message(f"c{i}", to=f"r{i}@{dom}"))
            with pytest.raises(smtplib.SMTPDataError) as info:
                s.sendmail(ALICE, [f"r9@{dom}"], message("c9", to=f"r9@{dom}"))
            assert info.value.smtp_code == 451 and b"4.7.1" in info.value.smtp_error
            assert b"limit" in info.value.smtp_error
        assert srv.call(srv.services.pauses.paused(f"tenant:{ALICE}")) is None
        [act] = [a for a in actions(srv) if a.target == f"tenant:{ALICE}"]
        assert act.kind == "guardrail_defer" and act.inputs["last_hour"] == 3
    finally:
        srv.stop()


def test_lane_state_survives_a_restart(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("rs")
    sim.publish(test_tld, {"other": [dom]})
    srv, _path = start(tmp_path, test_tld, sim, {"warmup": {"schedule": "t", "custom": {"t": [2]}}})
    try:
        send(srv, [f"u{i}@{dom}" for i in range(3)])
        wait_until(lambda: sim["other"].stats()["accepted"] >= 2, 30, "the day's cap")
    finally:
        srv.stop()
    # Same data directory: the lane state and the held mail are on disk.
    warm = {"warmup": {"schedule": "t", "custom": {"t": [2]}}}
    srv, path = start(tmp_path, test_tld, sim, warm, fresh=False)
    try:
        time.sleep(1.5)
        assert sim["other"].stats()["accepted"] == 2  # still day 1 with its cap used up
        lanes = json.loads(cli(path, "lanes", "--json"))
        assert len(lanes) == 1
        lane = lanes[0]
        assert lane["sent_today"] == 2 and lane["warmup_cap"] == 2
    finally:
        srv.stop()


def test_classify_cli_single_reply_and_file_in_input_order(tmp_path: Path) -> None:
    res = mw(
        tmp_path,
        "reputation",
        "classify",
        "--code",
        "421",
        "--enhanced",
        "4.7.28",
        "--text",
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail",
    )
    assert res.returncode == 0, res.stderr
    cls, _, rule = res.stdout.strip().partition("\t")
    assert cls == "throttled" and rule.startswith("rule=")
    replies = [
        {"code": 550, "enhanced": "5.1.1", "text": "550 5.1.1 user unknown"},
        {"code": 250, "enhanced": "2.0.0", "text": "250 2.0.0 OK queued"},
        {"code": None, "enhanced": None, "text": "connect to mx: Connection timed out"},
    ]
    f = tmp_path / "r.yaml"
    f.write_text(json.dumps(replies))  # JSON is YAML
    res = mw(tmp_path, "reputation", "classify", "--file", str(f))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["class"] for r in rows] == ["mailbox_unknown", "delivered", "network"]
    assert all(r["rule"] for r in rows)


def test_mail_over_a_cold_ips_warmup_cap_overflows_to_a_warm_ip(
    tmp_path: Path, test_tld: KnotServer, sim: Simulator
) -> None:
    dom = unique_domain("ov")
    sim.publish(test_tld, {"other": [dom]})
    sim["other"].configure(keep_bodies=True)
    cold, warm = "127.0.0.2", "127.0.0.3"
    srv, path = start(
        tmp_path,
        test_tld,
        sim,
        {"warmup": {"schedule": "t", "custom": {"t": [2, 4]}}},
        delivery=delivery(sim.port, retry_initial=1, retry_max=2, source_addresses=[cold, warm]),
    )
    try:
        # The warm IP has sent for years: an operator says so before the first send.
        cli(path, "warmup", "set", f"ip:{warm}", "3", "--by", "erin")
        time.sleep(0.6)  # applied at the engine's next tick
        rcpts = [f"u{i}@{dom}" for i in range(6)]
        send(srv, rcpts)
        wait_until(lambda: sim["other"].stats()["accepted"] >= 6, 30, "all six delivered")
        peers = [m.peer for m in sim["other"].received]
        assert peers.count(cold) == 2  # the cold IP sends its day-1 cap and no more ...
        assert peers.count(warm) == 4  # ... the rest overflows to the warm IP, none waits
        lanes = {x["lane"]: x for x in json.loads(cli(path, "lanes", "--json"))}
        assert lanes[f"{LOCAL_DOMAIN}|{cold}|other"]["warmup_cap"] == 2
        assert lanes[f"{LOCAL_DOMAIN}|{warm}|other"]["warmup_day"] is None
    finally:
        srv.stop()
