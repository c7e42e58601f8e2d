"""`delivery.transports`: where mail for a recipient domain goes instead of its MX.

Like Postfix's ``transport_maps`` and ``relayhost``: a map from recipient domain (or
``*`` for everything else) to a URL:

* ``smtp://host[:port]``: plain SMTP, opportunistic STARTTLS (port 25 by default);
* ``smtp+starttls://[user:pass@]host[:port]``: STARTTLS required (port 587);
* ``smtps://[user:pass@]host[:port]``: TLS on connect (RFC 8314, port 465).

Credentials are only ever sent over TLS, so ``smtp://user:pass@...`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from mailwarden.core.address import normalize_domain

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TLS_MODES = {"smtp": "opportunistic", "smtp+starttls": "starttls", "smtps": "implicit"}


@dataclass(frozen=True, slots=True)
class Transport:
    """A fixed next hop for some recipient domains."""

    host: str
    port: int
    tls: str  # "opportunistic" | "starttls" | "implicit"
    username: str = ""
    password: str = field(default="", repr=False)  # never in logs or reprs

    @property
    def display(self) -> str:
        """The URL without credentials, for logs, events and the CLI."""
        scheme = next(k for k, v in TLS_MODES.items() if v == self.tls)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_transport(url: str) -> Transport:
    """Parse one transport URL; ValueError says what is wrong (never echoing a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("scheme must be smtp, smtp+starttls or smtps")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the URL must be scheme://[user:pass@]host[:port] and nothing more")
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if (username or password) and scheme == "smtp":
        raise ValueError("credentials need TLS: use smtp+starttls:// or smtps://")
    if bool(username) != bool(password):
        raise ValueError("give both a user name and a password, or neither")
    return Transport(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        tls=TLS_MODES[scheme],
        username=username,
        password=password,
    )


def transport_for(domain: str, table: Mapping[str, Transport]) -> Transport | None:
    """The transport for a recipient domain: an exact entry, then ``*``, else None (MX)."""
    return table.get(domain) or table.get("*")


def parse_table(raw: Mapping[str, str]) -> dict[str, Transport]:
    out: dict[str, Transport] = {}
    for key, url in raw.items():
        domain = "*" if key == "*" else normalize_domain(key)
        out[domain] = parse_transport(url)
    return out
