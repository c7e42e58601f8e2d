"""Where the team's shared test data lives: ../shared beside the checkout (as in CI).

MAILWARDEN_SHARED overrides it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SHARED = Path(os.environ.get("MAILWARDEN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CORPORA = SHARED / "corpora"
MIME_CORPUS = CORPORA / "mime"


def crlf(raw: bytes) -> bytes:
    """What an IMAP client's APPEND sends (and what our store keeps): CRLF line ends."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)


def mime_corpus(limit: int) -> list[tuple[str, bytes]]:
    """(case id, raw message) for ../shared/corpora/mime: every .eml/.txt file and each
    message of mox's imaptest.mbox; at most ``limit`` (0 = all), evenly spread."""
    if not MIME_CORPUS.is_dir():
        return []
    out = [
        (str(p.relative_to(MIME_CORPUS)), p.read_bytes())
        for p in sorted(MIME_CORPUS.rglob("*"))
        if p.suffix in (".eml", ".txt") and p.is_file() and not p.name.startswith("LICENSE")
    ]
    mbox = MIME_CORPUS / "mox" / "imaptest.mbox"
    if mbox.is_file():
        chunks = re.split(rb"(?m)^From [^\n]*\n", mbox.read_bytes())[1:]
        out += [(f"mox/imaptest.mbox#{i}", chunk) for i, chunk in enumerate(chunks)]
    if limit and len(out) > limit:
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out
