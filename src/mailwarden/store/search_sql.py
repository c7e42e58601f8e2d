"""The IMAP search index: decoded header and body text per stored body (blob).

SQLite matches through the FTS5 trigram table ``search_fts`` (case-folded substring
match for needles of 3+ characters, LIKE below that); PostgreSQL uses ILIKE, served by
pg_trgm GIN indexes when the extension could be created (migration 0003).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    and_,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from mailwarden.store.db import Database
from mailwarden.store.tables import (
    messages,
    search_text,
)

_FTS_MATCHES = text(
    "SELECT m.uid, s.headers FROM search_fts AS f "
    "CROSS JOIN search_text AS s ON s.id = f.rowid "
    "CROSS JOIN messages AS m ON m.blob = s.blob "
    "WHERE search_fts MATCH :q AND +m.mailbox_id = :mb"  # "+": look messages up by blob
)


class SearchIndexStore:
    """Reads and fills the search index (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def unindexed(self, mailbox_id: int, limit: int = 1000) -> list[str]:
        """Blobs of this mailbox's messages that have no search text yet."""
        q = (
            select(messages.c.blob)
            .select_from(messages.outerjoin(search_text, search_text.c.blob == messages.c.blob))
            .where(and_(messages.c.mailbox_id == mailbox_id, search_text.c.id.is_(None)))
            .distinct()
            .limit(limit)
        )
        return list(await self.db.read(lambda c: c.execute(q).scalars().all()))

    async def add_search_text(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Index (blob, headers, body) rows; blobs indexed meanwhile are skipped."""
        values = [{"blob": b, "headers": h, "body": t} for b, h, t in rows]
        if not values:
            return
        stmt: Any
        if self.db.is_sqlite:
            stmt = insert(search_text).prefix_with("OR IGNORE")
        else:
            stmt = pg_insert(search_text).on_conflict_do_nothing(index_elements=["blob"])
        await self.db.write(lambda c: c.execute(stmt, values))

    async def text_matches(
        self, mailbox_id: int, column: Literal["headers", "body"], needle: str
    ) -> list[tuple[int, str]]:
        """(UID, headers text) of messages whose ``column`` contains ``needle``,
        case-insensitively. Only indexed messages are seen (see :meth:`unindexed`)."""
        sqlite = self.db.is_sqlite

        def run(c: Connection) -> list[tuple[int, str]]:
            if sqlite and len(needle) >= 3:
                # FTS5 trigram: a phrase is a substring match, case-folded by the
                # tokenizer. The index drives the join (CROSS JOIN fixes SQLite's order),
                # so the cost follows the hits, not the mailbox's size.
                phrase = '"' + needle.replace('"', '""') + '"'
                params = {"q": f"{column} : {phrase}", "mb": mailbox_id}
                return [(int(r[0]), r[1]) for r in c.execute(_FTS_MATCHES, params)]
            col = search_text.c[column]
            cond = (
                col.like(_like(needle), escape="\\")
                if sqlite
                else col.ilike(_like(needle), escape="\\")
            )
            q = (
                select(messages.c.uid, search_text.c.headers)
                .select_from(messages.join(search_text, search_text.c.blob == messages.c.blob))
                .where(and_(messages.c.mailbox_id == mailbox_id, cond))
            )
            return [(int(r.uid), r.headers) for r in c.execute(q)]

        return await self.db.read(run)


def _like(needle: str) -> str:
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
