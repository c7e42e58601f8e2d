"""Fixtures for integration tests: the real server on 127.0.0.1 with a real DNS server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dkimkeys import DkimKeys, make_dkim_keys
from dnsserver import KnotServer
from mwserver import (
    LOCAL_DOMAIN,
    PASSWORD,
    ServerThread,
    make_config,
    postgres_database,
    settings_for,
)


@pytest.fixture(scope="session")
def dkim_keys() -> DkimKeys:
    return make_dkim_keys()


@pytest.fixture(scope="session")
def test_tld(dns_server: KnotServer) -> KnotServer:
    """Serve the "test." zone itself, so unknown names under it are NXDOMAIN, not REFUSED."""
    dns_server.set_zone("test", [])
    return dns_server


def start_server(
    tmp_path: Path, nameserver: str, url: str = "", clock: Any = None, **extra: object
) -> ServerThread:
    """The real server in a thread; ``clock`` (a FakeClock) is injected when given."""
    cfg = make_config(tmp_path, nameserver=nameserver, storage_url=url, extra=dict(extra))
    srv = ServerThread(settings_for(tmp_path, cfg), clock=clock).start()
    acc = srv.services.accounts
    srv.call(acc.add_domain(LOCAL_DOMAIN))
    srv.call(acc.add_user(f"alice@{LOCAL_DOMAIN}", PASSWORD))
    srv.call(acc.add_user(f"bob@{LOCAL_DOMAIN}", PASSWORD, 20_000))
    srv.call(acc.add_alias(f"postmaster@{LOCAL_DOMAIN}", f"alice@{LOCAL_DOMAIN}"))
    srv.call(acc.add_domain("catchall.test"))
    srv.call(acc.add_alias("@catchall.test", f"alice@{LOCAL_DOMAIN}"))
    return srv


@pytest.fixture
def server(tmp_path: Path, test_tld: KnotServer) -> Iterator[ServerThread]:
    srv = start_server(tmp_path, test_tld.nameserver)
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path, test_tld: KnotServer) -> Iterator[Callable[..., ServerThread]]:
    """Start a server with extra config sections, e.g. make_server(limits={...})."""
    started: list[ServerThread] = []

    def factory(url: str = "", **extra: Any) -> ServerThread:
        srv = start_server(tmp_path / f"s{len(started)}", test_tld.nameserver, url, **extra)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(
    request: pytest.FixtureRequest, tmp_path: Path, test_tld: KnotServer
) -> Iterator[ServerThread]:
    """The server on each storage backend (the storage and delivery tests run on both)."""
    if request.param == "sqlite":
        srv = start_server(tmp_path, test_tld.nameserver)
        yield srv
        srv.stop()
        return
    with postgres_database() as url:
        srv = start_server(tmp_path, test_tld.nameserver, url)
        yield srv
        srv.stop()
