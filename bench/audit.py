"""Full deliverability audit of one domain against the loopback DNS server (issue #6).

Sets up a real Knot DNS server with a complete, good set-up (MX, SPF with includes,
both DKIM selectors, DMARC, TLS-RPT, MTA-STS, PTR, test DNS blocklists), an HTTPS
server for the MTA-STS policy, and the real mailwarden App with STARTTLS and implicit-
TLS listeners holding a certificate from a test CA. Then it audits the domain N times
and prints the wall time of each full audit (every check run concurrently) and the DNS
queries it sent, against the lookups the checks asked for (the audit's own cache
answers the rest). The resolver's TTL cache is off, so every audit starts cold.

    .venv/bin/python bench/audit.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from certs import issue, make_ca, write_chain  # noqa: E402
from dnsserver import KnotServer, knot_available, txt  # noqa: E402
from mailwarden.app import App  # noqa: E402
from mailwarden.config.loader import validate_mapping  # noqa: E402
from mailwarden.services.dns_records import records_to_publish  # noqa: E402
from mwserver import free_port  # noqa: E402

DOMAIN = "audit.bench.test"
HOST = f"mx.{DOMAIN}"
IP = "127.0.0.1"


async def policy_server(cert: Path, key: Path) -> tuple[asyncio.Server, int]:
    body = f"version: STSv1\r\nmode: enforce\r\nmx: {HOST}\r\nmax_age: 604800\r\n".encode()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


def zone(records: list, extra: list[str]) -> list[str]:
    lines = [f"{r.name}. {r.type} {txt(r.value) if r.type == 'TXT' else r.value}" for r in records]
    return [*lines, *extra]


async def main(runs: int, work: Path, knot: KnotServer) -> None:
    ca = make_ca()
    cert, key = write_chain(work / "tls", issue(ca, HOST, f"mta-sts.{DOMAIN}"))
    (work / "ca.pem").write_bytes(ca.pem())
    https, https_port = await policy_server(cert, key)
    cfg = {
        "hostname": HOST,
        "data_dir": str(work / "data"),
        "tls": {"cert": str(cert), "key": str(key)},
        "dns": {"nameservers": [knot.nameserver], "cache": False},
        "delivery": {"source_address": IP},
        "listeners": {
            "mx": {"protocol": "smtp", "port": free_port(), "tls": "starttls"},
            "submission": {"protocol": "submission", "port": free_port(), "tls": "starttls"},
            "submissions": {"protocol": "submission", "port": free_port(), "tls": "implicit"},
        },
        "reputation": {
            "audit_interval": 0,
            "audit_ca_file": str(work / "ca.pem"),
            "audit_https_port": https_port,
            "blocklists": [f"ip:dnsbl{n}.bench.test" for n in range(3)]
            + [f"domain:dbl{n}.bench.test" for n in range(2)],
        },
    }
    app = App(validate_mapping(cfg, work))
    await app.start()
    try:
        s = app.services
        assert s is not None
        await s.accounts.add_domain(DOMAIN)
        await s.dkim.generate(DOMAIN)
        await s.accounts.add_user(f"admin@{DOMAIN}", "bench horse battery")
        for role in ("postmaster", "abuse"):
            await s.accounts.add_alias(f"{role}@{DOMAIN}", f"admin@{DOMAIN}")
        records = await records_to_publish(s.settings, s.accounts, s.dkim, DOMAIN)
        spf = next(r for r in records if r.value.startswith("v=spf1"))
        includes = [f"spf{n}.{DOMAIN}" for n in range(3)]
        spf_value = spf.value.replace(" ~all", "".join(f" include:{i}" for i in includes) + " -all")
        extra = [f"{HOST}. A {IP}", f"mta-sts.{DOMAIN}. A 127.0.0.1"]
        extra += [f"{i}. TXT {txt('v=spf1 ip4:192.0.2.0/24 -all')}" for i in includes]
        extra += [f"_mta-sts.{DOMAIN}. TXT {txt('v=STSv1; id=20261203000000')}"]
        records = [r for r in records if r is not spf]
        knot.set_zone(DOMAIN, [*zone(records, extra), f"{DOMAIN}. TXT {txt(spf_value)}"], ttl=3600)
        knot.add_ptr(IP, HOST, ttl=3600)
        times, queries, lookups = [], [], []
        for n in range(runs + 1):
            report = await s.audits.audit(DOMAIN)
            if n == 0:
                for c in report.checks:
                    print(f"  {c.name:<11} {c.status:<5} {c.detail[:110]}")
                print(f"  score {report.score}/100\n")
                continue  # the first run warms imports and the PSL
            times.append(report.seconds)
            queries.append(report.queries)
            lookups.append(report.lookups)
        times.sort()
        print(f"full audit of {DOMAIN}, {runs} runs, all checks concurrent:")
        p95 = times[int(0.95 * (len(times) - 1))]
        print(
            f"  time   median {statistics.median(times) * 1000:.1f} ms, "
            f"p95 {p95 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
        )
        print(
            f"  DNS    {statistics.median(queries):.0f} queries sent per audit, "
            f"{statistics.median(lookups):.0f} lookups asked for by the checks"
        )
    finally:
        await app.stop()
        https.close()
        await https.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if not knot_available():
        sys.exit("Knot DNS (knotd) is needed: apt-get install knot knot-dnsutils")
    with (
        tempfile.TemporaryDirectory(prefix="mw-audit-bench-") as tmp,
        KnotServer(Path(tmp) / "knot") as knot,
    ):
        knot.set_zone("test", [])
        asyncio.run(main(args.runs, Path(tmp), knot))
