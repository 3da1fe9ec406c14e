"""Every ``tollway ...`` command the docs show exists, with the options it is shown with.

Commands are read from the shell blocks of README.md, bench/README.md and docs/*.md (a
line continued with ``\\`` joined to the next) and from code spans in their prose, then
walked down the real Typer app: each word names a subcommand until one that takes no
more; after it, every ``-x`` / ``--name`` must be one of that command's options, and the
words left (an option's value aside) may not outnumber its arguments. ``a|b`` stands for
either subcommand, ``[--flag]`` for an optional one, ``<what>`` for one placeholder word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.unit.docs.markdown import PAGES, ROOT, blocks, code_spans, prose, tables
from tollway.cli import app

COMMAND = typer.main.get_command(app)
SHELL = {"", "sh", "bash", "console", "shell"}
_INVOKED = re.compile(r"(?:^|[\s/])tollway\s+(.*)$")
_WORD = re.compile(r"<[^>]*>|\S+")
_END = re.compile(r"\s(?:#|\||&&|;|>)(?:\s|$)")


@dataclass(frozen=True, slots=True)
class Shown:
    """A ``tollway`` command as a page shows it: where, and the words after ``tollway``."""

    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: tollway {' '.join(self.words)}"


def _words(rest: str) -> tuple[str, ...]:
    if end := _END.search(" " + rest):
        rest = rest[: end.start() - 1] if end.start() else ""
    words = (word.strip("[]") for word in _WORD.findall(rest))
    return tuple(word for word in words if word and word != "...")


def shown_commands() -> list[Shown]:
    """Every ``tollway`` command on the pages, in shell blocks and in prose."""
    found = []
    for page in [*PAGES, ROOT / "bench" / "README.md"]:
        name = page.relative_to(ROOT)
        for block in blocks(page):
            if block.language not in SHELL:
                continue
            text = re.sub(r"\\\n\s*", " ", block.text)
            for line in text.split("\n"):
                if match := _INVOKED.search(line.removeprefix("$ ")):
                    found.append(Shown(block.where, _words(match.group(1))))
        for span in code_spans(prose(page)):
            if match := _INVOKED.match(span):
                found.append(Shown(f"{name}: `{span}`", _words(match.group(1))))
    return found


SHOWN = shown_commands()


# Typer carries its own copy of Click: commands are read by what they have, not their class.
Command = Any


def _subcommands(command: Command) -> dict[str, Command]:
    return dict(getattr(command, "commands", None) or {})


def _is_group(command: Command) -> bool:
    return hasattr(command, "commands")


def _options(command: Command) -> dict[str, Any]:
    names = {}
    for param in command.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def _arguments(command: Command) -> int | None:
    """How many words the command's arguments take (None: no bound)."""
    counts = [p.nargs for p in command.params if p.param_type_name == "argument"]
    return None if any(count < 0 for count in counts) else sum(counts)


def problems(
    words: tuple[str, ...], command: Command = COMMAND, path: str = "tollway"
) -> list[str]:
    """What is wrong with ``words`` run as ``path``: unknown commands and options, extra words."""
    if _is_group(command) and words and not words[0].startswith("-"):
        found = []
        for name in words[0].split("|"):
            sub = _subcommands(command).get(name)
            if sub is None:
                found.append(f"{path} has no command {name!r}")
            else:
                found += problems(words[1:], sub, f"{path} {name}")
        return found
    options, positional, found = _options(command), 0, []
    rest = iter(words)
    for word in rest:
        if word.startswith("-") and len(word) > 1:
            option = options.get(word.split("=", 1)[0])
            if option is None and word != "--help":
                found.append(f"{path} has no option {word}")
            elif option is not None and not option.is_flag and "=" not in word:
                next(rest, None)  # the option's value
        else:
            positional += 1
    limit = _arguments(command)
    if _is_group(command) and positional:
        found.append(f"{path} needs a command, not {words}")
    elif limit is not None and positional > limit:
        found.append(f"{path} takes {limit} argument(s), shown with {positional}")
    return found


def test_the_docs_show_tollway_commands() -> None:
    assert len(SHOWN) > 40


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_a_command_in_the_docs_exists_with_its_options(shown: Shown) -> None:
    found = problems(shown.words)
    assert not found, f"{shown}: " + "; ".join(found)


def _command_paths() -> list[tuple[str, ...]]:
    paths = set()
    for shown in SHOWN:
        command: Command = COMMAND
        path: tuple[str, ...] = ()
        for word in shown.words:
            sub = _subcommands(command).get(word)
            if sub is None:
                break
            command, path = sub, (*path, word)
        paths.add(path)
    return sorted(paths)


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_the_help_of_a_command_in_the_docs_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_the_readme_lists_every_command_of_the_cli() -> None:
    (row,) = [
        cells for table in tables(ROOT / "README.md") for cells in table.rows if cells[0] == "CLI"
    ]
    listed = {span.removeprefix("tollway ").split()[0] for span in code_spans(row[1])}
    assert listed == set(_subcommands(COMMAND))
