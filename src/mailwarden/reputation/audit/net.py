"""Socket plumbing shared by the probes (TLS listeners, the MTA-STS policy host)."""

from __future__ import annotations

import asyncio

CLOSE_TIMEOUT = 2.0  # seconds for the TLS close_notify exchange before we abort


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close politely; abort when the peer does not finish the close in CLOSE_TIMEOUT."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
