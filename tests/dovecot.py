"""A throw-away Dovecot IMAP server on loopback, to compare our IMAP output with it.

House rule: IMAP output is checked against a real reference server, not against
hand-written expectations only. This module runs Debian's ``dovecot-imapd`` in the
foreground on ``127.0.0.1:<free port>`` with its own configuration file, passwd-file
user, maildir, state, run directory and log, all inside one temporary directory that
is removed afterwards. It never touches /etc/dovecot or the system service.

The instance is unprivileged: run as a normal user it runs as that user; run as root
(as in some CI containers) the whole instance is started as ``nobody`` through
``setpriv``, because Dovecot refuses mail access as UID 0.

Usage::

    with DovecotServer() as dc:
        uid = dc.append(raw_message)              # bytes with CRLF line ends
        data = dc.fetch(uid, "(ENVELOPE BODY)")   # b'(UID 1 ENVELOPE (...) BODY (...))'
        items = dc.fetch_items(uid, "(ENVELOPE BODY.PEEK[HEADER])")
        items["ENVELOPE"], items["BODY[HEADER]"]  # each item's value, byte for byte

If Dovecot is not installed, or does not start, the constructor calls ``pytest.skip``
with :data:`INSTALL_HINT`.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from dnsserver import find_exe as _find_exe

__all__ = ["INSTALL_HINT", "DovecotServer", "dovecot_available", "split_fetch_items"]

INSTALL_HINT = "run `apt-get install dovecot-imapd` (Debian/Ubuntu; pulls in dovecot-core)"

USER = "mwtest"
PASSWORD = "mwtest-password"
_START_TIMEOUT = 15.0


def dovecot_available() -> bool:
    return _find_exe("dovecot") is not None and Path("/usr/lib/dovecot/imap").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, user: str, group: str, uid: int, gid: int) -> str:
    return f"""\
# throw-away instance written by tests/dovecot.py
base_dir = {root}/run
state_dir = {root}/state
instance_name = mw-test-{port}
protocols = imap
listen = 127.0.0.1
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


# BODYSTRUCTURE of a message with thousands of parts is one line of several MB
imaplib._MAXLINE = max(imaplib._MAXLINE, 64 * 1024 * 1024)  # type: ignore[attr-defined]

_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class DovecotServer:
    """Dovecot on 127.0.0.1:<free port>; a context manager (``with DovecotServer() as dc``)."""

    def __init__(self) -> None:
        if not dovecot_available():
            pytest.skip(f"Dovecot is required for this comparison: {INSTALL_HINT}")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mw-dovecot-"))
        self.log_path = self.root / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._imap: imaplib.IMAP4 | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DovecotServer:
        as_root = os.geteuid() == 0
        if as_root:
            pw = pwd.getpwnam("nobody")
            user, uid, gid = pw.pw_name, pw.pw_uid, pw.pw_gid
        else:
            uid, gid = os.geteuid(), os.getegid()
            user = pwd.getpwuid(uid).pw_name
        import grp

        group = grp.getgrgid(gid).gr_name
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir()
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        conf = self.root / "dovecot.conf"
        conf.write_text(_config(self.root, self.port, user, group, uid, gid), encoding="utf-8")
        if as_root:
            for dirpath, dirnames, filenames in os.walk(self.root):
                for name in [*dirnames, *filenames]:
                    os.chown(os.path.join(dirpath, name), uid, gid)
            os.chown(self.root, uid, gid)
        dovecot = _find_exe("dovecot")
        assert dovecot is not None
        cmd = [dovecot, "-F", "-c", str(conf)]
        if as_root:
            setpriv = _find_exe("setpriv")
            if setpriv is None:
                self._cleanup_dir()
                pytest.skip("running as root needs setpriv (util-linux) to drop privileges")
            cmd = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *cmd]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read() if self._proc.stdout else b""
                log = self._read_log()
                self._proc = None
                self._cleanup_dir()
                pytest.skip(f"dovecot did not start: {out.decode(errors='replace')}\n{log}")
            try:
                self._imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    log = self._read_log()
                    self.stop()
                    pytest.skip(f"dovecot did not answer on port {self.port}:\n{log}")
                time.sleep(0.05)
        self._imap.login(USER, PASSWORD)
        self._imap.select("INBOX")
        return self

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def _cleanup_dir(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def stop(self) -> None:
        if self._imap is not None:
            with contextlib.suppress(Exception):
                self._imap.logout()
            self._imap = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None
        self._cleanup_dir()

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ IMAP

    @property
    def imap(self) -> imaplib.IMAP4:
        assert self._imap is not None, "server not started"
        return self._imap

    def append(self, raw: bytes, mailbox: str = "INBOX") -> int:
        """APPEND ``raw`` (CRLF line ends) and return its UID (from APPENDUID)."""
        typ, data = self.imap.append(mailbox, None, None, raw)
        if typ != "OK":
            raise RuntimeError(f"APPEND failed: {typ} {data!r}")
        for item in data:
            if isinstance(item, bytes) and (m := _APPENDUID.search(item)):
                return int(m.group(1))
        raise RuntimeError(f"no APPENDUID in {data!r}")

    def fetch(self, uid: int, items: str) -> bytes:
        """``UID FETCH uid items``: the response's parenthesised list, exactly as sent.

        Literals are kept in wire form (``{n}\\r\\n`` + data), e.g.
        ``b'(UID 3 BODY[HEADER] {12}\\r\\nSubject: x\\r\\n)'``.
        """
        typ, data = self.imap.uid("FETCH", str(uid), items)
        if typ != "OK":
            raise RuntimeError(f"FETCH failed: {typ} {data!r}")
        out = bytearray()
        for item in data:
            if item is None:
                continue
            if isinstance(item, tuple):
                head, literal = item
                out += head + b"\r\n" + literal
            else:
                out += item
        raw = bytes(out)
        # strip the message sequence number: b"1 (UID ...)" -> b"(UID ...)"
        space = raw.find(b" ")
        if space < 0 or not raw[:space].isdigit():
            raise RuntimeError(f"unexpected FETCH data {raw!r}")
        return raw[space + 1 :]

    def fetch_items(self, uid: int, items: str) -> dict[str, bytes]:
        """Like :meth:`fetch`, split into {item name: value bytes} (names upper-cased)."""
        return split_fetch_items(self.fetch(uid, items))


# ---------------------------------------------------------------------- parsing


def _skip_value(data: bytes, i: int) -> int:
    """Index just past the IMAP value (atom, quoted, literal or list) starting at ``i``."""
    n = len(data)
    c = data[i : i + 1]
    if c == b'"':
        i += 1
        while i < n:
            if data[i] == 0x5C:
                i += 2
                continue
            if data[i] == 0x22:
                return i + 1
            i += 1
        raise ValueError("unterminated quoted string")
    if c == b"{":
        close = data.index(b"}", i)
        size = int(data[i + 1 : close].rstrip(b"+"))
        return close + 3 + size
    if c == b"(":
        i += 1
        while True:
            while data[i : i + 1] == b" ":
                i += 1
            if data[i : i + 1] == b")":
                return i + 1
            i = _skip_value(data, i)
    j = i
    while j < n and data[j] not in b" ()":
        if data[j] == 0x5B:  # BODY[...] : skip the bracketed section
            j = data.index(b"]", j)
        j += 1
    return j


def split_fetch_items(data: bytes) -> dict[str, bytes]:
    """``b'(UID 1 BODY (...))'`` → ``{"UID": b"1", "BODY": b"(...)"}``.

    Literal values are returned as their content (without the ``{n}\\r\\n`` prefix).
    """
    if not (data.startswith(b"(") and data.endswith(b")")):
        raise ValueError(f"not a FETCH list: {data[:80]!r}")
    out: dict[str, bytes] = {}
    i, end = 1, len(data) - 1
    while i < end:
        while data[i : i + 1] == b" ":
            i += 1
        j = _skip_value(data, i)
        name = data[i:j].decode("ascii").upper()
        i = j + 1
        j = _skip_value(data, i)
        value = data[i:j]
        if value.startswith(b"{"):
            value = value[value.index(b"\r\n") + 2 :]
        out[name] = value
        i = j
    return out
