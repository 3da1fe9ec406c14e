"""Reading the project's Markdown as the doc tests need it: fenced blocks, tables, code spans.

Only the plain Markdown the docs are written in: ATX headings, ``|`` tables, fences of three
backticks (indented inside list items too) and single-backtick code spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCS = sorted((ROOT / "docs").glob("*.md"))
"""Every page under docs/."""
PAGES = [ROOT / "README.md", *DOCS]
"""Every page a user reads: the README and docs/*.md."""

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced code block: its language tag (``""`` when none), text and first line."""

    page: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        """``docs/x.md:12``, for failure messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True, slots=True)
class Table:
    """A table with the heading it sits under and its rows as lists of cell texts."""

    page: Path
    line: int
    heading: str
    header: list[str]
    rows: list[list[str]]

    @property
    def where(self) -> str:
        """``docs/x.md:12``, for failure messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, the fences' indentation removed."""
    found = []
    lines = page.read_text(encoding="utf-8").split("\n")
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, language = len(opening.group(1)), opening.group(2)
        body: list[str] = []
        index += 1
        while not re.match(r"^\s*```\s*$", lines[index]):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        found.append(Block(page, index - len(body), language, "\n".join(body) + "\n"))
        index += 1
    return found


def prose(page: Path) -> str:
    """``page`` with its fenced blocks blanked (line numbers kept): the text outside code."""
    lines = page.read_text(encoding="utf-8").split("\n")
    kept, fenced = [], False
    for line in lines:
        fence = _FENCE.match(line) if not fenced else re.match(r"^\s*```\s*$", line)
        if fence:
            fenced = not fenced
        kept.append("" if fence or fenced else line)
    return "\n".join(kept)


def code_spans(text: str) -> list[str]:
    """The single-backtick code spans of ``text``, a span broken over lines joined by a space."""
    return [" ".join(span.split()) for span in _CODE_SPAN.findall(text)]


def split_row(line: str) -> list[str]:
    """The cells of a table line; a ``|`` inside a code span is part of the cell."""
    cells, cell, in_code = [], "", False
    for char in line.strip().removeprefix("|").removesuffix("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
    cells.append(cell.strip())
    return cells


def tables(page: Path) -> list[Table]:
    """The tables of ``page`` outside fenced blocks, each with its nearest heading above."""
    found = []
    heading = ""
    lines = prose(page).split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := _HEADING.match(line):
            heading = match.group(2)
        is_table = line.lstrip().startswith("|") and index + 1 < len(lines)
        if is_table and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[index + 1]):
            header = split_row(line)
            rows = []
            index += 2
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                rows.append(split_row(lines[index]))
                index += 1
            found.append(Table(page, index - len(rows) - 1, heading, header, rows))
            continue
        index += 1
    return found
