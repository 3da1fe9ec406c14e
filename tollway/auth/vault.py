"""The vault: the only place provider credentials are read and held.

Config holds references (``env:NAME``, ``file:PATH``, ``vault:NAME``); the vault turns one into
the secret only when a provider call needs it. ``vault:`` credentials are kept encrypted in the
store and held decrypted in memory, replaced the moment the admin API changes one. Secrets
never leave this module except into the outgoing request's auth header.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tollway.config.types import SecretRef
from tollway.core.errors import UpstreamUnavailable


class MissingCredential(UpstreamUnavailable):
    """A credential reference points at nothing (unset variable, unreadable file)."""


FILE_RECHECK = 5.0
"""Seconds between checks whether a ``file:`` secret changed on disk (rotated mounts), unless
``upstream.file_secret_recheck`` says otherwise."""


@dataclass(slots=True)
class _FileSecret:
    text: str
    mtime_ns: int
    checked_at: float


class Vault:
    """Resolves secret references; file contents are cached and re-read when the file changes
    (checked at most every ``file_recheck`` seconds, so a rotated mounted secret is picked
    up without a restart)."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, file_recheck: float = FILE_RECHECK
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._file_recheck = file_recheck
        self._files: dict[str, _FileSecret] = {}
        self._stored: dict[str, str] = {}

    def set_stored(self, name: str, secret: str | None) -> None:
        """Hold (or with ``None`` forget) a credential from the store, decrypted."""
        if secret is None:
            self._stored.pop(name, None)
        else:
            self._stored[name] = secret

    def reveal(self, ref: SecretRef) -> str:
        """The secret behind ``ref``; raises ``MissingCredential`` naming the reference."""
        if ref.kind == "literal":
            return ref.target
        if ref.kind == "env":
            value = self._environ.get(ref.target)
            if value:
                # As a file's: a key exported with its line end failed every upstream call.
                value = value.strip()
            if not value:
                raise MissingCredential(f"credential {ref.redacted()} is not set")
            return value
        if ref.kind == "vault":
            stored = self._stored.get(ref.target)
            if stored is None:
                raise MissingCredential(f"credential {ref.redacted()} is not in the vault")
            return stored
        cached = self._files.get(ref.target)
        now = time.monotonic()
        if cached is not None and now - cached.checked_at < self._file_recheck:
            return cached.text
        path = Path(ref.target)
        try:
            mtime_ns = path.stat().st_mtime_ns
            if cached is None or cached.mtime_ns != mtime_ns:
                cached = _FileSecret(path.read_text(encoding="utf-8").strip(), mtime_ns, now)
                self._files[ref.target] = cached
        except (OSError, UnicodeDecodeError) as exc:
            if cached is None:
                text = isinstance(exc, UnicodeDecodeError)
                why = "is not UTF-8 text" if text else "cannot be read"
                raise MissingCredential(f"credential {ref.redacted()} {why}") from None
            # A file that vanished mid-rotation: keep serving what was last read.
        cached.checked_at = now
        return cached.text

    def missing(self, refs: list[SecretRef]) -> list[str]:
        """The redacted references among ``refs`` that cannot be resolved now."""
        missing = []
        for ref in refs:
            try:
                self.reveal(ref)
            except MissingCredential:
                missing.append(ref.redacted())
        return missing
