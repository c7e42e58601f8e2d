"""RFC 5256 §2.1 "base subject" extraction, used by SORT SUBJECT and THREAD.

Pure functions, no I/O::

    base_subject("Re: [list] Fwd: [fwd: Hello] (fwd)")  -> "Hello"
    is_reply_or_forward("Re: Hello")                    -> True
    subject_key("RE: hello")                            -> "hello"

:func:`base_subject` keeps the case of the text; comparisons (SORT SUBJECT, the THREAD
subject table) go through :func:`subject_key`, which applies ``str.casefold()``. That is
our stand-in for the i;unicode-casemap collation RFC 5256 asks for (RFC 5051 titlecases
after decomposition; casefold is the closest the standard library offers). Every caller
in this package compares base subjects through :func:`subject_key` only.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header

__all__ = ["base_subject", "is_reply_or_forward", "subject_key"]

# RFC 5256 §5 ABNF (case-insensitive):
#   subj-blob   = "[" *BLOBCHAR "]" *WSP
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-leader = (*subj-blob subj-refwd) / WSP
# Step (1) has already turned every WSP into a single SP.
_BLOB = r"\[[^\[\]]*\] *"
_LEADER = re.compile(rf"(?P<refwd>(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:)| ", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)
_FWD_TRAILER = "(fwd)"  # subj-trailer = "(fwd)" / WSP
_FWD_HDR = "[fwd:"  # subj-fwd-hdr
_FWD_TRL = "]"  # subj-fwd-trl
_SPACES = re.compile(r"[ \t\r\n]+")


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject of a raw Subject header value (case kept)."""
    return _extract(subject)[0]


def is_reply_or_forward(subject: str) -> bool:
    """Whether extraction removed a subj-refwd, a "(fwd)" trailer or a "[fwd: ...]" wrapper.

    This is the "reply or forward" test of RFC 5256 §3 REFERENCES step 5.
    """
    return _extract(subject)[1]


def subject_key(subject: str) -> str:
    """The case-folded base subject: the comparison key for SORT and THREAD."""
    return base_subject(subject).casefold()


def _extract(subject: str) -> tuple[str, bool]:
    # Step (1): decode RFC 2047 words, tabs and continuations to SP, collapse runs of SP.
    text = _collapse(_decode_words(_collapse(subject)))
    reply = False
    while True:
        text, fwd = _strip_trailers(text)  # step (2)
        text, refwd = _strip_leaders(text)  # steps (3), (4) and (5)
        reply = reply or fwd or refwd
        # Step (6): a "[fwd:" ... "]" wrapper is removed, then repeat from step (2).
        if not (text[: len(_FWD_HDR)].lower() == _FWD_HDR and text.endswith(_FWD_TRL)):
            return text, reply  # step (7)
        text, reply = text[len(_FWD_HDR) : -len(_FWD_TRL)], True


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text)


def _decode_words(text: str) -> str:
    """RFC 2047 decoding that never raises: bad words stay as they are, bad bytes become U+FFFD."""
    try:
        parts = decode_header(text)
    except (HeaderParseError, ValueError):
        return text
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:  # unencoded text, as decode_header hands it back
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            out.append(_decode_bytes(chunk, charset))
    return "".join(out)


def _decode_bytes(chunk: bytes, charset: str) -> str:
    try:
        return chunk.decode(charset, errors="replace")
    except LookupError:  # unknown charset
        return chunk.decode("utf-8", errors="replace")


def _strip_trailers(text: str) -> tuple[str, bool]:
    """Step (2): remove trailing subj-trailer ("(fwd)" / WSP) until none is left."""
    end, fwd = len(text), False
    while end:
        if text[end - 1] == " ":
            end -= 1
        elif text[max(0, end - len(_FWD_TRAILER)) : end].lower() == _FWD_TRAILER:
            end, fwd = end - len(_FWD_TRAILER), True
        else:
            break
    return text[:end], fwd


def _strip_leaders(text: str) -> tuple[str, bool]:
    """Steps (3)-(5): remove subj-leaders, then a subj-blob if a subj-base remains; repeat."""
    pos, refwd = 0, False
    while True:
        leader = _LEADER.match(text, pos)  # step (3)
        if leader is not None:
            refwd = refwd or leader.group("refwd") is not None
            pos = leader.end()
            continue
        blob = _BLOB_RE.match(text, pos)  # step (4): only if a non-empty subj-base is left
        if blob is not None and blob.end() < len(text):
            pos = blob.end()
            continue
        return text[pos:], refwd  # step (5): no more matches
