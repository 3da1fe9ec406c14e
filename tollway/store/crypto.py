"""Encryption at rest for provider credentials: Fernet with the vault key from the environment.

``TOLLWAY_VAULT_KEY`` holds one Fernet key, or several separated by commas while the key is
being rotated: the first encrypts, any of them decrypts, and ``reencrypt`` moves a secret
under the first (docs/identity.md, "Changing the vault key").
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tollway.store.errors import VaultKeyError

VAULT_KEY_ENV = "TOLLWAY_VAULT_KEY"
_MAKE_ONE = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def generate_vault_key() -> str:
    """A new random vault key, as ``TOLLWAY_VAULT_KEY`` expects it."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts secrets with the vault key; never shows the key."""

    def __init__(self, keys: str) -> None:
        """``keys``: one Fernet key, or several comma-separated (the first encrypts)."""
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        if not parts:
            raise VaultKeyError(f"{VAULT_KEY_ENV} is empty; {_MAKE_ONE}")
        try:
            self._first = Fernet(parts[0])
            self._fernet = MultiFernet([self._first, *(Fernet(part) for part in parts[1:])])
        except ValueError:
            raise VaultKeyError(
                f"{VAULT_KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes); "
                f"{_MAKE_ONE}"
            ) from None
        self._count = len(parts)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SecretBox:
        """The box for ``TOLLWAY_VAULT_KEY``; raises ``VaultKeyError`` when it is unset."""
        value = (os.environ if environ is None else environ).get(VAULT_KEY_ENV, "")
        if not value.strip():
            raise VaultKeyError(
                f"{VAULT_KEY_ENV} is not set: it encrypts the provider credentials kept in "
                f"the store; {_MAKE_ONE}"
            )
        return cls(value)

    def encrypt(self, secret: str) -> bytes:
        """``secret`` encrypted; two calls never give the same ciphertext."""
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, ciphertext: bytes, *, what: str = "the secret") -> str:
        """The plaintext of ``ciphertext``; ``what`` names it in the error."""
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except InvalidToken:
            raise VaultKeyError(
                f"{what} cannot be decrypted with {VAULT_KEY_ENV}: it was encrypted with "
                "another key (or the stored ciphertext is damaged)"
            ) from None

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether ``ciphertext`` is encrypted with the first key (the one that encrypts)."""
        try:
            self._first.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True

    def reencrypt(self, ciphertext: bytes, *, what: str = "the secret") -> bytes | None:
        """``ciphertext`` encrypted again with the first key (after a vault key change), or
        ``None`` when it already is; ``VaultKeyError`` when no key decrypts it."""
        if self.is_current(ciphertext):
            return None
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise VaultKeyError(
                f"{what} cannot be decrypted with any key in {VAULT_KEY_ENV} (it was encrypted "
                "with another key, or the stored ciphertext is damaged)"
            ) from None

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._count})"
