"""Loading configuration from YAML files, with errors that name the file and the path."""

from __future__ import annotations

import datetime
import difflib
import hashlib
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from tollway.config.schema import Settings


class ConfigError(Exception):
    """A config file that cannot be read or does not validate; the message says where and why."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses an option written twice in one mapping. PyYAML keeps the last and
    drops the first without a word: a second ``limits:`` added at the end of a file would
    silently discard the budgets of the first, the very mistake ``extra="forbid"`` is there
    to catch. (YAML itself says mapping keys are unique; merges, ``<<``, may override.)"""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is written twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate one YAML config file."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # An editor that saved a comment as Latin-1 (or the file as UTF-16): where, not how.
        raise ConfigError(f"{file}: {_not_utf8(raw, exc.start)}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
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


def _not_utf8(raw: bytes, start: int) -> str:
    """Where the first byte that is not UTF-8 is, as YAML errors say it, and which it is."""
    line_start = raw.rfind(b"\n", 0, start) + 1
    column = len(raw[line_start:start].decode("utf-8", "replace")) + 1
    line = raw.count(b"\n", 0, start) + 1
    return (
        f"line {line}, column {column}: not UTF-8 text (byte 0x{raw[start]:02x}); "
        "save the file as UTF-8"
    )


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
        location = error["loc"]
        message = error["msg"].removeprefix("Value error, ")
        is_key = error["type"] == "invalid_key" or location[-1:] == ("[key]",)
        if is_key:
            # A map's key: pydantic names it by its value made an int (False as 0) and then
            # "[key]", which read as a list's entry; the path names the key as YAML read it.
            parent = location[:-1] if error["type"] == "invalid_key" else location[:-2]
            location = (*parent, _key_text(error["input"]))
        path = _format_location(location)
        if error["type"] == "extra_forbidden":
            message = "unknown option" + _suggestion(error["loc"])
        elif error["type"] == "missing":
            message = "required option missing"
        elif error["type"] in ("string_type", "invalid_key"):
            message = _typed_by_yaml(error["input"], "this key" if is_key else "this") or message
        lines.append(f"  {source}: {path or '(top level)'}: {message}")
    return "\n".join(lines)


def _key_text(key: Any) -> str:
    """A map's key as the path names it: ``false`` (YAML's ``no``), ``42``."""
    return str(key).lower() if isinstance(key, bool) else str(key)


def _typed_by_yaml(value: Any, what: str) -> str | None:
    """Why text the config wants is not text: YAML read an unquoted ``no``, ``42`` or
    ``2023-06-01`` as a boolean, a number or a date. The file's reader sees text there, so
    pydantic's "Input should be a valid string" left them puzzled. None for other values."""
    if isinstance(value, bool):
        spellings = "yes, on and true" if value else "no, off and false"
        read = f"the boolean {str(value).lower()} ({spellings} all are)"
    elif isinstance(value, int | float):
        read = f"the number {value!r}"  # 0755 is 493: the number, not the text, is named
    elif isinstance(value, datetime.date):
        read = f"the {'time' if isinstance(value, datetime.datetime) else 'date'} {value}"
    else:
        return None
    return f"YAML read {what} as {read}, not text: write it in quotes"


def _suggestion(location: tuple[int | str, ...]) -> str:
    """`` (did you mean 'port'?)`` for a misspelt option, else the options allowed there."""
    options = _options_at(location[:-1])
    if not options:
        return ""
    close = difflib.get_close_matches(str(location[-1]), options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (options here: {', '.join(options)})"


def _options_at(location: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in location:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a list index or a map key: the entry's model is already in hand
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds, directly or in a list, a map or an optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _format_location(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


STORE_URL_ENV = "TOLLWAY_STORE_URL"


def settings_version(settings: Settings) -> str:
    """A short fingerprint of what a gateway serves with ``settings``: replicas that print
    the same one run the same config. The listen address (which may differ per replica)
    and the store URL (which may hold a password) are left out; secrets count only by
    their reference (a literal one is ``***``)."""
    dump = settings.model_dump(mode="json")
    for section, option in (("server", "host"), ("server", "port"), ("store", "url")):
        dump[section].pop(option, None)
    return hashlib.sha256(orjson.dumps(dump, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def with_environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """``settings`` with the environment's overrides applied (``TOLLWAY_STORE_URL``)."""
    store_url = environ.get(STORE_URL_ENV)
    if not store_url:
        return settings
    return settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": store_url})}
    )
