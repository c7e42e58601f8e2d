"""IMAP4rev1 server (RFC 3501 and extensions)."""
