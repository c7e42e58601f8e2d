"""IDLE (RFC 2177): wait for changes and report them at once, until the client says DONE.

While idling, the session waits on two things together: the client's next bytes and the
change notifier for the selected mailbox. A change is read from the store and reported
immediately (EXPUNGE included: IDLE is not FETCH, STORE or SEARCH). The client should
re-issue IDLE every 29 minutes (§3); ``imap.idle_timeout`` (30 min) ends a silent one.
"""

from __future__ import annotations

import asyncio
import contextlib

from mailwarden.imap.commands import AUTHED, command
from mailwarden.imap.session import Bye, Done, ImapSession
from mailwarden.imap.wire.encode import continuation
from mailwarden.imap.wire.tokens import ImapSyntaxError, Token

MAX_DONE_LINE = 1024


@command("IDLE", AUTHED)
async def idle(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if args:
        raise ImapSyntaxError("IDLE takes no arguments")
    await s.sync(expunge=True)
    s.write(continuation("idling"))
    await s.flush()
    buf = s.commands.take_buffer()
    deadline = asyncio.get_running_loop().time() + s.ctx.settings.idle_timeout
    reading: asyncio.Task[bytes] | None = None
    try:
        while b"\n" not in buf:
            if len(buf) > MAX_DONE_LINE:
                raise ImapSyntaxError("expected DONE")
            if reading is None:
                reading = asyncio.ensure_future(s.reader.read(65536))
            waits: set[asyncio.Future[object]] = {reading}  # type: ignore[arg-type]
            watch = s.selected.watch if s.selected is not None else None
            changed = asyncio.ensure_future(watch.wait()) if watch is not None else None
            if changed is not None:
                waits.add(changed)  # type: ignore[arg-type]
            timeout = deadline - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if changed is not None and not changed.done():
                changed.cancel()
            if not done:
                raise Bye("Autologout; idle for too long")
            if reading in done:
                data = reading.result()
                reading = None
                if not data:
                    raise ConnectionError("client went away")
                buf += data
            elif s.selected is not None:
                await s.sync(expunge=True)
                await s.flush()
    finally:
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
    line, _, rest = buf.partition(b"\n")
    s.commands.unread(rest)
    if line.rstrip(b"\r").upper() != b"DONE":
        raise ImapSyntaxError("expected DONE")  # RFC 2177 §3
    return Done(text="IDLE terminated")
