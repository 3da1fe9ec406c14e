"""What a scan reports: findings (masked when shown) and the files it could not read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tollway.scan.detectors import Detector
from tollway.scan.files import Skipped
from tollway.scan.masking import fingerprint, mask


@dataclass(frozen=True, slots=True)
class Location:
    """Where a key is: file and line, and for notebooks the cell and the line within it."""

    path: str
    """POSIX path relative to the scanned directory."""
    line: int
    column: int
    cell: int | None = None
    cell_line: int | None = None
    in_output: bool = False

    def describe(self) -> str:
        """``path:line``, with ``(cell N, line M)`` or ``(cell N output, line M)`` added."""
        text = f"{self.path}:{self.line}"
        if self.cell is not None:
            where = f"cell {self.cell} output" if self.in_output else f"cell {self.cell}"
            text += f" ({where}, line {self.cell_line})"
        return text


@dataclass(frozen=True, slots=True)
class Finding:
    """A key found in the tree; ``secret`` is kept for ``--import`` and never shown."""

    location: Location
    detector: Detector
    secret: str = field(repr=False)
    variable: str | None = None
    """The ``UPPER_SNAKE`` name the key is assigned to on its line, if any."""

    @property
    def masked(self) -> str:
        """The key as it may be shown: ``sk-proj-Ab…wxyz``."""
        return mask(self.secret, self.detector.prefix)

    @property
    def fingerprint(self) -> str:
        """A digest telling keys apart without revealing them."""
        return fingerprint(self.secret)

    def to_json(self) -> dict[str, Any]:
        """The finding as JSON-ready data: masked, never the key itself."""
        location = self.location
        return {
            "path": location.path,
            "line": location.line,
            "column": location.column,
            "cell": location.cell,
            "cell_line": location.cell_line,
            "in_output": location.in_output,
            "provider": self.detector.provider,
            "kind": self.detector.kind,
            "detector": self.detector.name,
            "needs_context": self.detector.needs_context,
            "masked": self.masked,
            "fingerprint": self.fingerprint,
            "variable": self.variable,
            "hint": self.detector.hint,
        }


@dataclass(frozen=True, slots=True)
class ScanReport:
    """Everything one scan found, and what it left out."""

    root: Path
    """The scanned directory (for a single file, the directory holding it)."""
    findings: tuple[Finding, ...]
    files_scanned: int
    skipped: tuple[Skipped, ...] = ()
    ignored_env_files: tuple[str, ...] = ()
    """``.env`` files .gitignore kept out of the scan (``--include-ignored`` reads them)."""

    def count_by_provider(self) -> dict[str, int]:
        """How many findings each provider has, most first."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.detector.provider] = counts.get(finding.detector.provider, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
