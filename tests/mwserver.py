"""Run the real mailwarden server for tests: in a background thread, or as a subprocess."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import yaml

from mailwarden.app import App
from mailwarden.config.loader import validate_mapping
from mailwarden.config.schema import Settings

T = TypeVar("T")
LOCAL_DOMAIN = "example.test"
PASSWORD = "correct horse battery"


PG_DSN = os.environ.get("MAILWARDEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(
    tmp: Path,
    *,
    nameserver: str | None,
    storage_url: str = "",
    port: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "hostname": "mx.mailwarden.test",
        "data_dir": str(tmp / "data"),
        "storage": {"url": storage_url},
        "dns": {"nameservers": [nameserver] if nameserver else [], "timeout": 3, "cache": False},
        "listeners": {"mx": {"protocol": "smtp", "address": "127.0.0.1", "port": port}},
        # Scheduled audits query DNS blocklists; tests that want them turn them on.
        "reputation": {"audit_interval": 0},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def write_config(tmp: Path, cfg: dict[str, Any]) -> Path:
    path = tmp / "mailwarden.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


class ServerThread:
    """The real App on its own event loop in a thread; tests drive it with smtplib."""

    def __init__(self, settings: Settings, clock: Any = None) -> None:
        self.settings = settings
        self.app = App(settings, clock=clock)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self.call(self.app.start())
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    @property
    def services(self) -> Any:
        return self.app.services

    def port(self, name: str = "mx") -> int:
        return self.app.bound[name][1]

    def stop(self) -> None:
        if self.loop.is_closed():
            return  # already stopped (a test may stop it before its database goes away)
        try:
            self.call(self.app.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; dropped afterwards."""
    name = "mw_test_" + secrets.token_hex(6)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def settings_for(tmp: Path, cfg: dict[str, Any]) -> Settings:
    return validate_mapping(cfg, tmp)


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MAILWARDEN_")}
# A server started from a config that `mailwarden init` wrote uses the system resolver:
# no scheduled audit (DNS blocklists, real names) from tests, unless a test asks for one.
CLEAN_ENV["MAILWARDEN_REPUTATION__AUDIT_INTERVAL"] = "0"


def mw(
    cwd: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the real `mailwarden` command (python -m mailwarden) in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLEAN_ENV, **(env or {})},
        check=check,
    )


class ServerProcess:
    """`mailwarden run` as a real subprocess (for signal and crash tests)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailwarden", "run", "--config", str(self.config)],
            env=CLEAN_ENV,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"READY" in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.log_path.read_text(errors="replace"))

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
