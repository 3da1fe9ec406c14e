"""``tollway credentials reencrypt``: the vault key change's last step before dropping the old
key (docs/identity.md, "Changing the vault key")."""

from __future__ import annotations

import json

import typer

from tollway.admin.cli import JsonOption, KeyOption, UrlOption, call


def credentials_reencrypt(
    url: UrlOption, admin_key: KeyOption, as_json: JsonOption = False
) -> None:
    """Encrypt every stored credential again with the first key of the gateway's
    TOLLWAY_VAULT_KEY, so the older keys can be dropped; exits 1 naming any credential no
    key decrypts. Safe to run again."""
    result = call(url, admin_key, "POST", "/admin/credentials/reencrypt")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{result['reencrypted']} credential(s) re-encrypted, {result['current']} already "
        "under the first key: every stored credential is now encrypted with the first key of "
        "TOLLWAY_VAULT_KEY, which the replicas may now run with alone"
    )
