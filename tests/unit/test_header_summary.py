"""The stored header summary: decoding of RFC 2047 words, raw UTF-8 and folding."""

from __future__ import annotations

from mailwarden.core.headers import read_headers
from mailwarden.delivery.headers import summarize


def test_raw_utf8_and_latin1_headers() -> None:
    raw = "Subject: grüße\r\nFrom: Jörg <j@x.test>\r\n\r\nbody\r\n".encode()
    s = summarize(read_headers(raw))
    assert s.subject == "grüße"
    assert s.from_addr == "Jörg <j@x.test>"
    s.subject.encode("utf-8")  # storable: no surrogates left
    latin1 = b"Subject: caf\xe9\r\n\r\n"
    assert summarize(read_headers(latin1)).subject == "caf\ufffd"


def test_encoded_words_folding_and_first_occurrence() -> None:
    raw = (
        b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n =?utf-8?q?_und_mehr?=\r\n"
        b"Subject: second\r\nMessage-ID: <a@b>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0100\r\n\r\n"
    )
    s = summarize(read_headers(raw))
    assert s.subject == "grüße und mehr"
    assert s.message_id == "<a@b>"
    assert s.date is not None and s.date.isoformat() == "2026-11-21T09:00:00+00:00"


def test_garbage_never_raises() -> None:
    raw = b"Subject: =?bogus?x?zz?=\r\nDate: yesterday-ish\r\nFrom: \xff\xfe\r\n\r\n"
    s = summarize(read_headers(raw))
    assert s.date is None
    assert s.subject
