"""parse_nameserver: "host:port" entries from the configuration → (address, port)."""

from __future__ import annotations

import pytest

from mailwarden.dns.resolver import parse_nameserver


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("  127.0.0.1:53\n", ("127.0.0.1", 53)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("0:0:0:0:0:0:0:1", ("0:0:0:0:0:0:0:1", 53)),
        # A bare IPv6 address cannot carry a port: this is the address ::1:5353.
        ("::1:5353", ("::1:5353", 53)),
    ],
)
def test_parse(entry: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(entry) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "localhost",
        "localhost:53",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:dns",
        "127.0.0.256",
        "[::1]:",
        "[::1]:0",
        "[::1]:x",
        "[127.0.0.1:53",
        "[junk]:53",
    ],
)
def test_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(entry)
