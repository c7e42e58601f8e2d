"""Real-world and hostile MIME (../shared/corpora/mime) through the real MX listener.

Malformed mail is data: every message must be accepted and stored byte for byte (after
the trace headers we prepend), whatever its MIME defects, 8-bit headers or encodings.
"""

from __future__ import annotations

import smtplib

import pytest

from mwserver import LOCAL_DOMAIN, ServerThread
from shared_data import CORPORA

CORPUS = CORPORA / "mime"
FILES = sorted(
    p
    for p in CORPUS.rglob("*")
    if p.is_file() and not p.name.startswith(("LICENSE", "README", ".")) and p.suffix != ".md"
)


def wire_form(raw: bytes) -> bytes:
    """What an SMTP client sends: CRLF line ends, a final CRLF."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return text if text.endswith(b"\r\n") else text + b"\r\n"


def test_corpus_is_there() -> None:
    assert len(FILES) > 100, f"expected the shared MIME corpus at {CORPUS}"


def test_every_corpus_message_is_accepted_and_stored_intact(server: ServerThread) -> None:
    alice = f"alice@{LOCAL_DOMAIN}"
    sent: list[bytes] = []
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=60) as s:
        for path in FILES:
            data = wire_form(path.read_bytes())
            refused = s.sendmail("corpus@nowhere.test", [alice], data, mail_options=["SMTPUTF8"])
            assert refused == {}, path
            sent.append(data)
    ms = server.services.mailstore
    stored = server.call(ms.messages(alice, "INBOX", limit=10_000))
    assert len(stored) == len(FILES)
    for record, data in zip(stored, sent, strict=True):
        raw = server.call(ms.raw_message(alice, "INBOX", record.uid))
        assert raw.endswith(data)
        assert raw[: len(raw) - len(data)].startswith(b"Received: ")
        for text in (record.headers.subject, record.headers.from_addr, record.headers.to_addr):
            text.encode("utf-8")  # what we keep for search is valid text


@pytest.mark.parametrize("name", ["nul-in-header", "huge-header-line"])
def test_hostile_variants(server: ServerThread, name: str) -> None:
    alice = f"alice@{LOCAL_DOMAIN}"
    if name == "nul-in-header":
        data = b"Subject: a\x00b\r\nFrom: x@y.test\r\n\r\nbody\x00\r\n"
    else:
        data = b"X-Long: " + b"a" * 200_000 + b"\r\nSubject: long\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=60) as s:
        assert s.sendmail("x@nowhere.test", [alice], data) == {}
    raw = server.call(server.services.mailstore.raw_message(alice, "INBOX", 1))
    assert raw.endswith(data)
