"""Domains, users and aliases; and the one place that decides who a recipient is."""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.core.address import Address, normalize_domain
from mailwarden.core.clock import Clock
from mailwarden.core.errors import InvalidAddress, MailwardenError, NotFound
from mailwarden.services.passwords import VerifiedLogins, hash_password, verify_password
from mailwarden.store.ports import Store
from mailwarden.store.records import AliasRecord, DomainRecord, UserRecord

MAX_ALIAS_DEPTH = 10
# Positive answers only are cached, briefly: a new user or domain is seen at once, a
# removed one at most this long later (its mail then fails at DATA with a 4xx, not lost).
CACHE_SECONDS = 2.0
CACHE_MAX = 10_000
MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail to one recipient goes, and why (for logs and tests)."""

    users: tuple[UserRecord, ...]
    reason: str


class AccountService:
    def __init__(self, store: Store, clock: Clock, default_quota: int = 0) -> None:
        self.store = store
        self.clock = clock
        self.default_quota = default_quota
        self._local: dict[str, tuple[float, bool]] = {}
        self._resolved: dict[str, tuple[float, Resolution]] = {}
        self._verified = VerifiedLogins()

    # -- domains -------------------------------------------------------------------
    async def add_domain(self, name: str) -> DomainRecord:
        self._local.clear()
        return await self.store.add_domain(normalize_domain(name), self.clock.now())

    async def list_domains(self) -> list[DomainRecord]:
        return await self.store.list_domains()

    async def remove_domain(self, name: str) -> None:
        self._local.clear()
        await self.store.remove_domain(normalize_domain(name))

    async def is_local_domain(self, name: str) -> bool:
        """Cached for CACHE_SECONDS both ways: every RCPT to a remote domain asks too."""
        now = self.clock.monotonic()
        hit = self._local.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        local = await self.store.get_domain(name) is not None
        if len(self._local) > CACHE_MAX:
            self._local.clear()
        self._local[name] = (now + CACHE_SECONDS, local)
        return local

    async def _require_domain(self, name: str) -> DomainRecord:
        d = await self.store.get_domain(name)
        if d is None:
            raise NotFound(
                f"domain {name} is not hosted here (add it with `mailwarden domain add`)"
            )
        return d

    # -- users ---------------------------------------------------------------------
    async def add_user(self, address: str, password: str, quota: int | None = None) -> UserRecord:
        addr = Address.parse(address)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise MailwardenError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        domain = await self._require_domain(addr.domain)
        hashed = await hash_password(password)
        q = self.default_quota if quota is None else quota
        return await self.store.add_user(addr.key(), domain.id, hashed, q, self.clock.now())

    async def set_password(self, address: str, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise MailwardenError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        await self.store.set_password(Address.parse(address).key(), await hash_password(password))

    async def set_save_sent(self, address: str, on: bool) -> None:
        """File a copy of mail the user submits in Sent (for clients that do not)."""
        await self.store.set_save_sent(Address.parse(address).key(), on)
        self._resolved.clear()

    async def get_user(self, address: str) -> UserRecord:
        user = await self.store.get_user(Address.parse(address).key())
        if user is None:
            raise NotFound(f"user {address} does not exist")
        return user

    async def list_users(self, domain: str | None = None) -> list[UserRecord]:
        if domain is None:
            return await self.store.list_users()
        return await self.store.list_users(
            (await self._require_domain(normalize_domain(domain))).id
        )

    async def remove_user(self, address: str) -> None:
        await self.store.remove_user(Address.parse(address).key())

    async def authenticate(self, login: str, password: str) -> UserRecord | None:
        """The enabled user with this address and password, else None.

        An unknown login still costs one argon2 verification, so response time does not
        tell which accounts exist.
        """
        try:
            key = Address.parse(login).key()
        except InvalidAddress:
            key = ""
        user = await self.store.get_user(key) if key else None
        if user is not None and not user.disabled:
            now = self.clock.monotonic()
            if self._verified.known(key, user.password_hash, password, now):
                return user
        stored = user.password_hash if user is not None else await _dummy_hash()
        ok = await verify_password(stored, password)
        if user is None or not ok or user.disabled:
            return None
        self._verified.remember(key, user.password_hash, password, self.clock.monotonic())
        return user

    async def may_send_as(self, user: UserRecord, address: str) -> bool:
        """True if ``address`` is the user's own (with any +tag) or reaches them as an
        alias or catch-all; nobody may send as another user's address."""
        try:
            addr = Address.parse(address)
        except InvalidAddress:
            return False
        if addr.base().key() == user.address or addr.key() == user.address:
            return True
        found = await self.resolve(addr)
        return found is not None and any(u.id == user.id for u in found.users)

    # -- aliases -------------------------------------------------------------------
    async def add_alias(self, source: str, destination: str) -> None:
        """``postmaster@d`` → ``alice@d``; ``@d`` is the catch-all for domain d."""
        src_key, src_domain = _alias_source(source)
        domain = await self._require_domain(src_domain)
        dest = Address.parse(destination)
        # Forwarding off-server needs the outbound queue; until then aliases are local.
        if not await self.is_local_domain(dest.domain):
            raise MailwardenError(
                f"alias destination {dest} is not in a local domain; only local destinations "
                "are supported"
            )
        await self.store.add_alias(src_key, dest.key(), domain.id, self.clock.now())

    async def remove_alias(self, source: str, destination: str | None = None) -> None:
        src_key, _ = _alias_source(source)
        dest = Address.parse(destination).key() if destination else None
        if await self.store.remove_alias(src_key, dest) == 0:
            raise NotFound(f"alias {source} does not exist")

    async def list_aliases(self, domain: str | None = None) -> list[AliasRecord]:
        if domain is None:
            return await self.store.list_aliases()
        d = await self._require_domain(normalize_domain(domain))
        return await self.store.list_aliases(d.id)

    # -- recipients ----------------------------------------------------------------
    async def resolve(self, rcpt: Address) -> Resolution | None:
        """Users that receive mail sent to ``rcpt``, or None if nobody does (cached briefly)."""
        now = self.clock.monotonic()
        hit = self._resolved.get(rcpt.key())
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self._resolve(rcpt)
        if found is not None:
            if len(self._resolved) > CACHE_MAX:
                self._resolved.clear()
            self._resolved[rcpt.key()] = (now + CACHE_SECONDS, found)
        return found

    async def with_current_usage(self, found: Resolution) -> tuple[UserRecord, ...]:
        """The resolved users with up-to-date quota usage (cached records may be stale).

        Users without a quota need no fresh read: their usage never refuses mail.
        """
        if all(u.quota_bytes == 0 for u in found.users):
            return found.users
        fresh = await self.store.get_users(u.address for u in found.users)
        return tuple(fresh.get(u.address, u) for u in found.users)

    async def _resolve(self, rcpt: Address) -> Resolution | None:
        """Users that receive mail sent to ``rcpt``, or None if nobody does.

        Order: exact user, exact alias, then the same without a +tag (plus-addressing),
        then the domain's catch-all. Aliases expand recursively up to MAX_ALIAS_DEPTH.
        """
        keys = [rcpt.key()]
        if rcpt.base_local != rcpt.local:
            keys.append(rcpt.base().key())
        for key in keys:
            found = await self._expand(key, 0, set())
            if found:
                return Resolution(found, f"{key}")
        catch_all = await self._expand_alias(f"@{rcpt.domain}", 0, set())
        if catch_all:
            return Resolution(catch_all, f"catch-all @{rcpt.domain}")
        return None

    async def _expand(self, key: str, depth: int, seen: set[str]) -> tuple[UserRecord, ...]:
        user = await self.store.get_user(key)
        if user is not None:
            return () if user.disabled else (user,)
        return await self._expand_alias(key, depth, seen)

    async def _expand_alias(self, key: str, depth: int, seen: set[str]) -> tuple[UserRecord, ...]:
        if depth >= MAX_ALIAS_DEPTH or key in seen:
            return ()
        seen.add(key)
        targets = (await self.store.alias_targets([key])).get(key, [])
        out: dict[int, UserRecord] = {}
        for dest in targets:
            for user in await self._expand(dest, depth + 1, seen):
                out[user.id] = user
        return tuple(out.values())


_DUMMY: list[str] = []


async def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(await hash_password("not a password of anyone's"))
    return _DUMMY[0]


def _alias_source(source: str) -> tuple[str, str]:
    if source.startswith("@"):
        d = normalize_domain(source[1:])
        return f"@{d}", d
    addr = Address.parse(source)
    return addr.key(), addr.domain
