"""docs/configuration.md documents every option of the config schema with its true default.

The page's option tables (a first column named ``option``) sit under headings that name,
in code spans, the config path they describe (``server``, ``models[].deployments[]``,
``limits.keys.*``: ``[]`` and ``*`` stand for a list's or a map's entries). Each row names
one or more options relative to that path (``timeouts.connect``) and gives the default as
its first code span, or in words (``required``, ``none``, ``unset``). An option that holds
a section of its own may instead be one row whose meaning names each of its fields in code.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from tests.unit.docs.markdown import ROOT, Table, code_spans, tables
from tollway.config import Settings

PAGE = ROOT / "docs" / "configuration.md"

Path = tuple[str, ...]

DERIVED_DEFAULTS: dict[Path, str] = {
    ("models", "deployments", "id"): "made from the group's name and the deployment's place",
    ("models", "deployments", "api_base"): "the provider family's base URL",
    ("models", "deployments", "azure_deployment"): "the deployment's model",
    ("models", "deployments", "timeouts"): "upstream.timeouts",
    ("models", "deployments", "context_window"): "the price catalog's",
    ("models", "deployments", "max_output"): "the price catalog's",
    ("models", "deployments", "price"): "the price catalog's",
    ("models", "deployments", "responses_api"): "true at OpenAI's own API, else false",
    ("auth", "oidc", "discovery_url"): "made from the issuer",
    ("auth", "oidc", "jwks_uri"): "read from discovery",
    ("telemetry", "request_log", "spool_dir"): "a directory per store under the temp dir",
    ("alerts", "webhooks", "name"): "made from the webhook's place",
}
"""Options whose schema default is ``None`` standing for a value the gateway works out; the
doc describes that value instead of saying "none". Anything else defaulting to ``None``
must be documented as ``none``, ``unset`` or ``null``."""

_UNSET_WORDS = ("none", "unset", "null")


@dataclass(frozen=True, slots=True)
class Option:
    """One field of the schema, where it sits and what it holds."""

    path: Path
    field: FieldInfo
    section: type[BaseModel] | None
    """The model the field holds (directly, or as a list's or map's entries), if any."""


def _section_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Literal, typing.Annotated):
        return None
    for argument in typing.get_args(annotation):
        found = _section_of(argument)
        if found is not None:
            return found
    return None


def schema_options(model: type[BaseModel] = Settings, prefix: Path = ()) -> list[Option]:
    """Every field of ``model`` and of the sections it holds, depth first."""
    found = []
    for name, field in model.model_fields.items():
        section = _section_of(field.annotation)
        found.append(Option((*prefix, name), field, section))
        if section is not None:
            found.extend(schema_options(section, (*prefix, name)))
    return found


OPTIONS = {option.path: option for option in schema_options()}


def parse_path(text: str) -> Path:
    """``models[].deployments[]`` -> ``("models", "deployments")``; ``*`` and ``[]`` dropped."""
    parts = text.replace("[]", "").split(".")
    return tuple(part for part in parts if part and part != "*")


@dataclass(frozen=True, slots=True)
class Row:
    """One option row of the page: the options it names, its default and its meaning."""

    where: str
    paths: tuple[Path, ...]
    default: str
    meaning: str


def _section_paths(table: Table) -> list[Path]:
    paths = [parse_path(span) for span in code_spans(table.heading)]
    unknown = [path for path in paths if path not in OPTIONS]
    assert paths and not unknown, (
        f"{table.where}: the heading {table.heading!r} must name the config section of the "
        f"table below in code spans (unknown: {unknown})"
    )
    return paths


def option_rows() -> list[Row]:
    """Every row of every option table on the page, its option names made absolute."""
    rows = []
    for table in tables(PAGE):
        if table.header[:1] != ["option"]:
            continue
        assert table.header[1:3] == ["default", "meaning"], f"{table.where}: {table.header}"
        for section in _section_paths(table):
            for cells in table.rows:
                names = [parse_path(span) for span in code_spans(cells[0])]
                assert names, f"{table.where}: a row without an option name: {cells}"
                paths = tuple((*section, *name) for name in names)
                rows.append(Row(table.where, paths, cells[1], cells[2]))
    return rows


ROWS = option_rows()
DOCUMENTED = {path: row for row in ROWS for path in row.paths}


def test_every_documented_option_exists() -> None:
    stale = [f"{row.where}: {'.'.join(p)}" for row in ROWS for p in row.paths if p not in OPTIONS]
    assert not stale, "docs/configuration.md documents options the schema lacks:\n" + "\n".join(
        stale
    )


def _named_in(row: Row, name: str) -> bool:
    words = {word for span in code_spans(row.meaning) for word in _identifiers(span)}
    return name in words


def _identifiers(span: str) -> list[str]:
    for mark in "{}[]:,.":
        span = span.replace(mark, " ")
    return span.split()


def _documented(path: Path) -> bool:
    if path in DOCUMENTED:
        return True
    option = OPTIONS[path]
    parent = DOCUMENTED.get(path[:-1])
    if parent is not None and _named_in(parent, path[-1]):
        return True  # named in the meaning of its section's own row
    if option.section is None:
        return False
    return all(_documented((*path, name)) for name in option.section.model_fields)


def test_every_option_of_the_schema_is_documented() -> None:
    missing = [".".join(path) for path in OPTIONS if not _documented(path)]
    assert not missing, "options missing from docs/configuration.md:\n" + "\n".join(missing)


def _documented_default(cell: str) -> str:
    spans = code_spans(cell)
    return spans[0] if spans and cell.startswith("`") else cell


def _read_as_the_schema_does(written: str, field: FieldInfo) -> Any:
    """The doc's ``written`` default parsed as YAML, then validated by the field's own type
    (durations, sizes, secret references and all)."""
    annotation = field.annotation
    if field.metadata:
        annotation = Annotated[annotation, *field.metadata]
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return adapter.validate_python(yaml.safe_load(written))


def _default_problem(path: Path, row: Row) -> str | None:
    field = OPTIONS[path].field
    written = _documented_default(row.default)
    if field.is_required():
        return None if row.default.startswith("required") else "the schema requires it"
    default = field.get_default(call_default_factory=True)
    if default is None:
        if row.default.lower().startswith(_UNSET_WORDS):
            return None
        if path in DERIVED_DEFAULTS:
            return None
        return "the schema's default is None: write none/unset, or list it in DERIVED_DEFAULTS"
    if row.default.startswith("required"):
        return f"documented as required, but it defaults to {default!r}"
    try:
        documented = _read_as_the_schema_does(written, field)
    except (ValidationError, yaml.YAMLError) as exc:
        return f"the documented default cannot be read ({' '.join(str(exc).split())})"
    return None if documented == default else f"the schema's default is {default!r}"


def test_every_documented_default_is_the_schemas() -> None:
    wrong = []
    for row in ROWS:
        for path in row.paths:
            if path in OPTIONS and (problem := _default_problem(path, row)) is not None:
                wrong.append(f"{row.where}: {'.'.join(path)}: doc says {row.default!r}; {problem}")
    assert not wrong, "wrong defaults in docs/configuration.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", sorted(DERIVED_DEFAULTS), ids=".".join)
def test_a_derived_default_is_an_option_defaulting_to_none(path: Path) -> None:
    assert path in OPTIONS, f"{'.'.join(path)} is no longer an option"
    assert OPTIONS[path].field.get_default(call_default_factory=True) is None
