"""Reading bounces: real ones from ../shared/corpora/bounces (sisimai and flufl.bounce test
sets), lenient corner cases, limits, and a round trip through our own compose_dsn."""

from __future__ import annotations

import base64
import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailwarden.delivery.dsn import FailedRecipient, compose_dsn
from mailwarden.reputation.feedback.dsn import DsnRecipient, ParsedDsn, parse_dsn
from shared_data import CORPORA

BOUNCES = CORPORA / "bounces"
needs_corpus = pytest.mark.skipif(not BOUNCES.is_dir(), reason=f"no bounce corpus at {BOUNCES}")
CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _corpus_files() -> list[Path]:
    if not BOUNCES.is_dir():
        return []
    skip = {"LICENSE", "expected.csv", "REASONS.md"}
    return sorted(p for p in BOUNCES.rglob("*") if p.is_file() and p.name not in skip)


def _is_rfc3464_style(path: Path) -> bool:
    """Has a report part with at least one recipient block, judged by plain text search."""
    data = path.read_bytes()
    return bool(
        re.search(rb"(?im)^content-type:[ \t]*message/(global-)?delivery-status", data)
        and re.search(rb"(?im)^final-recipient[ \t]*:", data)
    )


def _expected() -> dict[str, tuple[set[str], str]]:
    """File name → (the addresses the corpus expects, its status or failure type)."""
    out: dict[str, tuple[set[str], str]] = {}
    if not BOUNCES.is_dir():
        return out
    for folder, address_col, kind_col in (
        ("sisimai-dev", "recipient", "dsn_status"),
        ("flufl", "expected_addresses", "failure_type"),
    ):
        with (BOUNCES / folder / "expected.csv").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                addresses = {a.lower() for a in row[address_col].split(";") if a}
                known, kind = out.get(row["file"], (set(), row[kind_col]))
                out[row["file"]] = (known | addresses, kind)
    return out


FILES = _corpus_files()
RFC3464 = [p for p in FILES if _is_rfc3464_style(p)]
EXPECTED = _expected()

# Where the DSN's own fields disagree with the corpus's expectation (which sisimai or flufl
# got from the prose part, or by rewriting), the parser reports the DSN.
RECIPIENT_DIFFERS = {
    "lhost-exim-60.eml": "Final-Recipient is a mailbox file path",
    "lhost-sendmail-15.eml": "Final-Recipient is '@mx.example.org'",
}
NOT_MIME = {"lhost-sendmail-54.eml": "the sample lost its MIME header fields: no parts to find"}
NO_STATUS = {"lhost-sendgrid-03.eml": "'Status:' is empty and the reply has no code"}


def _is_pseudo(status: str) -> bool:
    """sisimai's made-up codes (see REASONS.md): 5.0.9xx, 5.9.xxx."""
    return bool(re.fullmatch(r"5\.0\.9\d\d|5\.9\.\d+", status))


@needs_corpus
def test_corpus_is_there() -> None:
    assert len(FILES) > 250
    assert len(RFC3464) > 100


@needs_corpus
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_never_raises_on_the_corpus(path: Path) -> None:
    result = parse_dsn(path.read_bytes())
    assert isinstance(result, ParsedDsn)
    assert all(isinstance(d, str) and d for d in result.defects)
    if not result.is_dsn:
        assert result.recipients == ()
        assert "no delivery-status part" in result.defects
    for r in result.recipients:
        assert r.final_recipient
        assert "\n" not in r.diagnostic and "\r" not in r.diagnostic


@needs_corpus
@pytest.mark.parametrize("path", RFC3464, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rfc3464_samples_give_recipients_with_a_status(path: Path) -> None:
    result = parse_dsn(path.read_bytes())
    if path.name in NOT_MIME:
        assert not result.is_dsn
        return
    assert result.is_dsn
    assert result.recipients
    assert len(result.recipients) < 20
    statuses = [r.status for r in result.recipients]
    if path.name not in NO_STATUS:
        assert all(CODE.fullmatch(s) for s in statuses), statuses
    if path.name not in EXPECTED:
        return
    addresses, kind = EXPECTED[path.name]
    found = {
        a.lower() for r in result.recipients for a in (r.final_recipient, r.original_recipient)
    }
    if addresses and path.name not in RECIPIENT_DIFFERS:
        assert addresses & found, (addresses, found)
    actions = {r.action for r in result.recipients}
    if kind == "temporary":
        assert "delayed" in actions
    elif kind == "permanent":
        assert actions - {"delayed"}
    elif CODE.fullmatch(kind) and not _is_pseudo(kind):
        assert kind[0] in {s[0] for s in statuses}


@needs_corpus
def test_a_known_sample_in_detail() -> None:
    result = parse_dsn((BOUNCES / "sisimai-dev" / "rfc3464-03.eml").read_bytes())
    assert result.reporting_mta == "smtpd-02.example.org"
    assert result.original_message_id == "<220000000022.0000.0000000000000000222@NEKO.NYAAN>"
    assert result.recipients == (
        DsnRecipient(
            final_recipient="kijitora@example.com",
            original_recipient="kijitora@example.com",
            action="failed",
            status="5.0.0",
            diagnostic="554 Mail from nekonyaan@example.net rejected for policy reasons.",
            remote_mta="192.0.2.2",
        ),
    )


# --- round trip through compose_dsn --------------------------------------------------------

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("include_body", [False, True])
def test_round_trip_with_compose(include_body: bool) -> None:
    sent = [
        FailedRecipient(
            "bob@remote.test",
            "5.1.1",
            "550-5.1.1 The email account that you tried to reach does not exist. "
            "550 5.1.1 (see https://remote.test/help?x=1;y=2) - gsmtp",
            "mx1.remote.test",
            NOW,
        ),
        FailedRecipient("carol@slow.test", "4.4.7", "", "", NOW, "delayed", NOW + timedelta(1)),
        FailedRecipient(
            "zoë+x@bücher.test", "5.2.2", "552 5.2.2 voll", "mx.xn--bcher-kva.test", NOW
        ),
    ]
    original = b"Message-ID: <orig-1@sender.test>\r\nSubject: hi\r\n\r\nbody\r\n"
    raw = compose_dsn(
        reporting_mta="mail.sender.test",
        original=original,
        original_sender="alice@sender.test",
        recipients=sent,
        arrival=NOW,
        now=NOW,
        message_id_domain="sender.test",
        envelope_id="ENV-1",
        include_body=include_body,
    )
    result = parse_dsn(raw)
    assert result.is_dsn
    assert result.defects == ()
    assert result.reporting_mta == "mail.sender.test"
    assert result.original_envelope_id == "ENV-1"
    assert result.original_message_id == "<orig-1@sender.test>"
    assert [
        (r.final_recipient, r.action, r.status, r.diagnostic, r.remote_mta)
        for r in result.recipients
    ] == [(s.recipient, s.action, s.status, s.diagnostic, s.remote_mta) for s in sent]


# --- leniency ------------------------------------------------------------------------------


def report(fields: str, *, ctype: str = "message/delivery-status", cte: str = "") -> bytes:
    body = fields.encode()
    if cte == "base64":
        body = base64.encodebytes(body)
    head = f"Content-Type: {ctype}\r\n" + (f"Content-Transfer-Encoding: {cte}\r\n" if cte else "")
    return (
        (
            "From: MAILER-DAEMON@mx.test\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
            f"--b1\r\n{head}\r\n"
        ).encode()
        + body
        + (b"\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-Id: <x@y>\r\n--b1--\r\n")
    )


def test_folding_case_comments_and_missing_empty_lines() -> None:
    fields = (
        "reporting-mta: DNS; mx.test (our relay)\n"
        "Final-Recipient: RFC822; <one@a.test> (first)\n"
        "ACTION: Failed\n"
        "Status: 5.1.1 (unknown\n   user)\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such\n"
        "\tuser (really)\n"
        "Final-Recipient: rfc822;two@a.test\n"
        "Action: delayed\n"
        "Status: 4.2.2\n"
        "Remote-MTA: dns; mx.a.test (192.0.2.1 (nested))\n"
    )
    result = parse_dsn(report(fields))
    assert result.is_dsn
    assert result.reporting_mta == "mx.test"
    assert result.original_message_id == "<x@y>"
    one, two = result.recipients
    assert (one.final_recipient, one.action, one.status) == ("one@a.test", "failed", "5.1.1")
    assert one.diagnostic == "550 5.1.1 no such user (really)"
    assert (two.final_recipient, two.action, two.status) == ("two@a.test", "delayed", "4.2.2")
    assert two.remote_mta == "mx.a.test"
    assert "no empty line after the per-message fields" in result.defects
    assert "no empty line between recipient blocks" in result.defects


def test_global_report_base64_with_utf8_addresses() -> None:
    fields = (
        "Reporting-MTA: dns; mx.test\r\n\r\n"
        "Original-Recipient: utf-8; j\\x{F6}rg\\x{2B}1@b\\x{FC}cher.test\r\n"
        "Final-Recipient: utf-8; jörg@bücher.test\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
    )
    raw = report(fields, ctype="message/global-delivery-status", cte="base64")
    (rcpt,) = parse_dsn(raw).recipients
    assert rcpt.original_recipient == "jörg+1@bücher.test"
    assert rcpt.final_recipient == "jörg@bücher.test"


def test_report_inside_a_forwarded_message_and_outside_multipart_report() -> None:
    inner = report(
        "Reporting-MTA: dns; mx.test\r\n\r\nFinal-Recipient: rfc822; a@b.test\r\n"
        "Action: failed\r\nStatus: 5.0.0\r\n"
    )
    raw = (
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n--outer\r\n'
        b"Content-Type: text/plain\r\n\r\nFYI, a bounce.\r\n--outer\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--outer--\r\n"
    )
    result = parse_dsn(raw)
    assert [r.final_recipient for r in result.recipients] == ["a@b.test"]
    assert result.defects == ()


def test_status_from_the_reply_when_the_field_has_none() -> None:
    fields = (
        "Reporting-MTA: dns; mx.test\n\n"
        "Final-Recipient: a@b.test\nAction: failed\nDiagnostic-Code: smtp; 550 5.7.1 nope\n\n"
        "Final-Recipient: rfc822; c@b.test\nAction: failed\nStatus: 553 too big\n"
    )
    first, second = parse_dsn(report(fields)).recipients
    assert first.status == "5.7.1"
    assert second.status == "5.0.0"


def test_not_a_dsn() -> None:
    result = parse_dsn(b"From: a@b.test\r\nSubject: out of office\r\n\r\nBack Monday.\r\n")
    assert result == ParsedDsn(False, (), "", "", "", ("no delivery-status part",))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"\xff\xfe\x00" * 100,
        b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: message/'
        b"delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!A\r\n",
        report("Final-Recipient: rfc822; (unclosed\nStatus: 5.\nAction: (\n\n\n"),
        report("Final-Recipient: utf-8; \\x{110000}\\x{D800}@x\n"),
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    assert isinstance(parse_dsn(raw), ParsedDsn)


def test_size_limit() -> None:
    with pytest.raises(ValueError, match="over the 100-octet limit"):
        parse_dsn(b"x" * 101, max_size=100)


def test_recipient_cap() -> None:
    blocks = "".join(f"Final-Recipient: rfc822; u{i}@b.test\nStatus: 5.0.0\n\n" for i in range(50))
    result = parse_dsn(report("Reporting-MTA: dns; mx.test\n\n" + blocks), max_recipients=10)
    assert len(result.recipients) == 10
    assert "more than 10 recipients; the rest were not read" in result.defects


def test_part_and_depth_caps() -> None:
    many = b"".join(b"--m\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(2000))
    raw = b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n' + many + b"--m--\r\n"
    result = parse_dsn(raw)
    assert not result.is_dsn
    assert any(d.startswith("more than 500 MIME parts") for d in result.defects)
    deep = b"Content-Type: text/plain\r\n\r\nend\r\n"
    for _ in range(100):
        deep = b"Content-Type: message/rfc822\r\n\r\n" + deep
    result = parse_dsn(deep)
    assert "MIME nesting too deep; the inner parts were not read" in result.defects


def test_fields_right_after_the_part_header_and_an_unindented_continuation() -> None:
    raw = (
        b"Content-Type: multipart/report;\r\nboundary=b1; report-type=delivery-status\r\n\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\nReporting-MTA: dns; mx.test\r\n\r\n"
        b"Final-Recipient: rfc822; a@b.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--b1--\r\n"
    )
    result = parse_dsn(raw)
    assert result.reporting_mta == "mx.test"
    assert [r.final_recipient for r in result.recipients] == ["a@b.test"]
    assert "header field continued without indentation" in result.defects
    assert "no empty line between a MIME header section and the DSN fields" in result.defects
