"""The faster canonicalization helpers give exactly dkimpy's output."""

from __future__ import annotations

import random
import re

import pytest

from mailwarden.auth.dkimpy_speedups import compress_whitespace, strip_trailing_whitespace


def reference_compress(content: bytes) -> bytes:  # dkimpy 1.1's implementation
    return re.sub(b"[\t ]+", b" ", content)


def reference_strip(content: bytes) -> bytes:  # dkimpy 1.1's implementation
    return re.sub(b"[\t ]+\r\n", b"\r\n", content)


PIECES = [b" ", b"  ", b"\t", b"\r\n", b"\r", b"\n", b"a", b"bc", b".", b"\xff"]


@pytest.mark.parametrize("seed", range(300))
def test_same_output_as_dkimpy(seed: int) -> None:
    rng = random.Random(seed)
    content = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 60)))
    assert compress_whitespace(content) == reference_compress(content)
    assert strip_trailing_whitespace(content) == reference_strip(content)


def test_installed_into_dkimpy() -> None:
    import dkim.canonicalization as canon

    import mailwarden.auth.dkim  # noqa: F401  (installs on import)

    assert canon.compress_whitespace is compress_whitespace
    assert canon.strip_trailing_whitespace is strip_trailing_whitespace
    body = b"a  b\t c \r\n\r\n\r\n"
    assert canon.Relaxed.canonicalize_body(body) == b"a b c\r\n"
