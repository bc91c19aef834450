"""Password hashing with argon2id (argon2-cffi), rehashing when the parameters change."""
from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so a wrong phone costs the same time as a wrong password.

    Made on first use, not at import: one argon2 hash peaks at its 64 MiB memory cost in every process.
    """
    return _hasher.hash("not-a-real-password-0000")


def hash_password(password: str) -> str:
    """The argon2id hash to store."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when password matches; constant work whether or not there is a hash."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with older parameters."""
    return _hasher.check_needs_rehash(stored_hash)
