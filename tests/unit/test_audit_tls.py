"""The pure parts of the TLS check: name matching, expiry, chain verification, verdicts."""

from __future__ import annotations

import asyncio
import socket

import pytest
from cryptography.hazmat.primitives import serialization

from certs import NOW, Issued, issue, make_ca
from mailwarden.reputation.audit import tls_probe
from mailwarden.reputation.audit.certcheck import (
    Finding,
    certificate_names,
    check_chain,
    check_protocol,
    classify_expiry,
    hostname_matches,
    intermediates_for,
    is_self_signed,
    missing_issuer,
)
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Endpoint
from mailwarden.reputation.audit.tls_check import aggregate, check_tls, judge_handshake
from mailwarden.reputation.audit.tls_probe import Handshake

HOST = "mx.example.test"


def der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------- RFC 6125 matching --


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("mx.example.test", "mx.example.test"),
        ("MX.Example.TEST", "mx.example.test"),
        ("mx.example.test.", "mx.example.test"),
        ("*.example.test", "mx.example.test"),
        ("*.example.test", "MX.EXAMPLE.TEST."),
        ("xn--bcher-kva.example", "bücher.example"),
    ],
)
def test_names_that_match(pattern: str, name: str) -> None:
    assert hostname_matches(pattern, name)


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("mx.example.test", "mx2.example.test"),
        ("*.example.test", "example.test"),  # the wildcard stands for exactly one label
        ("*.example.test", "a.mx.example.test"),
        ("*.test", "example.test"),  # not under a single-label name
        ("m*.example.test", "mx.example.test"),  # partial wildcards: RFC 9525 §6.3
        ("mx.*.test", "mx.example.test"),  # only the leftmost label
        ("*.*.test", "a.b.test"),
        ("*.example.test", "xn--bcher-kva.example.test"),  # no wildcard for an A-label
        ("", "mx.example.test"),
        ("mx.example.test", ""),
    ],
)
def test_names_that_do_not_match(pattern: str, name: str) -> None:
    assert not hostname_matches(pattern, name)


def test_names_come_from_the_subject_alt_name_only() -> None:
    ca = make_ca()
    leaf = issue(ca, HOST, "*.example.test")
    assert certificate_names(leaf.cert) == [HOST, "*.example.test"]


# -------------------------------------------------------------------------- expiry --


@pytest.mark.parametrize(
    ("days", "not_before", "status", "text"),
    [
        (90, -1, "pass", "valid until"),
        (15, -1, "pass", "valid until"),
        (14, -1, "warn", "expires in 14 days"),
        (5, -1, "warn", "expires in 5 days"),
        (0.5, -1, "warn", "expires in less than a day"),
        (-1, -90, "fail", "expired on"),
        (90, 2, "fail", "not valid before"),
    ],
)
def test_expiry_classification(days: float, not_before: float, status: str, text: str) -> None:
    leaf = issue(make_ca(), HOST, days=days, not_before_days=not_before)
    got_status, got_text = classify_expiry(leaf.cert, NOW)
    assert (got_status, text in got_text) == (status, True), got_text


def test_naive_now_is_taken_as_utc() -> None:
    leaf = issue(make_ca(), HOST, days=5)
    assert classify_expiry(leaf.cert, NOW.replace(tzinfo=None))[0] == "warn"


# --------------------------------------------------------------------------- chain --


def test_a_chain_to_a_trusted_root_passes() -> None:
    root = make_ca("Test Root")
    inter = make_ca("Test Intermediate", issuer=root)
    leaf = issue(inter, HOST)
    assert check_chain(leaf.cert, [inter.cert], [root.cert], HOST, NOW) is None


def test_a_leaf_issued_by_the_root_directly_passes() -> None:
    root = make_ca("Test Root")
    assert check_chain(issue(root, HOST).cert, [], [root.cert], HOST, NOW) is None


def test_a_missing_intermediate_is_an_incomplete_chain() -> None:
    root = make_ca("Test Root")
    inter = make_ca("Test Intermediate", issuer=root)
    leaf = issue(inter, HOST)
    finding = check_chain(leaf.cert, [], [root.cert], HOST, NOW)
    assert finding is not None and finding.status == "fail"
    assert "chain incomplete" in finding.text and "Test Intermediate" in finding.text
    assert "full chain" in finding.fix
    assert missing_issuer(leaf.cert, [], [root.cert]) == inter.cert.subject


def test_an_untrusted_root_sent_by_the_server_is_not_trusted() -> None:
    private = make_ca("Private Root")
    leaf = issue(private, HOST)
    finding = check_chain(leaf.cert, [private.cert], [make_ca("Other Root").cert], HOST, NOW)
    assert finding is not None and finding.status == "fail"
    assert "does not chain to a trusted CA" in finding.text
    assert missing_issuer(leaf.cert, [private.cert], []) is None


def test_a_self_signed_certificate_fails_with_the_reason() -> None:
    leaf = issue(None, HOST)
    assert is_self_signed(leaf.cert)
    finding = check_chain(leaf.cert, [], [make_ca().cert], HOST, NOW)
    assert finding is not None and finding.status == "fail"
    assert finding.text.startswith("self-signed: receivers that check certificates")
    assert "Let's Encrypt" in finding.fix


def test_the_chain_is_judged_apart_from_name_and_dates() -> None:
    """An expired leaf for another name, properly chained: the chain itself is fine
    (check_name and check_validity report the rest, once each)."""
    root = make_ca("Test Root")
    expired = issue(root, "other.example.test", days=-0.5, not_before_days=-0.9)
    assert check_chain(expired.cert, [], [root.cert], HOST, NOW) is None


def test_intermediates_come_from_the_handshake_then_from_our_cert_file() -> None:
    root = make_ca("Test Root")
    inter = make_ca("Test Intermediate", issuer=root)
    leaf = issue(inter, HOST)
    wire = (der(leaf), der(inter))
    assert intermediates_for(leaf.cert, wire, []) == [inter.cert]
    assert intermediates_for(leaf.cert, None, [leaf.cert, inter.cert]) == [inter.cert]
    other = issue(inter, HOST)  # tls.cert is not what is served: we know nothing
    assert intermediates_for(leaf.cert, None, [other.cert, inter.cert]) == []


# ------------------------------------------------------------------------ verdicts --


def test_old_protocols_fail() -> None:
    assert check_protocol("TLSv1.3") is None
    assert check_protocol("TLSv1.2") is None
    finding = check_protocol("TLSv1.1")
    assert finding is not None and finding.status == "fail" and "RFC 8996" in finding.text


def test_a_good_endpoint_line() -> None:
    root = make_ca("Test Root")
    leaf = issue(root, HOST)
    hs = Handshake("TLSv1.3", "TLS_AES_256_GCM_SHA384", der(leaf), None)
    line, findings = judge_handshake(hs, HOST, NOW, [root.cert], [])
    until = leaf.cert.not_valid_after_utc.date().isoformat()
    assert findings == []
    assert line == f"TLSv1.3, certificate for {HOST} valid until {until}, issued by Test Root"


def test_every_problem_of_an_endpoint_is_reported() -> None:
    root = make_ca("Test Root")
    leaf = issue(root, "other.example.test", days=3)
    hs = Handshake("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", der(leaf), None)
    line, findings = judge_handshake(hs, HOST, NOW, [root.cert], [])
    assert [f.status for f in findings] == ["fail", "warn"]
    assert "not mx.example.test" in line and "expires in" in line


def test_aggregate_takes_the_worst_and_says_each_fix_once() -> None:
    warn = Finding("warn", "expires soon", "renew")
    fail = Finding("fail", "self-signed", "get a public certificate")
    result = aggregate(["a: x", "b: y"], [warn, fail, warn])
    assert result == CheckResult("tls", "fail", "a: x; b: y", "renew\nget a public certificate")
    assert aggregate(["a: x"], [warn]).status == "warn"
    assert aggregate(["a: x"], []).status == "pass"


async def test_no_endpoints_is_a_skip() -> None:
    target = AuditTarget("example.test", HOST, HOST, (), NOW)
    result = await check_tls(target, None)  # type: ignore[arg-type]
    assert result.status == "skip"


async def test_a_closed_port_fails_with_the_reason() -> None:
    with socket.socket() as s:  # bound, never listening: connecting is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        target = AuditTarget(
            "example.test",
            HOST,
            HOST,
            (),
            NOW,
            endpoints=(Endpoint("mx", "127.0.0.1", port, "starttls"),),
        )
        result = await check_tls(target, None)  # type: ignore[arg-type]
    assert result.status == "fail"
    assert result.detail.startswith(f"mx 127.0.0.1:{port} (starttls): connection refused")
    assert "listener mx" in result.fix


def one_endpoint(port: int) -> AuditTarget:
    ep = Endpoint("mx", "127.0.0.1", port, "starttls")
    return AuditTarget("example.test", HOST, HOST, (), NOW, endpoints=(ep,))


async def test_a_server_without_starttls_fails_with_the_reason() -> None:
    async def plain_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.example.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mx.example.test\r\n250 PIPELINING\r\n")
        await reader.readline()  # QUIT, or the probe hanging up
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(plain_smtp, "127.0.0.1", 0)
    async with server:
        result = await check_tls(one_endpoint(server.sockets[0].getsockname()[1]), None)  # type: ignore[arg-type]
    assert result.status == "fail"
    assert result.detail.endswith("(starttls): STARTTLS not offered")
    assert "tls: starttls" in result.fix


async def test_a_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_probe, "PROBE_TIMEOUT", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as listening:  # accepts, never speaks
        port = listening.getsockname()[1]
        result = await check_tls(one_endpoint(port), None)  # type: ignore[arg-type]
    assert result.status == "fail"
    assert result.detail.endswith("(starttls): no answer within 0.2 s")
