"""The ``tollway`` command line: serve, config check, mock-provider, and the admin groups."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from tollway.admin import cli as admin_cli
from tollway.admin.logs_cli import logs as logs_app
from tollway.admin.reports_cli import report
from tollway.admin.vault_key_cli import credentials_reencrypt
from tollway.config import (
    ConfigError,
    Settings,
    default_settings,
    load_settings,
    with_environment,
)
from tollway.config.secret_presence import missing_secrets
from tollway.limits.cli import budgets_app, limits_app, spend
from tollway.pricing.cli import prices_app
from tollway.scan import scan_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tollway, the AI gateway.")
config_app = typer.Typer(no_args_is_help=True, help="Work with configuration files.")
app.add_typer(config_app, name="config")
app.add_typer(admin_cli.teams, name="teams")
app.add_typer(admin_cli.users, name="users")
app.add_typer(admin_cli.keys, name="keys")
app.add_typer(admin_cli.credentials, name="credentials")
admin_cli.credentials.command("reencrypt")(credentials_reencrypt)
app.add_typer(admin_cli.audit, name="audit")
app.add_typer(logs_app, name="logs")
app.add_typer(scan_app)
app.add_typer(prices_app)
app.add_typer(budgets_app, name="budgets")
app.add_typer(limits_app, name="limits")
app.command("spend")(spend)
app.command("report")(report)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $TOLLWAY_CONFIG, else the embedded demo default).",
        exists=False,
        dir_okay=False,
    ),
]


def _install_event_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _config_path(config: Path | None) -> Path | None:
    if config is not None:
        return config
    return Path(os.environ["TOLLWAY_CONFIG"]) if os.environ.get("TOLLWAY_CONFIG") else None


def _load(config: Path | None) -> tuple[Settings, str]:
    path = _config_path(config)
    try:
        if path is None:
            return with_environment(default_settings(os.environ), os.environ), "embedded default"
        return with_environment(load_settings(path), os.environ), str(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    # (No brackets in help texts: the help is Rich markup, and "[config: ...]" vanished.)
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: the config's server.host)")
    ] = None,
    port: Annotated[
        int | None,
        # Bounded as server.port is: getaddrinfo took 70000 as 4464 (the port modulo 65536).
        typer.Option(min=0, max=65535, help="Listen port (default: the config's server.port)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the gateway."""
    from tollway.app import STOPPING, AccessLogger, create_app
    from tollway.auth.bootstrap import BootstrapError
    from tollway.auth.vault import MissingCredential
    from tollway.gateway import StartFailure
    from tollway.serving import serve as serve_app
    from tollway.store import StoreError

    if log_level.upper() not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{log_level!r} is not one of {', '.join(LOG_LEVELS).lower()}", param_hint="--log-level"
        )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings, source = _load(config)
    server = settings.server
    host = host or server.host
    port = server.port if port is None else port
    _install_event_loop()
    try:
        # Listening first: a gateway that cannot (the port is taken) touches no store, makes
        # no first admin key; and port 0 is known as the port it got.
        sockets = _listen(host, port)
        port = sockets[0].getsockname()[1]
        models = ", ".join(group.name for group in settings.models) or "(none)"
        logging.getLogger("tollway").info(
            "Tollway on http://%s (config: %s; models: %s)", _address(host, port), source, models
        )
        # The gateway tells the first admin where it listens, so it needs what it listens on;
        # its settings stay the file's, which a reload compares with the file's next version
        # (with --port, every reload said "config sections server changed").
        app = create_app(settings, config_path=_config_path(config), listen=(host, port))
        asyncio.run(
            serve_app(
                app,
                sockets,
                shutdown_timeout=server.shutdown_timeout,
                drain_delay=server.drain_delay,
                on_stop=app[STOPPING],
                access_log=logging.getLogger("aiohttp.access") if server.access_log else None,
                access_log_class=AccessLogger.behind(server.trusted_proxies),
            )
        )
    except (StoreError, BootstrapError, MissingCredential, StartFailure, OSError) as exc:
        # A replica started while its database is down (or not migrated), on a port another
        # process holds, or with an admin key it cannot use: one line saying so, for the
        # operator or a supervisor that restarts it, rather than a page of traceback.
        typer.echo(f"tollway: cannot start: {_start_failure(exc, host, port)}", err=True)
        raise typer.Exit(1) from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets on every address ``host`` names (``::``: both families), on ``port``
    (0: one free port, the same on each); aiohttp listens on them."""
    if host == "::":
        return [_dual_stack_socket(port)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio binds them: each family on its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _dual_stack_socket(port: int) -> socket.socket:
    """A socket on every address of both families, for ``--host ::``.

    asyncio makes the sockets of an IPv6 host IPv6-only, so on ``::`` IPv4 clients were
    refused (a probe over IPv4, the URL the first start prints for the CLI); an operator
    who names the wildcard means every address, as Linux's own default for it does.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


def _start_failure(exc: Exception, host: str, port: int) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        where = _address(host, port)
        return f"{where} is in use (another gateway running?); free it or pick --port"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (--host or server.host)"
    return str(exc)


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The YAML config file")],
    secrets: Annotated[
        bool,
        typer.Option(
            help="Check that every env: variable is set and every file: secret readable here "
            "(--no-secrets when checking on a machine other than the gateway's)."
        ),
    ] = True,
) -> None:
    """Validate a config file; exit 0 when valid, 2 with every problem listed when not."""
    settings, _ = _load(file)
    missing = missing_secrets(settings, os.environ) if secrets else []
    if missing:
        lines = [f"{file}: {len(missing)} problem(s):", *(f"  {file}: {m}" for m in missing)]
        typer.echo("\n".join(lines), err=True)
        raise typer.Exit(2)
    for warning in _unpriced_warnings(settings):
        typer.echo(f"{file}: warning: {warning}", err=True)
    deployments = sum(len(group.deployments) for group in settings.models)
    typer.echo(f"{file}: OK ({len(settings.models)} models, {deployments} deployments)")


def _unpriced_warnings(settings: Settings) -> list[str]:
    """What start-up warns of under ``limits.unpriced: refuse``: the models no priced
    deployment serves (priced as the gateway prices them: config, then the catalog)."""
    if settings.limits.unpriced != "refuse":
        return []
    from tollway.limits.candidates import unpriced_warnings
    from tollway.pricing.catalog import PriceCatalog
    from tollway.routing.table import build_routing_table

    # Any address stands for the embedded simulator: nothing is called.
    table = build_routing_table(settings, "http://127.0.0.1:0", PriceCatalog.load())
    return unpriced_warnings(table)


@app.command("mock-provider")
def mock_provider(
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Listen port")] = 9000,
    ttft_ms: Annotated[float, typer.Option(help="Time to first token, ms")] = 0.0,
    tpot_ms: Annotated[float, typer.Option(help="Time per output token, ms")] = 0.0,
    output_tokens: Annotated[int, typer.Option(help="Default completion length")] = 16,
    cached_tokens: Annotated[
        int, typer.Option(min=0, help="Prompt tokens to report as read from the cache")
    ] = 0,
    cache_write_tokens: Annotated[
        int, typer.Option(min=0, help="Prompt tokens to report as written to the cache")
    ] = 0,
    api_key: Annotated[
        str | None, typer.Option(help="Require this API key", envvar="TOLLWAY_SIM_API_KEY")
    ] = None,
    aws_access_key_id: Annotated[
        str | None,
        typer.Option(help="Bedrock: require SigV4 with this key", envvar="TOLLWAY_SIM_AWS_KEY_ID"),
    ] = None,
    aws_secret_access_key: Annotated[
        str | None,
        typer.Option(help="Bedrock: its secret key", envvar="TOLLWAY_SIM_AWS_SECRET_KEY"),
    ] = None,
    fault: Annotated[str | None, typer.Option(help="Server-wide fault, e.g. status:500")] = None,
    fault_rate: Annotated[float, typer.Option(help="Share of requests the fault hits")] = 1.0,
) -> None:
    """Run the simulated provider (OpenAI, Azure, Mistral, Anthropic, Gemini, Vertex AI and
    Bedrock wire formats)."""
    from tollway.simulator import SimulatorSettings
    from tollway.simulator import serve as serve_simulator

    settings = SimulatorSettings(
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
        api_key=api_key,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        fault=fault,
        fault_rate=fault_rate,
    )
    typer.echo(f"Simulated provider on http://{host}:{port}", err=True)
    serve_simulator(host, port, settings)


def main() -> None:
    """Entry point of the ``tollway`` command."""
    app(prog_name="tollway")


if __name__ == "__main__":  # pragma: no cover
    main()
