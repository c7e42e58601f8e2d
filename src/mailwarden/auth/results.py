"""The Authentication-Results header field value (RFC 8601) for one message's verdict."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailwarden.auth.arc import ArcResult
from mailwarden.auth.dkim import DkimResult
from mailwarden.auth.dmarc import DmarcResult
from mailwarden.auth.spf import SpfResult
from mailwarden.auth.verdict import AuthVerdict

# RFC 2045 §5.1 token: printable US-ASCII except SPACE and tspecials ()<>@,;:\"/[]?=
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# RFC 8601 §2.2 pvalue form [ local-part "@" ] domain-name, with a dot-atom local part
_ATOM = r"[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+"
_ADDRESS = re.compile(rf"(?:{_ATOM}(?:\.{_ATOM})*)?@[0-9A-Za-z_-]+(?:\.[0-9A-Za-z_-]+)*")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
FOLD = ";\r\n\t"  # RFC 5322 §2.2.3: one resinfo per line keeps lines short


def pvalue(value: str) -> str:
    """A property or authserv-id value: bare when it may be, else a quoted-string."""
    text = _CONTROLS.sub(" ", value).strip()
    if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'  # RFC 5322 §3.2.4


def comment(text: str, limit: int = 100) -> str:
    """An RFC 5322 §3.2.2 comment: controls dropped, parentheses and backslashes escaped."""
    clean = _CONTROLS.sub(" ", text).strip()[:limit]
    return "(" + re.sub(r"([()\\])", r"\\\1", clean) + ")"


def _resinfo(method: str, result: str, note: str | None, props: Sequence[tuple[str, str]]) -> str:
    """RFC 8601 §2.2 resinfo: method=result [comment] ptype.property=pvalue ..."""
    parts = [f"{method}={result}"]
    if note:
        parts.append(comment(note))
    parts += [f"{name}={pvalue(value)}" for name, value in props if value]
    return " ".join(parts)


def _spf(result: SpfResult, prop: str, identity: str) -> str:
    note = None if result.result == "pass" else result.reason
    return _resinfo("spf", result.result, note, [(prop, identity)])  # RFC 7208 §9.2


def _dkim(result: DkimResult) -> str:
    note = None if result.result == "pass" else result.reason
    props = [("header.d", result.domain), ("header.s", result.selector)]
    return _resinfo("dkim", result.result, note, [*props, ("header.b", result.header_b)])


def _dmarc(result: DmarcResult, from_domain: str | None) -> str:
    note = f"p={result.policy}" if result.record is not None else None
    if result.result in ("permerror", "temperror") or (result.result == "fail" and note):
        note = f"{note} {result.reason}" if note else result.reason
    return _resinfo("dmarc", result.result, note, [("header.from", from_domain or "")])


def format_results(
    authserv_id: str,
    *,
    spf_mailfrom: SpfResult,
    spf_helo: SpfResult | None,
    dkim: Sequence[DkimResult],
    dmarc: DmarcResult,
    arc: ArcResult,
    mail_from: str,
    helo: str,
    from_domain: str | None,
    fold: bool = True,
) -> str:
    """The header field value, e.g. ``mx.example; spf=pass smtp.mailfrom=a@b.example; …``.

    One resinfo per line (``fold``), so the caller writes
    ``f"Authentication-Results: {value}\\r\\n"`` as is. Reasons for non-pass results are
    comments; every property value is quoted where RFC 8601 §2.2 requires it.
    """
    identity = mail_from or (f"postmaster@{helo}" if helo else "")  # RFC 7208 §2.4
    infos = [_spf(spf_mailfrom, "smtp.mailfrom", identity)]
    if spf_helo is not None and helo:
        infos.append(_spf(spf_helo, "smtp.helo", helo))
    infos += [_dkim(r) for r in dkim] or ["dkim=none"]
    infos.append(_dmarc(dmarc, from_domain))
    infos.append(_resinfo("arc", arc.result, arc.reason if arc.result == "fail" else None, []))
    return (FOLD if fold else "; ").join([pvalue(authserv_id), *infos])


def authentication_results(authserv_id: str, verdict: AuthVerdict, *, fold: bool = True) -> str:
    """``format_results`` for everything ``authenticate`` found."""
    return format_results(
        authserv_id,
        spf_mailfrom=verdict.spf_mailfrom,
        spf_helo=verdict.spf_helo,
        dkim=verdict.dkim,
        dmarc=verdict.dmarc,
        arc=verdict.arc,
        mail_from=verdict.mail_from,
        helo=verdict.helo,
        from_domain=verdict.from_domain,
        fold=fold,
    )
