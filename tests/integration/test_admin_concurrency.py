"""Admin writes at the same time, through the admin API of a gateway on a real port, on a
SQLite file and on PostgreSQL: answers are what each change deserves (a 404 for a team
deleted meanwhile, a 409 for a name taken meanwhile), never a 500; a create-or-replace done
twice at once is two successes; a SQLite file kept locked past the busy timeout is a 503
the client may retry.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, Process, postgres_database, running_gateway

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
VAULT_KEY = "cMQ5ntLHFUx7ArDfh11W-S3pdvakc5TaHIM9p3pNBDg="  # a test-only Fernet key
CONCURRENT = 20


def _config(simulator_url: str, store: dict[str, Any]) -> dict[str, Any]:
    deployment = {
        "provider": "openai",
        "model": "sim-chat",
        "api_base": simulator_url + "/v1",
        "api_key": "env:TEST_UPSTREAM_KEY",
    }
    return {"store": store, "models": [{"name": "chat", "deployments": [deployment]}]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest, log_dir: Path, simulator_url: str
) -> Iterator[tuple[str, Process]]:
    """A gateway on a fresh store of each backend."""
    if request.param == "postgresql":
        databases = postgres_database()
        url = next(databases)
    else:
        url = f"sqlite+aiosqlite:///{log_dir}/concurrent-{uuid.uuid4().hex[:8]}.db"
    env = {
        "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
        "TOLLWAY_VAULT_KEY": VAULT_KEY,
        "TOLLWAY_STORE_URL": url,
    }
    with running_gateway(log_dir, _config(simulator_url, {"url": url}), env) as running:
        yield running
    if request.param == "postgresql":
        next(databases, None)


async def _made(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(path, json=body)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


async def _team_deleted_amid_changes(client: httpx.AsyncClient) -> list[tuple[str, int, str]]:
    """A team deleted while it is changed, given members and keys; (what, status, body)."""
    team = await _made(client, "/admin/teams", {"name": f"doomed-{uuid.uuid4().hex[:8]}"})
    users = [
        await _made(client, "/admin/users", {"email": f"u{i}-{uuid.uuid4().hex[:6]}@example.com"})
        for i in range(3)
    ]
    path = f"/admin/teams/{team['id']}"

    async def one(i: int) -> tuple[str, int, str]:
        if i == CONCURRENT // 2:
            what, answer = "delete", await client.delete(path)
        elif i % 3 == 0:
            what, answer = "patch", await client.patch(path, json={"metadata": {"i": i}})
        elif i % 3 == 1:
            member = {"user_id": users[i % 3]["id"], "role": "member"}
            what, answer = "member", await client.post(path + "/members", json=member)
        else:
            key = {"name": f"k{i}", "team_id": team["id"]}
            what, answer = "key", await client.post("/admin/keys", json=key)
        return what, answer.status_code, answer.text

    return list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


def test_a_team_deleted_amid_its_changes_answers_each_with_404_not_500(
    gateway: tuple[str, Process],
) -> None:
    url, process = gateway

    async def run() -> list[tuple[str, int, str]]:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=60) as client:
            answers = []
            for _ in range(4):
                answers += await _team_deleted_amid_changes(client)
            # Every key the race let be made was revoked with its team: none is left active.
            for what, status, text in answers:
                if what == "key" and status == 201:
                    key = (await client.get(f"/admin/keys/{json.loads(text)['id']}")).json()
                    assert key["status"] == "revoked", key
            return answers

    answers = asyncio.run(run())
    allowed = {"delete": {204}, "patch": {200, 404}, "member": {201, 404}, "key": {201, 404}}
    wrong = [(what, status, text) for what, status, text in answers if status not in allowed[what]]
    # A change that lost the race to the delete was a 500 (the team's update found no row) or
    # a 409 claiming a key hash or membership conflict.
    assert not wrong, wrong
    assert "Traceback" not in process.output()


def test_puts_of_one_new_thing_at_once_all_succeed(gateway: tuple[str, Process]) -> None:
    url, process = gateway
    tag = uuid.uuid4().hex[:8]

    async def run() -> Counter[tuple[str, int]]:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=60) as client:
            team = await _made(client, "/admin/teams", {"name": f"puts-{tag}"})
            user = await _made(client, "/admin/users", {"email": f"puts-{tag}@example.com"})
            credential = {"name": f"cred-{tag}", "provider": "openai", "secret": "sk-test-0000"}
            budget = {"scope": "team", "scope_id": team["id"], "period": "day", "limit_usd": 5}
            limit = {"scope": "team", "scope_id": team["id"], "rpm": 50}
            calls = [
                ("credential", "PUT", f"/admin/credentials/cred-{tag}", credential),
                ("budget", "PUT", "/admin/budgets", budget),
                ("limit", "PUT", "/admin/limits", limit),
                ("member", "POST", f"/admin/teams/{team['id']}/members", {"user_id": user["id"]}),
            ]
            answers = await asyncio.gather(
                *(
                    client.request(method, path, json=body)
                    for _ in range(CONCURRENT // 4)
                    for _, method, path, body in calls
                )
            )
            kinds = [kind for _ in range(CONCURRENT // 4) for kind, *_ in calls]
            members = (await client.get(f"/admin/teams/{team['id']}")).json()["members"]
            assert [m["user_id"] for m in members] == [user["id"]]
            return Counter(zip(kinds, (a.status_code for a in answers), strict=True))

    statuses = asyncio.run(run())
    # Each is a create-or-replace: the ones that lost the race to the first insert were 409s.
    each = CONCURRENT // 4
    expected = {("credential", 200): each, ("budget", 200): each, ("limit", 200): each}
    assert statuses == Counter({**expected, ("member", 201): each}), statuses
    assert "Traceback" not in process.output()


def test_creates_of_one_name_at_once_are_one_201_and_409s(gateway: tuple[str, Process]) -> None:
    url, process = gateway
    tag = uuid.uuid4().hex[:8]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=60) as client:
            team = {"name": f"same-{tag}"}
            user = {"email": f"same-{tag}@example.com"}
            credential = {"name": f"same-{tag}", "provider": "openai", "secret": "sk-test-0000"}
            return list(
                await asyncio.gather(
                    *(client.post("/admin/teams", json=team) for _ in range(CONCURRENT // 2)),
                    *(client.post("/admin/users", json=user) for _ in range(CONCURRENT // 2)),
                    *(client.post("/admin/credentials", json=credential) for _ in range(4)),
                )
            )

    answers = asyncio.run(run())
    for group in (answers[: CONCURRENT // 2], answers[CONCURRENT // 2 : CONCURRENT], answers[-4:]):
        statuses = sorted(answer.status_code for answer in group)
        assert statuses == [201] + [409] * (len(group) - 1), [a.text for a in group]
        assert all(a.json()["error"]["code"] == "conflict" for a in group if a.status_code == 409)
    assert "Traceback" not in process.output()


def test_a_write_kept_waiting_past_the_busy_timeout_is_a_503(
    log_dir: Path, simulator_url: str
) -> None:
    database = log_dir / f"busy-{uuid.uuid4().hex[:8]}.db"
    url = f"sqlite+aiosqlite:///{database}"
    config = _config(simulator_url, {"url": url, "busy_timeout": "300ms"})
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": url}
    with running_gateway(log_dir, config, env) as (gateway_url, process):
        admin = httpx.Client(base_url=gateway_url, headers=ADMIN, timeout=30)
        # Another process (a CLI, a second gateway on the file) holds the write lock.
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            answers = [admin.post("/admin/teams", json={"name": f"t{i}"}) for i in range(3)]
            listed = admin.get("/admin/teams")  # a read does not wait for the writer
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            error = answer.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "store_busy")
            assert "Retry" in error["message"]
        assert listed.status_code == 200
        assert admin.post("/admin/teams", json={"name": "t0"}).status_code == 201
        assert "Traceback" not in process.output()


def test_a_member_removed_while_making_keys_keeps_none_active(
    gateway: tuple[str, Process],
) -> None:
    url, process = gateway
    tag = uuid.uuid4().hex[:8]

    async def run() -> list[tuple[str, int, str]]:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=60) as client:
            team = await _made(client, "/admin/teams", {"name": f"leaving-{tag}"})
            member = await _made(client, "/admin/users", {"email": f"leaving-{tag}@example.com"})
            path = f"/admin/teams/{team['id']}/members"
            await _made(client, path, {"user_id": member["id"]})
            own = await _made(client, "/admin/keys", {"name": "own", "user_id": member["id"]})
            as_member = {"Authorization": f"Bearer {own['key']}"}

            async def one(i: int) -> tuple[str, int, str]:
                if i == CONCURRENT // 2:
                    answer = await client.delete(f"{path}/{member['id']}")
                    return "remove", answer.status_code, answer.text
                body = {"name": f"k{i}", "team_id": team["id"]}
                answer = await client.post("/admin/keys", json=body, headers=as_member)
                return "key", answer.status_code, answer.text

            answers = list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))
            keys = (await client.get(f"/admin/keys?team_id={team['id']}")).json()["data"]
            # A key made before the removal is blocked by it; one made after is refused.
            assert [k["name"] for k in keys if k["status"] != "blocked"] == [], keys
            return answers

    answers = asyncio.run(run())
    # 403: refused by the membership read before the key's transaction; 409: by the one in it.
    allowed = {"remove": {200}, "key": {201, 403, 409}}
    assert [a for a in answers if a[1] not in allowed[a[0]]] == []
    assert "Traceback" not in process.output()
