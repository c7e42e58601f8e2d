"""Shared pytest fixtures.

Each area keeps its fixtures in its own delimited section below; add new sections rather
than editing others. Heavy lifting lives in helper modules next to this file (e.g.
``tests/dnsserver.py``), which tests import directly (``from dnsserver import txt``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dnsserver import INSTALL_HINT, KnotServer, ZoneSet, knot_available, unique_domain
from mailwarden.dns.resolver import DnsPythonResolver

# =============================================================================== DNS ====
# A real authoritative DNS server (Knot DNS) on 127.0.0.1, one per test session.
#
#   dns_server    session  KnotServer: .nameserver ("127.0.0.1:PORT"), .set_zone(),
#                          .add_ptr(), .add_failing_zone(), .remove_zone(), .query()
#   dns_zones     function ZoneSet on dns_server: same zone methods, plus .domain (a fresh
#                          name unique to this test, e.g. "t-test-mx-order-7.test");
#                          every zone made through it is removed after the test.
#   dns_resolver  function DnsPythonResolver(nameservers=[dns_server.nameserver],
#                          timeout=5.0, cache=False)
#
# Tests share one server, so use unique zone names (dns_zones.domain or names under it)
# and create every zone you query: a name under no zone is answered REFUSED → DnsError.


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    if not knot_available():
        pytest.fail(f"Knot DNS (knotd, knotc) is required for the DNS tests: {INSTALL_HINT}")
    with KnotServer(tmp_path_factory.mktemp("knot")) as server:
        yield server


@pytest.fixture
def dns_zones(dns_server: KnotServer, request: pytest.FixtureRequest) -> Iterator[ZoneSet]:
    zones = ZoneSet(dns_server, unique_domain(request.node.name))
    yield zones
    zones.cleanup()


@pytest.fixture
def dns_resolver(dns_server: KnotServer) -> DnsPythonResolver:
    return DnsPythonResolver(nameservers=[dns_server.nameserver], timeout=5.0, cache=False)


# =========================================================================== end DNS ====
