"""Whole FETCH responses from mailwarden.imap.fetch_render vs a real Dovecot, byte for byte.

Every message (crafted cases plus an evenly spread subset of ../shared/corpora/mime,
MAILWARDEN_FETCH_CORPUS_LIMIT, default 60; 0 = all 173) is APPENDed to a throw-away
Dovecot (tests/dovecot.py) and fetched over a raw IMAP connection with each item list
of ITEM_LISTS, as FETCH and as UID FETCH. Our response is rendered from the same bytes
with Dovecot's own flags and INTERNALDATE (read first with FETCH (FLAGS INTERNALDATE));
the complete untagged line must be identical. Where Dovecot refuses a BINARY fetch
(NO [UNKNOWN-CTE], NO [PARSE], or a dropped connection for truncated encoded data),
render_fetch must raise UnknownCte / InvalidContent.

Dovecot's BINARY.SIZE is not always the size of its own BINARY data (it adds up per-part
sizes cached from a decoding of the whole message, and gets some wrong); each BINARY.SIZE
of Dovecot's answer is therefore checked against the length of Dovecot's BINARY[part]
literal, which RFC 3516 §4.2 says it must equal. Known, documented differences are strict
xfails: XFAIL for whole cases, and the tests at the end. The module takes about 5 s.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest

from dovecot import PASSWORD, USER, DovecotServer
from mailwarden.imap.fetch_render import (
    FetchMessage,
    InvalidContent,
    UnknownCte,
    render_fetch,
    render_flags,
)
from mailwarden.imap.wire.fetch import FetchRequest, parse_fetch
from mailwarden.imap.wire.lexer import CommandLexer
from shared_data import MIME_CORPUS, crlf, mime_corpus

LIMIT = int(os.environ.get("MAILWARDEN_FETCH_CORPUS_LIMIT", "60"))

#: case id -> reason Dovecot's answer differs on purpose (xfail, strict); none today
XFAIL: dict[str, str] = {}

ITEM_LISTS = [
    "(UID FLAGS RFC822.SIZE INTERNALDATE)",
    "(RFC822.SIZE INTERNALDATE FLAGS UID UID FLAGS)",
    "FAST",
    "ALL",
    "FULL",
    "(ENVELOPE BODYSTRUCTURE)",
    "(BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[1]<0.10>)",
    "(BODY BODY.PEEK[TEXT]<5.100> UID BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.1]"
    " BODY.PEEK[HEADER.FIELDS.NOT (Received content-type)] BODY.PEEK[3]<1000000.5> ENVELOPE)",
    "(RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[1.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[1]"
    " BODY.PEEK[1])",
    "(BINARY.PEEK[] BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2]<3.20> BINARY.SIZE[2]"
    " BINARY.PEEK[1.1] BINARY.PEEK[9])",
    "(RFC822.HEADER RFC822.TEXT)",  # not PEEK: sets \Seen, so FLAGS is added
    "(RFC822 BODY[TEXT] UID)",
]

CRAFTED: dict[str, bytes] = {
    "simple": b"From: A <a@example.com>\r\nSubject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000"
    b"\r\n\r\nhello\r\n",
    "encodings": (
        b"From: a@example.com\r\nSubject: enc\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"\r\npre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo=\r\n wor=00ld  \r\n"
        b"soft =\r\nbreak\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\nBgc=\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"gr\xc3\xbc\xc3\x9fe\r\n--b--\r\nepilogue\r\n"
    ),
    "base64-text": (
        b"Subject: b64\r\nMIME-Version: 1.0\r\n"
        b"Content-Transfer-Encoding: BASE64 (comment)\r\n\r\naGVs bG8g\r\nd29y\tbGQ=\r\n\r\n"
    ),
    "base64-empty": b"Subject: e\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    "qp-text": (
        b"Subject: qp\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: Quoted-Printable\r\n"
        b"\r\na=3Db  \r\nc =\r\n d\t\r\n=E2=82=ac\r\nend  "
    ),
    "nul-body": b"Subject: nul\r\n\r\nhel\x00lo\r\n",
    "nul-preamble": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\x00amble\r\n"
        b"--b\r\n\r\nplain\r\n--b--\r\n"
    ),
    "nul-mime-header": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-N: a\x00b\r\n\r\nplain\r\n"
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n"
    ),
    "rfc822-base64": (
        b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
        b"Content-Transfer-Encoding: base64\r\nX-B: 2\r\n\r\naGVsbG8=\r\n--b--\r\n"
    ),
    "nested-qp": (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
        b"Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--i\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\nx=41\r\n"
        b"--i--\r\n--o\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--o--\r\n"
    ),
    "multipart-cte": (
        b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n"
    ),
    "boundary-after-header": (  # Dovecot's header size stops before the boundary's CRLF
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\naGk=\r\n--b--\r\n"
    ),
    "unknown-cte": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b\r\n\r\nok\r\n--b--\r\n"
    ),
    "folded-cte": (
        b"Subject: f\r\nMime-Version: 1.0\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\naGk=\r\n"
    ),
    "bad-base64": (
        b"Subject: b\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aGVsbG8=\r\n\r\n-- \r\n"
    ),
    "bad-qp": (
        b"Subject: q\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"a=ZZb\r\n"
    ),
    "base64-no-padding": (
        b"Subject: p\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8\r\n"
    ),
    "no-body": b"From: a@example.com\r\nSubject: headers only\r\n",
    "empty-text": b"Subject: empty\r\n\r\n",
    "8bit-headers": b"From: J\xc3\xb6rg <j@example.com>\r\nSubject: gr\xfc\xdfe\r\n\r\nbody\r\n",
}


def _corpus() -> list[tuple[str, bytes]]:
    return mime_corpus(LIMIT)


CASES = [(f"crafted/{k}", crlf(v)) for k, v in CRAFTED.items()] + [
    (k, crlf(v)) for k, v in _corpus()
]
NAMES = [name for name, _raw in CASES]


def fetch_request(items: str) -> FetchRequest:
    lexer = CommandLexer(16, 10_000)
    assert lexer.scan(b" " + items.encode("ascii"), 0) is None
    return parse_fetch(lexer.finish())


class Disconnected(Exception):
    pass


class Wire:
    """A raw IMAP session: the server's bytes exactly as sent (literals inline)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.tag = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.buf = b""
        self._line()  # greeting
        self.command(f"LOGIN {USER} {PASSWORD}")
        self.command("SELECT INBOX")

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Disconnected
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[: end + 2], self.buf[end + 2 :]
        return line

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def command(self, text: str) -> tuple[list[bytes], bytes]:
        """Run ``text``: (untagged responses, tagged status line). Reconnects if dropped."""
        self.tag += 1
        tag = b"W%d " % self.tag
        try:
            self.sock.sendall(tag + text.encode("ascii") + b"\r\n")
            untagged: list[bytes] = []
            current = b""
            while True:
                line = self._line()
                current += line
                if m := re.search(rb"~?\{(\d+)\}\r\n\Z", line):
                    current += self._read(int(m.group(1)))
                    continue
                if line.startswith(tag):
                    return untagged, line
                untagged.append(current)
                current = b""
        except Disconnected:
            self.sock.close()
            self._connect()
            raise

    def fetch(self, seq: int, text: str) -> tuple[bytes | None, bytes]:
        """(the FETCH response line for ``seq``, the tagged status); None if there was none."""
        untagged, status = self.command(text)
        lines = [u for u in untagged if u.startswith(b"* %d FETCH (" % seq)]
        assert len(lines) <= 1, lines
        return (lines[0] if lines else None), status


_META = re.compile(rb'\* \d+ FETCH \(FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"\)\r\n')


def meta(wire: Wire, seq: int) -> tuple[tuple[str, ...], datetime]:
    """Dovecot's own flags and INTERNALDATE of message ``seq``."""
    line, _status = wire.fetch(seq, f"FETCH {seq} (FLAGS INTERNALDATE)")
    assert line is not None
    m = _META.fullmatch(line)
    assert m is not None, line
    flags = tuple(m.group(1).decode().split())
    return flags, datetime.strptime(m.group(2).decode(), "%d-%b-%Y %H:%M:%S %z")


class Mailbox:
    def __init__(self, dc: DovecotServer) -> None:
        self.dc = dc
        self.raws = [raw for _name, raw in CASES]
        self.uids = [dc.append(raw) for raw in self.raws]
        self.wire = Wire(dc.port)
        for seq in range(1, len(CASES) + 1, 3):  # some flags and keywords to render
            self.wire.command(f"STORE {seq} +FLAGS.SILENT ($Junk \\Flagged)")
        for seq in range(2, len(CASES) + 1, 4):
            self.wire.command(f"STORE {seq} +FLAGS.SILENT (\\Answered \\Draft)")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with DovecotServer() as dc:
        box = Mailbox(dc)
        yield box
        box.wire.close()


def ours(
    box: Mailbox, seq: int, items: str, *, uid: bool, seen_before: bool
) -> tuple[bytes | None, str]:
    """Our response, or the exception kind; flags as Dovecot has them after its fetch."""
    req = fetch_request(items)
    flags, date = meta(box.wire, seq)  # with \\Seen if Dovecot's fetch just set it
    seen_added = req.sets_seen and not seen_before
    raw = box.raws[seq - 1]
    msg = FetchMessage(seq, box.uids[seq - 1], flags, 1, len(raw), date, raw)
    try:
        return render_fetch(msg, req, uid=uid, seen_added=seen_added), ""
    except InvalidContent:
        return None, "invalid"
    except UnknownCte:
        return None, "unknown-cte"


def dovecot_outcome(status: bytes) -> str:
    if b"[UNKNOWN-CTE]" in status:
        return "unknown-cte"
    if b"[PARSE]" in status:
        return "invalid"
    assert b" OK " in status, status
    return ""


@pytest.mark.skipif(not MIME_CORPUS.is_dir(), reason=f"corpus missing: {MIME_CORPUS}")
def test_corpus_present() -> None:
    assert len(_corpus()) > 0


_BINARY_SIZE = re.compile(rb" BINARY\.SIZE\[([0-9.]*)\] ([0-9]+)")
_LITERAL = re.compile(rb"~?\{([0-9]+)\}\r\n")


def binary_size_checked(wire: Wire, seq: int, line: bytes) -> bytes:
    """Dovecot's line with each BINARY.SIZE[p] set to the length of its own BINARY[p] data."""

    def own_size(m: re.Match[bytes]) -> bytes:
        part = m.group(1).decode("ascii")
        data, status = wire.fetch(seq, f"FETCH {seq} (BINARY.PEEK[{part}])")
        assert data is not None and b" OK " in status, status
        literal = _LITERAL.search(data)
        assert literal is not None, data
        return b" BINARY.SIZE[%s] %s" % (m.group(1), literal.group(1))

    return _BINARY_SIZE.sub(own_size, line)


@pytest.mark.parametrize("index", range(len(CASES)), ids=NAMES)
def test_fetch_matches_dovecot(
    mailbox: Mailbox, index: int, request: pytest.FixtureRequest
) -> None:
    if NAMES[index] in XFAIL:
        request.applymarker(pytest.mark.xfail(reason=XFAIL[NAMES[index]], strict=True))
    seq, uid = index + 1, mailbox.uids[index]
    mismatches = []
    for items in ITEM_LISTS:
        for use_uid in (False, True):
            seen_before = "\\Seen" in meta(mailbox.wire, seq)[0]
            command = f"UID FETCH {uid} {items}" if use_uid else f"FETCH {seq} {items}"
            try:
                theirs, status = mailbox.wire.fetch(seq, command)
                outcome = dovecot_outcome(status)
            except Disconnected:  # Dovecot's "FETCH failed" on truncated encoded data
                theirs, outcome = None, "invalid"
            mine, my_outcome = ours(mailbox, seq, items, uid=use_uid, seen_before=seen_before)
            if outcome:
                ok = my_outcome == outcome
            else:
                assert theirs is not None
                ok = mine == binary_size_checked(mailbox.wire, seq, theirs)
            if not ok:
                mismatches.append(
                    f"{command}\n  dovecot: {outcome or theirs!r}"
                    f"\n  ours:    {my_outcome or mine!r}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_every_binary_outcome_is_exercised(mailbox: Mailbox) -> None:
    """The crafted cases cover success, UNKNOWN-CTE, PARSE and the dropped connection."""
    outcomes = set()
    for name in ("encodings", "unknown-cte", "folded-cte", "bad-base64", "base64-no-padding"):
        seq = NAMES.index(f"crafted/{name}") + 1
        try:
            _line, status = mailbox.wire.fetch(seq, f"FETCH {seq} (BINARY.PEEK[1])")
            outcomes.add(dovecot_outcome(status) or "ok")
        except Disconnected:
            outcomes.add("disconnect")
    assert outcomes == {"ok", "unknown-cte", "invalid", "disconnect"}


# ---------------------------------------------------------------------- CONDSTORE, STORE


@pytest.fixture
def condstore(mailbox: Mailbox) -> Iterator[Wire]:
    wire = Wire(mailbox.dc.port)
    wire.command("ENABLE CONDSTORE")
    yield wire
    wire.close()


_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")


def _fresh_message(mailbox: Mailbox, raw: bytes) -> tuple[int, int]:
    uid = mailbox.dc.append(raw)
    mailbox.raws.append(raw)
    mailbox.uids.append(uid)
    mailbox.wire.command("NOOP")  # let the session see it
    return len(mailbox.raws), uid


def test_modseq_items_match_dovecot(mailbox: Mailbox, condstore: Wire) -> None:
    seq, uid = _fresh_message(mailbox, b"Subject: modseq\r\n\r\nbody text\r\n")
    condstore.command("NOOP")  # see the new message
    for command, items, use_uid, seen in [
        (f"FETCH {seq} (MODSEQ FLAGS UID)", "(MODSEQ FLAGS UID)", False, False),
        (f"UID FETCH {uid} (BODY.PEEK[TEXT] MODSEQ)", "(BODY.PEEK[TEXT] MODSEQ)", True, False),
        (f"FETCH {seq} (FLAGS) (CHANGEDSINCE 1)", "(FLAGS) (CHANGEDSINCE 1)", False, False),
        (f"FETCH {seq} (BODY[TEXT] UID MODSEQ)", "(BODY[TEXT] UID MODSEQ)", False, True),
    ]:
        flags, date = meta(condstore, seq)
        theirs, status = _first_fetch(condstore, seq, command, 2 if seen else 1)
        assert b" OK " in status
        m = _MODSEQ.search(theirs)
        assert m is not None
        flags_after = (*flags, "\\Seen") if seen else flags
        raw = mailbox.raws[seq - 1]
        msg = FetchMessage(seq, uid, flags_after, int(m.group(1)), len(raw), date, raw)
        assert render_fetch(msg, fetch_request(items), uid=use_uid, seen_added=seen) == theirs


def _first_fetch(wire: Wire, seq: int, command: str, count: int) -> tuple[bytes, bytes]:
    """With CONDSTORE a \\Seen change adds a second "FETCH (MODSEQ (n))": keep the first."""
    untagged, status = wire.command(command)
    lines = [u for u in untagged if u.startswith(b"* %d FETCH (" % seq)]
    assert len(lines) == count, lines
    assert count == 1 or re.fullmatch(rb"\* \d+ FETCH \(MODSEQ \(\d+\)\)\r\n", lines[1])
    return lines[0], status


def test_store_responses_match_render_flags(mailbox: Mailbox, condstore: Wire) -> None:
    seq, uid = _fresh_message(mailbox, b"Subject: store\r\n\r\nx\r\n")
    plain = mailbox.wire
    plain.command("NOOP")
    for wire, command, with_uid, with_modseq in [
        (plain, f"STORE {seq} +FLAGS (\\Flagged)", False, False),
        (plain, f"UID STORE {uid} +FLAGS (\\Deleted $Junk)", True, False),
        (condstore, f"STORE {seq} +FLAGS (\\Seen)", False, True),
        (condstore, f"UID STORE {uid} +FLAGS (\\Answered \\Draft)", True, True),
    ]:
        plain.command("NOOP")  # take the other session's updates first
        condstore.command("NOOP")
        untagged, status = wire.command(command)
        assert b" OK " in status
        (line,) = [u for u in untagged if u.startswith(b"* %d FETCH (" % seq)]
        flags, _date = meta(wire, seq)
        m = _MODSEQ.search(line)
        modseq = int(m.group(1)) if m else None
        assert (modseq is not None) == with_modseq
        assert render_flags(seq, uid if with_uid else None, flags, modseq) == line


# ---------------------------------------------------------------------- known differences


def _dovecot_fetch(mailbox: Mailbox, raw: bytes, items: str) -> tuple[bytes | None, bytes, int]:
    seq, _uid = _fresh_message(mailbox, raw)
    wire = Wire(mailbox.dc.port)  # a fresh session: no binary cache from earlier fetches
    try:
        line, status = wire.fetch(seq, f"FETCH {seq} {items}")
    finally:
        wire.close()
    return line, status, seq


def _render(mailbox: Mailbox, seq: int, items: str) -> bytes:
    flags, date = meta(mailbox.wire, seq)
    raw = mailbox.raws[seq - 1]
    msg = FetchMessage(seq, mailbox.uids[seq - 1], flags, 1, len(raw), date, raw)
    return render_fetch(msg, fetch_request(items))


@pytest.mark.xfail(
    strict=True,
    reason="Dovecot computes BINARY.SIZE from a decoding of the whole message, so one part "
    "with an unknown CTE makes BINARY.SIZE of every other part fail; we answer per RFC 3516 "
    "with the size of the part asked for",
)
def test_known_difference_binary_size_next_to_unknown_cte(mailbox: Mailbox) -> None:
    raw = CRAFTED["unknown-cte"]
    _line, status, seq = _dovecot_fetch(mailbox, raw, "(BINARY.SIZE[2])")
    assert b"[UNKNOWN-CTE]" in status  # Dovecot refuses ...
    with pytest.raises(UnknownCte):  # ... we answer "BINARY.SIZE[2] 2"
        _render(mailbox, seq, "(BINARY.SIZE[2])")


@pytest.mark.xfail(
    strict=True,
    reason="when no body is decoded Dovecot sends the original bytes cut to the length of "
    "the rewritten headers, so a multipart with a quoted-printable CTE loses its last bytes; "
    "we send the whole original section",
)
def test_known_difference_truncated_binary_of_multipart_with_cte(mailbox: Mailbox) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n--b\r\n\r\nplain\r\n--b--\r\n"
    )
    line, _status, seq = _dovecot_fetch(mailbox, raw, "(BINARY.PEEK[])")
    assert line is not None and b"{%d}" % (len(raw) - 10) in line  # 10 bytes short
    assert _render(mailbox, seq, "(BINARY.PEEK[])") == line


@pytest.mark.xfail(
    strict=True,
    reason='Dovecot echoes a quoted header name quoted ("FROM"); the FETCH parser keeps '
    "no quoting, so we echo FROM (clients match names, not quoting)",
)
def test_known_difference_quoted_header_name_echo(mailbox: Mailbox) -> None:
    items = '(BODY.PEEK[HEADER.FIELDS ("From")])'
    line, _status, seq = _dovecot_fetch(mailbox, b"From: a@b\r\n\r\nx\r\n", items)
    assert line is not None and b'"FROM"' in line
    assert _render(mailbox, seq, items) == line


@pytest.mark.xfail(
    strict=True,
    reason="Dovecot's BINARY.SIZE can differ from the length of its own BINARY data (here "
    "19 for a 25-byte quoted-printable part); we always send the length of what BINARY sends",
)
def test_known_difference_binary_size_inconsistent_in_dovecot(mailbox: Mailbox) -> None:
    raw = crlf(CRAFTED["encodings"])
    line, _status, _seq = _dovecot_fetch(mailbox, raw, "(BINARY.PEEK[1] BINARY.SIZE[1])")
    assert line is not None
    size = re.search(rb"BINARY.SIZE\[1\] ([0-9]+)", line)
    literal = _LITERAL.search(line)
    assert size is not None and literal is not None
    assert size.group(1) == literal.group(1)  # Dovecot: 19 vs {25}


def test_bodystructure_without_mime_version_ignores_content_fields(mailbox: Mailbox) -> None:
    raw = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <a@b>\r\n\r\naGk=\r\n"
    line, _status, seq = _dovecot_fetch(mailbox, raw, "(BODYSTRUCTURE)")
    assert line is not None and b'NIL NIL "7bit" 6 1' in line
    assert _render(mailbox, seq, "(BODYSTRUCTURE)") == line
