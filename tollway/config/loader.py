"""Loading configuration from YAML files, with errors that name the file and the path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tollway.config.schema import Settings


class ConfigError(Exception):
    """A config file that cannot be read or does not validate; the message says where and why."""


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate one YAML config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(f"{file}: {where}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: the top level must be a mapping, not {type(data).__name__}")
    return validate_settings(data, source=str(file))


def validate_settings(data: Mapping[str, Any], *, source: str) -> Settings:
    """Validate a parsed config mapping; ``source`` names it in error messages."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``source: models[0].deployments[1].provider: what is wrong``."""
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for error in exc.errors(include_url=False):
        path = _format_location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown option"
        elif error["type"] == "missing":
            message = "required option missing"
        lines.append(f"  {source}: {path or '(top level)'}: {message}")
    return "\n".join(lines)


def _format_location(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


STORE_URL_ENV = "TOLLWAY_STORE_URL"


def with_environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """``settings`` with the environment's overrides applied (``TOLLWAY_STORE_URL``)."""
    store_url = environ.get(STORE_URL_ENV)
    if not store_url:
        return settings
    return settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": store_url})}
    )
