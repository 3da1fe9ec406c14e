"""Whether the ``env:`` and ``file:`` secrets a config names can be read on this machine.

The gateway reads a secret only when a call needs it, so a missing variable or file would
otherwise first show as a failed request; ``tollway config check`` reports it up front.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from tollway.auth.vault import MissingCredential, Vault
from tollway.config.types import SecretRef


def missing_secrets(settings: BaseModel, environ: Mapping[str, str]) -> list[str]:
    """``path: what is missing`` for each ``env:`` or ``file:`` reference that cannot be read
    (as the gateway's ``Vault`` would read it).

    ``vault:`` references live in the store and literals are there by definition; neither
    is checked.
    """
    vault = Vault(environ)
    problems = []
    for path, ref in _secret_refs(settings, ""):
        if ref.kind not in ("env", "file"):
            continue
        try:
            vault.reveal(ref)
        except MissingCredential:
            what = (
                f"environment variable {ref.target} is not set"
                if ref.kind == "env"
                else f"file {ref.target} does not exist or cannot be read"
            )
            problems.append(f"{path}: {what}")
    return problems


def _secret_refs(value: Any, path: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_refs(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secret_refs(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_refs(item, f"{path}.{key}")
