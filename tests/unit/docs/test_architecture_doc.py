"""docs/architecture.md names modules that exist, and its module map names every one.

The map is the table under "Modules": a row per module (``auth/vault.py``) or package
(``wire/``), a package's row naming its modules in code spans (``openai_request.py``,
``migrations/env.py``: from the row's package). Elsewhere on the page a module is a path
from ``tollway/`` (``providers/http.py``) or, bare, the name of a module somewhere in it.
"""

from __future__ import annotations

import re

from tests.unit.docs.markdown import ROOT, Table, blocks, code_spans, prose, tables

PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "tollway"
_MODULE = re.compile(r"(?<![\w./-])((?:[\w*]+/)*[\w*]+\.py)\b")
_SOURCES = [
    path
    for path in PACKAGE.rglob("*.py")
    if "versions" not in path.relative_to(PACKAGE).parts  # migration scripts: data
]
MODULES = sorted(
    path.relative_to(PACKAGE).as_posix() for path in _SOURCES if path.name != "__init__.py"
)
"""Every module under tollway/, as ``auth/vault.py`` (a package's ``__init__.py`` is the
package's own row)."""
PACKAGES = sorted({path.parent.relative_to(PACKAGE).as_posix() + "/" for path in _SOURCES} - {"./"})
"""Every folder of modules under tollway/, as ``auth/`` or ``store/migrations/``."""


def _resolve(mention: str, row: str) -> str:
    """A module named in a package's row, from ``tollway/``: below the row's package if it
    is there, else as written."""
    if row.endswith("/") and (PACKAGE / row / mention).exists():
        return row + mention
    return mention


def _map_table() -> Table:
    (table,) = [table for table in tables(PAGE) if table.heading == "Modules"]
    return table


def module_map() -> dict[str, set[str]]:
    """The map's rows: the module or package each is about, and the modules its text names."""
    rows: dict[str, set[str]] = {}
    for cells in _map_table().rows:
        (row,) = code_spans(cells[0])
        spans = code_spans(cells[1])
        rows[row] = {_resolve(found, row) for span in spans for found in _MODULE.findall(span)}
    return rows


MAP = module_map()
MAPPED = set(MAP) | {module for named in MAP.values() for module in named}


def test_the_map_is_read_from_the_page() -> None:
    assert {"app.py", "wire/", "auth/vault.py"} <= set(MAP)
    assert "wire/openai_request.py" in MAP["wire/"]


def test_the_module_map_names_every_module() -> None:
    missing = [module for module in MODULES if module not in MAPPED]
    assert not missing, "modules missing from the module map:\n" + "\n".join(missing)


def test_the_module_map_names_every_package() -> None:
    def named(package: str) -> bool:
        return package in MAP or any(module.startswith(package) for module in MAPPED)

    missing = [package for package in PACKAGES if not named(package)]
    assert not missing, "packages missing from the module map: " + ", ".join(missing)


def _exists(mention: str) -> bool:
    if mention.endswith("/"):
        return (PACKAGE / mention).is_dir()
    if "*" in mention:
        return any(PACKAGE.glob(mention))
    if "/" in mention:
        return (PACKAGE / mention).is_file()
    return any(PACKAGE.rglob(mention))


def _text_outside_the_map() -> str:
    lines = prose(PAGE).split("\n")
    table = _map_table()
    del lines[table.line - 1 : table.line + 1 + len(table.rows)]
    return "\n".join(lines) + "\n".join(block.text for block in blocks(PAGE))


def test_every_module_the_page_names_exists() -> None:
    named = set(_MODULE.findall(_text_outside_the_map())) | MAPPED
    stale = sorted(mention for mention in named if not _exists(mention))
    assert not stale, "docs/architecture.md names modules that do not exist: " + ", ".join(stale)
