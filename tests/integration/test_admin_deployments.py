"""``GET /admin/deployments`` through a real gateway: who sees what of a deployment's errors."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import openai

from tests.support import CLIENT_KEY


def _admin(url: str, key: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code < 300, response.text
    return response.json()


def _key_with_role(url: str, role: str) -> str:
    user = {"kind": "service", "name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role}
    made = _admin(url, CLIENT_KEY, "POST", "/admin/users", user)
    key = {"name": f"{role}-key", "user_id": made["id"]}
    secret: str = _admin(url, CLIENT_KEY, "POST", "/admin/keys", key)["key"]
    return secret


def _dead_primary(url: str, key: str) -> dict[str, Any]:
    rows = _admin(url, key, "GET", "/admin/deployments")["data"]
    (row,) = [row for row in rows if row["id"] == "dead-primary"]
    return row


def test_the_last_errors_detail_is_shown_to_admins_only(gateway_url: str) -> None:
    # The detail carries the upstream's address and the exception (or the provider's own
    # words): any role that may read the routing health read it too.
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    client.chat.completions.create(
        model="test-fallback", messages=[{"role": "user", "content": "hi"}]
    )  # served by the live secondary once the dead primary failed (or its circuit is open)
    operator = _dead_primary(gateway_url, CLIENT_KEY)
    assert operator["last_error"]
    assert "127.0.0.1:9" in operator["last_error_detail"]
    assert dt.datetime.fromisoformat(operator["last_error_at"]) <= dt.datetime.now(dt.UTC)
    for role in ("viewer", "member", "team_admin"):
        seen = _dead_primary(gateway_url, _key_with_role(gateway_url, role))
        assert "last_error_detail" not in seen
        assert (seen["last_error"], seen["last_error_at"]) == (
            operator["last_error"],
            operator["last_error_at"],
        )
        assert "127.0.0.1:9" not in str(seen)
