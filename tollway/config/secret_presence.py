"""Whether the ``env:`` and ``file:`` secrets a config names can be read on this machine.

The gateway reads a secret only when a call needs it, so a missing variable or file would
otherwise first show as a failed request; ``tollway config check`` reports it up front.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tollway.config.types import SecretRef


def missing_secrets(settings: BaseModel, environ: Mapping[str, str]) -> list[str]:
    """``path: what is missing`` for each ``env:`` or ``file:`` reference that cannot be read.

    ``vault:`` references live in the store and literals are there by definition; neither
    is checked.
    """
    problems = []
    for path, ref in _secret_refs(settings, ""):
        if ref.kind == "env" and not environ.get(ref.target):
            problems.append(f"{path}: environment variable {ref.target} is not set")
        elif ref.kind == "file" and not _readable(Path(ref.target)):
            problems.append(f"{path}: file {ref.target} does not exist or cannot be read")
    return problems


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


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
