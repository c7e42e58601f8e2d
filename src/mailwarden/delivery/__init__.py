"""Delivery: local delivery into mailboxes (outbound queue follows in the sending issue)."""
