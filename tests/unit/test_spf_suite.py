"""The openspf.org RFC 7208 test suite (release 2014.04), run against mailwarden.auth.spf.

Source: ../shared/corpora/spf/rfc7208-tests.yml (from sdgathman/pyspf, see SOURCES.md).
Each YAML document has ``zonedata`` and ``tests``; ZoneResolver below serves the zone data
the way the suite's reference driver (pyspf's testspf.py) does:

* ``SPF`` records are also served as ``TXT`` unless the name lists any ``TXT`` entry
  (``TXT: NONE`` only suppresses that copy);
* a bare ``TIMEOUT`` entry makes a query time out (DnsError) unless a record of the
  queried type appears before it;
* ``CNAME`` entries are followed, and a CNAME loop is a DNS error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailwarden.auth import spf
from mailwarden.auth.spf import SpfSyntaxError, check_spf, parse_record
from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Answer, StaticResolver
from shared_data import CORPORA

SUITE = CORPORA / "spf" / "rfc7208-tests.yml"

# Cases the implementation does not meet, with the reason. Keep it empty if possible.
XFAIL: dict[str, str] = {}


def _rdata(rdtype: str, value: Any) -> str:
    if rdtype in ("TXT", "SPF"):
        return "".join(value) if isinstance(value, list) else str(value)
    if rdtype == "MX":
        pref, host = value
        return f"{pref} {host}."
    return str(value)


def _entries(items: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    spf_copies: list[tuple[str, str]] = []
    has_txt = any(isinstance(i, dict) and "TXT" in i for i in items)
    for item in items:
        if item == "TIMEOUT":
            out.append(("TIMEOUT", ""))
            continue
        ((rdtype, value),) = item.items()
        if value == "NONE":
            continue
        out.append((rdtype, _rdata(rdtype, value)))
        if rdtype == "SPF" and not has_txt:
            spf_copies.append(("TXT", _rdata(rdtype, value)))
    return out + spf_copies


class ZoneResolver:
    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.zone = {name.lower(): _entries(items) for name, items in zonedata.items()}

    async def query(self, name: str, rdtype: str) -> Answer:
        return self._lookup(name, rdtype, 0)

    def _lookup(self, name: str, rdtype: str, depth: int) -> Answer:
        key = name.lower().removesuffix(".")
        if depth > 8:
            raise DnsError(f"CNAME loop at {name}")
        entries = self.zone.get(key)
        if entries is None:
            return Answer(name, rdtype, (), nxdomain=True)
        found: list[str] = []
        for etype, value in entries:
            if etype == "TIMEOUT" and not found:
                raise DnsError(f"{rdtype} {name}: timeout")
            if etype == "CNAME" and rdtype != "CNAME":
                return self._lookup(value, rdtype, depth + 1)
            if etype == rdtype:
                found.append(value)
        return Answer(name, rdtype, tuple(found))


def _cases() -> Iterator[Any]:
    for doc in yaml.safe_load_all(SUITE.read_text(encoding="utf-8")):
        for name, case in doc["tests"].items():
            marks = [pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else []
            yield pytest.param(doc["zonedata"], case, id=name, marks=marks)


@pytest.mark.parametrize(("zonedata", "case"), list(_cases()))
async def test_rfc7208_suite(zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    resolver = ZoneResolver(zonedata)
    result, _helo = await check_spf(resolver, case["host"], case["mailfrom"], case["helo"])
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert result.result in expected, result.reason
    if "explanation" in case:
        want = case["explanation"]
        if want == "DEFAULT":  # the suite's word for "no exp= text": we report None
            assert result.explanation is None
        else:  # %{i} nibbles of IPv6 are lower case (RFC 7208 §7.4); the suite writes upper
            assert (result.explanation or "").lower() == want.lower()


def test_suite_size() -> None:
    assert len(list(_cases())) > 140


# ------------------------------------------------------------ beyond the suite's scope
async def test_null_mail_from_is_postmaster_at_helo() -> None:
    resolver = StaticResolver({("mail.example.org", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"]})
    mail_from, helo = await check_spf(resolver, "192.0.2.1", "<>", "mail.example.org")
    assert mail_from is helo
    assert (mail_from.result, mail_from.domain) == ("pass", "mail.example.org")


async def test_mail_from_and_helo_are_separate_checks() -> None:
    resolver = StaticResolver(
        {
            ("example.org", "TXT"): ["v=spf1 include:_spf.example.org -all"],
            ("_spf.example.org", "TXT"): ["v=spf1 ip6:2001:db8::/32 ~all"],
        }
    )
    mail_from, helo = await check_spf(resolver, "2001:db8::25", "a@example.org", "[2001:db8::25]")
    assert (mail_from.result, mail_from.lookups) == ("pass", 1)
    assert helo.result == "none"


def test_parse_record_is_cached_and_strict() -> None:
    text = "v=spf1 a mx/24 ip4:192.0.2.0/24 include:_spf.%{d2} ~all exp=why.%{d}"
    assert parse_record(text) is parse_record(text)
    record = parse_record(text)
    assert [m.kind for m in record.mechanisms] == ["a", "mx", "ip4", "include", "all"]
    assert record.exp == "why.%{d}"
    with pytest.raises(SpfSyntaxError):
        parse_record("v=spf1 ip4:192.0.2.0/33")


async def test_overall_time_limit_is_temperror(monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow:
        async def query(self, name: str, rdtype: str) -> Answer:
            await asyncio.sleep(10)
            raise AssertionError("unreachable")

    monkeypatch.setattr(spf, "TIME_LIMIT", 0.05)
    result = await spf.check_host(Slow(), "192.0.2.1", "example.org", "a@example.org", "h")
    assert result.result == "temperror"


async def test_invalid_client_ip() -> None:
    result = await spf.check_host(StaticResolver(), "not-an-ip", "example.org", "a@b", "h")
    assert result.result == "permerror"
