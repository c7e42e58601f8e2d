"""DKIM signing keys per domain, and failed-login records (shared by every login service)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update

from mailwarden.store.db import Database
from mailwarden.store.records import AuthFailureCount, DkimKeyRecord
from mailwarden.store.sql import aware
from mailwarden.store.tables import auth_failures, dkim_keys, domains


class DkimKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, domain_id: int, selector: str, algorithm: str, pem: str, now: datetime
    ) -> None:
        stmt = insert(dkim_keys).values(
            domain_id=domain_id,
            selector=selector,
            algorithm=algorithm,
            private_key=pem,
            state="active",
            created_at=now,
            retire_at=None,
        )
        await self.db.write(lambda c: c.execute(stmt))

    async def list(self, domain: str | None = None) -> list[DkimKeyRecord]:
        q = (
            select(dkim_keys, domains.c.name.label("domain"))
            .join(domains, domains.c.id == dkim_keys.c.domain_id)
            .order_by(domains.c.name, dkim_keys.c.created_at, dkim_keys.c.id)
        )
        if domain is not None:
            q = q.where(domains.c.name == domain)
        return [_key(r) for r in await self.db.read(lambda c: c.execute(q).all())]

    async def retire_active(self, domain_id: int, retire_at: datetime) -> int:
        stmt = (
            update(dkim_keys)
            .where(and_(dkim_keys.c.domain_id == domain_id, dkim_keys.c.state == "active"))
            .values(state="retiring", retire_at=retire_at)
        )
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def purge_retired(self, now: datetime) -> int:
        """Delete keys whose grace period is over (they are no longer published)."""
        stmt = delete(dkim_keys).where(
            and_(dkim_keys.c.state == "retiring", dkim_keys.c.retire_at <= now)
        )
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))


def _key(r: Row[Any]) -> DkimKeyRecord:
    return DkimKeyRecord(
        id=r.id,
        domain=r.domain,
        selector=r.selector,
        algorithm=r.algorithm,
        private_key=r.private_key,
        state=r.state,
        created_at=aware(r.created_at),
        retire_at=aware(r.retire_at),
    )


def _all(q: Any, c: Any) -> Any:
    return c.execute(q).all()


class AuthFailureStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, ip: str, account: str, service: str, at: datetime) -> None:
        stmt = insert(auth_failures).values(at=at, ip=ip, account=account, service=service)
        await self.db.write(lambda c: c.execute(stmt))

    async def counts(self, ip: str, account: str, since: datetime) -> tuple[int, int]:
        """Failures since ``since`` from this IP, and for this account (from any IP)."""

        def go(c: Any) -> tuple[int, int]:
            base = select(func.count()).select_from(auth_failures)
            n_ip = c.execute(
                base.where(auth_failures.c.ip == ip, auth_failures.c.at >= since)
            ).scalar_one()
            n_acct = 0
            if account:
                n_acct = c.execute(
                    base.where(auth_failures.c.account == account, auth_failures.c.at >= since)
                ).scalar_one()
            return int(n_ip), int(n_acct)

        return await self.db.read(go)

    async def tally(self, since: datetime) -> list[AuthFailureCount]:
        """Failures per IP and per account since ``since``, most first."""
        out: list[AuthFailureCount] = []
        for kind, col in (("ip", auth_failures.c.ip), ("account", auth_failures.c.account)):
            q = (
                select(col, func.count(), func.max(auth_failures.c.at))
                .where(auth_failures.c.at >= since, col != "")
                .group_by(col)
            )
            rows: Any = await self.db.read(partial(_all, q))
            out += [AuthFailureCount(str(k), kind, int(n), aware(t) or t) for k, n, t in rows]
        return sorted(out, key=lambda x: (-x.failures, x.kind, x.key))

    async def clear(self, key: str) -> int:
        """Forget the failures of an IP or an account (the operator's unlock)."""
        stmt = delete(auth_failures).where(
            or_(auth_failures.c.ip == key, auth_failures.c.account == key)
        )
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))

    async def prune(self, before: datetime) -> int:
        stmt = delete(auth_failures).where(auth_failures.c.at < before)
        return await self.db.write(lambda c: int(c.execute(stmt).rowcount))
