"""DKIM keys per domain: generate, rotate with a grace period, sign outbound mail.

Every domain gets two selectors, RSA-2048 and Ed25519 (RFC 8463), and outbound mail from
it carries both signatures: receivers that do not know Ed25519 still find the RSA one.
Rotation adds a new pair and keeps the old pair *published* (but no longer signing) for
``dkim.rotation_grace`` seconds, so mail signed just before the switch still verifies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from mailwarden.auth.dkim_sign import SigningKey, generate_key, load_signing_key, sign_message
from mailwarden.core.address import normalize_domain
from mailwarden.core.clock import Clock
from mailwarden.core.errors import NotFound
from mailwarden.store.keys_sql import DkimKeyStore
from mailwarden.store.ports import Store
from mailwarden.store.records import DkimKeyRecord, DomainRecord

log = logging.getLogger("mailwarden.dkim")
ALGORITHMS = (("rsa-sha256", "r"), ("ed25519-sha256", "e"))
CACHE_SECONDS = 300.0  # a rotation reaches running workers within this


class DkimService:
    def __init__(self, store: Store, keys: DkimKeyStore, clock: Clock, grace: float) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.grace = grace
        self._signing: dict[str, tuple[float, tuple[SigningKey, ...]]] = {}
        self._loading = asyncio.Lock()

    async def generate(self, domain: str) -> list[DkimKeyRecord]:
        """Create an active RSA-2048 + Ed25519 pair for ``domain`` (new selectors)."""
        d = await self._domain(domain)
        existing = {k.selector for k in await self.keys.list(d.name)}
        stamp = self.clock.now().strftime("%Y%m%d")
        for algorithm, suffix in ALGORITHMS:
            pem = await asyncio.to_thread(generate_key, algorithm)  # RSA keygen takes ~100 ms
            selector = _free_selector(f"mw{stamp}{suffix}", existing)
            existing.add(selector)
            await self.keys.add(d.id, selector, algorithm, pem.decode(), self.clock.now())
            log.info("dkim: new %s key for %s, selector %s", algorithm, d.name, selector)
        self._signing.pop(d.name, None)
        return [k for k in await self.keys.list(d.name) if k.state == "active"]

    async def rotate(self, domain: str) -> tuple[list[DkimKeyRecord], list[DkimKeyRecord]]:
        """New active pair; the old active keys stay published until the grace ends."""
        d = await self._domain(domain)
        old = [k for k in await self.keys.list(d.name) if k.state == "active"]
        retire_at = self.clock.now() + timedelta(seconds=self.grace)
        await self.keys.purge_retired(self.clock.now())  # earlier rotations' grace is over
        await self.keys.retire_active(d.id, retire_at)
        new = await self.generate(d.name)
        return new, [k for k in await self.keys.list(d.name) if k.selector in _sel(old)]

    async def published(self, domain: str) -> list[DkimKeyRecord]:
        """Keys whose public half must be in DNS: active and still-in-grace ones (a read:
        keys past their grace are deleted at the next rotation)."""
        now = self.clock.now()
        keys = await self.keys.list(normalize_domain(domain))
        return [k for k in keys if k.retire_at is None or k.retire_at > now]

    async def signing_keys(self, domain: str) -> tuple[SigningKey, ...]:
        """Loaded active keys for ``domain`` (cached briefly), () if it has none."""
        now = self.clock.monotonic()
        hit = self._signing.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._loading:  # one reload, not one per concurrent submission
            hit = self._signing.get(domain)
            if hit is not None and hit[0] > now:
                return hit[1]
            records = [k for k in await self.keys.list(domain) if k.state == "active"]
            loaded = tuple(
                load_signing_key(k.selector, k.domain, k.private_key.encode()) for k in records
            )
            self._signing[domain] = (now + CACHE_SECONDS, loaded)
            return loaded

    def forget_cached_keys(self) -> None:
        """Reload signing keys on next use (a rotation by another process shows up by
        itself within CACHE_SECONDS)."""
        self._signing.clear()

    async def sign(self, message: bytes, domain: str) -> bytes:
        """``message`` with DKIM-Signature fields for every active key of ``domain``.

        Unchanged when the domain has no keys. The signing runs in a thread (RSA is
        OpenSSL, which releases the GIL).
        """
        keys = await self.signing_keys(domain)
        if not keys:
            return message
        timestamp = int(self.clock.now().timestamp())
        fields = await asyncio.to_thread(sign_message, message, keys, timestamp=timestamp)
        return fields + message

    async def _domain(self, domain: str) -> DomainRecord:
        d = await self.store.get_domain(normalize_domain(domain))
        if d is None:
            raise NotFound(f"domain {domain} is not hosted here")
        return d


def _sel(keys: Sequence[DkimKeyRecord]) -> set[str]:
    return {k.selector for k in keys}


def _free_selector(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if f"{base}{letter}" not in taken:
            return f"{base}{letter}"
    raise RuntimeError("too many DKIM keys made today")
