"""One IMAP connection: reads commands, runs them one at a time, writes responses.

The wire work is sans-I/O (``imap/wire/``); this module owns the socket, the session
state (RFC 3501 §3: not authenticated, authenticated, selected, logout), the timeouts,
and the one place where errors become tagged NO/BAD replies (:func:`completion_for`).
Command handlers live in ``imap/commands/``, one module per group; they talk to the
store only through services.

After every command, changes made to the selected mailbox by anyone (this session,
other sessions, delivery) are read from the store and reported as untagged responses
before the tagged completion (RFC 3501 §5.2, §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass

from mailwarden.core.errors import AlreadyExists, NotFound, QuotaExceeded
from mailwarden.imap.capabilities import capabilities
from mailwarden.imap.context import ImapContext
from mailwarden.imap.fetch_render import UnknownCte
from mailwarden.imap.search_eval import BadCharset
from mailwarden.imap.selected import Selected
from mailwarden.imap.wire.encode import Code, continuation, decode_mailbox, status, untagged
from mailwarden.imap.wire.reader import CommandReader, Malformed, NeedContinuation, RawCommand
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError
from mailwarden.services.folders import InvalidName
from mailwarden.store.records import UserRecord

log = logging.getLogger("mailwarden.imap")

NOT_AUTH, AUTH, SELECTED, LOGOUT = "not authenticated", "authenticated", "selected", "logout"
PREAUTH_LITERAL = 16 * 1024  # before login, no literal needs more (LOGIN user/password)
FLUSH_AT = 256 * 1024  # bytes of response buffered before waiting for the socket
READ_SIZE = 256 * 1024
SLOW_COMMAND = 5.0  # seconds; a command slower than this is logged
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


@dataclass(frozen=True, slots=True)
class Done:
    """A command's tagged completion: ``tag OK [CODE] text``."""

    kind: str = "OK"
    text: str = "completed"
    code: Code | None = None
    sent: bool = False  # the handler already wrote it (STARTTLS, before the handshake)


class Bye(Exception):
    """End the session after sending ``* BYE text``."""


def completion_for(exc: Exception, name: str) -> Done:
    """The one mapping of errors to tagged replies (RFC 3501 §7.1, RFC 5530 codes)."""
    if isinstance(exc, ImapSyntaxError):
        return Done("BAD", f"{name}: {exc}")
    if isinstance(exc, NotFound):
        return Done("NO", str(exc), Code("NONEXISTENT"))
    if isinstance(exc, AlreadyExists):
        return Done("NO", str(exc), Code("ALREADYEXISTS"))
    if isinstance(exc, InvalidName):
        return Done("NO", str(exc), Code("CANNOT"))
    if isinstance(exc, QuotaExceeded):
        return Done("NO", "Quota exceeded", Code("OVERQUOTA"))
    if isinstance(exc, BadCharset):
        return Done("NO", "Unsupported charset", Code("BADCHARSET", ["US-ASCII", "UTF-8"]))
    if isinstance(exc, UnknownCte):
        return Done("NO", str(exc) or "Unknown Content-Transfer-Encoding", Code("UNKNOWN-CTE"))
    log.exception("IMAP %s failed", name, exc_info=exc)
    return Done("NO", "Internal error, try again later", Code("SERVERBUG"))


class ImapSession:
    def __init__(
        self, ctx: ImapContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.ctx = ctx
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.ip = str(peer[0])
        self.tls = ctx.implicit_tls
        self.state = NOT_AUTH
        self.user: UserRecord | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.commands = CommandReader(max_line=ctx.settings.max_line, max_literal=PREAUTH_LITERAL)
        self.busy = False
        self._out: list[bytes] = []
        self._pending_out = 0
        self._closing = False

    # -- properties used by commands --------------------------------------------------
    @property
    def auth_allowed(self) -> bool:
        return self.tls or self.ctx.plaintext_allowed(self.ip)

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def capabilities(self) -> list[str]:
        return capabilities(
            authenticated=self.state in (AUTH, SELECTED),
            tls=self.tls,
            starttls=self.ctx.tls is not None,
            auth_allowed=self.auth_allowed,
            appendlimit=self.ctx.appendlimit,
        )

    def mailbox_name(self, tok: bytes) -> str:
        """A mailbox argument (modified UTF-7) as a name; BAD if it does not decode."""
        try:
            return decode_mailbox(tok)
        except (ValueError, UnicodeError) as exc:
            raise ImapSyntaxError(f"invalid mailbox name ({exc})") from None

    def enable_condstore(self) -> None:
        """RFC 7162 §3.1: a CONDSTORE-enabling command turns on MODSEQ reporting."""
        if "CONDSTORE" not in self.enabled:
            self.enabled.add("CONDSTORE")
            if self.selected is not None:  # §3.1.2.1: announce the HIGHESTMODSEQ once enabled
                self.write(
                    status(None, "OK", "Highest", Code("HIGHESTMODSEQ", self.selected.modseq))
                )

    # -- output ---------------------------------------------------------------------
    # Responses are collected and handed to the transport in large pieces: one send()
    # per response line would cost a system call (and a TCP segment) per message.
    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._pending_out += len(data)

    def _push(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            self._pending_out = 0

    async def flush(self) -> None:
        self._push()
        await self.writer.drain()

    async def maybe_flush(self) -> None:
        if self._pending_out >= FLUSH_AT:
            await self.flush()

    # -- the connection -------------------------------------------------------------
    async def run(self) -> None:
        if not self.ctx.gate.admit(self.ip, self):
            self.write(status(None, "BYE", "Too many connections, try again later"))
            await self._close()
            return
        try:
            greeting = Code("CAPABILITY", *self.capabilities())
            self.write(status(None, "OK", "mailwarden IMAP ready", greeting))
            await self._loop()
        except Bye as bye:
            with contextlib.suppress(Exception):
                self.write(status(None, "BYE", str(bye)))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("IMAP session from %s failed", self.ip)
            with contextlib.suppress(Exception):
                self.write(status(None, "BYE", "Internal error"))
        finally:
            self.ctx.gate.release(self.ip, self)
            self._deselect()
            await self._close()

    async def _loop(self) -> None:
        while not self._closing:
            events = self.commands.feed(b"", one_command=True)
            if not events:
                await self.flush()  # everything said so far goes out before we wait
                data = await self.read_some()
                if not data:
                    return
                events = self.commands.feed(data, one_command=True)
            for ev in events:
                await self._event(ev)
                if self._closing:
                    break
            await self.flush()

    async def read_some(self) -> bytes:
        """Read from the client within the timeout that applies now (RFC 3501 §5.4)."""
        s = self.ctx.settings
        if self.commands.mid_command:
            timeout = s.command_timeout
        elif self.state == NOT_AUTH:
            timeout = s.login_timeout
        else:
            timeout = s.idle_timeout
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            self._quickack()
            return data
        except TimeoutError:
            raise Bye("Autologout; idle for too long") from None

    def _quickack(self) -> None:
        """Acknowledge what we read at once (Linux TCP_QUICKACK; it does not stick).

        A client that writes a literal and its closing CRLF separately with Nagle on
        (imaplib's APPEND) holds the CRLF back until the literal is acknowledged, and
        a delayed ACK makes that ~40 ms per command.
        """
        sock = self.writer.get_extra_info("socket")
        if sock is not None and _QUICKACK is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    async def _event(self, ev: RawCommand | NeedContinuation | Malformed) -> None:
        if isinstance(ev, NeedContinuation):
            self.write(continuation("Ready for literal data"))  # RFC 3501 §7.5
            await self.flush()
        elif isinstance(ev, Malformed):
            self.write(status(ev.tag, "BAD", ev.reason))
            if ev.fatal:
                raise Bye("Too much invalid input")
        else:
            await self._command(ev)

    async def _command(self, cmd: RawCommand) -> None:
        from mailwarden.imap.commands import lookup

        name, args, uid = cmd.name, list(cmd.args), False
        if name == "UID":
            verb = args[0] if args else None
            if not isinstance(verb, Atom):
                self.write(status(cmd.tag, "BAD", "UID needs a command"))
                return
            name, args, uid = verb.value.upper(), args[1:], True
        spec = lookup(name, uid)
        if spec is None:
            self.write(status(cmd.tag, "BAD", f"Unknown command {name[:40]}"))
            return
        if self.state not in spec.states:
            self.write(status(cmd.tag, "BAD", f"{name} is not valid in the {self.state} state"))
            return
        self.busy = True
        started = asyncio.get_running_loop().time()
        try:
            try:
                done = await spec.handler(self, cmd.tag, args, uid)
            except (Bye, ConnectionError, ssl.SSLError):
                raise
            except Exception as exc:
                done = completion_for(exc, f"{'UID ' if uid else ''}{name}")
            await self.sync(expunge=spec.allows_expunge or uid)
        finally:
            self.busy = False
            took = asyncio.get_running_loop().time() - started
            if took > SLOW_COMMAND and name != "IDLE":  # the name only: arguments may be secret
                log.warning("IMAP %s from %s took %.1f s", name, self.ip, took)
        if not done.sent:
            self.write(status(cmd.tag, done.kind, done.text, done.code))

    # -- the selected mailbox ---------------------------------------------------------
    async def sync(self, *, expunge: bool, force: bool = False) -> None:
        """Report changes to the selected mailbox (see the module docstring)."""
        sel = self.selected
        if sel is None or not (force or sel.watch.changed.is_set() or sel.pending_expunge):
            return
        sel.watch.changed.clear()
        changes = await self.ctx.messages.changes(
            sel.id, sel.modseq, claim_recent=not sel.read_only
        )
        if not changes.exists:
            raise Bye("Selected mailbox was deleted, have to disconnect")
        for line in sel.apply(
            changes, expunge=expunge, qresync=self.qresync, condstore=self.condstore
        ):
            self.write(line)

    def select(self, selected: Selected) -> None:
        self._deselect()
        self.selected = selected
        self.state = SELECTED

    def deselect(self) -> None:
        self._deselect()
        if self.state == SELECTED:
            self.state = AUTH

    def _deselect(self) -> None:
        if self.selected is not None:
            self.selected.watch.close()
            self.selected = None

    # -- authentication -------------------------------------------------------------
    def logged_in(self, user: UserRecord) -> None:
        self.user = user
        self.state = AUTH
        self.commands.max_literal = self.ctx.appendlimit
        self.commands.max_command = 2 * self.ctx.appendlimit

    async def start_tls(self) -> None:
        """RFC 3501 §6.2.1 / RFC 2595: switch to TLS; anything sent before is dropped."""
        assert self.ctx.tls is not None
        await self.flush()
        self.commands.discard_buffer()
        await self.writer.start_tls(self.ctx.tls)
        self.tls = True

    # -- shutdown -----------------------------------------------------------------------
    def close_for_shutdown(self) -> None:
        """The server is stopping (ConnectionGate.shutdown calls this, maybe repeatedly)."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            self.write(status(None, "BYE", "Server shutting down"))
            self._push()
        transport = self.writer.transport
        self.writer.close()
        # A TLS close waits for the client's close_notify; do not wait for long. (Only
        # one close(): asyncio's TLS transport forgets its protocol on a second one.)
        asyncio.get_running_loop().call_later(1.0, transport.abort)

    def logout(self) -> None:
        self.write(untagged(b"BYE", b"Logging out"))
        self.state = LOGOUT
        self._closing = True

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
