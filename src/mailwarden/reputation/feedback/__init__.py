"""Feedback parsers: bounces (RFC 3464 DSNs) and, later, complaint reports."""
