"""The TLS check against the real server: its STARTTLS (mx) and implicit TLS (submissions)
listeners serving certificates made here, good and broken in each way the check knows.

Also: a client that gives up on the handshake is routine for an MX (scanners, senders
that verify certificates); the server logs one INFO line, no traceback, and serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sending import wait_until

from certs import Issued, issue, make_ca, write_chain
from dnsserver import KnotServer
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Endpoint
from mailwarden.reputation.audit.tls_check import check_tls
from mwserver import ServerThread, make_config, settings_for

HOST = "mx.mailwarden.test"  # make_config's hostname


@dataclass
class Served:
    srv: ServerThread
    cert: Path
    ca_file: Path

    @property
    def ports(self) -> tuple[int, int]:
        return self.srv.port("mx"), self.srv.port("submissions")

    def target(self) -> AuditTarget:
        mx, submissions = self.ports
        return AuditTarget(
            domain="mailwarden.test",
            hostname=HOST,
            helo_name=HOST,
            sending_ips=(),
            now=dt.datetime.now(dt.UTC),
            endpoints=(
                Endpoint("mx", "127.0.0.1", mx, "starttls"),
                Endpoint("submissions", "127.0.0.1", submissions, "implicit"),
            ),
            ca_file=self.ca_file,
            cert_file=self.cert,
        )

    async def check(self) -> CheckResult:
        return await check_tls(self.target(), None)  # type: ignore[arg-type]  # no DNS used


@pytest.fixture
def serve(tmp_path: Path, test_tld: KnotServer) -> Iterator[Callable[..., Served]]:
    """serve(root, leaf, *chain): the server with tls.cert = leaf + chain, root trusted."""
    started: list[ServerThread] = []

    def start(root: Issued, leaf: Issued, *chain: Issued) -> Served:
        cert, key = write_chain(tmp_path / "tls", leaf, *chain)
        ca_file = tmp_path / "root.pem"
        ca_file.write_bytes(root.pem())
        cfg = make_config(
            tmp_path,
            nameserver=test_tld.nameserver,
            extra={
                "tls": {"cert": str(cert), "key": str(key)},
                "listeners": {
                    "mx": {"protocol": "smtp", "port": 0, "tls": "starttls"},
                    "submissions": {"protocol": "submission", "port": 0, "tls": "implicit"},
                },
            },
        )
        srv = ServerThread(settings_for(tmp_path, cfg)).start()
        started.append(srv)
        return Served(srv, cert, ca_file)

    yield start
    for srv in started:
        srv.stop()


def assert_both_endpoints(served: Served, result: CheckResult) -> None:
    mx, submissions = served.ports
    assert result.detail.startswith(f"mx 127.0.0.1:{mx} (starttls): TLSv1.")
    assert f"; submissions 127.0.0.1:{submissions} (implicit): TLSv1." in result.detail


async def test_a_certificate_from_a_trusted_ca_with_its_chain_passes(
    serve: Callable[..., Served],
) -> None:
    root = make_ca("Audit Root")
    inter = make_ca("Audit Intermediate", issuer=root)
    leaf = issue(inter, HOST)
    served = serve(root, leaf, inter)
    result = await served.check()
    assert_both_endpoints(served, result)
    until = leaf.cert.not_valid_after_utc.date().isoformat()
    assert (result.status, result.fix) == ("pass", ""), result.detail
    expected = f"certificate for {HOST} valid until {until}, issued by Audit Intermediate"
    assert result.detail.count(expected) == 2, result.detail


async def test_an_expired_certificate_fails(serve: Callable[..., Served]) -> None:
    root = make_ca()
    served = serve(root, issue(root, HOST, days=-0.5, not_before_days=-0.9))
    result = await served.check()
    assert_both_endpoints(served, result)
    assert result.status == "fail", result.detail
    assert result.detail.count("certificate expired on") == 2
    assert "renew the certificate" in result.fix


async def test_a_certificate_expiring_in_5_days_warns(serve: Callable[..., Served]) -> None:
    root = make_ca()
    served = serve(root, issue(root, HOST, days=5))
    result = await served.check()
    assert_both_endpoints(served, result)
    assert result.status == "warn", result.detail
    assert result.detail.count("certificate expires in 5 days") == 2
    assert "renew the certificate" in result.fix


async def test_a_certificate_for_another_name_fails(serve: Callable[..., Served]) -> None:
    root = make_ca()
    served = serve(root, issue(root, "other.mailwarden.test"))
    result = await served.check()
    assert_both_endpoints(served, result)
    assert result.status == "fail", result.detail
    assert result.detail.count(f"certificate is for other.mailwarden.test, not {HOST}") == 2
    assert f"lists {HOST} in its subjectAltName" in result.fix


async def test_a_self_signed_certificate_fails(serve: Callable[..., Served]) -> None:
    served = serve(make_ca(), issue(None, HOST))
    result = await served.check()
    assert_both_endpoints(served, result)
    assert result.status == "fail", result.detail
    assert result.detail.count("self-signed: receivers that check certificates") == 2
    assert "Let's Encrypt" in result.fix


async def test_a_leaf_without_its_intermediate_is_an_incomplete_chain(
    serve: Callable[..., Served],
) -> None:
    root = make_ca("Audit Root")
    inter = make_ca("Audit Intermediate", issuer=root)
    served = serve(root, issue(inter, HOST))  # tls.cert holds the leaf only
    result = await served.check()
    assert_both_endpoints(served, result)
    assert result.status == "fail", result.detail
    missing = "chain incomplete: the server does not send the certificate of Audit Intermediate"
    assert result.detail.count(missing) == 2
    assert "full chain" in result.fix


# ------------------------------------------------------------ aborted handshakes --


async def abort_starttls(port: int) -> None:
    """A sender that verifies certificates and does not trust ours: it gives up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO client.test\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writer.write(b"STARTTLS\r\n")
        assert (await reader.readline()).startswith(b"220 ")
        with pytest.raises(ssl.SSLCertVerificationError):
            await writer.start_tls(ssl.create_default_context(), server_hostname=HOST)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def abort_implicit(port: int) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl.create_default_context(), server_hostname=HOST
        )


async def test_an_aborted_handshake_is_one_info_line_and_the_server_serves_on(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    root = make_ca()
    served = serve(root, issue(root, HOST))  # not in the system store: verifiers refuse it
    mx, submissions = served.ports
    await abort_starttls(mx)
    await abort_implicit(submissions)

    def failed_line() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "TLS handshake with 127.0.0.1:" in r.getMessage()]

    records = await asyncio.to_thread(wait_until, failed_line, 10, "the handshake log line")
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].getMessage().startswith("TLS handshake with 127.0.0.1:")
    result = await served.check()  # the next clients are served as usual
    assert result.status == "pass", result.detail
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
