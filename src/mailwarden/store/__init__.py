"""Storage: ports (Protocols), the SQLAlchemy implementation, migrations and the blob store."""
