"""MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460): the "mta_sts" check.

Steps: the ``_mta-sts`` TXT record (§3.1), the policy fetched over HTTPS from
``mta-sts.<domain>`` (§3.3) and parsed (§3.2), its mx patterns matched against every MX
host and our own hostname (§4.1), its mode, and the ``_smtp._tls`` TLS-RPT record.

The policy host's addresses come from the audit's resolver, never from system DNS, so
the check sees the same DNS as every other check (and as the tests' DNS server).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailwarden.core.errors import MailwardenError
from mailwarden.dns.resolver import Resolver, mx_hosts
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Status
from mailwarden.reputation.audit.net import close_writer

NAME = "mta_sts"
POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2
FETCH_TIMEOUT = 10.0  # seconds for the whole fetch (RFC 8461 §3.3: senders SHOULD time out)
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders SHOULD limit the policy size
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: max_age is at most one year
SHORT_MAX_AGE = 86_400  # below a day the policy protects little (§3.2 suggests weeks)
DEFAULT_MAX_AGE = 604_800  # one week, what we suggest publishing
MODES = ("enforce", "testing", "none")  # RFC 8461 §5

_ID_RE = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain
_MX_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_RANK: dict[Status, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}


class PolicyFetchError(MailwardenError):
    """The policy could not be fetched: no address, TLS/connect failure, a non-200
    answer, a malformed or oversized response. The message says which, in words."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy file; ``problems`` lists what makes senders reject it."""

    version: str
    mode: str
    mx: tuple[str, ...]
    max_age: int | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyResponse:
    url: str
    content_type: str
    text: str


@dataclass(frozen=True, slots=True)
class _Finding:
    status: Status
    detail: str
    fix: str = ""


# ------------------------------------------------------------------ pure helpers


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


def policy_url(host: str, port: int = 443) -> str:
    netloc = host if port == 443 else f"{host}:{port}"
    return f"https://{netloc}{POLICY_PATH}"


def sts_record(domain: str, stamp: str) -> str:
    return f'_mta-sts.{domain}. TXT "v=STSv1; id={stamp}"'


def tlsrpt_record(domain: str) -> str:
    return f'_smtp._tls.{domain}. TXT "v=TLSRPTv1; rua=mailto:tls-reports@{domain}"'


# ------------------------------------------------------------------ HTTPS fetch


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; hostname checked; TLS 1.2+ (RFC 8461 §3.3)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _request(host: str, port: int) -> bytes:
    netloc = host if port == 443 else f"{host}:{port}"
    return (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: mailwarden-audit\r\n"
        "Accept: text/plain\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not (version.startswith("HTTP/") and len(code) == 3 and code.isdigit()):
        raise PolicyFetchError(f"the server did not answer HTTP ({lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), reason.strip(), headers


def _status_problem(code: int, reason: str, headers: dict[str, str]) -> str:
    if 300 <= code < 400:  # RFC 8461 §3.3: senders MUST NOT follow redirects
        where = headers.get("location", "?")
        return f"the server answered HTTP {code} (a redirect to {where}, which senders ignore)"
    return f"the server answered HTTP {code} {reason}".rstrip() + " (only 200 counts)"


def _check_size(size: int) -> None:
    if size > MAX_POLICY_BYTES:  # RFC 8461 §3.3: refuse oversized policies
        raise PolicyFetchError(f"the policy is larger than {MAX_POLICY_BYTES // 1024} KiB")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as exc:
            raise PolicyFetchError("the server sent a malformed chunked body") from exc
        if size == 0:
            return bytes(body)
        _check_size(len(body) + size)
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise PolicyFetchError(f"the server sent Content-Length {length!r}")
        _check_size(int(length))
        return await reader.readexactly(int(length))
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        _check_size(len(body))
    return bytes(body)


async def _exchange(ip: str, port: int, host: str, ctx: ssl.SSLContext) -> PolicyResponse:
    reader, writer = await asyncio.open_connection(ip, port, ssl=ctx, server_hostname=host)
    try:
        writer.write(_request(host, port))
        await writer.drain()
        code, reason, headers = await _read_head(reader)
        if code != 200:  # RFC 8461 §3.3: only a 200 response carries a policy
            raise PolicyFetchError(_status_problem(code, reason, headers))
        body = await _read_body(reader, headers)
    finally:
        await close_writer(writer)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFetchError("the policy is not UTF-8 text") from exc
    return PolicyResponse(policy_url(host, port), headers.get("content-type", ""), text)


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError):
        return f"connection failed ({exc.strerror or exc})"
    return f"malformed HTTP response ({type(exc).__name__})"


async def _addresses(dns: Resolver, host: str) -> list[str]:
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        addresses.extend((await dns.query(host, rdtype)).records)
    return addresses


async def fetch_policy_response(
    dns: Resolver, host: str, port: int, ca_file: Path | None
) -> PolicyResponse:
    """GET the policy from ``host`` (addresses via ``dns``), trying each address until
    one answers; PolicyFetchError says what went wrong. DnsError passes through."""
    addresses = await _addresses(dns, host)
    if not addresses:
        raise PolicyFetchError(f"{host} has no A or AAAA record")
    ctx = await asyncio.to_thread(tls_context, ca_file)
    deadline = asyncio.get_running_loop().time() + FETCH_TIMEOUT
    errors: list[str] = []
    for ip in addresses:
        try:
            async with asyncio.timeout_at(deadline):
                return await _exchange(ip, port, host, ctx)
        except PolicyFetchError:
            raise  # the server answered: another address would not answer differently
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            errors.append(f"{ip}: {_describe(e)}")
    raise PolicyFetchError("; ".join(errors))


async def fetch_policy(dns: Resolver, host: str, port: int, ca_file: Path | None) -> str:
    """The policy text at ``https://<host>:<port>/.well-known/mta-sts.txt``."""
    return (await fetch_policy_response(dns, host, port, ca_file)).text


# ------------------------------------------------------------------ the check


def _stamp(target: AuditTarget) -> str:
    return target.now.strftime("%Y%m%d%H%M%S")


def _republish(domain: str, policy: str, target: AuditTarget) -> str:
    """Fix text: serve this policy, then change the id so senders refetch (§3.1)."""
    return (
        f"Serve at {policy_url('mta-sts.' + domain)} (Content-Type: text/plain):\n{policy}\n"
        f"Then change the id so senders fetch it again:\n{sts_record(domain, _stamp(target))}"
    )


def _serve_fix(host: str, hosts: list[str]) -> str:
    return (
        f"Serve at {policy_url(host)} with HTTP 200 (no redirect), Content-Type: text/plain "
        f"and a certificate valid for {host}:\n{policy_text('testing', hosts)}"
    )


def _setup_fix(target: AuditTarget, domain: str, hosts: list[str], with_tlsrpt: bool) -> str:
    host = f"mta-sts.{domain}"
    parts = [
        f"Publish (RFC 8461):\n{sts_record(domain, _stamp(target))}",
        _serve_fix(host, hosts),
    ]
    if with_tlsrpt:
        parts.append(f"Publish TLS reporting (RFC 8460):\n{tlsrpt_record(domain)}")
    return "\n".join(parts)


def _tlsrpt_finding(domain: str, records: Sequence[str]) -> _Finding | None:
    problem = tlsrpt_problem(records)
    if problem is None:
        return None
    detail = (
        f"TLS reporting is not set up at _smtp._tls.{domain}: {problem}, so you get no "
        "reports of failed TLS deliveries (RFC 8460)."
    )
    return _Finding("warn", detail, tlsrpt_record(domain))


def _result(findings: list[_Finding]) -> CheckResult:
    status = max((f.status for f in findings), key=_RANK.__getitem__)
    detail = " ".join(f.detail for f in findings)
    return CheckResult(NAME, status, detail, "\n\n".join(f.fix for f in findings if f.fix))


async def _mx_names(target: AuditTarget, dns: CachingResolver, domain: str) -> list[str]:
    """Our hostname first, then every other MX host (null MX "." left out)."""
    names = [target.hostname.lower().rstrip(".")]
    for _, host in mx_hosts(await dns.query(domain, "MX")):
        if host and host not in names:
            names.append(host)
    return names


def _not_published(
    target: AuditTarget, domain: str, hosts: list[str], tlsrpt: _Finding | None
) -> CheckResult:
    detail = (
        f"No MTA-STS record at _mta-sts.{domain}: senders may deliver to you without TLS "
        "or to an impostor MX. MTA-STS is optional but recommended (RFC 8461)."
    )
    if tlsrpt is not None:
        detail += " " + tlsrpt.detail
    fix = _setup_fix(target, domain, hosts, with_tlsrpt=tlsrpt is not None)
    return CheckResult(NAME, "warn", detail, fix)


def _record_finding(target: AuditTarget, domain: str, records: list[str]) -> _Finding | None:
    """A fail when the ``v=STSv1`` records are not exactly one valid record (§3.1)."""
    good = sts_record(domain, _stamp(target))
    if len(records) > 1:
        detail = (
            f"There are {len(records)} v=STSv1 records at _mta-sts.{domain}; with more than "
            "one, senders ignore MTA-STS (RFC 8461 §3.1)."
        )
        return _Finding("fail", detail, f"Keep exactly one:\n{good}")
    try:
        sts_id(records[0])
    except ValueError as exc:
        detail = f"The record at _mta-sts.{domain} is invalid: {exc} (RFC 8461 §3.1)."
        return _Finding("fail", detail, f"Replace it with:\n{good}")
    return None


def _mode_finding(target: AuditTarget, domain: str, policy: Policy, hosts: list[str]) -> _Finding:
    mx = list(policy.mx) or hosts
    age = policy.max_age or DEFAULT_MAX_AGE
    if policy.mode == "enforce":
        return _Finding("pass", f"The MTA-STS policy enforces TLS for {', '.join(hosts)}.")
    if policy.mode == "testing":
        detail = (
            "The MTA-STS policy is in testing mode: senders report TLS failures but still "
            "deliver without TLS. Switch to enforce once the TLS reports show no failures."
        )
        return _Finding("warn", detail, _republish(domain, policy_text("enforce", mx, age), target))
    detail = "The MTA-STS policy mode is none, which withdraws the policy (RFC 8461 §5)."
    return _Finding("warn", detail, _republish(domain, policy_text("testing", mx, age), target))


def _policy_findings(
    target: AuditTarget, domain: str, response: PolicyResponse, hosts: list[str]
) -> list[_Finding]:
    policy = parse_policy(response.text)
    age = policy.max_age if policy.max_age and policy.max_age <= MAX_AGE_LIMIT else None
    if policy.problems:
        detail = f"The policy at {response.url} is invalid: {'; '.join(policy.problems)}."
        fixed = policy_text("testing", hosts, age or DEFAULT_MAX_AGE)
        return [_Finding("fail", detail, _republish(domain, fixed, target))]
    uncovered = [h for h in hosts if not mx_covered(policy.mx, h)]
    if uncovered and policy.mode != "none":  # RFC 8461 §4.1: MX host validation
        detail = (
            f"The policy's mx lines ({', '.join(policy.mx)}) do not cover "
            f"{', '.join(uncovered)}; senders that enforce it will not deliver there."
        )
        fixed = policy_text(policy.mode, [*policy.mx, *uncovered], age or DEFAULT_MAX_AGE)
        return [_Finding("fail", detail, _republish(domain, fixed, target))]
    return [_mode_finding(target, domain, policy, hosts), *_served_findings(policy, response)]


def _served_findings(policy: Policy, response: PolicyResponse) -> list[_Finding]:
    out: list[_Finding] = []
    media = response.content_type.split(";")[0].strip().lower()
    if media != "text/plain":  # RFC 8461 §3.3: senders SHOULD check for text/plain
        served = f"as {response.content_type!r}" if media else "without a Content-Type"
        fix = "Serve the policy with Content-Type: text/plain."
        out.append(_Finding("warn", f"The policy is served {served}, not text/plain.", fix))
    if policy.max_age is not None and policy.max_age < SHORT_MAX_AGE:
        detail = f"max_age {policy.max_age} is under a day; senders forget the policy quickly."
        out.append(_Finding("warn", detail, f"Use max_age: {DEFAULT_MAX_AGE} or more."))
    return out


async def _published_findings(
    target: AuditTarget, dns: CachingResolver, domain: str, records: list[str], hosts: list[str]
) -> list[_Finding]:
    bad_record = _record_finding(target, domain, records)
    if bad_record is not None:
        return [bad_record]
    host = f"mta-sts.{domain}"
    try:
        response = await fetch_policy_response(dns, host, target.https_port, target.ca_file)
    except PolicyFetchError as exc:
        detail = (
            f"_mta-sts.{domain} is published, but the policy at "
            f"{policy_url(host, target.https_port)} cannot be fetched: {str(exc).rstrip('.')}."
        )
        return [_Finding("fail", detail, _serve_fix(host, hosts))]
    return _policy_findings(target, domain, response, hosts)


async def check_mta_sts(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """MTA-STS record, policy and MX coverage, plus TLS-RPT (see the module doc)."""
    domain = target.domain.lower().rstrip(".")
    sts = await dns.query(f"_mta-sts.{domain}", "TXT")
    tlsrpt = _tlsrpt_finding(domain, (await dns.query(f"_smtp._tls.{domain}", "TXT")).records)
    hosts = await _mx_names(target, dns, domain)
    # RFC 8461 §3.1: records not starting with v=STSv1 are discarded
    records = [r for r in sts.records if r.startswith("v=STSv1")]
    if not records:
        return _not_published(target, domain, hosts, tlsrpt)
    findings = await _published_findings(target, dns, domain, records, hosts)
    return _result(findings + ([tlsrpt] if tlsrpt else []))
