"""A real authoritative DNS server (Knot DNS) on loopback, serving zones that tests write.

House rule: DNS-dependent tests talk to a real server, never to mocks. This module runs
``knotd`` in the foreground on ``127.0.0.1:<free port>`` (UDP and TCP), with everything it
writes (config, zone files, control socket, PID file, timer/journal databases, log) kept in
one work directory. Zones are added, replaced and removed at run time through ``knotc`` on
the control socket; each change is applied synchronously and polled for over DNS before the
call returns, so a test can query the new data immediately.

Usage::

    with KnotServer(tmp_path) as ns:
        ns.set_zone("example.test", ["@ MX 10 mx.example.test.", "mx A 127.0.0.1"])
        ns.set_zone("example.test", [f"@ TXT {txt('v=spf1 ' + 'a' * 400)}"])
        ns.add_ptr("127.0.0.1", "mx.example.test")
        resolver = DnsPythonResolver(nameservers=[ns.nameserver], cache=False)

Queries for names under no configured zone are answered REFUSED (which our resolver
reports as DnsError, not NXDOMAIN): create the zone you query, even an empty one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT

__all__ = [
    "INSTALL_HINT",
    "KnotError",
    "KnotServer",
    "ZoneSet",
    "knot_available",
    "reverse_zone",
    "txt",
    "unique_domain",
]

INSTALL_HINT = "run `apt-get install knot knot-dnsutils` (Debian/Ubuntu) to install Knot DNS"

#: Where the apex NS record points. Out of zone (so no glue is needed) and never resolvable.
FIXTURE_NS = "ns.dns-fixture.invalid."
FIXTURE_HOSTMASTER = "hostmaster.dns-fixture.invalid."

_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep a margin
_CLASSES = {"IN", "CH", "HS", "CS", "ANY"}
_TTL_RE = re.compile(r"^\d+[smhdwSMHDW]?(\d+[smhdwSMHDW])*$")


class KnotError(RuntimeError):
    """knotd failed to start, or a zone change was not applied (message includes the log)."""


# --------------------------------------------------------------------------- helpers


def find_exe(name: str) -> str | None:
    """knotd/knotc live in /usr/sbin, which is not on a normal user's PATH on Debian."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        cand = Path(d, name)
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def knot_available() -> bool:
    return find_exe("knotd") is not None and find_exe("knotc") is not None


def _norm_origin(origin: str) -> str:
    """``"Example.TEST."`` → ``"example.test"`` (lower case, no trailing dot)."""
    name = dns.name.from_text(origin.strip())
    if name == dns.name.root:
        raise ValueError("the root zone is not supported")
    return name.to_text(omit_final_dot=True).lower()


def _render_chunk(chunk: bytes) -> str:
    out = ['"']
    for b in chunk:
        if b in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def txt(value: str | bytes) -> str:
    """Render a TXT rdata: the value split into quoted <=255-byte character-strings.

    ``txt("v=spf1 -all")`` → ``'"v=spf1 -all"'``; a 600-byte value gives three strings.
    Quotes, backslashes and non-printable/non-ASCII bytes are escaped, so any value
    (e.g. a DKIM public key) round-trips: resolvers join the strings back together.
    """
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not data:
        return '""'
    return " ".join(_render_chunk(data[i : i + 255]) for i in range(0, len(data), 255))


def reverse_zone(ip: str) -> str:
    """``"127.0.0.1"`` → ``"1.0.0.127.in-addr.arpa"``; IPv6 gives the 32-nibble ip6.arpa name."""
    return ipaddress.ip_address(ip).reverse_pointer


def _tokenize(line: str) -> tuple[list[tuple[int, int, bool]], int]:
    """Split one zone-file line into tokens (start, end, quoted) up to a ``;`` comment.

    Returns the tokens and the offset where the comment starts (len(line) if none).
    """
    toks: list[tuple[int, int, bool]] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            i += 1
        elif c == ";":
            return toks, i
        elif c == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            toks.append((i, min(j + 1, n), True))
            i = j + 1
        elif c in "()":
            toks.append((i, i + 1, False))
            i += 1
        else:
            j = i
            while j < n and line[j] not in ' \t\r\n;"()':
                j += 2 if line[j] == "\\" else 1
            toks.append((i, min(j, n), False))
            i = j
    return toks, n


def _unescape(text: str) -> bytes:
    """Zone-file character-string (without surrounding quotes) → bytes."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x5C and i + 1 < len(raw):
            digits = raw[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit():
                out.append(int(digits))
                i += 4
            else:
                out.append(raw[i + 1])
                i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def _split_long_txt(line: str) -> str:
    """Re-render TXT/SPF character-strings longer than 255 bytes as several strings."""
    toks, comment_at = _tokenize(line)
    if not toks:
        return line
    idx = 0
    if not line[:1].isspace():
        idx = 1  # owner field
    # optional TTL and class, in either order
    while idx < len(toks) and not toks[idx][2]:
        word = line[toks[idx][0] : toks[idx][1]]
        if word.upper() in _CLASSES or _TTL_RE.match(word):
            idx += 1
        else:
            break
    if idx >= len(toks) or toks[idx][2]:
        return line
    if line[toks[idx][0] : toks[idx][1]].upper() not in ("TXT", "SPF"):
        return line
    changed = False
    pieces: list[str] = []
    for start, end, quoted in toks[idx + 1 :]:
        word = line[start:end]
        if word in "()":
            pieces.append(word)
            continue
        data = _unescape(word[1:-1] if quoted and word.endswith('"') else word.strip('"'))
        if len(data) > 255:
            pieces.append(txt(data))
            changed = True
        else:
            pieces.append(word)
    if not changed:
        return line
    rdata_start = toks[idx + 1][0]
    comment = line[comment_at:]
    return line[:rdata_start] + " ".join(pieces) + (" " + comment if comment else "")


_unique_counter = itertools.count(1)


def unique_domain(hint: str, tld: str = "test") -> str:
    """A fresh domain name derived from ``hint`` (e.g. a test name): ``t-<hint>-<n>.test``."""
    label = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-") or "zone"
    return f"t-{label}-{next(_unique_counter)}.{tld}"


def _records_lines(records: str | Iterable[str]) -> list[str]:
    items = [records] if isinstance(records, str) else list(records)
    lines: list[str] = []
    for item in items:
        lines.extend(item.splitlines() or [""])
    return lines


# --------------------------------------------------------------------------- server


class KnotServer:
    """One ``knotd`` process on 127.0.0.1, configured and fed zones at run time.

    Thread-safe (zone changes are serialised); blocking (call it from async tests
    directly — each change takes a few tens of milliseconds).
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        startup_timeout: float = 15.0,
        change_timeout: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        addr = ipaddress.ip_address(host)
        if not addr.is_loopback:
            raise ValueError(f"{host} is not a loopback address")
        self.workdir = Path(workdir).resolve()
        self.host = addr.compressed
        self.startup_timeout = startup_timeout
        self.change_timeout = change_timeout
        self.port = 0
        self.config_path = self.workdir / "knot.conf"
        self.log_path = self.workdir / "knot.log"
        self.stderr_path = self.workdir / "knotd.stderr"
        self.zones_dir = self.workdir / "zones"
        self._proc: subprocess.Popen[bytes] | None = None
        self._zones: set[str] = set()
        self._serial = 0
        self._lock = threading.RLock()
        self._identity = f"mailwarden-test-{os.getpid()}-{id(self):x}"
        self._sock_dir: Path | None = None  # short fallback dir for the control socket
        self._knotd_exe = ""
        self._knotc_exe = ""

    # ----------------------------------------------------------------- lifecycle

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"`` (``"[::1]:PORT"`` for host="::1") — what
        DnsPythonResolver(nameservers=[...]) takes."""
        if not self.running:
            raise KnotError("knotd is not running (call start() first)")
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(self._zones)

    @property
    def control_socket(self) -> Path:
        base = self._sock_dir if self._sock_dir is not None else self.workdir
        return base / "knot.sock"

    def start(self) -> KnotServer:
        if self._proc is not None:
            raise KnotError("already started")
        knotd, knotc = find_exe("knotd"), find_exe("knotc")
        if knotd is None or knotc is None:
            raise KnotError(f"knotd/knotc not found: {INSTALL_HINT}")
        self._knotd_exe, self._knotc_exe = knotd, knotc
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zones_dir.mkdir(exist_ok=True)
        if len(str(self.workdir / "knot.sock").encode()) > _SUN_PATH_MAX:
            self._sock_dir = Path(tempfile.mkdtemp(prefix="knot-"))
        try:
            for _attempt in range(5):
                self.port = _free_port(self.host)
                self._launch()
                try:
                    self._wait_ready()
                    return self
                except _PortTaken:
                    # Another process took the port between our probe and knotd's bind.
                    self._reap()
            raise KnotError(self._with_log("could not bind a free port in 5 attempts"))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL. Idempotent; keeps the log for debugging."""
        with self._lock:
            self._reap()
            self._zones.clear()
            if self._sock_dir is not None:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
                self._sock_dir = None

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _write_config(self) -> None:
        wd = self.workdir
        q = _quote
        conf = f"""\
# Generated by tests/dnsserver.py — one knotd per test session; do not edit.
server:
    identity: {q(self._identity)}
    rundir: {q(wd)}
    pidfile: {q(wd / "knot.pid")}
    listen: {self.host}@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 2
    tcp-reuseport: off

log:
  - target: {q(self.log_path)}
    any: info

database:
    storage: {q(wd)}
    journal-db: {q(wd / "journal")}
    kasp-db: {q(wd / "keys")}
    timer-db: {q(wd / "timers")}
    catalog-db: {q(wd / "catalog")}

control:
    listen: {q(self.control_socket)}

template:
  - id: default
    storage: {q(self.zones_dir)}
    file: "%s.zone"
    semantic-checks: off
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
"""
        self.config_path.write_text(conf, encoding="utf-8")

    def _launch(self) -> None:
        self._write_config()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.control_socket.unlink()
        with open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [
                    *_pdeathsig_prefix(),
                    self._knotd_exe,
                    *("-c", str(self.config_path), "-s", str(self.control_socket)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )

    def _wait_ready(self) -> None:
        """Poll until knotd answers over UDP *and* TCP with our identity (not a stranger)."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        q = dns.message.make_query("id.server.", "TXT", "CH")
        tcp_ok = False
        while True:
            rc = self._proc.poll()
            if rc is not None:
                log = self._log_text()
                if "address already in use" in log:
                    raise _PortTaken
                raise KnotError(self._with_log(f"knotd exited with status {rc} during startup"))
            try:
                if not tcp_ok:
                    r = dns.query.tcp(q, self.host, port=self.port, timeout=0.5)
                    tcp_ok = self._is_ours(r)
                if tcp_ok:
                    r = dns.query.udp(q, self.host, port=self.port, timeout=0.5)
                    # The control socket is created last; make sure knotc works too.
                    if self._is_ours(r) and self._knotc_ok("status"):
                        return
            except (OSError, dns.exception.DNSException):
                pass
            if time.monotonic() > deadline:
                raise KnotError(
                    self._with_log(
                        f"knotd did not answer on {self.host}:{self.port} "
                        f"within {self.startup_timeout:g}s"
                    )
                )
            time.sleep(0.05)

    def _is_ours(self, resp: dns.message.Message) -> bool:
        for rrset in resp.answer:
            for rd in rrset:
                if (
                    isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
                    and b"".join(rd.strings).decode(errors="replace") == self._identity
                ):
                    return True
        return False

    # ----------------------------------------------------------------- zones

    def set_zone(self, origin: str, records: str | Iterable[str] = (), ttl: int = 1) -> int:
        """Create or replace zone ``origin``; returns the new SOA serial once it is served.

        ``records`` are zone-file lines (one string may hold several lines), relative to
        the origin or absolute, each with its owner (``@`` for the apex)::

            "@ MX 10 mx.example.test."   'sel._domainkey TXT "v=DKIM1; p=..."'
            "mx 300 A 127.0.0.1"        f"@ TXT {txt(long_value)}"

        SOA and apex NS records are added automatically (do not supply an SOA). A TXT
        character-string longer than 255 bytes is split into several strings. ``ttl`` is
        the default TTL and the negative-caching TTL. Raises KnotError (with knotd's log)
        if knot rejects the zone; the previously served version, if any, stays served.
        """
        if not self.running:
            raise KnotError(self._with_log("knotd is not running"))
        origin = _norm_origin(origin)
        lines = [_split_long_txt(line) for line in _records_lines(records)]
        with self._lock:
            self._serial += 1
            serial = self._serial
            text = "\n".join(
                [
                    f"$ORIGIN {origin}.",
                    f"$TTL {ttl}",
                    f"@ {ttl} IN SOA {FIXTURE_NS} {FIXTURE_HOSTMASTER} "
                    f"{serial} 3600 600 86400 {ttl}",
                    f"@ {ttl} IN NS {FIXTURE_NS}",
                    *lines,
                    "",
                ]
            )
            mark = self._log_size()
            self._write_zone_file(origin, text)
            self._ensure_configured(origin)
            res = self._knotc("-b", "zone-reload", origin, check=False)
            if res.returncode != 0:
                raise KnotError(
                    self._with_log(
                        f"knot rejected zone {origin} (serial {serial}): {res.stdout.strip()}\n"
                        f"--- zone file {self._zone_path(origin)} ---\n{text}",
                        grep=f"[{origin}.]",
                        since=mark,
                    )
                )
            self._wait_for(
                origin, lambda r: _soa_serial(r, origin) == serial, f"serial {serial}", since=mark
            )
            return serial

    def add_ptr(self, ip: str, *hostnames: str, ttl: int = 1) -> str:
        """Serve PTR ``ip`` → hostnames as a zone at the full reverse name; returns that name.

        Works for IPv4 and IPv6. Replaces any earlier PTR zone of that address.
        """
        if not hostnames:
            raise ValueError("add_ptr needs at least one hostname")
        origin = reverse_zone(ip)
        self.set_zone(origin, [f"@ PTR {h.rstrip('.')}." for h in hostnames], ttl=ttl)
        return origin

    def add_failing_zone(self, origin: str) -> None:
        """Configure ``origin`` with a zone file that does not load: knot answers SERVFAIL
        for every name under it (use it to exercise temporary-failure paths)."""
        if not self.running:
            raise KnotError(self._with_log("knotd is not running"))
        origin = _norm_origin(origin)
        with self._lock:
            # A failed *re*load would keep serving the old data, so start from scratch.
            if origin in self._zones:
                self.remove_zone(origin)
            self._write_zone_file(origin, f"; deliberately broken by {__name__}\n@ SOA (\n")
            self._ensure_configured(origin)
            self._wait_for(origin, lambda r: r.rcode() == dns.rcode.SERVFAIL, "SERVFAIL")

    def remove_zone(self, origin: str) -> None:
        """Stop serving ``origin`` (no-op if it is not configured); waits until it is gone."""
        origin = _norm_origin(origin)
        with self._lock:
            if origin not in self._zones:
                return
            self._conf_txn([("conf-unset", f"zone[{origin}]")])
            self._zones.discard(origin)
            with contextlib.suppress(FileNotFoundError):
                self._zone_path(origin).unlink()
            if self.running:
                self._wait_for(
                    origin,
                    lambda r: r.rcode() != dns.rcode.SERVFAIL and _soa_serial(r, origin) is None,
                    "zone removal",
                )

    def query(
        self, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 2.0
    ) -> dns.message.Message:
        """Ask knotd directly (no resolver, no cache) — handy when debugging a test."""
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout)

    def log_tail(self, lines: int = 40, grep: str | None = None, since: int = 0) -> str:
        """The last ``lines`` of knotd's output and log (those containing ``grep``, if
        given; from byte offset ``since`` of the log file on)."""
        out = self._log_text(since).splitlines()
        if grep is not None:
            out = [line for line in out if grep in line]
        return "\n".join(out[-lines:])

    # ----------------------------------------------------------------- internals

    def _zone_path(self, origin: str) -> Path:
        # Names are lower-case LDH labels in practice; keep the file name safe regardless.
        safe = re.sub(r"[^a-z0-9._-]", lambda m: f"%{ord(m.group()):02x}", origin)
        return self.zones_dir / f"{safe}.zone"

    def _write_zone_file(self, origin: str, text: str) -> None:
        path = self._zone_path(origin)
        tmp = path.with_suffix(".zone.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # knot never sees a half-written file

    def _ensure_configured(self, origin: str) -> None:
        if origin in self._zones:
            return
        self._conf_txn(
            [
                ("conf-set", f"zone[{origin}]"),
                ("conf-set", f"zone[{origin}].file", str(self._zone_path(origin))),
            ]
        )
        self._zones.add(origin)

    def _conf_txn(self, commands: list[tuple[str, ...]]) -> None:
        begin = self._knotc("conf-begin", check=False)
        if begin.returncode != 0:
            # A transaction left open (e.g. by an interrupted call): abort it and retry.
            self._knotc("conf-abort", check=False)
            self._knotc("conf-begin")
        try:
            for cmd in commands:
                self._knotc(*cmd)
            self._knotc("conf-commit")
        except BaseException:
            self._knotc("conf-abort", check=False)
            raise

    def _knotc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not self.running:
            raise KnotError(self._with_log(f"knotd is not running (knotc {' '.join(args)})"))
        try:
            res = subprocess.run(
                [self._knotc_exe, "-x", "-t", "30", "-s", str(self.control_socket), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**os.environ, "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise KnotError(self._with_log(f"knotc {' '.join(args)} timed out")) from exc
        res.stdout = (res.stdout or "") + (res.stderr or "")
        if check and res.returncode != 0:
            raise KnotError(self._with_log(f"knotc {' '.join(args)} failed: {res.stdout.strip()}"))
        return res

    def _knotc_ok(self, *args: str) -> bool:
        try:
            return self._knotc(*args, check=False).returncode == 0
        except KnotError:
            return False

    def _wait_for(
        self,
        origin: str,
        done: Callable[[dns.message.Message], bool],
        what: str,
        since: int = 0,
    ) -> None:
        q = dns.message.make_query(origin + ".", "SOA")
        q.flags &= ~dns.flags.RD
        deadline = time.monotonic() + self.change_timeout
        last = "no answer"
        while True:
            try:
                r = dns.query.udp(q, self.host, port=self.port, timeout=0.5)
                if done(r):
                    return
                last = f"{dns.rcode.to_text(r.rcode())} serial={_soa_serial(r, origin)}"
            except (OSError, dns.exception.DNSException) as exc:
                last = repr(exc)
            if not self.running:
                raise KnotError(self._with_log(f"knotd died while waiting for {origin} {what}"))
            if time.monotonic() > deadline:
                raise KnotError(
                    self._with_log(
                        f"zone {origin}: {what} not served within {self.change_timeout:g}s "
                        f"(last answer: {last})",
                        grep=f"[{origin}.]",
                        since=since,
                    )
                )
            time.sleep(0.01)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_text(self, since: int = 0) -> str:
        parts = []
        with contextlib.suppress(OSError):
            parts.append(self.stderr_path.read_text(encoding="utf-8", errors="replace"))
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            f.seek(since)
            parts.append(f.read().decode("utf-8", "replace"))
        return "\n".join(x for x in parts if x)

    def _with_log(self, msg: str, grep: str | None = None, since: int = 0) -> str:
        tail = self.log_tail(40, grep=grep, since=since) if grep else ""
        if not tail:
            tail = self.log_tail(40, since=since)
        return f"{msg}\n--- knotd output and log ({self.workdir}) ---\n{tail or '(empty)'}"


class ZoneSet:
    """Zones created by one test, removed again by :meth:`cleanup` (the ``dns_zones``
    fixture). ``domain`` is a per-test unique base name such as ``t-txt-3f2a1c.test``."""

    def __init__(self, server: KnotServer, domain: str) -> None:
        self.server = server
        self.domain = _norm_origin(domain)
        self.created: list[str] = []

    @property
    def nameserver(self) -> str:
        return self.server.nameserver

    def _track(self, origin: str) -> None:
        origin = _norm_origin(origin)
        if origin not in self.created:
            self.created.append(origin)

    def set_zone(self, origin: str, records: str | Iterable[str] = (), ttl: int = 1) -> int:
        self._track(origin)
        return self.server.set_zone(origin, records, ttl=ttl)

    def add_ptr(self, ip: str, *hostnames: str, ttl: int = 1) -> str:
        self._track(reverse_zone(ip))
        return self.server.add_ptr(ip, *hostnames, ttl=ttl)

    def add_failing_zone(self, origin: str) -> None:
        self._track(origin)
        self.server.add_failing_zone(origin)

    def remove_zone(self, origin: str) -> None:
        self.server.remove_zone(origin)

    def cleanup(self) -> None:
        if not self.server.running:
            return
        for origin in reversed(self.created):
            self.server.remove_zone(origin)
        self.created.clear()


# --------------------------------------------------------------------------- plumbing


class _PortTaken(Exception):
    pass


def _quote(value: object) -> str:
    s = str(value)
    if '"' in s or "\n" in s:
        raise ValueError(f"unsupported character in knot config value {s!r}")
    return f'"{s}"'


def _soa_serial(resp: dns.message.Message, origin: str) -> int | None:
    if resp.rcode() != dns.rcode.NOERROR or not resp.flags & dns.flags.AA:
        return None
    want = dns.name.from_text(origin + ".")
    for rrset in resp.answer:
        if rrset.name == want:
            for rd in rrset:
                if isinstance(rd, dns.rdtypes.ANY.SOA.SOA):
                    return int(rd.serial)
    return None


def _free_port(host: str) -> int:
    """A port free for both TCP and UDP on ``host`` (knotd needs both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = int(t.getsockname()[1])
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port
    raise KnotError("no free TCP+UDP port on loopback")


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM``: Linux SIGTERMs knotd if the test process dies hard.

    Only from the main thread: the parent-death signal fires when the *thread* that
    started the child exits. (A preexec_fn would do the same but is unsafe with threads.)
    """
    if not sys.platform.startswith("linux"):
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv") or find_exe("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
