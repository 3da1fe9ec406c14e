"""Simulator settings and the record of a request the simulator received.

Only plain data lives here: the knobs a test or the CLI can turn and the shape of a recorded
request. Behaviour that reads them lives in the dialect modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tollway.simulator.faults import parse_fault


class SimulatorSettings(BaseModel):
    """Server-wide knobs of the simulated provider; every field can be changed at runtime."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ttft_ms: float = Field(default=0.0, ge=0.0)
    tpot_ms: float = Field(default=0.0, ge=0.0)
    output_tokens: int = Field(default=16, ge=1)
    cached_tokens: int = Field(default=0, ge=0)
    """Of each prompt, how many tokens to report as read from the provider's prompt cache."""
    cache_write_tokens: int = Field(default=0, ge=0)
    """Of each prompt, how many tokens to report as written to the cache (where the API says)."""
    embedding_dimensions: int = Field(default=1536, ge=1, le=65536)
    api_key: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    """With the key id: Bedrock calls must be SigV4-signed with this pair (or use ``api_key``)."""
    google_oauth_public_key: str | None = None
    """PEM public key of a service account: /oauth2/token grants tokens for its signed JWTs,
    and the simulated Vertex AI accepts them (beside ``api_key``)."""
    fault: str | None = None
    fault_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _aws_pair(self) -> SimulatorSettings:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together")
        return self

    @field_validator("fault")
    @classmethod
    def _check_fault(cls, value: str | None) -> str | None:
        if value is not None:
            parse_fault(value)
        return value


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
        }
