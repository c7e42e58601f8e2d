"""Alembic environment: always run with a connection handed in by Database.migrate()."""

from __future__ import annotations

from alembic import context

from mailwarden.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline mode is not used
    raise RuntimeError("run migrations through mailwarden (Database.migrate)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
