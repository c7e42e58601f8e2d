"""Vocabulary shared by every layer: addresses, errors, reply codes, the clock.

Imports nothing else from mailwarden (ARCHITECTURE.md, rule 1).
"""
