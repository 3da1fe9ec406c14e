"""Showing a scan: a rich table and summary for people, JSON for machines; keys masked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tollway.scan.findings import ScanReport

if TYPE_CHECKING:  # the importer pulls in httpx, which a plain scan does not need
    from tollway.scan.importer import ImportResult

_STATUS_STYLE: Mapping[str, str] = MappingProxyType(
    {"stored": "green", "already stored": "cyan", "skipped": "yellow", "failed": "red"}
)


def render_findings(report: ScanReport, console: Console) -> None:
    """The findings table (file:line, provider, kind, masked key) and the counts."""
    if report.findings:
        table = Table(title=f"Provider keys in {report.root}", title_justify="left")
        table.add_column("Location", overflow="fold")
        table.add_column("Provider")
        table.add_column("Kind")
        table.add_column("Key (masked)", no_wrap=True)
        for finding in report.findings:
            table.add_row(
                escape(finding.location.describe()),
                finding.detector.provider,
                finding.detector.kind + (" (in context)" if finding.detector.needs_context else ""),
                escape(finding.masked),
            )
        console.print(table)
    render_summary(report, console)


def render_summary(report: ScanReport, console: Console) -> None:
    """One line of counts per provider, then what was not scanned."""
    counts = report.count_by_provider()
    files = f"{report.files_scanned} file{'s' if report.files_scanned != 1 else ''}"
    if counts:
        per_provider = ", ".join(f"{provider}: {n}" for provider, n in counts.items())
        total = len(report.findings)
        console.print(
            f"[bold red]{total} key{'s' if total != 1 else ''} found[/] in {files} ({per_provider})"
        )
    else:
        console.print(f"[green]No provider keys found[/] in {files}.")


def render_skipped(report: ScanReport, console: Console) -> None:
    """Files not read (large ones by name) and ignored .env files, for stderr."""
    binary = sum(1 for item in report.skipped if item.reason == "binary")
    if binary:
        console.print(f"Skipped {binary} binary file{'s' if binary != 1 else ''}.")
    for item in report.skipped:
        if item.reason != "binary":
            console.print(f"Skipped {escape(item.path)}: {escape(item.reason)}")
    if report.ignored_env_files:
        names = ", ".join(report.ignored_env_files[:5])
        more = len(report.ignored_env_files) - 5
        console.print(
            f"Not scanned (ignored by .gitignore): {escape(names)}"
            + (f" and {more} more" if more > 0 else "")
            + "; add --include-ignored to scan them."
        )


def render_imports(results: Sequence[ImportResult], gateway_url: str, console: Console) -> None:
    """Per finding: what happened to its key, and the lines that replace it."""
    console.print(f"\n[bold]Imported into {escape(gateway_url)}[/]")
    for result in results:
        style = _STATUS_STYLE[result.status]
        credential = f" as [bold]{escape(result.credential)}[/]" if result.credential else ""
        console.print(
            f"{escape(result.finding.location.describe())} {result.finding.detector.provider} "
            f"{escape(result.finding.masked)}: [{style}]{result.status}[/]{credential}"
        )
        if result.detail:
            console.print(f"    {escape(result.detail)}")
        for line in result.lines:
            console.print(f"    {escape(line)}", soft_wrap=True)
    if any(result.lines for result in results):
        console.print(
            "\nReplace each key with the lines under it; virtual keys are shown only once. "
            "Deployments use the stored credentials as [bold]api_key: vault:<name>[/]."
        )


def findings_json(
    report: ScanReport, imports: Sequence[ImportResult] | None = None
) -> dict[str, Any]:
    """The machine-readable report: findings (masked), counts, skipped files, imports."""
    document: dict[str, Any] = {
        "root": str(report.root),
        "files_scanned": report.files_scanned,
        "findings": [finding.to_json() for finding in report.findings],
        "summary": report.count_by_provider(),
        "skipped": [{"path": item.path, "reason": item.reason} for item in report.skipped],
        "ignored_env_files": list(report.ignored_env_files),
    }
    if imports is not None:
        document["imports"] = [result.to_json() for result in imports]
    return document


def dump_json(document: dict[str, Any]) -> str:
    """``document`` as indented JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False)
