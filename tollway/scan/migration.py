"""What replaces a found key once it is in the gateway: new settings lines, or a hint.

In settings-like files (``.env``, shell, YAML, Dockerfiles, ...) where the key is assigned
to an ``UPPER_SNAKE`` name, the replacement is two lines: the base URL pointing at the
gateway and the same name holding the new virtual key. In code, a short suggestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType

from tollway.scan.findings import Finding


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a provider's SDK is pointed somewhere else: its key and base-URL variables."""

    key_variable: str
    base_url_variable: str
    gateway_path: str
    """Appended to the gateway URL: ``/v1`` for the OpenAI API, nothing for Anthropic's."""


OPENAI_CLIENT = ClientSettings("OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1")
CLIENT_SETTINGS: Mapping[str, ClientSettings] = MappingProxyType(
    {
        "openai": OPENAI_CLIENT,
        "anthropic": ClientSettings("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", ""),
    }
)
"""Providers whose own SDK talks to the gateway; the rest use an OpenAI-compatible client."""

SETTINGS_SUFFIXES = frozenset(
    {".env", ".sh", ".bash", ".zsh", ".yml", ".yaml", ".toml", ".ini", ".cfg", ".conf"}
    | {".properties", ".json", ".tfvars", ".txt", ""}
)


def is_settings_file(path: str) -> bool:
    """Whether ``path`` holds settings (``.env*``, YAML, Dockerfile, ...) rather than code."""
    name = PurePosixPath(path).name
    lowered = name.lower()
    return (
        lowered.startswith(".env")
        or lowered.startswith(("dockerfile", "containerfile"))
        or PurePosixPath(lowered).suffix in SETTINGS_SUFFIXES
    )


def replacement_lines(finding: Finding, gateway_url: str, virtual_key: str) -> tuple[str, ...]:
    """The lines that replace ``finding``'s key once the gateway holds it."""
    provider = finding.detector.provider
    client = CLIENT_SETTINGS.get(provider, OPENAI_CLIENT)
    base_url = gateway_url.rstrip("/") + client.gateway_path
    note = () if provider in CLIENT_SETTINGS else (_compatible_note(provider, base_url),)
    variable = finding.variable
    if variable is not None and is_settings_file(finding.location.path):
        return (*note, f"{client.base_url_variable}={base_url}", f"{variable}={virtual_key}")
    name = variable or client.key_variable
    return (
        *note,
        f"# read the key from ${name} instead of this literal, and set "
        f"{name}={virtual_key} and {client.base_url_variable}={base_url}",
    )


def _compatible_note(provider: str, base_url: str) -> str:
    return f"# {provider} through the gateway: use an OpenAI-compatible client at {base_url}"
