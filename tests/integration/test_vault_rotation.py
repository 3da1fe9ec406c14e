"""Changing the vault key end to end: real gateway processes on SQLite and PostgreSQL, the
admin API, the ``tollway`` CLI, and the simulator, which refuses any upstream key but
``UPSTREAM_KEY``, so a model served through a ``vault:`` credential works only when the
secret decrypted under the new key is the one that was stored."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from sqlalchemy import text

from tests.conftest import UPSTREAM_KEY
from tests.support import (
    CLIENT_KEY,
    Process,
    free_port,
    postgres_database,
    running_gateway,
    running_gateways,
    tollway_command,
)
from tollway.store import SecretBox, Store, generate_vault_key
from tollway.store.engine import make_engine

OLD_KEY, NEW_KEY, STRAY_KEY = (generate_vault_key() for _ in range(3))
OLDER_KEY_NOTICE = "vault credentials are still encrypted with an older key"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, log_dir: Path) -> Iterator[str]:
    """An empty store every gateway of one test shares, across restarts."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{log_dir}/vault-{free_port()}.db"
        return
    databases = postgres_database()
    yield next(databases)
    next(databases, None)


def config(simulator_url: str, store_url: str, credential: str) -> dict[str, Any]:
    deployment = {"provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1"}
    return {
        "store": {"url": store_url},
        "auth": {"reconcile_interval": "300ms"},
        "models": [{"name": "vaulted", "deployments": [
            {**deployment, "api_key": f"vault:{credential}"}]}],
    }  # fmt: skip


def gateway(
    log_dir: Path, simulator_url: str, store_url: str, vault_key: str, credential: str = "sim"
) -> Any:
    env = {"TOLLWAY_STORE_URL": store_url, "TOLLWAY_VAULT_KEY": vault_key}
    return running_gateway(log_dir, config(simulator_url, store_url, credential), env)


def chat(url: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="vaulted", messages=[{"role": "user", "content": "rotate"}]
    )
    return reply.choices[0].message.content or ""


def admin(url: str, key: str = CLIENT_KEY) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "COLUMNS": "300"}
    return subprocess.run(
        tollway_command(*args), capture_output=True, text=True, timeout=60, env=env
    )


def said(output: str) -> str:
    """``output`` as one line of words (Rich wraps long messages)."""
    return " ".join(output.split())


def older_key_notices(process: Process) -> list[str]:
    return [line for line in process.output().splitlines() if OLDER_KEY_NOTICE in line]


def test_a_vault_key_change_end_to_end(log_dir: Path, simulator_url: str, store_url: str) -> None:
    # Credentials stored under OLD, as before any change.
    with gateway(log_dir, simulator_url, store_url, OLD_KEY) as (url, process):
        added = cli(url, "credentials", "add", "sim", "openai", "--secret", UPSTREAM_KEY)
        assert added.returncode == 0, added.stderr
        spare = {"name": "spare", "provider": "openai", "secret": "sk-spare-0123456789"}
        assert admin(url).post("/admin/credentials", json=spare).status_code == 201
        assert chat(url)
        assert older_key_notices(process) == []

    # Dropping OLD before re-encrypting: the replica refuses to start, naming what and why.
    port = str(free_port())
    path = log_dir / f"vault-too-early-{port}.yaml"
    path.write_text(yaml.safe_dump(config(simulator_url, store_url, "sim")))
    env = {**os.environ, "TOLLWAY_STORE_URL": store_url, "TOLLWAY_VAULT_KEY": NEW_KEY}
    env["TOLLWAY_ADMIN_KEY"] = CLIENT_KEY
    refused = subprocess.run(
        tollway_command("serve", "--config", str(path), "--port", port),
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "'sim'" in refused.stderr and "'spare'" in refused.stderr
    assert "tollway credentials reencrypt" in said(refused.stderr)
    assert "Traceback" not in refused.stderr

    # NEW,OLD: start-up says, once, that credentials are under an older key; re-encrypt.
    with gateway(log_dir, simulator_url, store_url, f"{NEW_KEY},{OLD_KEY}") as (url, process):
        (notice,) = older_key_notices(process)
        assert "2 of the 2 vault credentials" in notice
        assert chat(url)
        done = cli(url, "credentials", "reencrypt")
        assert done.returncode == 0, done.stderr
        assert said(done.stdout).startswith("2 credential(s) re-encrypted, 0 already")
        again = cli(url, "credentials", "reencrypt", "--json")
        assert json.loads(again.stdout) == {"reencrypted": 0, "current": 2, "undecryptable": []}
        assert chat(url), "the replica's decrypted secrets are unchanged"
        events = admin(url).get("/admin/audit", params={"action": "credential.reencrypt"})
        details = [event["details"] for event in events.json()["data"]]
        assert details == [
            {"reencrypted": 0, "current": 2, "undecryptable": []},
            {"reencrypted": 2, "current": 0, "undecryptable": []},
        ]
        listed = admin(url).get("/admin/credentials").json()["data"]
        assert all(credential["rotated_at"] is None for credential in listed)

    # NEW alone: every credential decrypts, and the upstream gets the key that was stored.
    with gateway(log_dir, simulator_url, store_url, NEW_KEY) as (url, process):
        assert chat(url)
        assert older_key_notices(process) == []
        output = process.output()
    for secret in (UPSTREAM_KEY, "sk-spare-0123456789", OLD_KEY, NEW_KEY):
        assert secret not in output


async def _store_directly(store_url: str, vault_key: str, name: str, secret: str) -> None:
    """A credential written by a replica whose vault key is ``vault_key``."""
    store = Store(store_url, secret_box=SecretBox(vault_key))
    await store.open()
    try:
        await store.credentials.put(name, "openai", secret)
    finally:
        await store.close()


def test_reencrypt_names_a_credential_no_key_decrypts_and_does_the_others(
    log_dir: Path, simulator_url: str, store_url: str
) -> None:
    keys = f"{NEW_KEY},{OLD_KEY}"
    with gateway(log_dir, simulator_url, store_url, keys, credential="b-good") as (url, process):
        # Written by replicas with other keys: one under OLD, one under a key nobody here has.
        asyncio.run(_store_directly(store_url, STRAY_KEY, "a-stray", "sk-stray-0123456789"))
        asyncio.run(_store_directly(store_url, OLD_KEY, "b-good", UPSTREAM_KEY))
        # The stray credential does not keep the reload from loading the ones after it.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert chat(url)
                break
            except openai.APIStatusError:
                assert time.monotonic() < deadline, process.output()
                time.sleep(0.1)

        answer = admin(url).post("/admin/credentials/reencrypt")
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["error"]["code"] == "credential_undecryptable"
        assert "'a-stray'" in body["error"]["message"]
        assert "TOLLWAY_VAULT_KEY" in body["error"]["message"]
        assert {k: body[k] for k in ("reencrypted", "current", "undecryptable")} == {
            "reencrypted": 1,
            "current": 0,
            "undecryptable": ["a-stray"],
        }
        failed = cli(url, "credentials", "reencrypt")
        assert failed.returncode == 1 and failed.stdout == ""
        assert said(failed.stderr).startswith("409: credential(s) 'a-stray' cannot be decrypted")
        assert chat(url)

        events = admin(url).get("/admin/audit", params={"action": "credential.reencrypt"})
        assert events.json()["data"][0]["details"] == {
            "reencrypted": 0,
            "current": 1,
            "undecryptable": ["a-stray"],
        }
        user = {"role": "team_admin", "email": "lead@example.com"}
        lead = admin(url).post("/admin/users", json=user)
        assert lead.status_code == 201, lead.text
        made = admin(url).post("/admin/keys", json={"name": "l", "user_id": lead.json()["id"]})
        refused = admin(url, made.json()["key"]).post("/admin/credentials/reencrypt")
        assert refused.status_code == 403
        output = process.output()
    assert "'a-stray' cannot be decrypted" in output
    assert "Traceback" not in output
    for secret in (UPSTREAM_KEY, "sk-stray-0123456789", NEW_KEY, OLD_KEY, STRAY_KEY):
        assert secret not in output and secret not in answer.text


def test_replicas_keep_serving_while_one_reencrypts_and_then_follow_its_changes(
    log_dir: Path, simulator_url: str
) -> None:
    # Two replicas on PostgreSQL that hear each other only through the change feed.
    databases = postgres_database()
    store_url = next(databases)
    try:
        settings = config(simulator_url, store_url, "sim")
        settings["auth"] = {"reconcile_interval": "1h"}
        settings["server"] = {"reload_interval": None}
        env = {"TOLLWAY_STORE_URL": store_url, "TOLLWAY_VAULT_KEY": OLD_KEY}
        with running_gateway(log_dir, settings, env) as (url, _):
            stored = {"name": "sim", "provider": "openai", "secret": UPSTREAM_KEY}
            assert admin(url).put("/admin/credentials/sim", json=stored).status_code == 200
        env["TOLLWAY_VAULT_KEY"] = f"{NEW_KEY},{OLD_KEY}"
        with running_gateways(log_dir, [(settings, env)] * 2) as [(first, _), (second, other)]:
            answer = admin(first).post("/admin/credentials/reencrypt")
            assert answer.json() == {"reencrypted": 1, "current": 0, "undecryptable": []}
            assert chat(second) and chat(first)
            # A rotation through the first replica reaches the second, decrypted with NEW.
            wrong = {"name": "sim", "provider": "openai", "secret": "sk-wrong-key-for-test-9876"}
            assert admin(first).put("/admin/credentials/sim", json=wrong).status_code == 200
            deadline = time.monotonic() + 10
            while True:
                try:
                    chat(second)
                except openai.APIStatusError as exc:
                    assert exc.status_code == 502  # the simulator refuses the wrong key
                    break
                assert time.monotonic() < deadline, "the rotation never reached the replica"
                time.sleep(0.1)
            assert "cannot be decrypted" not in other.output()
            assert "Traceback" not in other.output()
    finally:
        next(databases, None)


def test_a_reencryption_cut_short_answers_what_it_did(
    log_dir: Path, simulator_url: str, store_url: str
) -> None:
    # Other writes stopping a later batch were answered "nothing was changed", although the
    # batches before it were written: the operator is told what was done, and to run again.
    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's row locks make the interruption deterministic")
    names = [f"cred-{i:03}" for i in range(100)]  # two write batches: 64, then 36

    async def put_all() -> None:
        store = Store(store_url, secret_box=SecretBox(OLD_KEY))
        await store.open()
        try:
            for name in names:
                await store.credentials.put(name, "openai", UPSTREAM_KEY)
        finally:
            await store.close()

    async def reencrypt_against_a_deadlock(url: str) -> httpx.Response:
        engine = make_engine(store_url)
        lock = "SELECT name FROM provider_credentials WHERE name = :name FOR UPDATE"
        try:
            async with engine.connect() as other, other.begin():
                await other.execute(text(lock), {"name": "cred-090"})
                async with httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30
                ) as client:
                    answer = asyncio.create_task(client.post("/admin/credentials/reencrypt"))
                    await asyncio.sleep(0.5)  # the second batch waits on cred-090
                    await other.execute(text(lock), {"name": "cred-064"})  # it holds that one
                    return await answer
        finally:
            await engine.dispose()

    with gateway(log_dir, simulator_url, store_url, f"{NEW_KEY},{OLD_KEY}", "cred-000") as (
        url,
        process,
    ):
        asyncio.run(put_all())  # by a replica on the old key, once the gateway has migrated
        answer = asyncio.run(reencrypt_against_a_deadlock(url))
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"]["code"] == "store_busy"
        assert "64 credential(s) were re-encrypted" in body["error"]["message"]
        assert "nothing was changed" not in body["error"]["message"]
        assert {k: body[k] for k in ("reencrypted", "current", "undecryptable")} == {
            "reencrypted": 64,
            "current": 0,
            "undecryptable": [],
        }
        events = admin(url).get("/admin/audit", params={"action": "credential.reencrypt"})
        assert events.json()["data"][0]["details"]["complete"] is False
        done = cli(url, "credentials", "reencrypt")
        assert done.returncode == 0, done.stderr
        assert said(done.stdout).startswith("36 credential(s) re-encrypted, 64 already")
        assert "Traceback" not in process.output()
