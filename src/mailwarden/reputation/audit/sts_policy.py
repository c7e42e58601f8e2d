"""MTA-STS and TLS-RPT record and policy text, pure and offline.

This module owns everything about MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460)
that needs no network: the ``Policy`` dataclass and ``parse_policy`` for the policy file
(§3.2), ``sts_id`` for the ``_mta-sts`` TXT record (§3.1), ``mx_covered`` for MX host
matching (§4.1), ``tlsrpt_problem`` for the ``_smtp._tls`` record (RFC 8460 §3), the
text we suggest publishing (``policy_text``, ``sts_record``, ``tlsrpt_record``), and the
modes, limits and patterns these rules use. Fetching the policy lives in
``policy_fetch``; judging a domain lives in ``mta_sts``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: max_age is at most one year
DEFAULT_MAX_AGE = 604_800  # one week, what we suggest publishing
MODES = ("enforce", "testing", "none")  # RFC 8461 §5

_ID_RE = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain
_MX_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy file; ``problems`` lists what makes senders reject it."""

    version: str
    mode: str
    mx: tuple[str, ...]
    max_age: int | None
    problems: tuple[str, ...] = ()


def sts_id(record: str) -> str:
    """The id of a ``v=STSv1`` TXT record; ValueError saying what is wrong otherwise."""
    fields = [f.strip() for f in record.split(";")]  # RFC 8461 §3.1: sts-sep = *WSP ";" *WSP
    if fields[0] != "v=STSv1":
        raise ValueError(f"{record!r} does not start with v=STSv1;")
    ids = [f[3:] for f in fields[1:] if f.startswith("id=")]
    if not ids:
        raise ValueError(f"{record!r} has no id= field")
    if not _ID_RE.fullmatch(ids[0]):
        raise ValueError(f"id={ids[0]!r} is not 1 to 32 letters and digits")
    return ids[0]


def _split_fields(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """Policy lines → (first value of each key, mx values, problems)."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.split("\n"), 1):  # RFC 8461 §3.2: LF or CRLF
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            problems.append(f"line {number} ({line[:40]!r}) is not 'key: value'")
        elif key.strip() == "mx":
            mx.append(value.strip())
        else:
            fields.setdefault(key.strip(), value.strip())  # unknown keys are ignored (§3.2)
    return fields, mx, problems


def _max_age(value: str | None, problems: list[str]) -> int | None:
    # RFC 8461 §3.2: sts-policy-max-age-value = 1*10(DIGIT), at most 31557600
    if value is None:
        problems.append("max_age is missing")
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        problems.append(f"max_age {value!r} is not a number of seconds")
        return None
    if int(value) > MAX_AGE_LIMIT:
        problems.append(f"max_age {value} is over the limit of {MAX_AGE_LIMIT}")
    return int(value)


def parse_policy(text: str) -> Policy:
    """Parse an MTA-STS policy file (RFC 8461 §3.2), collecting every problem."""
    fields, mx, problems = _split_fields(text)
    version, mode = fields.get("version", ""), fields.get("mode", "")
    if version != "STSv1":
        problems.append(f"version is {version!r}, not STSv1" if version else "version is missing")
    if mode not in MODES:
        problems.append(f"mode {mode!r} is not enforce, testing or none" if mode else "no mode")
    max_age = _max_age(fields.get("max_age"), problems)
    problems.extend(
        f"mx {p!r} is not a host name or *.domain" for p in mx if not _MX_RE.fullmatch(p)
    )
    if not mx and mode in ("enforce", "testing"):  # §3.2: mx may be left out only in none
        problems.append("there is no mx line")
    return Policy(version, mode, tuple(mx), max_age, tuple(problems))


def mx_covered(patterns: Iterable[str], host: str) -> bool:
    """True if one pattern matches ``host``; ``*.d`` matches exactly one leftmost label
    (RFC 8461 §4.1: ``*.example.com`` matches mail.example.com, not example.com)."""
    host = host.lower().rstrip(".")
    first, dot, parent = host.partition(".")
    for raw in patterns:
        pattern = raw.lower().rstrip(".")
        if pattern.startswith("*."):
            if first and dot and parent == pattern[2:]:
                return True
        elif pattern == host:
            return True
    return False


def _rua_ok(uri: str) -> bool:
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "mailto":
        local, at, domain = rest.partition("@")
        return bool(local and at and "." in domain)
    return scheme.lower() == "https" and rest.startswith("//") and len(rest) > 2


def tlsrpt_problem(records: Sequence[str]) -> str | None:
    """What is wrong with the ``_smtp._tls`` TXT records (RFC 8460 §3), None if fine."""
    found = [r for r in records if r.startswith("v=TLSRPTv1")]
    if not found:
        return "there is no TLS-RPT record"
    if len(found) > 1:  # RFC 8460 §3: more than one means no TLS-RPT at all
        return f"there are {len(found)} TLS-RPT records instead of one"
    fields = [f.strip() for f in found[0].split(";")]
    if fields[0] != "v=TLSRPTv1":
        return f"{found[0]!r} does not start with v=TLSRPTv1;"
    rua = next((f[4:] for f in fields[1:] if f.startswith("rua=")), "")
    uris = [u.strip() for u in rua.split(",") if u.strip()]
    if not uris:
        return "the TLS-RPT record has no rua= address"
    bad = [u for u in uris if not _rua_ok(u)]  # RFC 8460 §3: mailto: or https: URIs
    return f"rua {', '.join(bad)} is not a mailto: or https: URI" if bad else None


def policy_text(mode: str, mx: Iterable[str], max_age: int = DEFAULT_MAX_AGE) -> str:
    """A policy file as we suggest serving it (RFC 8461 §3.2)."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\n".join(lines)


def sts_record(domain: str, stamp: str) -> str:
    return f'_mta-sts.{domain}. TXT "v=STSv1; id={stamp}"'


def tlsrpt_record(domain: str) -> str:
    return f'_smtp._tls.{domain}. TXT "v=TLSRPTv1; rua=mailto:tls-reports@{domain}"'
