"""A resolver that answers each (name, type) once per audit, and counts what it sent."""

from __future__ import annotations

import asyncio

from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Answer, Resolver


class CachingResolver:
    """Wraps a Resolver for one audit: concurrent checks asking the same thing share one
    query (the first asker's future); temporary failures are cached too, so a broken
    name is not asked again and again within one audit."""

    def __init__(self, inner: Resolver) -> None:
        self.inner = inner
        self.queries = 0  # sent to the inner resolver
        self.lookups = 0  # asked for by the checks
        self._answers: dict[tuple[str, str], asyncio.Future[Answer]] = {}

    async def query(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        self.lookups += 1
        fut = self._answers.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._answers[key] = fut
            self.queries += 1
            try:
                fut.set_result(await self.inner.query(key[0], key[1]))
            except DnsError as exc:
                fut.set_exception(exc)
            except BaseException as exc:  # cancelled or a bug: let waiters see it, not hang
                fut.set_exception(DnsError(f"{rdtype} {name}: {exc!r}"))
                fut.exception()  # mark retrieved
                del self._answers[key]
                raise
        return await asyncio.shield(fut)
