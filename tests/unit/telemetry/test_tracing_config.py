"""``telemetry.tracing``: defaults, validation, and secrets kept out of dumps."""

from __future__ import annotations

import sys

import pytest

from tollway.config import ConfigError, validate_settings
from tollway.config.schema import TracingConfig


def tracing(**options: object) -> TracingConfig:
    return validate_settings({"telemetry": {"tracing": options}}, source="t").telemetry.tracing


def test_defaults_are_off_and_never_capture_content() -> None:
    config = tracing()
    assert config.enabled is False and config.capture_content is False
    assert config.service_name == "tollway" and config.sample_ratio == 1.0
    assert config.otlp_endpoint is None and config.propagate is True


def test_header_secrets_dump_as_references() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra")
    config = tracing(enabled=True, headers={"authorization": "Bearer literal-secret",
                                            "x-tenant": "env:OTLP_TENANT"})  # fmt: skip
    dumped = config.model_dump(mode="json")
    assert dumped["headers"] == {"authorization": "***", "x-tenant": "env:OTLP_TENANT"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sample_ratio": 1.5}, "sample_ratio"),
        ({"otlp_endpoint": "collector:4318"}, "http:// or https://"),
        ({"service_name": ""}, "service_name"),
        ({"exporter": "jaeger"}, "unknown option"),
    ],
)
def test_invalid_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tracing(**options)


def test_enabled_without_the_packages_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    with pytest.raises(ConfigError, match=r"pip install 'tollway\[otel\]'"):
        tracing(enabled=True)
    assert tracing(enabled=False).enabled is False
