"""Records: which keys the gateway may accept at a given time."""

from __future__ import annotations

import datetime as dt

from tollway.store.records import KeyRecord

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)


def key(**fields: object) -> KeyRecord:
    """A key record with test defaults."""
    values: dict[str, object] = {
        "id": "k",
        "name": "k",
        "prefix": "tw-",
        "key_hash": "0" * 64,
        "user_id": None,
        "team_id": None,
        "allowed_models": (),
        "expires_at": None,
        "tags": {},
        "metadata": {},
        "limits": None,
        "status": "active",
        "created_at": NOW,
        "revoked_at": None,
        "rotated_from": None,
        "grace_until": None,
        "last_used_at": None,
    }
    values.update(fields)
    return KeyRecord(**values)  # type: ignore[arg-type]


def test_which_keys_accept_requests() -> None:
    assert key().accepts_requests(NOW)
    assert not key(status="blocked").accepts_requests(NOW)
    assert not key(status="revoked").accepts_requests(NOW)
    assert key(status="revoked", grace_until=LATER).accepts_requests(NOW)
    assert not key(status="revoked", grace_until=LATER).accepts_requests(LATER)
    assert key(expires_at=LATER).accepts_requests(NOW)
    assert not key(expires_at=LATER).accepts_requests(LATER)
    assert not key(status="revoked", grace_until=LATER, expires_at=NOW).accepts_requests(NOW)
