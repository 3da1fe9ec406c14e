"""The configuration schema: every option, its default and its validation.

Every model forbids unknown keys so a typo is an error, not a silently ignored setting.
docs/configuration.md documents each field here; keep the two in step.
"""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

from tollway.config.types import Duration, SecretRef
from tollway.simulator.settings import SimulatorSettings

EMBEDDED_SIMULATOR = "embedded-simulator"
"""An ``api_base`` value meaning: the simulator this process starts (``simulator.enabled``)."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    """Upstream timeouts; unset fields fall back to ``upstream.timeouts``."""

    connect: Duration | None = None
    first_byte: Duration | None = None
    total: Duration | None = None


class ResolvedTimeouts(Strict):
    """Upstream timeouts with every phase set."""

    connect: Duration = 5.0
    first_byte: Duration = 60.0
    total: Duration = 600.0

    def merged(self, override: Timeouts | None) -> ResolvedTimeouts:
        """These defaults with the set fields of ``override`` on top."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class DeploymentConfig(Strict):
    """One concrete place a model is served: provider, upstream model, endpoint, credential."""

    provider: str
    model: str
    id: str | None = None
    api_base: str | None = None
    api_key: SecretRef | None = None
    api_version: str | None = None
    azure_deployment: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts | None = None

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        from tollway.providers import BUILTIN_PROVIDERS

        if value not in BUILTIN_PROVIDERS:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            raise ValueError(f"unknown provider {value!r} (known: {known})")
        return value

    @model_validator(mode="after")
    def _required_fields(self) -> DeploymentConfig:
        from tollway.providers import BUILTIN_PROVIDERS

        spec = BUILTIN_PROVIDERS[self.provider]
        if self.api_base is None and spec.default_api_base is None:
            raise ValueError(f"provider {self.provider!r} needs api_base")
        missing = [name for name in spec.required_fields if getattr(self, name) is None]
        if missing:
            raise ValueError(f"provider {self.provider!r} needs {', '.join(missing)}")
        return self

    @field_validator("api_version", mode="before")
    @classmethod
    def _date_as_text(cls, value: object) -> object:
        # YAML reads an unquoted 2024-10-21 as a date; Azure wants the text.
        return value.isoformat() if isinstance(value, datetime.date) else value

    @field_validator("headers")
    @classmethod
    def _no_auth_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"authorization", "api-key", "x-api-key"} & {k.lower() for k in value}
        if reserved:
            raise ValueError(f"{sorted(reserved)} must be set with api_key, not as a header")
        return value


class ModelGroupConfig(Strict):
    """A model name clients ask for and the deployments that serve it."""

    name: str = Field(min_length=1)
    kind: Literal["chat", "embedding"] = "chat"
    strategy: Literal["priority"] = "priority"
    deployments: list[DeploymentConfig] = Field(min_length=1)
    owned_by: str = "tollway"


class ServerConfig(Strict):
    """The HTTP listener."""

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_size: ByteSize = ByteSize(8 * 1024 * 1024)
    shutdown_timeout: Duration = 30.0
    access_log: bool = False


class UpstreamConfig(Strict):
    """The shared upstream HTTP client."""

    timeouts: ResolvedTimeouts = ResolvedTimeouts()
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_host: int = Field(default=0, ge=0)
    keepalive: Duration = 30.0
    forward_headers: list[str] = Field(default_factory=lambda: ["anthropic-beta", "openai-beta"])
    """Client header names (``*`` globs, any case) passed on to providers; credentials never."""


class SimulatorConfig(Strict):
    """The in-process simulated provider used by the demo and tests."""

    enabled: bool = False
    settings: SimulatorSettings = SimulatorSettings()


class Settings(Strict):
    """The whole gateway configuration."""

    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    models: list[ModelGroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [group.name for group in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        uses_sim = any(
            d.api_base == EMBEDDED_SIMULATOR for group in self.models for d in group.deployments
        )
        if uses_sim and not self.simulator.enabled:
            raise ValueError(f"api_base {EMBEDDED_SIMULATOR!r} needs simulator.enabled: true")
        return self
