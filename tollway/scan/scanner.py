"""A scan: list the files, read each, find keys in it (notebooks cell by cell)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tollway.scan.files import (
    MAX_FILE_BYTES,
    Skipped,
    candidate_files,
    ignored_env_files,
    read_source,
)
from tollway.scan.findings import Finding, Location, ScanReport
from tollway.scan.matcher import find_keys
from tollway.scan.notebooks import notebook_texts


def scan_path(
    path: Path, *, include_ignored: bool = False, max_bytes: int = MAX_FILE_BYTES
) -> ScanReport:
    """Scan a directory (honouring .gitignore unless ``include_ignored``) or one file."""
    if path.is_dir():
        root, files = path, candidate_files(path, include_ignored=include_ignored)
        hidden = () if include_ignored else tuple(ignored_env_files(path))
    else:
        root, files, hidden = path.parent, [path.name], ()
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    scanned = 0
    for relative in files:
        source = read_source(root, relative, max_bytes)
        if isinstance(source, Skipped):
            skipped.append(source)
        elif source is not None:
            scanned += 1
            findings.extend(scan_text(relative, source))
    return ScanReport(root, tuple(findings), scanned, tuple(skipped), hidden)


def scan_text(path: str, text: str) -> list[Finding]:
    """The keys in ``text``, the content of the file at ``path``."""
    if PurePosixPath(path).suffix.lower() == ".ipynb":
        in_cells = _scan_notebook(path, text)
        if in_cells is not None:
            return in_cells
    return [
        Finding(Location(path, m.line, m.column), m.detector, m.secret, m.variable)
        for m in find_keys(text)
    ]


def _scan_notebook(path: str, raw: str) -> list[Finding] | None:
    """Keys in a notebook's cells and outputs, each also placed on its line in the file."""
    texts = notebook_texts(raw)
    if texts is None:
        return None
    file_lines: dict[str, Iterator[int]] = {}
    findings: list[Finding] = []
    for cell_text in texts:
        for match in find_keys(cell_text.text):
            if match.secret not in file_lines:
                file_lines[match.secret] = _lines_of(raw, match.secret)
            location = Location(
                path,
                next(file_lines[match.secret], 1),
                match.column,
                cell=cell_text.cell,
                cell_line=match.line,
                in_output=cell_text.in_output,
            )
            findings.append(Finding(location, match.detector, match.secret, match.variable))
    return findings


def _lines_of(raw: str, secret: str) -> Iterator[int]:
    """The file lines holding each occurrence of ``secret`` (as JSON spells it), in order."""
    spelled = json.dumps(secret)[1:-1]
    for found in re.finditer(re.escape(spelled), raw):
        yield raw.count("\n", 0, found.start()) + 1
