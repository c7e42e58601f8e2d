"""Composing bounces (RFC 3464 in RFC 6522 multipart/report): structure, fields, limits,
internationalised addresses, and that nothing untrusted can add a header field."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from mailwarden.delivery import dsn
from mailwarden.delivery.dsn import FailedRecipient, compose_dsn

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ORIGINAL = (
    b"From: Alice <alice@sender.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@sender.test>\r\n\r\nHi Bob,\r\nsee you.\r\n"
)


def failed(**overrides: object) -> FailedRecipient:
    values: dict[str, object] = {
        "recipient": "bob@remote.test",
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 <bob@remote.test>: no such user",
        "remote_mta": "mx1.remote.test",
        "last_attempt": NOW - timedelta(minutes=5),
    }
    values.update(overrides)
    return FailedRecipient(**values)  # type: ignore[arg-type]


def compose(*recipients: FailedRecipient, **overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "reporting_mta": "mail.sender.test",
        "original": ORIGINAL,
        "original_sender": "alice@sender.test",
        "recipients": recipients or (failed(),),
        "arrival": NOW - timedelta(hours=1),
        "now": NOW,
        "message_id_domain": "sender.test",
    }
    kwargs.update(overrides)
    return compose_dsn(**kwargs)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def all_defects(msg: EmailMessage) -> list[object]:
    return [d for part in msg.walk() for d in part.defects]


def status_text(raw: bytes) -> str:
    """The body of the delivery-status part, as sent."""
    boundary = parse(raw).get_boundary()
    assert boundary
    part = raw.split(f"--{boundary}".encode())[2]
    return part.split(b"\r\n\r\n", 1)[1].decode()


def assert_wire_form(raw: bytes) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_mime_structure_is_a_clean_multipart_report() -> None:
    raw = compose(failed(), failed(recipient="carol@remote.test", diagnostic="", remote_mta=""))
    assert_wire_form(raw)
    assert raw.isascii()
    msg = parse(raw)
    assert all_defects(msg) == []
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.sender.test>"
    assert b"\r\nTo: <alice@sender.test>\r\n" in raw
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"] == "Sat, 21 Nov 2026 10:00:00 +0000"
    assert re.fullmatch(r"<20261121100000\.[0-9a-f]{20}@sender\.test>", msg["Message-ID"])
    assert "Content-Transfer-Encoding" not in msg


def test_delivery_status_fields() -> None:
    raw = compose(
        failed(),
        failed(recipient="carol@remote.test", diagnostic="", remote_mta="", status="5.4.4"),
        envelope_id="ENV-42",
    )
    blocks = status_text(raw).split("\r\n\r\n")
    assert blocks[0] == (
        "Original-Envelope-Id: ENV-42\r\n"
        "Reporting-MTA: dns; mail.sender.test\r\n"
        "Arrival-Date: Sat, 21 Nov 2026 09:00:00 +0000"
    )
    assert blocks[1] == (
        "Final-Recipient: rfc822; bob@remote.test\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx1.remote.test\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: no such user\r\n"
        "Last-Attempt-Date: Sat, 21 Nov 2026 09:55:00 +0000"
    )
    assert blocks[2] == (
        "Final-Recipient: rfc822; carol@remote.test\r\n"
        "Action: failed\r\n"
        "Status: 5.4.4\r\n"
        "Last-Attempt-Date: Sat, 21 Nov 2026 09:55:00 +0000"
    )
    assert blocks[3:] == [""]
    human = parse(raw).get_body(("plain",))
    assert human is not None
    text = human.get_content()
    assert "<bob@remote.test>" in text and "no such user" in text and "carol@remote.test" in text


def test_delayed_notice() -> None:
    until = NOW + timedelta(days=4)
    raw = compose(failed(action="delayed", status="4.4.1", will_retry_until=until), queue_id="Q7")
    assert parse(raw)["Subject"] == "Delivery Status Notification (Delay)"
    fields = status_text(raw)
    assert "Action: delayed\r\n" in fields
    assert "Will-Retry-Until: Wed, 25 Nov 2026 10:00:00 +0000\r\n" in fields
    assert b"Queue ID: Q7" in raw
    # Will-Retry-Until is only for delayed recipients (RFC 3464 §2.3.9).
    raw = compose(failed(will_retry_until=until), failed(action="delayed", status="4.4.1"))
    assert parse(raw)["Subject"] == "Undelivered Mail Returned to Sender"
    assert "Will-Retry-Until" not in status_text(raw)


def test_same_input_same_bytes() -> None:
    assert compose() == compose()
    assert (
        parse(compose())["Message-ID"]
        != parse(compose(now=NOW + timedelta(seconds=1)))["Message-ID"]
    )


def test_untrusted_text_cannot_add_header_fields() -> None:
    raw = compose(
        failed(
            recipient="bob@remote.test\r\nX-Evil: 1",
            diagnostic="550 no\r\nX-Injected: yes\r\n\r\n--x\x00\x1b[31m\u2028X-Evil: 2",
            remote_mta="mx.remote.test\r\nX-Evil: 3",
        ),
        reporting_mta="mail.sender.test\r\nX-Evil: 4",
        original_sender="alice@sender.test>\r\nBcc: victim@else.test",
        envelope_id="E\r\nX-Evil: 5",
        queue_id="Q\r\nX-Evil: 6",
    )
    assert_wire_form(raw)
    assert re.search(rb"(?im)^(x-evil|x-injected|bcc)", raw) is None
    assert b"\x00" not in raw and b"\x1b" not in raw
    msg = parse(raw)
    assert all_defects(msg) == []
    assert [name.lower() for name in msg] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "mime-version",
        "content-type",
    ]
    assert len(list(msg.iter_parts())) == 3
    # The reply survives, one-lined.
    assert "Diagnostic-Code: smtp; 550 no X-Injected: yes --x [31m X-Evil: 2" in status_text(raw)


def test_a_boundary_found_in_the_content_is_not_used() -> None:
    first = dsn._boundary("seed", [])
    parts = [dsn._Part("", f"--{first}\r\n".encode())]
    second = dsn._boundary("seed", parts)
    assert second != first and second.encode() not in parts[0].content


def test_returned_headers_are_crlf_and_only_the_header_section() -> None:
    raw = compose(original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert_wire_form(raw)
    returned = list(parse(raw).iter_parts())[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    payload = returned.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"


def test_whole_message_when_asked_and_it_fits() -> None:
    msg = parse(compose(include_body=True))
    assert all_defects(msg) == []
    returned = list(msg.iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_content()
    assert inner["Message-ID"] == "<m1@sender.test>"
    assert b"see you." in inner.as_bytes()
    # Too big for max_original: the header section only.
    msg = parse(compose(include_body=True, max_original=len(ORIGINAL) - 1))
    assert list(msg.iter_parts())[2].get_content_type() == "text/rfc822-headers"


def test_never_more_than_max_original_octets() -> None:
    fields = b"".join(b"X-Filler-%d: %s\r\n\t%s\r\n" % (i, b"a" * 60, b"b" * 60) for i in range(50))
    original = fields + b"\r\n" + b"body\r\n" * 1000
    limit = 1000
    raw = compose(original=original, include_body=True, max_original=limit)
    returned = list(parse(raw).iter_parts())[2]
    payload = returned.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert 0 < len(payload) <= limit
    assert fields.startswith(payload)  # cut where a field ends, never inside a folded one
    assert re.fullmatch(rb"(X-Filler-\d+: a{60}\r\n\tb{60}\r\n)+", payload)


def test_long_replies_are_folded_and_unfold_to_the_original() -> None:
    reply = "550-5.7.1 " + " ".join(f"word{i}" for i in range(200))
    raw = compose(failed(diagnostic=reply))
    assert_wire_form(raw)
    fields = status_text(raw)
    lines = fields.split("\r\n")
    assert all(len(line) <= 78 for line in lines)
    unfolded = re.sub(r"\r\n(?=[ \t])", "", fields)
    assert f"Diagnostic-Code: smtp; {reply}\r\n" in unfolded


def test_internationalised_recipient_uses_the_global_report() -> None:
    original = "From: Jörg <jörg@sender.test>\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
    raw = compose(
        failed(recipient="zoë+tag@bücher.test", diagnostic="550 5.1.1 unbekannt: zoë"),
        original=original,
        original_sender="jörg@sender.test",
    )
    assert_wire_form(raw)
    msg = parse(raw)
    assert all_defects(msg) == []
    assert msg.get_param("report-type") == "global-delivery-status"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert "\r\nTo: <jörg@sender.test>\r\n".encode() in raw
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "message/global-delivery-status", "message/global-headers"]
    text = raw.decode("utf-8")
    assert "Final-Recipient: utf-8; zoë\\x{2B}tag@bücher.test\r\n" in text  # RFC 6533 §3
    assert "Diagnostic-Code: smtp; 550 5.1.1 unbekannt: zoë\r\n" in text
    assert "Content-Type: text/plain; charset=utf-8\r\n" in text


def test_invalid_status_falls_back_to_the_class_of_the_action() -> None:
    fields = status_text(compose(failed(status="nonsense"), failed(status="", action="delayed")))
    assert "Status: 5.0.0\r\n" in fields and "Status: 4.0.0\r\n" in fields


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"recipients": ()}, "at least one recipient"),
        ({"original_sender": ""}, "null reverse-path"),
        ({"original_sender": "<>"}, "null reverse-path"),
        ({"recipients": (failed(action="bounced"),)}, "unknown DSN action"),
        ({"recipients": (failed(recipient=" "),)}, "without an address"),
        ({"reporting_mta": "\r\n"}, "reporting_mta"),
    ],
)
def test_caller_errors(overrides: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {
        "reporting_mta": "mail.sender.test",
        "original": ORIGINAL,
        "original_sender": "alice@sender.test",
        "recipients": (failed(),),
        "arrival": NOW,
        "now": NOW,
        "message_id_domain": "sender.test",
        **overrides,
    }
    with pytest.raises(ValueError, match=message):
        compose_dsn(**kwargs)  # type: ignore[arg-type]


def test_naive_times_are_taken_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    raw = compose(failed(last_attempt=naive), now=naive, arrival=naive)
    assert parse(raw)["Date"] == "Sat, 21 Nov 2026 10:00:00 +0000"
    assert "Last-Attempt-Date: Sat, 21 Nov 2026 10:00:00 +0000" in status_text(raw)
