"""``tollway teams|users|keys|credentials|audit``: the admin API from the command line.

Talks to a running gateway at ``TOLLWAY_URL`` with ``TOLLWAY_ADMIN_KEY`` (any key whose role
allows the action). Prints readable tables, or with ``--json`` the admin API's answer as it
came: one JSON document on stdout (the record a create answers with; ``{"data": [...]}`` for
a list, with ``next_cursor`` where it pages), nothing else there; errors go to stderr, with
exit 1.
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

UrlOption = Annotated[str, typer.Option("--url", envvar="TOLLWAY_URL", help="Gateway URL")]
KeyOption = Annotated[
    str,
    typer.Option(
        "--admin-key", envvar="TOLLWAY_ADMIN_KEY", help="Admin (or team) key", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
SourceIpFilter = Annotated[
    str | None, typer.Option("--source-ip", help="Address they came from (one, not a network)")
]
SinceFilter = Annotated[
    str | None, typer.Option("--since", help="ISO 8601 time or an age: 15m, 24h, 7d")
]
UntilFilter = Annotated[str | None, typer.Option("--until", help="ISO 8601 time or an age")]

teams = typer.Typer(no_args_is_help=True, help="Teams and their members.")
users = typer.Typer(no_args_is_help=True, help="People and service accounts.")
keys = typer.Typer(no_args_is_help=True, help="Virtual keys.")
credentials = typer.Typer(no_args_is_help=True, help="Provider credentials in the vault.")
audit = typer.Typer(no_args_is_help=True, help="The audit trail.")

_console = Console()
_errors = Console(stderr=True, soft_wrap=True)  # one line per error, for logs and grep
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Control characters (C0, DEL, C1) and the bidirectional overrides and isolates."""


def terminal_text(value: str) -> Text:
    """``value`` as a table cell, never markup, with every control character and
    bidirectional override shown as its escape (``\\x1b``, ``\\u202e``): much of what is
    listed is others' text (the model a client asked for, a key's name), and an ESC sequence
    printed as it came would drive the admin's terminal (retitle it, write its clipboard,
    hide rows), an override would reorder what is shown."""
    return Text(_UNPRINTABLE.sub(_escape_character, value))


def _escape_character(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def call(
    url: str,
    key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One admin API call; prints the gateway's error message and exits 1 on failure."""
    try:
        response = httpx.request(
            method,
            gateway_url(url) + path,
            json=body,
            params=params,
            timeout=30,
            headers=authorization(key),
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _errors.print(f"[red]{escape(unreachable(url, exc, timeout=30))}[/red]")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        fail(response, url)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        # A web server that is not the gateway (a proxy's sign-in page, another service on
        # that port) answered: say so rather than fail on its HTML.
        _errors.print(f"[red]{escape(_not_ours(url))}: {escape(path)} answered without JSON[/red]")
        raise typer.Exit(1) from None


def gateway_url(url: str) -> str:
    """``url`` without its trailing slash; exits 1 naming the problem unless it is an
    ``http://`` or ``https://`` URL (``127.0.0.1:4000`` alone is not one)."""
    if not url.startswith(("http://", "https://")):
        _errors.print(
            f"[red]the gateway URL must start with http:// or https:// "
            f"(--url or TOLLWAY_URL, e.g. http://127.0.0.1:4000), not {escape(repr(url))}[/red]"
        )
        raise typer.Exit(1)
    return url.rstrip("/")


def authorization(key: str) -> dict[str, str]:
    """The ``Authorization`` header of the admin key (``--admin-key``, ``TOLLWAY_ADMIN_KEY``),
    without the whitespace around it (a key read from a file, or pasted, keeps its line end;
    the gateway reads a header's value without it too). Exits 1 saying what is wrong when
    the key holds a character no HTTP header carries: httpx refused it with the whole
    header in its message (``Illegal header value b'Bearer <key>\\r'``), printed as if the
    gateway could not be reached, or failed with a traceback. The key itself is never
    printed."""
    secret = key.strip()
    problem = header_value_problem(secret)
    if problem is not None:
        said = f"the admin key (--admin-key or TOLLWAY_ADMIN_KEY) {problem}"
        _errors.print(f"[red]{escape(said)}[/red]")
        raise typer.Exit(1)
    return {"Authorization": f"Bearer {secret}"}


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent in an HTTP header, saying where (never what it holds);
    ``None`` when it can."""
    for position, char in enumerate(value, 1):
        if not " " <= char <= "~":
            what = (
                f"the control character \\x{ord(char):02x}"
                if char <= "\x7f"
                else "a non-ASCII character"
            )
            return f"holds {what} at character {position}, which no HTTP header can carry"
    return None


def fail(response: httpx.Response, url: str) -> NoReturn:
    """Print an error answer of the admin API (the gateway's message) and exit 1."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        message = f"{_not_ours(url)}: {text}" if text else _not_ours(url)
    _errors.print(f"[red]{response.status_code}: {escape(message)}[/red]")
    raise typer.Exit(1)


def unreachable(url: str, exc: Exception, *, timeout: float) -> str:
    """Why the gateway at ``url`` gave no answer, in words an operator can act on: a refused
    connection, a name that does not resolve, TLS spoken to a plain-HTTP port, a
    certificate no trusted CA signed (and how to trust its CA), no answer in time."""
    where = f"cannot reach the gateway at {url}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{where}: no answer within {timeout:g} s"
    reason = str(exc) or type(exc).__name__
    tls = re.sub(r" \(_ssl\.c:\d+\)$", "", reason)  # where in OpenSSL's glue: noise here
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        detail = tls.removeprefix("[SSL: CERTIFICATE_VERIFY_FAILED] ")
        return (
            f"{where}: its TLS certificate is not trusted ({detail}); if a private CA signed "
            "it, set SSL_CERT_FILE to that CA's certificate (PEM)"
        )
    if "WRONG_VERSION_NUMBER" in reason or "record layer failure" in reason:
        # What OpenSSL makes of a plain-HTTP answer to its hello.
        return f"{where}: the TLS handshake failed ({tls}); does it take http://?"
    if reason.startswith("[SSL"):
        return f"{where}: the TLS handshake failed ({tls})"
    if "Connection refused" in reason:
        return f"{where}: connection refused"
    if "Name or service not known" in reason or "nodename nor servname" in reason:
        return f"{where}: the host name does not resolve"
    return f"{where}: {reason}"


def _not_ours(url: str) -> str:
    return f"not a Tollway answer (is {url} the gateway?)"


def segment(value: str) -> str:
    """``value`` as one path segment: a deployment id's ``#`` or a model name's ``/`` would
    otherwise end the path or split it."""
    return quote(value, safe="")


def show(answer: dict[str, Any], columns: list[str], as_json: bool, title: str) -> None:
    """A list answer of the admin API (``{"data": [...], ...}``): as it came with ``--json``,
    else its rows as a table."""
    if as_json:
        print_json(answer)
        return
    table_rows(answer["data"], columns, title)


def show_record(record: dict[str, Any], columns: list[str], as_json: bool, title: str) -> None:
    """One record the admin API answered with: as it came with ``--json``, else a table."""
    if as_json:
        print_json(record)
        return
    table_rows([record], columns, title)


def print_json(answer: Any) -> None:
    """``--json``: the admin API's answer as it came, one JSON document and nothing else on
    stdout (messages and errors go to stderr), so a script can read it whatever the
    command."""
    typer.echo(json.dumps(answer, indent=2))


def table_rows(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Rows as a table."""
    table = Table(title=title)
    for column in columns:
        # An id is copied into the next command: folded onto two lines when the table is
        # too wide, never cut to an ellipsis.
        table.add_column(column, overflow="fold" if column in ("id", "scope_id") else "ellipsis")
    for row in rows:
        # Text, not a string: Rich would read a cell's "[...]" as markup, and much of what
        # is listed was written by others (a key's name, the model a client asked for).
        table.add_row(*(terminal_text(_cell(row.get(column))) for column in columns))
    table_console().print(table)


def table_console() -> Console:
    """The console tables print on: piped (grep, a script, CI), wide enough that ids and
    names stay on one line (Rich would cut them to 80 columns)."""
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        return Console(width=200)
    return _console


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and "e" in repr(value):
        # A small cost (6.8e-05) in plain digits, as the request log and headers show it.
        return f"{value:.10f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


OidcIssuerOption = Annotated[
    str | None,
    typer.Option(
        "--oidc-issuer", help="With --oidc-group: the issuer (one of auth.oidc[]) of the group"
    ),
]
OidcGroupOption = Annotated[
    str | None,
    typer.Option(
        "--oidc-group",
        help="With --oidc-issuer: the group (team_claim value) the team stands for; its "
        "sign-ins join the team (docs/oidc.md)",
    ),
]
TEAM_COLUMNS = ["id", "name", "organization", "oidc_issuer", "oidc_group"]


def _oidc_group(issuer: str | None, group: str | None) -> dict[str, str]:
    """The body fields of ``--oidc-issuer`` and ``--oidc-group``, which go together (as the
    admin API takes them: a group is one issuer's)."""
    if (issuer is None) != (group is None):
        given, missing = ("--oidc-issuer", "--oidc-group") if group is None else (
            "--oidc-group", "--oidc-issuer")  # fmt: skip
        raise typer.BadParameter(
            f"{given} needs {missing}: a team stands for one issuer's group", param_hint=missing
        )
    if issuer is None or group is None:
        return {}
    return {"oidc_issuer": issuer, "oidc_group": group}


@teams.command("create")
def teams_create(
    url: UrlOption,
    admin_key: KeyOption,
    name: str,
    organization: Annotated[str | None, typer.Option()] = None,
    oidc_issuer: OidcIssuerOption = None,
    oidc_group: OidcGroupOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a team, standing for an OIDC group if given (made before anyone of it signs in,
    so its budgets and limits can be set first)."""
    body = {"name": name, "organization": organization, **_oidc_group(oidc_issuer, oidc_group)}
    team = call(url, admin_key, "POST", "/admin/teams", body)
    show_record(team, TEAM_COLUMNS, as_json, "team created")


@teams.command("update")
def teams_update(
    url: UrlOption,
    admin_key: KeyOption,
    team_id: str,
    name: Annotated[str | None, typer.Option(help="A new name")] = None,
    organization: Annotated[str | None, typer.Option(help="A new organisation")] = None,
    oidc_issuer: OidcIssuerOption = None,
    oidc_group: OidcGroupOption = None,
    clear_oidc_group: Annotated[
        bool,
        typer.Option(
            "--clear-oidc-group",
            help="The team stands for no OIDC group any more (docs/oidc.md)",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Change a team: its name, organisation, or the OIDC group it stands for."""
    body: dict[str, str | None] = {"name": name, "organization": organization}
    body = {field: value for field, value in body.items() if value is not None}
    group = _oidc_group(oidc_issuer, oidc_group)
    if clear_oidc_group and group:
        raise typer.BadParameter(
            "set a group or clear it, not both", param_hint="--clear-oidc-group"
        )
    body.update({"oidc_issuer": None, "oidc_group": None} if clear_oidc_group else group)
    if not body:
        raise typer.BadParameter(
            "nothing to change: give --name, --organization, --oidc-issuer with --oidc-group, "
            "or --clear-oidc-group",
            param_hint="TEAM_ID",
        )
    team = call(url, admin_key, "PATCH", f"/admin/teams/{segment(team_id)}", body)
    show_record(team, TEAM_COLUMNS, as_json, "team updated")


@teams.command("list")
def teams_list(url: UrlOption, admin_key: KeyOption, as_json: JsonOption = False) -> None:
    """List teams."""
    answer = call(url, admin_key, "GET", "/admin/teams")
    show(answer, [*TEAM_COLUMNS, "created_at"], as_json, "teams")


@teams.command("add-member")
def teams_add_member(
    url: UrlOption,
    admin_key: KeyOption,
    team_id: str,
    user_id: str,
    role: Annotated[str, typer.Option(help="team_admin, member or viewer")] = "member",
) -> None:
    """Add a user to a team (or change their role in it)."""
    call(
        url,
        admin_key,
        "POST",
        f"/admin/teams/{segment(team_id)}/members",
        {"user_id": user_id, "role": role},
    )
    typer.echo(f"{user_id} is now {role} of {team_id}")


@users.command("create")
def users_create(
    url: UrlOption,
    admin_key: KeyOption,
    email: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str, typer.Option(help="admin, team_admin, member, viewer")] = "member",
    service: Annotated[bool, typer.Option(help="A service account")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user or service account."""
    body = {"email": email, "name": name, "role": role, "kind": "service" if service else "human"}
    user = call(url, admin_key, "POST", "/admin/users", body)
    show_record(user, ["id", "email", "name", "kind", "role"], as_json, "user created")


@users.command("list")
def users_list(
    url: UrlOption,
    admin_key: KeyOption,
    team: Annotated[str | None, typer.Option(help="Only this team's users")] = None,
    as_json: JsonOption = False,
) -> None:
    """List users."""
    params = {"team_id": team} if team else None
    answer = call(url, admin_key, "GET", "/admin/users", params=params)
    show(answer, ["id", "email", "name", "kind", "role", "blocked"], as_json, "users")


@users.command("block")
def users_block(
    url: UrlOption,
    admin_key: KeyOption,
    user_id: str,
    unblock: Annotated[bool, typer.Option("--unblock")] = False,
) -> None:
    """Block a user (every key of theirs stops working at once), or unblock."""
    call(url, admin_key, "PATCH", f"/admin/users/{segment(user_id)}", {"blocked": not unblock})
    typer.echo(f"{user_id} {'unblocked' if unblock else 'blocked'}")


KEY_COLUMNS = ["id", "name", "prefix", "status", "allowed_models", "tags", "expires_at"]


@keys.command("create")
def keys_create(
    url: UrlOption,
    admin_key: KeyOption,
    name: Annotated[str, typer.Option(help="What the key is for")],
    team: Annotated[str | None, typer.Option(help="Team id")] = None,
    user: Annotated[str | None, typer.Option(help="Owner user id")] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="Allowed model (name or glob); repeat for several")
    ] = None,
    expires_in: Annotated[str | None, typer.Option(help="e.g. 720h")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value; repeatable")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; the key itself is printed once."""
    pairs = [item.split("=", 1) for item in tag or []]
    if any(len(pair) != 2 for pair in pairs):
        raise typer.BadParameter("--tag takes KEY=VALUE, e.g. service=search", param_hint="--tag")
    tags = dict(pairs)
    body = {
        "name": name,
        "team_id": team,
        "user_id": user,
        "allowed_models": model or [],
        "expires_in": expires_in,
        "tags": tags,
    }
    created = call(url, admin_key, "POST", "/admin/keys", body)
    if as_json:
        print_json(created)
        return
    table_rows([created], KEY_COLUMNS, "key created")
    typer.echo(f"\nKey (shown once, store it now): {created['key']}")


@keys.command("list")
def keys_list(
    url: UrlOption,
    admin_key: KeyOption,
    team: Annotated[str | None, typer.Option()] = None,
    user: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (never their secrets)."""
    params = {k: v for k, v in {"team_id": team, "user_id": user, "status": status}.items() if v}
    answer = call(url, admin_key, "GET", "/admin/keys", params=params)
    show(answer, KEY_COLUMNS, as_json, "keys")


@keys.command("rotate")
def keys_rotate(
    url: UrlOption,
    admin_key: KeyOption,
    key_id: str,
    grace: Annotated[
        str | None, typer.Option(help="How long the old key keeps working, e.g. 24h (at most 168h)")
    ] = None,
) -> None:
    """Replace a key by a new one (printed once)."""
    body = {"grace_period": grace} if grace else {}
    created = call(url, admin_key, "POST", f"/admin/keys/{segment(key_id)}/rotate", body)
    typer.echo(f"New key {created['id']} (shown once, store it now): {created['key']}")


def _set_status(action: str) -> Any:
    def change(url: UrlOption, admin_key: KeyOption, key_id: str) -> None:
        record = call(url, admin_key, "POST", f"/admin/keys/{segment(key_id)}/{action}")
        typer.echo(f"{key_id} is now {record['status']}")

    change.__doc__ = f"{action.capitalize()} a key; effective at once."
    return change


for _action in ("revoke", "block", "unblock"):
    keys.command(_action)(_set_status(_action))


@credentials.command("add")
def credentials_add(
    url: UrlOption,
    admin_key: KeyOption,
    name: str,
    provider: str,
    secret: Annotated[str, typer.Option(prompt=True, hide_input=True, help="The provider key")],
    rotate: Annotated[bool, typer.Option(help="Replace an existing credential")] = False,
) -> None:
    """Add (or with --rotate replace) a provider credential; use it as api_key: vault:NAME."""
    body = {"name": name, "provider": provider, "secret": secret}
    if rotate:
        call(url, admin_key, "PUT", f"/admin/credentials/{segment(name)}", body)
    else:
        call(url, admin_key, "POST", "/admin/credentials", body)
    typer.echo(f"credential {name} stored; use it as api_key: vault:{name}")


@credentials.command("list")
def credentials_list(url: UrlOption, admin_key: KeyOption, as_json: JsonOption = False) -> None:
    """List provider credentials (never their secrets)."""
    answer = call(url, admin_key, "GET", "/admin/credentials")
    show(answer, ["name", "provider", "created_at", "rotated_at"], as_json, "credentials")


@audit.command("list")
def audit_list(
    url: UrlOption,
    admin_key: KeyOption,
    actor: Annotated[str | None, typer.Option(help="A key prefix, user or principal id")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. key.*")] = None,
    target_type: Annotated[str | None, typer.Option(help="key, team, user, budget...")] = None,
    target_id: Annotated[str | None, typer.Option(help="The record's id")] = None,
    source_ip: SourceIpFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    limit: Annotated[int, typer.Option()] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: JsonOption = False,
) -> None:
    """The newest audit events, a page at a time."""
    filters = {
        "actor": actor, "action": action, "target_type": target_type, "target_id": target_id,
        "source_ip": source_ip, "since": since, "until": until, "cursor": cursor,
    }  # fmt: skip
    # An empty value is sent (the gateway answers a 400 naming it), as `logs list` does: one
    # dropped here listed every event as if the filter had not been asked for.
    params = {"limit": str(limit), **{k: v for k, v in filters.items() if v is not None}}
    answer = call(url, admin_key, "GET", "/admin/audit", params=params)
    show(
        answer, ["at", "actor", "action", "target_type", "target_id", "source_ip"], as_json, "audit"
    )
    if not as_json and answer.get("next_cursor"):
        typer.echo(f"more: --cursor {answer['next_cursor']}")
