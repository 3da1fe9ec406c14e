"""The ``tollway scan`` command: find provider keys in a tree, optionally move them in.

Exit codes: 0 nothing found, 1 keys found (so it can gate CI), 2 usage error,
3 ``--import`` could not use the gateway (unreachable, admin key refused).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from tollway.scan.findings import ScanReport
    from tollway.scan.importer import ImportResult

EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_IMPORT_FAILED = 3

scan_app = typer.Typer(add_completion=False, help="Find provider API keys in source trees.")


@dataclass(frozen=True, slots=True)
class Gateway:
    """Where ``--import`` sends keys: the gateway URL and the admin key for it."""

    url: str
    admin_key: str = field(repr=False)


@scan_app.command("scan")
def scan(
    path: Annotated[Path, typer.Argument(help="Directory (or single file) to scan", exists=True)],
    import_keys: Annotated[
        bool,
        typer.Option(
            "--import",
            help="Store each key in the gateway vault (admin key in $TOLLWAY_ADMIN_KEY), "
            "create a virtual key per service and print the lines that replace each key",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON (keys masked)")
    ] = False,
    include_ignored: Annotated[
        bool,
        typer.Option("--include-ignored", help="Also scan files .gitignore excludes"),
    ] = False,
    gateway_url: Annotated[
        str | None,
        typer.Option(envvar="TOLLWAY_URL", help="The gateway for --import"),
    ] = None,
) -> None:
    """Find provider API keys hard-coded in PATH; show them masked; exit 1 if any."""
    from tollway.scan.scanner import scan_path

    gateway = _gateway(gateway_url) if import_keys else None
    report = scan_path(path, include_ignored=include_ignored)
    imports: list[ImportResult] | None = None
    failure: str | None = None
    if gateway is not None and report.findings:
        imports, failure = _import(report, gateway, _default_service(path))
    _show(report, imports, gateway, as_json)
    if failure is not None:
        typer.echo(f"tollway scan --import: {failure}", err=True)
        raise typer.Exit(EXIT_IMPORT_FAILED)
    raise typer.Exit(EXIT_FOUND if report.findings else 0)


def _gateway(url: str | None) -> Gateway:
    """The gateway from the option or environment; exit 2 when it is incomplete."""
    from tollway.admin.cli import header_value_problem

    admin_key = os.environ.get("TOLLWAY_ADMIN_KEY", "").strip()
    problems = []
    if not url:
        problems.append("set TOLLWAY_URL (or --gateway-url) to the gateway's address")
    elif not url.startswith(("http://", "https://")):
        problems.append(f"the gateway URL must start with http:// or https://, not {url!r}")
    if not admin_key:
        problems.append("set TOLLWAY_ADMIN_KEY to an admin key of the gateway")
    elif (problem := header_value_problem(admin_key)) is not None:
        problems.append(f"TOLLWAY_ADMIN_KEY {problem}")  # never the key itself
    if problems:
        for problem in problems:
            typer.echo(f"tollway scan --import: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE)
    assert url is not None
    return Gateway(url.rstrip("/"), admin_key)


def _import(
    report: ScanReport, gateway: Gateway, default_service: str
) -> tuple[list[ImportResult] | None, str | None]:
    """The import results, or None and why the gateway could not be used."""
    from tollway.scan.importer import AdminClient, ImportFailed, import_findings

    client = AdminClient.connect(gateway.url, gateway.admin_key)
    try:
        return import_findings(report.findings, client, gateway.url, default_service), None
    except ImportFailed as exc:
        return None, str(exc)
    finally:
        client.close()


def _show(
    report: ScanReport,
    imports: list[ImportResult] | None,
    gateway: Gateway | None,
    as_json: bool,
) -> None:
    from tollway.scan import report as render

    if as_json:
        typer.echo(render.dump_json(render.findings_json(report, imports)))
        return
    render.render_findings(report, _console(stderr=False))
    render.render_skipped(report, _console(stderr=True))
    if imports is not None and gateway is not None:
        render.render_imports(imports, gateway.url, _console(stderr=False))


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Logs and CI: wide enough that a path and a masked key stay on one line.
        console.width = 160
    return console


def _default_service(path: Path) -> str:
    """The service of files at the top of the scan: the directory's name, or file's stem."""
    resolved = path.resolve()
    return resolved.name if resolved.is_dir() else resolved.stem


def main() -> None:
    """``python -m tollway.scan``."""
    scan_app(prog_name="tollway scan")
