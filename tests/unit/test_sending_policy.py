"""Pure sending policy: retry schedule, transports, submission checks, DNS records, lockouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailwarden.config.schema import DeliverySettings, SubmissionSettings
from mailwarden.core.events import Outcome
from mailwarden.core.headers import read_headers
from mailwarden.core.replies import Reply
from mailwarden.delivery.prepare import Checked, check_submission, complete_headers
from mailwarden.delivery.retry import decide, reply_class, retry_delay
from mailwarden.delivery.transports import parse_transport, transport_for
from mailwarden.services.authguard import decide as lockout
from mailwarden.services.dns_records import records_for
from mailwarden.store.records import DkimKeyRecord


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


RSA_PEM = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
ED25519_PEM = _pem(ed25519.Ed25519PrivateKey.generate())

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = DeliverySettings()


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 4800), (6, 9600), (7, 14400), (20, 14400)],
)
def test_retry_schedule_doubles_from_5_minutes_to_4_hours(attempts: int, seconds: float) -> None:
    assert retry_delay(attempts, S) == seconds


def test_default_schedule_gives_up_after_5_days() -> None:
    created, now, attempts = T0, T0, 0
    while True:
        attempts += 1
        d = decide(421, "4.7.0", attempts=attempts, created_at=created, now=now, s=S)
        if d.state != "deferred":
            break
        now = d.next_attempt_at
    assert d.state == "bounced" and d.expired and d.status == "4.4.7"
    age = now - created
    assert timedelta(days=4, hours=20) <= age <= timedelta(days=5)
    assert 30 <= attempts <= 40  # 5 min doubling to 4 h over 5 days


def test_time_held_by_our_own_policy_extends_the_lifetime() -> None:
    near_end = T0 + timedelta(days=4, hours=23)
    d = decide(421, "4.7.0", attempts=30, created_at=T0, now=near_end, s=S)
    assert d.state == "bounced" and d.expired  # the next retry would pass 5 days
    held = 2 * 86_400.0  # two days waiting for a warm-up cap / an open breaker
    d = decide(421, "4.7.0", attempts=30, created_at=T0, now=near_end, s=S, held_seconds=held)
    assert d.state == "deferred"
    late = T0 + timedelta(days=6, hours=23, minutes=30)
    d = decide(421, "4.7.0", attempts=31, created_at=T0, now=late, s=S, held_seconds=held)
    assert d.state == "bounced" and d.expired  # held time extends, it does not reset


@pytest.mark.parametrize(
    ("code", "enhanced", "kind"),
    [
        (250, "2.0.0", "success"),
        (451, "4.3.0", "temporary"),
        (550, "5.1.1", "permanent"),
        (None, "4.4.1", "temporary"),
        (None, "5.1.10", "permanent"),  # null MX (RFC 7505)
        (None, "", "temporary"),
    ],
)
def test_reply_class(code: int | None, enhanced: str, kind: str) -> None:
    assert reply_class(code, enhanced) == kind


def test_permanent_failure_bounces_with_its_status() -> None:
    d = decide(550, "5.1.1", attempts=1, created_at=T0, now=T0, s=S)
    assert (d.state, d.outcome, d.status) == ("bounced", Outcome.BOUNCED, "5.1.1")
    # RFC 3463 §2: an enhanced code whose class disagrees with the reply is not trusted
    assert decide(550, "2.0.0", attempts=1, created_at=T0, now=T0, s=S).status == "5.0.0"


def test_transport_urls() -> None:
    t = parse_transport("smtp+starttls://user:p%40ss@relay.example.net:2587")
    assert (t.host, t.port, t.tls, t.username, t.password) == (
        "relay.example.net",
        2587,
        "starttls",
        "user",
        "p@ss",
    )
    assert "p@ss" not in repr(t) and "p@ss" not in t.display
    assert parse_transport("smtps://relay.example.net").port == 465
    assert parse_transport("smtp://127.0.0.1:2626").tls == "opportunistic"
    for bad, why in [
        ("smtp://user:pw@relay.example.net", "credentials need TLS"),
        ("http://x", "scheme"),
        ("smtp://", "no host"),
        ("smtp://h/path", "nothing more"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_transport(bad)
    table = {"*": parse_transport("smtp://10.0.0.1"), "a.test": parse_transport("smtp://10.0.0.2")}
    assert transport_for("a.test", table) == table["a.test"]
    assert transport_for("b.test", table) == table["*"]
    assert transport_for("b.test", {}) is None


def _check(raw: bytes, smtputf8: bool = False) -> Checked | Reply:
    return check_submission(raw, read_headers(raw), smtputf8=smtputf8)


def test_submission_checks() -> None:
    ok = _check(b"From: Alice <alice@example.test>\r\nSubject: x\r\n\r\nhi\r\n")
    assert isinstance(ok, Checked) and str(ok.from_address) == "alice@example.test"
    assert str(_check(b"Subject: x\r\n\r\nhi\r\n")).startswith("550 5.6.0")
    two = b"From: a@example.test\r\nFrom: b@example.test\r\n\r\n"
    assert "more than one From" in str(_check(two))
    assert str(_check(b"From: not an address\r\n\r\n")).startswith("550 5.6.0")
    eight = "From: a@example.test\r\nSubject: héllo\r\n\r\n".encode()
    assert str(_check(eight)).startswith("550 5.6.7")
    assert isinstance(_check(eight, smtputf8=True), Checked)
    # 8-bit in the body is fine without SMTPUTF8 (8BITMIME covers it)
    assert isinstance(_check("From: a@example.test\r\n\r\nhéllo\r\n".encode()), Checked)


def test_complete_headers_adds_date_and_message_id_only_when_missing() -> None:
    raw = b"From: a@example.test\r\n\r\nhi\r\n"
    done, fields = complete_headers(raw, read_headers(raw), domain="example.test", now=T0)
    names = [n.lower() for n, _ in read_headers(done)]
    assert names.count("date") == 1 and names.count("message-id") == 1
    assert [(n.lower(), v) for n, v in fields] == [(n.lower(), v) for n, v in read_headers(done)]
    again, _ = complete_headers(done, read_headers(done), domain="example.test", now=T0)
    assert again == done


def test_dns_records_for_a_domain() -> None:
    keys = [
        DkimKeyRecord(1, "example.test", "mw20261121r", "rsa-sha256", RSA_PEM),
        DkimKeyRecord(2, "example.test", "mw20261121e", "ed25519-sha256", ED25519_PEM),
        DkimKeyRecord(
            3, "example.test", "old", "rsa-sha256", RSA_PEM, "retiring", T0, T0 + timedelta(7)
        ),
    ]
    recs = records_for(
        "example.test", hostname="mx.example.test", keys=keys, sending_ips=["192.0.2.1"]
    )
    by = {(r.name, r.type): r.value for r in recs}
    assert by[("example.test", "MX")] == "10 mx.example.test."
    assert by[("example.test", "TXT")] == "v=spf1 mx ip4:192.0.2.1 ~all"
    assert by[("mw20261121r._domainkey.example.test", "TXT")].startswith("v=DKIM1; k=rsa; p=")
    assert by[("mw20261121e._domainkey.example.test", "TXT")].startswith("v=DKIM1; k=ed25519;")
    assert ("old._domainkey.example.test", "TXT") in by  # still published in its grace
    dmarc = by[("_dmarc.example.test", "TXT")]
    assert dmarc.startswith("v=DMARC1; p=none; rua=mailto:")
    assert by[("_smtp._tls.example.test", "TXT")].startswith("v=TLSRPTv1; rua=mailto:")
    long_txt = next(r for r in recs if r.name.startswith("mw20261121r"))
    assert '" "' in long_txt.zone_line()  # split into 255-octet strings


def test_lockout_decision() -> None:
    s = SubmissionSettings(auth_failures_per_ip=10, auth_failures_per_account=5)
    assert lockout("192.0.2.1", "alice@example.test", 9, 4, s) is None
    by_ip = lockout("192.0.2.1", "alice@example.test", 10, 0, s)
    assert by_ip is not None and by_ip.kind == "ip"
    by_acct = lockout("192.0.2.1", "alice@example.test", 0, 5, s)
    assert by_acct is not None and by_acct.kind == "account"
