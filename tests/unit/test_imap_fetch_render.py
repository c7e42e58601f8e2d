"""mailwarden.imap.fetch_render and .binary: pure cases (the Dovecot comparison is in
tests/integration/test_imap_fetch_dovecot.py)."""

from __future__ import annotations

import contextlib
import random
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

import mailwarden.imap.fetch_render as fetch_render
from mailwarden.imap.binary import (
    InvalidContent,
    UnknownCte,
    binary_section,
    decode_base64,
    decode_qp,
)
from mailwarden.imap.fetch_render import FetchMessage, needs_body, render_fetch, render_flags
from mailwarden.imap.mime import SectionSpec, bodystructure, envelope, parse, section
from mailwarden.imap.wire.fetch import FetchRequest, Section, parse_fetch
from mailwarden.imap.wire.lexer import CommandLexer
from shared_data import CORPORA

DATE = datetime(2026, 12, 2, 13, 29, 53, tzinfo=UTC)

SIMPLE = b"From: A <a@example.com>\r\nSubject: hi\r\n\r\nhello\r\n"

MULTI = (
    b"From: a@example.com\r\nSubject: enc\r\nContent-Type: multipart/mixed; boundary=b\r\n"
    b"\r\npre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo=\r\n wor=00ld  \r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nAAECAwQF\r\nBgc=\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\nepilogue\r\n"
)


def req(items: str) -> FetchRequest:
    lexer = CommandLexer(16, 10_000)
    assert lexer.scan(b" " + items.encode("ascii"), 0) is None
    return parse_fetch(lexer.finish())


def msg(raw: bytes | None = SIMPLE, flags: tuple[str, ...] = (), **kw: object) -> FetchMessage:
    fields: dict[str, object] = {
        "seq": 3,
        "uid": 7,
        "flags": flags,
        "modseq": 12,
        "size": len(raw) if raw is not None else 100,
        "internal_date": DATE,
        "raw": raw,
    }
    fields.update(kw)
    return FetchMessage(**fields)  # type: ignore[arg-type]


def fetch(items: str, m: FetchMessage | None = None, **kw: bool) -> bytes:
    return render_fetch(m or msg(), req(items), **kw)


# ---------------------------------------------------------------------- metadata items


def test_metadata_items() -> None:
    m = msg(flags=("\\Seen", "$Junk"))
    assert fetch("(UID FLAGS RFC822.SIZE INTERNALDATE)", m) == (
        b'* 3 FETCH (UID 7 FLAGS (\\Seen $Junk) RFC822.SIZE %d INTERNALDATE "02-Dec-2026 '
        b'13:29:53 +0000")\r\n' % len(SIMPLE)
    )
    assert fetch("FLAGS") == b"* 3 FETCH (FLAGS ())\r\n"
    assert fetch("(MODSEQ)") == b"* 3 FETCH (MODSEQ (12))\r\n"


def test_flags_in_dovecot_order() -> None:
    flags = ("$Junk", "\\recent", "\\Seen", "Foo", "\\Draft", "\\Answered", "\\Deleted")
    m = msg(flags=(*flags, "\\Flagged", "$Junk"))
    assert fetch("(FLAGS)", m) == (
        b"* 3 FETCH (FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\Recent $Junk Foo))\r\n"
    )


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), b"02-Jan-2024 03:04:05 +0000"),
        (
            datetime(2024, 2, 9, 23, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            b"09-Feb-2024 23:00:00 +0530",
        ),
        (
            datetime(999, 12, 31, 0, 0, 1, tzinfo=timezone(timedelta(hours=-8))),
            b"31-Dec-0999 00:00:01 -0800",
        ),
        (
            datetime(2024, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
            b"01-Jul-2024 12:00:00 -0330",
        ),
    ],
)
def test_internaldate_format(when: datetime, text: bytes) -> None:
    # RFC 3501 §9 date-time; Dovecot pads the day with "0", not with a space
    assert fetch("INTERNALDATE", msg(internal_date=when)) == (
        b'* 3 FETCH (INTERNALDATE "%s")\r\n' % text
    )


def test_buffered_items_come_first_in_request_order() -> None:
    assert fetch("(BODY.PEEK[TEXT] RFC822.SIZE ENVELOPE FLAGS UID)") == (
        b"* 3 FETCH (RFC822.SIZE 47 FLAGS () UID 7 BODY[TEXT] {7}\r\nhello\r\n"
        b" ENVELOPE " + envelope(SIMPLE) + b")\r\n"
    )


def test_uid_fetch_always_sends_uid_first() -> None:
    assert fetch("(FLAGS RFC822.SIZE)", uid=True) == (
        b"* 3 FETCH (UID 7 FLAGS () RFC822.SIZE 47)\r\n"
    )
    assert fetch("(RFC822.SIZE UID)", uid=True) == b"* 3 FETCH (UID 7 RFC822.SIZE 47)\r\n"
    assert fetch("(BODY.PEEK[1])", uid=True) == b"* 3 FETCH (UID 7 BODY[1] {7}\r\nhello\r\n)\r\n"


def test_modseq_insertion() -> None:
    # CONDSTORE (RFC 7162): after the buffered items asked for, before a forced FLAGS
    assert fetch("(FLAGS BODY.PEEK[TEXT])", modseq=True) == (
        b"* 3 FETCH (FLAGS () MODSEQ (12) BODY[TEXT] {7}\r\nhello\r\n)\r\n"
    )
    assert fetch("(MODSEQ UID)", modseq=True) == b"* 3 FETCH (MODSEQ (12) UID 7)\r\n"
    assert fetch("(FLAGS) (CHANGEDSINCE 5)", uid=True) == (
        b"* 3 FETCH (UID 7 FLAGS () MODSEQ (12))\r\n"
    )


def test_seen_added_forces_flags() -> None:
    m = msg(flags=("\\Seen",))
    assert fetch("(BODY[TEXT] UID MODSEQ)", m, seen_added=True) == (
        b"* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen) BODY[TEXT] {7}\r\nhello\r\n)\r\n"
    )
    assert fetch("(RFC822.TEXT)", m, seen_added=True, uid=True) == (
        b"* 3 FETCH (UID 7 FLAGS (\\Seen) RFC822.TEXT {7}\r\nhello\r\n)\r\n"
    )
    # FLAGS asked for stays where it was; no \Seen change: no FLAGS
    assert fetch("(BODY[TEXT] FLAGS UID)", m, seen_added=True).startswith(
        b"* 3 FETCH (FLAGS (\\Seen) UID 7 BODY[TEXT]"
    )
    assert fetch("(BODY[TEXT])", m) == b"* 3 FETCH (BODY[TEXT] {7}\r\nhello\r\n)\r\n"


def test_duplicates() -> None:
    # Dovecot sends each item once, except sections, which it repeats
    assert fetch("(UID UID FLAGS BODY.PEEK[1] BODY.PEEK[1] ENVELOPE ENVELOPE)") == (
        b"* 3 FETCH (UID 7 FLAGS () BODY[1] {7}\r\nhello\r\n BODY[1] {7}\r\nhello\r\n"
        b" ENVELOPE " + envelope(SIMPLE) + b")\r\n"
    )


def test_macros() -> None:
    date = b'INTERNALDATE "02-Dec-2026 13:29:53 +0000"'
    assert fetch("FAST") == b"* 3 FETCH (FLAGS () %s RFC822.SIZE 47)\r\n" % date
    assert fetch("ALL") == (
        b"* 3 FETCH (FLAGS () %s RFC822.SIZE 47 ENVELOPE %s)\r\n" % (date, envelope(SIMPLE))
    )
    assert fetch("FULL").endswith(
        b" ENVELOPE %s BODY %s)\r\n" % (envelope(SIMPLE), bodystructure(SIMPLE, False))
    )


def test_render_flags() -> None:
    assert (
        render_flags(3, 7, ("\\Seen",), 12) == b"* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen))\r\n"
    )
    assert render_flags(3, None, (), None) == b"* 3 FETCH (FLAGS ())\r\n"
    assert render_flags(1, 9, ("Foo", "\\Deleted"), None) == (
        b"* 1 FETCH (UID 9 FLAGS (\\Deleted Foo))\r\n"
    )
    assert render_flags(1, None, ("\\Flagged",), 5) == (
        b"* 1 FETCH (MODSEQ (5) FLAGS (\\Flagged))\r\n"
    )


def test_needs_body() -> None:
    for items in ("(UID FLAGS RFC822.SIZE)", "FAST", "(INTERNALDATE MODSEQ)"):
        assert not needs_body(req(items))
    for items in ("ALL", "(BODY)", "(BODYSTRUCTURE)", "(RFC822.HEADER)", "(RFC822)"):
        assert needs_body(req(items))
    for items in ("(RFC822.TEXT)", "(BODY.PEEK[1])", "(BINARY[1])", "(BINARY.SIZE[1])"):
        assert needs_body(req(items))


def test_metadata_without_raw_and_body_without_raw() -> None:
    assert fetch("(UID FLAGS)", msg(None)) == b"* 3 FETCH (UID 7 FLAGS ())\r\n"
    with pytest.raises(ValueError, match="needs the message bytes"):
        fetch("(ENVELOPE)", msg(None))


# ---------------------------------------------------------------------- body items


def test_structure_items_embed_the_mime_module_output() -> None:
    m = msg(MULTI)
    assert fetch("(ENVELOPE BODYSTRUCTURE BODY)", m) == (
        b"* 3 FETCH (ENVELOPE %s BODYSTRUCTURE %s BODY %s)\r\n"
        % (envelope(MULTI), bodystructure(MULTI), bodystructure(MULTI, extensible=False))
    )


def test_body_sections_and_rfc822_items() -> None:
    head, text = SIMPLE.split(b"\r\n\r\n", 1)
    assert fetch("(BODY.PEEK[] RFC822)") == (
        b"* 3 FETCH (BODY[] {47}\r\n%s RFC822 {47}\r\n%s)\r\n" % (SIMPLE, SIMPLE)
    )
    assert fetch("(RFC822.HEADER RFC822.TEXT BODY.PEEK[HEADER])") == (
        b"* 3 FETCH (RFC822.HEADER {40}\r\n%s\r\n\r\n RFC822.TEXT {7}\r\n%s"
        b" BODY[HEADER] {40}\r\n%s\r\n\r\n)\r\n" % (head, text, head)
    )


def test_header_fields_name_is_upper_cased() -> None:
    # as Dovecot echoes it: BODY[HEADER.FIELDS (FROM X-NONE)]
    got = fetch("(BODY.PEEK[HEADER.FIELDS (From x-none)])")
    assert got == (
        b"* 3 FETCH (BODY[HEADER.FIELDS (FROM X-NONE)] {27}\r\nFrom: A <a@example.com>\r\n\r\n)\r\n"
    )
    got = fetch("(BODY.PEEK[1.HEADER.FIELDS.NOT (Subject)]<0.4>)", msg(MULTI))
    assert got == b"* 3 FETCH (BODY[1.HEADER.FIELDS.NOT (SUBJECT)]<0> {0}\r\n)\r\n"


def test_partials_and_missing_sections() -> None:
    assert fetch("(BODY.PEEK[]<0.5> BODY.PEEK[TEXT]<2.100>)") == (
        b"* 3 FETCH (BODY[]<0> {5}\r\nFrom: BODY[TEXT]<2> {5}\r\nllo\r\n)\r\n"
    )
    # hostile: offsets past the end, parts that do not exist -> empty literals (Dovecot)
    assert fetch("(BODY.PEEK[]<4294967295.4294967295> BODY.PEEK[9.9.9] BODY.PEEK[1.TEXT])") == (
        b"* 3 FETCH (BODY[]<4294967295> {0}\r\n BODY[9.9.9] {0}\r\n BODY[1.TEXT] {0}\r\n)\r\n"
    )
    assert fetch("(BODY.PEEK[2.MIME] BINARY.PEEK[7]<1.2> BINARY.SIZE[7])", msg(MULTI)) == (
        b"* 3 FETCH (BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n BINARY[7]<1> {0}\r\n BINARY.SIZE[7] 0)\r\n"
    )


def test_nul_is_sent_as_0x80_in_body_literals() -> None:
    raw = b"Subject: nul\r\n\r\nhel\x00lo\r\n"
    assert fetch("(BODY.PEEK[1] RFC822)", msg(raw)) == (
        b"* 3 FETCH (BODY[1] {8}\r\nhel\x80lo\r\n RFC822 {24}\r\n"
        b"Subject: nul\r\n\r\nhel\x80lo\r\n)\r\n"
    )


SPECS = [
    SectionSpec(),
    SectionSpec((), "HEADER"),
    SectionSpec((), "TEXT"),
    SectionSpec((), "HEADER.FIELDS", ("From", "subject", "Content-Type")),
    SectionSpec((), "HEADER.FIELDS.NOT", ("Received", "From")),
    SectionSpec((1,)),
    SectionSpec((1,), "MIME"),
    SectionSpec((2,)),
    SectionSpec((2,), "MIME"),
    SectionSpec((1, 1)),
    SectionSpec((2,), "HEADER"),
    SectionSpec((2,), "TEXT"),
    SectionSpec((2,), "HEADER.FIELDS", ("Subject",)),
    SectionSpec((4,), "HEADER"),
    SectionSpec((4,), "TEXT"),
    SectionSpec((2, 1), "MIME"),
]

EDGE_MESSAGES = [
    SIMPLE,
    MULTI,
    b"",
    b"\r\n",
    b"\n\nbody",
    b"\r\nbody\r\n",
    b" leading: space\r\n\r\nbody",
    b"Subject: x\r\n \r\nbody",
    b"Subject: x\r\n\rY: z\r\n\r\nbody",
    b"Subject: no blank line\r\n",
    b"Subject: x\n\nbare lf",
    b"Subject: x\r\n\n\r\nmixed",
]


def _corpus() -> list[bytes]:
    root = CORPORA / "mime"
    if not root.is_dir():
        return []
    return [
        re.sub(rb"\r\n|\r|\n", b"\r\n", p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.suffix in (".eml", ".txt") and p.is_file() and not p.name.startswith("LICENSE")
    ]


def test_sections_match_the_mime_module() -> None:
    """Our parse-once section code gives exactly what mime.section gives."""
    for raw in EDGE_MESSAGES + _corpus():
        m = fetch_render._Message(raw)
        for spec in SPECS:
            wanted = Section(spec.part, spec.kind or None, spec.fields)
            ours = fetch_render._section_bytes(m, wanted)
            if ours is not None:
                ours = ours.replace(b"\0", b"\x80")  # done when the literal is written
            assert ours == section(raw, spec), (raw[:60], spec)


def test_top_part_matches_the_parser() -> None:
    for raw in EDGE_MESSAGES + _corpus():
        assert fetch_render._top_part(raw).body_offset == parse(raw).body_offset, raw[:60]


def test_mime_is_parsed_at_most_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(raw: bytes) -> object:
        calls.append(1)
        return parse(raw)

    monkeypatch.setattr(fetch_render, "parse", counting)
    items = "(ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[1] BINARY.PEEK[1] BINARY.SIZE[1] BINARY[2])"
    fetch(items, msg(MULTI))
    assert len(calls) == 1
    calls.clear()
    fetch("(BODY.PEEK[] RFC822.HEADER RFC822.TEXT BODY.PEEK[HEADER.FIELDS (From)])", msg(MULTI))
    assert calls == []  # only the top-level header end is needed


# ---------------------------------------------------------------------- BINARY


def test_binary_decodes_base64_and_qp() -> None:
    m = msg(MULTI)
    # soft line break joined, trailing blanks dropped (RFC 2045 §6.7 rules 3, 5)
    assert fetch("(BINARY.PEEK[1] BINARY.SIZE[1])", m) == (
        b"* 3 FETCH (BINARY[1] ~{13}\r\nh\xc3\xa9llo wor\x00ld BINARY.SIZE[1] 13)\r\n"
    )
    assert fetch("(BINARY.PEEK[2] BINARY.PEEK[2]<5.10> BINARY.SIZE[2])", m) == (
        b"* 3 FETCH (BINARY[2] ~{8}\r\n\x00\x01\x02\x03\x04\x05\x06\x07"
        b" BINARY[2]<5> ~{3}\r\n\x05\x06\x07 BINARY.SIZE[2] 8)\r\n"
    )


def test_binary_literal8_only_when_dovecot_uses_it() -> None:
    m = msg(MULTI)
    # 7bit, nothing decoded, no NUL: a normal literal
    assert fetch("(BINARY.PEEK[3])", m) == b"* 3 FETCH (BINARY[3] {10}\r\nplain text)\r\n"
    # decoded data is literal8 even without NUL, and stays so for an empty partial
    assert fetch("(BINARY.PEEK[4.1] BINARY.PEEK[4.1]<99.1>)", m) == (
        b"* 3 FETCH (BINARY[4.1] ~{2}\r\nhi BINARY[4.1]<99> ~{0}\r\n)\r\n"
    )
    # a NUL in a 7bit body: literal8 with the NUL kept
    raw = b"Subject: nul\r\n\r\nhel\x00lo\r\n"
    assert fetch("(BINARY.PEEK[1] BINARY.PEEK[])", msg(raw)) == (
        b"* 3 FETCH (BINARY[1] ~{8}\r\nhel\x00lo\r\n BINARY[] ~{24}\r\n%s)\r\n" % raw
    )
    # a NUL only in a multipart preamble: not counted, sent as 0x80 (as Dovecot)
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\np\x00\r\n--b\r\n\r\nx\r\n--b--\r\n"
    assert fetch("(BINARY.PEEK[])", msg(raw)) == (
        b"* 3 FETCH (BINARY[] {%d}\r\n%s)\r\n" % (len(raw), raw.replace(b"\0", b"\x80"))
    )


def test_binary_of_the_whole_message_and_of_containers() -> None:
    data = binary_section(MULTI, parse(MULTI), ()).data
    assert data == (
        b"From: a@example.com\r\nSubject: enc\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"\r\npre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nh\xc3\xa9llo wor\x00ld\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\n\x00\x01\x02\x03\x04\x05\x06\x07\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"plain text\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nhi\r\n--b--\r\nepilogue\r\n"
    )
    assert binary_section(MULTI, parse(MULTI), (4,)).data == (
        b"Subject: inner\r\nContent-Transfer-Encoding: binary\r\n\r\nhi"
    )
    # nothing decoded anywhere: the original bytes, even with a CTE on the multipart
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n--b\r\n\r\nx\r\n--b--\r\n"
    )
    assert binary_section(raw, parse(raw), ()).data == raw


def test_binary_header_rewrite_keeps_other_lines() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A:  y \r\n"
        b"Content-Transfer-Encoding:\r\n base64\r\nContent-Transfer-Encoding: base64\r\n"
        b"broken line\r\nX-B: 1\r\n  folded\r\n\r\naGk=\r\n--b--\r\n"
    )
    assert binary_section(raw, parse(raw), ()).data == (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A:  y \r\nbroken line\r\n"
        b"X-B: 1\r\n  folded\r\nContent-Transfer-Encoding: binary\r\n\r\nhi\r\n--b--\r\n"
    )


@pytest.mark.parametrize(
    "cte",
    [b"x-uuencode", b"", b'"base64"', b"base64 junk", b"base64\r\n (folded)", b"7bit; x"],
)
def test_unknown_cte_raises(cte: bytes) -> None:
    raw = b"Subject: x\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\naGk=\r\n"
    with pytest.raises(UnknownCte) as info:
        fetch("(BINARY.PEEK[1])", msg(raw))
    assert not isinstance(info.value, InvalidContent)
    with pytest.raises(UnknownCte):
        fetch("(BINARY.SIZE[])", msg(raw))
    # BODY[] of the same part is fine
    assert fetch("(BODY.PEEK[1])", msg(raw)) == b"* 3 FETCH (BODY[1] {6}\r\naGk=\r\n)\r\n"


def test_unknown_cte_elsewhere_does_not_matter() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b\r\n\r\nok\r\n--b--\r\n"
    )
    assert fetch("(BINARY.SIZE[2] BINARY.PEEK[2])", msg(raw)) == (
        b"* 3 FETCH (BINARY.SIZE[2] 2 BINARY[2] {2}\r\nok)\r\n"
    )
    with pytest.raises(UnknownCte):
        fetch("(BINARY.PEEK[])", msg(raw))


@pytest.mark.parametrize(
    ("cte", "body", "decoded"),
    [
        (b"BASE64 (comment)", b"aGVs bG8g\r\nd29y\tbGQ=\r\n\r\n", b"hello world"),
        (b"base64", b"aGVsbA=\r\n=\r\n", b"hell"),
        (b"base64", b"aGVsbG9=\r\n", b"hello"),  # non-zero padding bits are fine
        (b"base64", b"\r\n \r\n", b""),
        (b"quoted-printable", b"abc=\r\ndef\r\nghi  \r\n", b"abcdef\r\nghi\r\n"),
        (b"Quoted-Printable", b"a=c3=A9b =\r\n c\t", b"a\xc3\xa9b  c"),
        (b"quoted-printable", b"x=0D=0Ay= \t\r\nz", b"x\r\nyz"),
        (b"8bit", b"gr\xc3\xbc\xc3\x9fe\r\n", b"gr\xc3\xbc\xc3\x9fe\r\n"),
        (b"binary", b"a\x00b", b"a\x00b"),
    ],
)
def test_binary_decodings(cte: bytes, body: bytes, decoded: bytes) -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
    assert binary_section(raw, parse(raw), (1,)).data == decoded


@pytest.mark.parametrize(
    ("cte", "body"),
    [
        (b"base64", b"aGV$sbG8=\r\n"),  # not base64
        (b"base64", b"aGVsbG8=aGVs\r\n"),  # data after the padding
        (b"base64", b"aGVsbG8=\r\n\r\n-- \r\nsig\r\n"),
        (b"base64", b"aGVsbG8\r\n"),  # no padding
        (b"base64", b"aGVsbA===\r\n"),
        (b"base64", b"====\r\n"),
        (b"base64", b"aGVs\x0bbG8=\r\n"),
        (b"base64", b"aGVs-_8=\r\n"),
        (b"quoted-printable", b"a=ZZb\r\n"),
        (b"quoted-printable", b"a=3\r\n"),
        (b"quoted-printable", b"abc="),
        (b"quoted-printable", b"abc=  x\r\n"),
        (b"quoted-printable", b"a\rb\r\n"),
        (b"quoted-printable", b"abc" + b" " * 77 + b"x\r\n"),
    ],
)
def test_invalid_encoded_data_raises(cte: bytes, body: bytes) -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
    with pytest.raises(InvalidContent):
        fetch("(BINARY.PEEK[1])", msg(raw))
    assert issubclass(InvalidContent, UnknownCte)  # the session's NO [UNKNOWN-CTE] path


def _dovecot_qp(src: bytes) -> bytes | None:
    """A direct port of Dovecot 2.3's qp-decoder.c state machine; None on an error."""
    hexdigits = b"0123456789ABCDEFabcdef"
    out, ws = bytearray(), bytearray()
    state, first, error, i = "text", 0, False, 0
    while i < len(src):
        c = src[i]
        if state == "text":
            if c == 0x3D:
                state = "eq"
            elif c == 0x0D:
                state = "cr"
            elif c == 0x0A:
                out += b"\r\n"
            elif c in b" \t":
                state = "ws"
                ws.append(c)
            else:
                out.append(c)
        elif state == "ws":
            if c in b" \t":
                if len(ws) <= 76:
                    ws.append(c)
            elif c == 0x0D:
                state = "cr"
            elif c == 0x0A:
                out += b"\r\n"
                ws.clear()
            else:
                out += ws
                error |= len(ws) > 76
                ws.clear()
                state = "text"
                continue
        elif state == "eq":
            if c in hexdigits:
                first, state = c, "hex2"
            elif c in b" \t":
                ws.append(c)
                state = "eqws"
            elif c == 0x0D:
                state = "softcr"
            elif c == 0x0A:
                state = "text"
            else:
                error, state = True, "text"
                continue
        elif state == "hex2":
            if c in hexdigits:
                out.append(int(bytes((first, c)), 16))
                state = "text"
            else:
                error, state = True, "text"
                continue
        elif state == "eqws":
            if c in b" \t":
                if len(ws) <= 76:
                    ws.append(c)
            elif c in b"\r\n":
                state = "softcr" if c == 0x0D else "text"
                if c == 0x0A:
                    ws.clear()
            else:
                error, state = True, "text"
                ws.clear()
                continue
        elif c == 0x0A:  # cr, softcr
            ws.clear()
            if state == "cr":
                out += b"\r\n"
            state = "text"
        else:
            error, state = True, "text"
            ws.clear()
            continue
        i += 1
    if state not in ("text", "ws"):
        error = True
    return None if error else bytes(out)


def test_qp_decoder_matches_dovecot_state_machine() -> None:
    rng = random.Random(3516)
    alphabet = [b"a", b"=", b"\r", b"\n", b"\r\n", b" ", b"\t", b"A", b"f", b"0", b"Z", b"\x00"]
    for _ in range(20_000):
        src = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        if rng.random() < 0.05:
            src += b" " * rng.randrange(70, 90) + rng.choice(alphabet)
        expected = _dovecot_qp(src)
        try:
            got: bytes | None = decode_qp(src)
        except InvalidContent:
            got = None
        assert got == expected, src


def test_decoding_never_expands() -> None:
    rng = random.Random(7)
    pieces = [b"A", b"Q", b"g", b"w", b"+", b"/", b"=", b"\r\n", b" ", b"\t", b"0", b"F", b"a"]
    for _ in range(2000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 200)))
        for decode in (decode_base64, decode_qp):
            with contextlib.suppress(InvalidContent):
                assert len(decode(data)) <= len(data)


# ---------------------------------------------------------------------- hostile, speed


def test_deep_and_wide_messages() -> None:
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(150)
    ) + (b"\r\nleaf\r\n")
    got = fetch("(BINARY.PEEK[] BINARY.SIZE[" + "1." * 63 + "1])", msg(deep))
    assert got == b"* 3 FETCH (BINARY[] {%d}\r\n%s BINARY.SIZE[%s1] %d)\r\n" % (
        len(deep),
        deep,
        b"1." * 63,
        len(section(deep, SectionSpec((1,) * 64)) or b""),
    )
    part = b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    wide = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 9_000
    data = binary_section(wide, parse(wide), ()).data
    assert data.count(b"Content-Transfer-Encoding: binary\r\n\r\nhi") == 9_000
    # past MAX_PARTS the last part holds the rest: not base64 any more
    wider = wide + part * 2_000
    with pytest.raises(InvalidContent):
        binary_section(wider, parse(wider), ())


def test_metadata_render_of_many_messages() -> None:
    # speed is measured by bench/imap.py (FETCH 1:* on 10,000 messages), not here
    request = req("(UID FLAGS RFC822.SIZE)")
    messages = [
        FetchMessage(i, i + 10, ("\\Seen",) if i % 3 else ("\\Seen", "$Junk"), i, 2000 + i, DATE)
        for i in range(1, 10_001)
    ]
    out = [render_fetch(m, request, uid=True) for m in messages]
    assert out[1] == b"* 2 FETCH (UID 12 FLAGS (\\Seen) RFC822.SIZE 2002)\r\n"
    assert out[2] == b"* 3 FETCH (UID 13 FLAGS (\\Seen $Junk) RFC822.SIZE 2003)\r\n"


@pytest.mark.parametrize(
    "items",
    [
        b"(UID FLAGS RFC822.SIZE)",
        b"(FLAGS)",
        b"(RFC822.SIZE MODSEQ UID)",
        b"(MODSEQ)",
    ],
)
@pytest.mark.parametrize("uid", [False, True])
def test_render_meta_is_render_fetch_for_many(items: bytes, uid: bool) -> None:
    from mailwarden.imap.fetch_render import render_meta
    from mailwarden.imap.wire.reader import CommandReader, RawCommand

    ev = CommandReader().feed(b"a FETCH 1:* " + items + b"\r\n")[0]
    assert isinstance(ev, RawCommand)
    req = parse_fetch(ev.args[1:])
    flags = [(), ("\\Seen",), ("$Junk", "\\Flagged", "\\Recent")]
    msgs = [FetchMessage(i + 1, 10 + i, flags[i], 5 + i, 100 * i, DATE) for i in range(3)]
    many = render_meta(
        req,
        uid=uid,
        seqs=[m.seq for m in msgs],
        uids=[m.uid for m in msgs],
        flags=[m.flags for m in msgs],
        modseqs=[m.modseq for m in msgs],
        sizes=[m.size for m in msgs],
    )
    assert many == [render_fetch(m, req, uid=uid) for m in msgs]
