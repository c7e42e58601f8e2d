"""mailwarden.imap.mime: pure cases (the Dovecot comparison is in tests/integration)."""

from __future__ import annotations

import random

from mailwarden.imap.mime import (
    MAX_DEPTH,
    SectionSpec,
    bodystructure,
    envelope,
    parse,
    section,
)

SIMPLE = b"From: A <a@example.com>\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\r\nbody\r\n"

MULTI = (
    b"From: a@example.com\r\nContent-Type: multipart/Mixed; boundary=x\r\n\r\npre\r\n"
    b"--x\r\n\r\np1\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nFrom: \xc3\xa9 <a@b>\r\n\r\nib\r\n--x--\r\nepi\r\n"
)


def test_envelope_simple_and_group() -> None:
    assert envelope(SIMPLE) == (
        b'(NIL "hi" (("A" NIL "a" "example.com")) (("A" NIL "a" "example.com"))'
        b' (("A" NIL "a" "example.com"))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)'
    )


def test_envelope_no_headers() -> None:
    assert envelope(b"\r\nbody") == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_envelope_oddities() -> None:
    raw = (
        b"From: Some One\r\nTo: , x@y (Comment), <@r1,@r2:q@r>, plain\r\n"
        b"Subject: a\ttab  \r\nSubject: last wins\r\nMessage-ID: <a@b> (c)\r\n"
        b"In-Reply-To: <x@y>\r\n <z@w>\r\n\r\n"
    )
    assert envelope(raw) == (
        b'(NIL "last wins" (("Some One" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' (("Some One" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' (("Some One" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")("Comment" NIL "x" "y")'
        b'(NIL "@r1,@r2" "q" "r")(NIL NIL "plain" "MISSING_DOMAIN"))'
        b' NIL NIL "<x@y> <z@w>" "<a@b> (c)")'
    )


def test_envelope_folded_subject_is_a_literal() -> None:
    raw = b"Subject: a\r\n\tb\r\n\r\n"
    assert envelope(raw).startswith(b"(NIL {3}\r\na b NIL")


def test_bodystructure_default_text_plain() -> None:
    assert bodystructure(SIMPLE) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'
    )
    assert bodystructure(SIMPLE, extensible=False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)'
    )


def test_bodystructure_multipart_with_rfc822() -> None:
    assert bodystructure(MULTI, extensible=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 36 (NIL "inner"'
        b' (({2}\r\n\xc3\xa9 NIL "a" "b")) (({2}\r\n\xc3\xa9 NIL "a" "b"))'
        b' (({2}\r\n\xc3\xa9 NIL "a" "b")) NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0) 3) "Mixed")'
    )
    assert bodystructure(MULTI).endswith(b' "Mixed" ("boundary" "x") NIL NIL NIL)')


def test_bodystructure_case_params_and_extension_data() -> None:
    raw = (
        b'Content-Type: TEXT/Plain; Charset=UTF-8; Name*0="foo"; name*1="bar"\r\n'
        b"Content-Transfer-Encoding: QUOTED-Printable\r\nContent-ID: <id@x>\r\n"
        b'Content-Disposition: attachment; filename="a b.txt"\r\n'
        b"Content-Language: en, de-CH\r\nContent-Location: http://x/y\r\n\r\nbody"
    )
    assert bodystructure(raw) == (
        b'("TEXT" "Plain" ("Charset" "UTF-8" "Name" "foobar") "<id@x>" NIL'
        b' "QUOTED-Printable" 4 0 NIL ("attachment" ("filename" "a b.txt"))'
        b' ("en" "de-CH") "http://x/y")'
    )


def test_bodystructure_rfc2231_extended() -> None:
    raw = b"Content-Type: application/x; title*0*=us-ascii'en'a%20b; title*1=\" c%\"\r\n\r\n"
    assert b'("title*" "us-ascii\'en\'a%20b c%25")' in bodystructure(raw)


def test_bodystructure_broken_content_type() -> None:
    raw = b"Content-Type: text; charset=us-ascii\r\n\r\nxx\r\n"
    assert bodystructure(raw, False) == b'("" "" NIL NIL NIL "7bit" 4)'


def test_multipart_without_boundary_has_one_empty_part() -> None:
    raw = b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n"
    assert bodystructure(raw) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        b' "mixed" NIL NIL NIL NIL)'
    )


def test_hostile_nesting_is_capped_and_fast() -> None:
    depth = 5000
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    root = parse(raw)
    bodystructure(raw)
    level, part = 0, root
    while part.children:
        part = part.children[0]
        level += 1
    assert level <= MAX_DEPTH + 1


def test_many_parts_fast() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 20000
    root = parse(raw)
    assert 0 < len(root.children) <= 10_000


def test_never_raises_on_garbage() -> None:
    rng = random.Random(1234)
    pieces = [
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"--a\r\n",
        b"--a--\r\n",
        b"\r\n",
        b'From: "unterminated <x@\r\n',
        b"To: g: a@b, (c\r\n",
        b'Content-Type: text/plain; a*0*=x; a*2=y; b="\r\n',
        b" folded\r\n",
        b"\x00\xff\n",
    ]
    for _ in range(300):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        envelope(raw)
        bodystructure(raw)
        bodystructure(raw, extensible=False)
        for spec in (SectionSpec((1, 2), "MIME"), SectionSpec((), "HEADER"), SectionSpec((2,))):
            section(raw, spec)


def test_sections() -> None:
    header = b"From: a@example.com\r\nContent-Type: multipart/Mixed; boundary=x\r\n\r\n"
    assert section(MULTI, SectionSpec((), "HEADER")) == header
    assert section(MULTI, SectionSpec()) == MULTI
    assert section(MULTI, SectionSpec((), "TEXT")) == MULTI[len(header) :]
    assert section(MULTI, SectionSpec((1,))) == b"p1"
    assert section(MULTI, SectionSpec((1,), "MIME")) == b"\r\n"
    assert section(MULTI, SectionSpec((2,), "MIME")) == b"Content-Type: message/rfc822\r\n\r\n"
    assert section(MULTI, SectionSpec((2,), "HEADER")) == (
        b"Subject: inner\r\nFrom: \xc3\xa9 <a@b>\r\n\r\n"
    )
    assert section(MULTI, SectionSpec((2,), "TEXT")) == b"ib"
    assert section(MULTI, SectionSpec((2, 1))) == b"ib"
    assert section(MULTI, SectionSpec((3,))) is None
    assert section(MULTI, SectionSpec((1,), "HEADER")) is None  # not message/rfc822
    assert section(MULTI, SectionSpec((), "HEADER.FIELDS", ("from", "X-None"))) == (
        b"From: a@example.com\r\n\r\n"
    )
    assert section(MULTI, SectionSpec((), "HEADER.FIELDS.NOT", ("From",))) == (
        b"Content-Type: multipart/Mixed; boundary=x\r\n\r\n"
    )
    assert section(MULTI, SectionSpec((), "TEXT"), partial=(2, 3)) == b"e\r\n"


def test_sections_of_a_single_part_message() -> None:
    # RFC 3501 6.4.5: part 1 of a non-multipart message is its body; Dovecot answers
    # 1.MIME with the message header
    assert section(SIMPLE, SectionSpec((1,))) == b"body\r\n"
    assert section(SIMPLE, SectionSpec((1,), "MIME")) == SIMPLE[: SIMPLE.index(b"body")]
    assert section(SIMPLE, SectionSpec((2,))) is None
    assert section(SIMPLE, SectionSpec((1, 1))) is None


def test_header_fields_without_blank_line() -> None:
    raw = b"From: a@example.com\r\nSubject: only headers\r\n"
    assert section(raw, SectionSpec((), "HEADER")) == raw
    assert section(raw, SectionSpec((), "HEADER.FIELDS", ("Subject",))) == (
        b"Subject: only headers\r\n\r\n"
    )
    assert section(raw, SectionSpec((), "HEADER.FIELDS.NOT", ("From",))) == (
        b"Subject: only headers\r\n"
    )
    assert (
        bodystructure(raw, False) == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
    )
