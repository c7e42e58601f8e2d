"""The verified-login cache: repeated logins skip argon2, nothing else does."""

from __future__ import annotations

from mailwarden.services.passwords import VerifiedLogins


def test_a_remembered_login_is_known_until_it_expires() -> None:
    cache = VerifiedLogins(ttl=300)
    cache.remember("alice@example.test", "$argon2id$old", "secret", now=1000.0)
    assert cache.known("alice@example.test", "$argon2id$old", "secret", now=1299.0)
    assert not cache.known("alice@example.test", "$argon2id$old", "secret", now=1300.0)


def test_other_password_user_or_changed_hash_are_not_known() -> None:
    cache = VerifiedLogins()
    cache.remember("alice@example.test", "$argon2id$old", "secret", now=0.0)
    assert not cache.known("alice@example.test", "$argon2id$old", "Secret", now=1.0)
    assert not cache.known("bob@example.test", "$argon2id$old", "secret", now=1.0)
    # after `mailwarden user passwd` the stored hash differs: the old entry never matches
    assert not cache.known("alice@example.test", "$argon2id$new", "secret", now=1.0)


def test_the_password_is_not_kept() -> None:
    cache = VerifiedLogins()
    cache.remember("alice@example.test", "h", "correct horse battery", now=0.0)
    assert all(b"horse" not in k for k in cache._seen)


def test_size_is_bounded() -> None:
    cache = VerifiedLogins(ttl=10, size=100)
    for i in range(250):
        cache.remember(f"u{i}@example.test", "h", "p", now=float(i))
    assert len(cache._seen) <= 100
    assert cache.known("u249@example.test", "h", "p", now=249.0)
