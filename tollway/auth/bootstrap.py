"""The first admin: from config or ``TOLLWAY_ADMIN_KEY``, or made once on an empty store."""

from __future__ import annotations

from collections.abc import Mapping

from tollway.auth.identity import Actor, Identity
from tollway.auth.keys import KeyEntry
from tollway.auth.principal import Principal
from tollway.store import NewKey, hash_key

ADMIN_KEY_ENV = "TOLLWAY_ADMIN_KEY"
MIN_ADMIN_KEY_LENGTH = 20
BOOTSTRAP_ID = "bootstrap-admin"
_BOOTSTRAP = Principal(kind="key", id=BOOTSTRAP_ID, role="admin", user=BOOTSTRAP_ID)


class BootstrapError(Exception):
    """The configured admin key cannot be used."""


def pin_admin_key(identity: Identity, secret: str) -> None:
    """Accept ``secret`` as an admin key without storing it (it lives in config or env).

    The key is the value without the whitespace around it: a request's credential is read
    that way (``auth/authenticator.py``), so a ``TOLLWAY_ADMIN_KEY`` that kept a file's line
    end (a Kubernetes secret made from a file) was pinned as a key no client could send,
    and every admin call was a 401. A control character inside one cannot arrive in a
    header either: refused at start, saying where, never what the key is.
    """
    secret = secret.strip()
    if len(secret) < MIN_ADMIN_KEY_LENGTH:
        raise BootstrapError(
            f"the admin key must be at least {MIN_ADMIN_KEY_LENGTH} characters long"
        )
    control = next((at for at, char in enumerate(secret, 1) if char < " " or char == "\x7f"), None)
    if control is not None:
        raise BootstrapError(
            f"the admin key holds a control character at character {control}, which no "
            "request can carry"
        )
    identity.keys.pin(KeyEntry(BOOTSTRAP_ID, hash_key(secret), "active", None, None, _BOOTSTRAP))


async def ensure_admin(identity: Identity) -> str | None:
    """On a store with no admin user, create one with a key and return the key (show it once).

    Replicas starting together on an empty store take turns (a lock on the store), so the
    first makes the admin and the others find it: one admin key, printed by one replica.
    """
    async with identity.store.exclusive("bootstrap-admin"):
        return await _make_first_admin(identity)


async def _make_first_admin(identity: Identity) -> str | None:
    store = identity.store
    if await store.users.find(role="admin"):
        return None
    user = await store.users.create(name=BOOTSTRAP_ID, kind="service", role="admin")
    actor = Actor(_BOOTSTRAP)

    def new(prefix: str, key_hash: str) -> NewKey:
        return NewKey(name="bootstrap admin key", prefix=prefix, key_hash=key_hash, user_id=user.id)

    await identity.load()
    _, secret = await identity.create_key(actor, new)
    return secret


def configured_admin_key(configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The admin key from config (already revealed) or the environment."""
    return configured or environ.get(ADMIN_KEY_ENV) or None
