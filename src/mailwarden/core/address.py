"""Email addresses and domains as values (RFC 5321 §4.1.2, RFC 6531 for UTF-8)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwarden.core.errors import InvalidAddress

# RFC 5321 §4.5.3.1.1 / §4.5.3.1.2: local part 64 octets, domain 255 octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+$")


def normalize_domain(domain: str) -> str:
    """Lower-case, strip the trailing dot, and convert IDNs to their A-label form."""
    d = domain.strip().rstrip(".").lower()
    if not d:
        raise InvalidAddress("empty domain")
    if d.startswith("[") and d.endswith("]"):
        return d  # address literal, RFC 5321 §4.1.3
    try:
        ascii_d = d.encode("idna").decode("ascii") if not d.isascii() else d
    except UnicodeError as exc:
        raise InvalidAddress(f"invalid domain {domain!r}") from exc
    if len(ascii_d) > MAX_DOMAIN:
        raise InvalidAddress("domain longer than 255 octets")
    for label in ascii_d.split("."):
        if not _LABEL.match(label):
            raise InvalidAddress(f"invalid domain {domain!r}")
    return ascii_d


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox address: local part as given, domain normalised."""

    local: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> Address:
        raw = text.strip()
        if raw.startswith("<") and raw.endswith(">"):
            raw = raw[1:-1]
        if raw.count("@") < 1:
            raise InvalidAddress(f"address {text!r} has no domain")
        local, _, domain = raw.rpartition("@")
        if not local:
            raise InvalidAddress(f"address {text!r} has an empty local part")
        if len(local.encode("utf-8")) > MAX_LOCAL_PART:
            raise InvalidAddress("local part longer than 64 octets")
        if not (local.startswith('"') and local.endswith('"')) and (
            not _ATEXT.match(local) or local.startswith(".") or local.endswith(".") or ".." in local
        ):
            raise InvalidAddress(f"invalid local part in {text!r}")
        if any(ord(c) < 32 or ord(c) == 127 for c in local):
            raise InvalidAddress("control characters in local part")
        return cls(local, normalize_domain(domain))

    @property
    def base_local(self) -> str:
        """The local part without a +tag (plus-addressing): ``alice+tag`` → ``alice``."""
        return self.local.split("+", 1)[0] if "+" in self.local[1:] else self.local

    def base(self) -> Address:
        return Address(self.base_local, self.domain)

    def key(self) -> str:
        """Case-insensitive lookup key (local parts are compared case-insensitively here)."""
        return f"{self.local.lower()}@{self.domain}"

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"
