"""Password hashing with argon2id, always off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106 "second recommended" parameters


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored, password)


class VerifiedLogins:
    """Logins verified recently, so a client that reconnects (mail clients open several
    connections, and reconnect often) does not cost an argon2 verification each time;
    Dovecot's auth_cache does the same.

    An entry is a keyed BLAKE2b digest of (address, stored hash, password) with an
    expiry: the password itself is not kept, a changed password (a new stored hash)
    never matches an old entry, and failed logins are never cached. The key is random
    per process.
    """

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._secret = secrets.token_bytes(32)
        self._seen: dict[bytes, float] = {}

    def _digest(self, address: str, stored: str, password: str) -> bytes:
        data = "\0".join((address, stored, password)).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._secret, digest_size=32).digest()

    def known(self, address: str, stored: str, password: str, now: float) -> bool:
        until = self._seen.get(self._digest(address, stored, password))
        return until is not None and until > now

    def remember(self, address: str, stored: str, password: str, now: float) -> None:
        if len(self._seen) >= self.size:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            if len(self._seen) >= self.size:
                self._seen.clear()
        self._seen[self._digest(address, stored, password)] = now + self.ttl
