"""``tollway logs list|export|verify``: the request log from the command line.

``list`` and ``export`` talk to a running gateway's admin API (``TOLLWAY_URL``,
``TOLLWAY_ADMIN_KEY``), so they show what that key may read. ``verify`` reads the store
itself (``--store-url``, else ``TOLLWAY_STORE_URL``, else the config file's ``store.url``)
and checks every hash chain (telemetry/chain.py); it exits 1 when one is broken (or, with
``--require-chain``, has no hashes). Placeholders (rows the store refused) are listed apart;
``--rejected`` checks each against the row set aside for it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tollway.admin.cli import (
    JsonOption,
    KeyOption,
    SinceFilter,
    SourceIpFilter,
    UntilFilter,
    UrlOption,
    authorization,
    call,
    fail,
    gateway_url,
    print_json,
    table_console,
    terminal_text,
    unreachable,
)

logs = typer.Typer(no_args_is_help=True, help="The request log.")

_errors = Console(stderr=True, soft_wrap=True)  # one line per error, for logs and grep
LIST_COLUMNS: list[tuple[str, Literal["left", "right"], int]] = [
    ("UTC", "left", 14), ("key", "left", 8), ("model", "left", 5), ("status", "left", 3),
    ("in/out", "right", 6), ("cache r/w", "right", 3), ("USD", "right", 8), ("ms", "right", 2),
    ("request", "left", 7),
]  # fmt: skip
"""Columns of ``logs list``: name, alignment, and the width kept on a narrow terminal."""

UserFilter = Annotated[str | None, typer.Option("--user", help="User id")]
TeamFilter = Annotated[str | None, typer.Option("--team", help="Team id")]
KeyFilter = Annotated[str | None, typer.Option("--key", help="Key id")]
ModelFilter = Annotated[str | None, typer.Option("--model", help="Model asked for")]
StatusFilter = Annotated[str | None, typer.Option("--status", help="e.g. 200, 429, 5xx, ok, error")]


def _filters(**given: str | None) -> dict[str, str]:
    # An empty value is sent: the gateway answers it with a 400 naming the filter, rather
    # than the CLI listing every row as if the filter had not been asked for.
    return {name: value for name, value in given.items() if value is not None}


@logs.command("list")
def logs_list(
    url: UrlOption,
    admin_key: KeyOption,
    user: UserFilter = None,
    team: TeamFilter = None,
    key: KeyFilter = None,
    model: ModelFilter = None,
    status: StatusFilter = None,
    source_ip: SourceIpFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: JsonOption = False,
) -> None:
    """The newest requests, as a table (or JSON with --json)."""
    params = _filters(
        user=user, team=team, key=key, model=model, status=status, source_ip=source_ip,
        since=since, until=until, cursor=cursor,
    )  # fmt: skip
    page = call(url, admin_key, "GET", "/admin/logs", params={**params, "limit": str(limit)})
    if as_json:
        print_json(page)
        return
    table_console().print(_table(page["data"]))
    if page.get("next_cursor"):
        typer.echo(f"more: --cursor {page['next_cursor']}")


def _table(rows: list[dict[str, Any]]) -> Table:
    """Records as a compact table (key ids cut to 8 characters; input tokens include the
    cache reads and writes shown apart; the request id last, where a narrow terminal cuts it;
    --json has everything)."""
    table = Table(
        title="request log (newest first)", box=box.SIMPLE_HEAD, pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    for name, justify, least in LIST_COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", min_width=least)
    for row in rows:
        model = row["model"]
        if row["served_model"] and row["served_model"] != model:
            model = f"{model} → {row['served_model']}"
        latency = row["latency_ms"]
        status = Text(str(row["status"]))
        if row.get("refused"):
            status = Text("refused by the store (placeholder)", style="yellow")
        elif row["error_code"]:
            status = Text(f"{row['status']} {row['error_code']}", style="red")
        cached, writes = row.get("cached_tokens", 0), row.get("cache_write_tokens", 0)
        # The model and the request id are the client's text: never markup, nor controls.
        table.add_row(
            row["at"][5:19].replace("T", " "),
            Text((row["key_id"] or row["principal_kind"] or "")[:8]),
            terminal_text(model),
            status,
            f"{row['input_tokens']}/{row['output_tokens']}",
            f"{cached}/{writes}" if cached or writes else "",
            f"{row['cost_usd']:.6f}",
            "" if latency is None else f"{latency:.0f}",
            terminal_text(row["request_id"]),
        )
    return table


@logs.command("export")
def logs_export(
    url: UrlOption,
    admin_key: KeyOption,
    form: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
    user: UserFilter = None,
    team: TeamFilter = None,
    key: KeyFilter = None,
    model: ModelFilter = None,
    status: StatusFilter = None,
    source_ip: SourceIpFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
) -> None:
    """Every matching request, newest first, streamed as CSV or JSON Lines."""
    if form not in ("csv", "jsonl"):
        _errors.print("[red]--format must be csv or jsonl[/red]")
        raise typer.Exit(2)
    params = _filters(
        user=user, team=team, key=key, model=model, status=status, source_ip=source_ip,
        since=since, until=until, format=form,
    )  # fmt: skip
    base = gateway_url(url)
    sink = output.open("wb") if output is not None else sys.stdout.buffer
    try:
        with httpx.stream(
            "GET",
            base + "/admin/logs",
            params=params,
            headers=authorization(admin_key),
            timeout=httpx.Timeout(30, read=300),
        ) as response:
            if response.status_code >= 400:
                response.read()
                fail(response, url)
            for piece in response.iter_bytes():
                sink.write(piece)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # no answer began
        _errors.print(f"[red]{escape(unreachable(url, exc, timeout=30))}[/red]")
        raise typer.Exit(1) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _errors.print(f"[red]the export failed: {type(exc).__name__}: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    finally:
        sink.flush()
        if output is not None:
            sink.close()


@logs.command("verify")
def logs_verify(
    store_url: Annotated[
        str | None,
        typer.Option("--store-url", envvar="TOLLWAY_STORE_URL", help="The store's database URL"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file whose store.url to use"),
    ] = None,
    rejected: Annotated[
        list[Path] | None,
        typer.Option(
            "--rejected",
            help="A spool's rejected/ directory (repeat for each gateway's): check every "
            "placeholder against the row set aside for it",
        ),
    ] = None,
    require_chain: Annotated[
        bool,
        typer.Option(
            "--require-chain",
            help="A chain without hashes fails too: with request_log.chain on, every chain "
            "written has them, so one without had them cleared",
        ),
    ] = False,
) -> None:
    """Check the request log's hash chains; exit 1 at the first broken record of any chain
    (or, with --rejected, at a placeholder no set-aside row confirms; with --require-chain,
    at a chain without hashes)."""
    url = store_url or _configured_store_url(config)
    reports = asyncio.run(_verify(url, rejected))
    if not reports:
        typer.echo("no request log records")
        return
    failed = 0
    for report in reports:
        span = f"seq {report.first_seq}..{report.last_seq}, {report.records} records"
        refusals = _refusals(report.refused, checked=rejected is not None)
        if not report.ok:
            failed += 1
            typer.echo(
                f"chain {report.chain_id}: BROKEN at record id {report.broken_id} "
                f"(seq {report.broken_seq}): {report.problem}"
            )
        elif not report.chained and require_chain:
            # Clearing every row's hashes (after editing one) reads as a chain written with
            # chain: false; only the operator knows that none was.
            failed += 1
            typer.echo(f"chain {report.chain_id}: NOT CHAINED ({span}{refusals}): no hashes")
        elif not report.chained:
            typer.echo(f"chain {report.chain_id}: not chained ({span}{refusals})")
        else:
            start = "" if report.first_seq == 1 else " (older records purged)"
            typer.echo(f"chain {report.chain_id}: OK ({span}{start}{refusals}); head {report.head}")
        if report.ok and report.unmatched:
            failed += 1
            typer.echo(
                f"chain {report.chain_id}: UNCONFIRMED placeholders (no set-aside row): seq "
                + ", ".join(map(str, report.unmatched))
            )
    if failed:
        raise typer.Exit(1)


def _refusals(seqs: tuple[int, ...], *, checked: bool) -> str:
    """How a chain's placeholders are listed: refusals by the store, not tampering; and,
    unless checked against the set-aside rows, that the chain does not cover what they say
    (a placeholder's columns are not in its hash, so only its set-aside row can vouch)."""
    if not seqs:
        return ""
    shown = ", ".join(map(str, seqs[:20])) + (", ..." if len(seqs) > 20 else "")
    unchecked = "" if checked else " (their contents not checked: give --rejected DIR)"
    return f"; {len(seqs)} refused by the store, placeholders at seq {shown}{unchecked}"


def _configured_store_url(config: Path | None) -> str:
    from tollway.config import ConfigError, load_settings

    if config is None and os.environ.get("TOLLWAY_CONFIG"):
        config = Path(os.environ["TOLLWAY_CONFIG"])
    if config is None:
        _errors.print("[red]give --store-url, TOLLWAY_STORE_URL or --config[/red]")
        raise typer.Exit(2)
    try:
        return load_settings(config).store.url
    except ConfigError as exc:
        _errors.print(str(exc))
        raise typer.Exit(2) from None


async def _verify(url: str, rejected: list[Path] | None) -> Any:
    from tollway.store import Store, StoreError
    from tollway.telemetry.chain import rejected_rows, verify_chains

    set_aside = None
    if rejected:
        set_aside = {}
        for directory in rejected:
            if not directory.is_dir():
                _errors.print(f"[red]{directory} is not a directory[/red]")
                raise typer.Exit(2)
            set_aside.update(rejected_rows(directory))
    store = Store(url)
    try:
        await store.open()
        return await verify_chains(store, set_aside=set_aside)
    except StoreError as exc:
        _errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        await store.close()
