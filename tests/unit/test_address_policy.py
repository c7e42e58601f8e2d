"""Addresses, the inbound DMARC decision and header surgery."""

from __future__ import annotations

import pytest

from mailwarden.config.schema import InboundSettings
from mailwarden.core.address import Address
from mailwarden.core.errors import InvalidAddress
from mailwarden.smtp.headers import strip_forged_results
from mailwarden.smtp.policy import Action, DmarcFacts, decide_message
from mailwarden.smtp.server import add_enhanced_code


def test_address_parse_and_plus() -> None:
    a = Address.parse("<Alice+Tag@Example.TEST>")
    assert (a.local, a.domain) == ("Alice+Tag", "example.test")
    assert a.base().key() == "alice@example.test"
    assert Address.parse("+x@example.test").base_local == "+x"


@pytest.mark.parametrize(
    "bad", ["", "noat", "@example.test", "a@", "a..b@x.test", "a@-x.test", "x" * 65 + "@a.test"]
)
def test_address_invalid(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        Address.parse(bad)


def test_idn_domain() -> None:
    assert Address.parse("user@bücher.example").domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("result", "policy", "settings", "action"),
    [
        ("pass", "reject", {}, Action.INBOX),
        ("fail", "reject", {}, Action.REJECT),
        ("fail", "reject", {"dmarc_reject": "quarantine"}, Action.JUNK),
        ("fail", "reject", {"dmarc_reject": "accept"}, Action.INBOX),
        ("fail", "quarantine", {}, Action.JUNK),
        ("fail", "quarantine", {"dmarc_quarantine": "accept"}, Action.INBOX),
        ("fail", "none", {}, Action.INBOX),
        ("temperror", "reject", {}, Action.INBOX),
        ("none", "none", {}, Action.INBOX),
    ],
)
def test_dmarc_decision(result: str, policy: str, settings: dict[str, str], action: Action) -> None:
    d = decide_message(DmarcFacts(result, policy, "example.test"), InboundSettings(**settings))
    assert d.action is action
    assert d.reasons
    if action is Action.REJECT:
        assert (d.reply.code, d.reply.enhanced) == (550, "5.7.1")


def test_strip_forged_results() -> None:
    raw = (
        b"Authentication-Results: mx.ours.test; spf=pass\r\n\tsmtp.mailfrom=x\r\n"
        b"Authentication-Results: other.test; dkim=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.ours.test; body stays\r\n"
    )
    out = strip_forged_results(raw, "MX.ours.test")
    assert out == (
        b"Authentication-Results: other.test; dkim=pass\r\nSubject: hi\r\n\r\n"
        b"Authentication-Results: mx.ours.test; body stays\r\n"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("503 Error: need MAIL command", "503 5.5.1 need MAIL command"),
        ("250 2.1.0 Sender OK", "250 2.1.0 Sender OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("354 End data", "354 End data"),
        ("220 banner", "220 banner"),
    ],
)
def test_enhanced_codes(line: str, expected: str) -> None:
    assert add_enhanced_code(line) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.test>",
        "<a@b.test> SIZE=5",
        "<Alice+x@Example.TEST>",
        "<jörg@example.test> SMTPUTF8",
        "<a.b.c@d-e.f.test>  BODY=8BITMIME SIZE=10 ",
        ' <"a b"@x.test>',
        "<a@b@c>",
        "<@route:a@b.test>",
        "<a..b@x.test>",
        "<a@[127.0.0.1]>",
        "a@b.test",
        "<a@b.test",
        "<>",
        "<a@b.test>SIZE=5",
        "<a@b.test> ",
        " <a@b.test> SIZE=5",
        "<a@b.test> SIZE=5 BODY=8BITMIME ",
    ],
)
def test_fast_address_parsing_matches_aiosmtpd(arg: str) -> None:
    from aiosmtpd.smtp import SMTP

    from mailwarden.smtp.server import MailwardenSMTP

    fast = MailwardenSMTP._getaddr(MailwardenSMTP.__new__(MailwardenSMTP), arg)
    slow = SMTP._getaddr(SMTP.__new__(SMTP), arg)
    assert fast == slow
