"""Gateway processes on one store: keys made on one work on the others at once, and changes
made through one (a revocation, a vault credential) reach the others within the reconcile
interval; replicas starting together on an empty store make one first admin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_request_log_outage import cut, restore
from tests.support import (
    CLIENT_KEY,
    Process,
    free_port,
    postgres_database,
    running_gateway,
    running_gateways,
    tollway_command,
    wait_http,
)
from tollway.auth.bootstrap import ensure_admin
from tollway.auth.identity import Identity
from tollway.store import Store, migrate

VAULT_KEY = "cMQ5ntLHFUx7ArDfh11W-S3pdvakc5TaHIM9p3pNBDg="  # a test-only Fernet key


def works(url: str, key: str, model: str = "chat") -> bool:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "replica"}]
        )
    except openai.AuthenticationError:
        return False
    return True


PRICE = {"input": 10.0, "output": 30.0}  # USD per million tokens


def fleet_config(simulator_url: str, store: str, reconcile: str) -> dict[str, Any]:
    """A priced model on the simulator by an environment key, and one by a vault credential."""
    deployment = {"provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1"}
    return {
        "store": {"url": store},
        "auth": {"reconcile_interval": reconcile},
        "models": [
            {"name": "chat", "deployments": [
                {**deployment, "api_key": "env:TEST_UPSTREAM_KEY", "price": PRICE}]},
            {"name": "vaulted", "deployments": [{**deployment, "api_key": "vault:sim"}]},
        ],
    }  # fmt: skip


@contextmanager
def pair(log_dir: Path, config: dict[str, Any], store: str) -> Iterator[tuple[str, str]]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store}
    env["TOLLWAY_VAULT_KEY"] = VAULT_KEY
    if store.startswith("postgresql"):  # replicas there may start together
        with running_gateways(log_dir, [(config, env)] * 2) as [(first, _), (second, _)]:
            yield first, second
        return
    with (
        running_gateway(log_dir, config, env) as (first, _),
        running_gateway(log_dir, config, env) as (second, _),
    ):
        yield first, second


@pytest.fixture(scope="module")
def sqlite_pair(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, str]]:
    """Two replicas on one SQLite file (no change feed), reloading the store every 500 ms."""
    store = f"sqlite+aiosqlite:///{log_dir}/replicas.db"
    with pair(log_dir, fleet_config(simulator_url, store, "500ms"), store) as urls:
        yield urls


@pytest.fixture(scope="module")
def postgres_pair(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, str, str]]:
    """Two replicas on one PostgreSQL database that never reload it in full (1 h): what
    reaches one from the other comes through the change feed. Yields both URLs and the
    database's."""
    databases = postgres_database()
    store = next(databases)
    config = fleet_config(simulator_url, store, "1h")
    config["server"] = {"reload_interval": None}  # no file watch: reloads only when asked
    with pair(log_dir, config, store) as urls:
        yield (*urls, store)
    next(databases, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def replicas(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Two replicas: on SQLite (the reconcile brings changes), on PostgreSQL (the feed)."""
    if request.param == "sqlite":
        urls: tuple[str, str] = request.getfixturevalue("sqlite_pair")
        return urls
    first, second, _ = request.getfixturevalue("postgres_pair")
    return first, second


def within(seconds: float, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {seconds} s")
        time.sleep(0.05)


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})


def refusal(url: str, key: str) -> str | None:
    """Why ``url`` refuses ``key`` (the error code), or None when it serves it."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "replica"}], max_tokens=5
        )
    except (openai.AuthenticationError, openai.RateLimitError) as exc:
        return str(exc.code)
    return None


def test_two_replicas_share_keys(replicas: tuple[str, str]) -> None:
    first, second = replicas
    made = admin(first).post("/admin/keys", json={"name": "shared"}).json()
    assert works(second, made["key"])  # unknown to the second: found in the store at once
    admin(first).post(f"/admin/keys/{made['id']}/revoke").raise_for_status()
    assert not works(first, made["key"])  # the node that revoked: at once
    within(
        1.5,
        lambda: not works(second, made["key"]),
        "the other replica still accepts the revoked key",
    )


def test_blocks_made_on_one_replica_are_kept_by_the_other_at_once(
    postgres_pair: tuple[str, str, str],
) -> None:
    first, second, _ = postgres_pair
    user = admin(first).post("/admin/users", json={"email": "blocked@example.com"}).json()
    made = admin(first).post("/admin/keys", json={"name": "b", "user_id": user["id"]}).json()
    key = made["key"]
    assert refusal(second, key) is None  # the second holds it from now on
    admin(first).post(f"/admin/keys/{made['id']}/block").raise_for_status()
    within(1.0, lambda: refusal(second, key) == "key_blocked", "the block did not reach it")
    admin(first).post(f"/admin/keys/{made['id']}/unblock").raise_for_status()
    within(1.0, lambda: refusal(second, key) is None, "the unblock did not reach it")
    admin(first).patch(f"/admin/users/{user['id']}", json={"blocked": True}).raise_for_status()
    within(1.0, lambda: refusal(second, key) == "key_blocked", "the user's block did not")


def test_a_budget_set_on_one_replica_applies_on_the_other_at_once(
    postgres_pair: tuple[str, str, str],
) -> None:
    first, second, _ = postgres_pair
    budget = {"scope": "org", "scope_id": "*", "period": "day", "limit_usd": 0.0}
    admin(first).put("/admin/budgets", json=budget).raise_for_status()
    try:
        within(1.0, lambda: refusal(second, CLIENT_KEY) == "budget_exceeded", "no budget there")
    finally:
        admin(first).delete("/admin/budgets/org/*/day").raise_for_status()
    within(1.0, lambda: refusal(second, CLIENT_KEY) is None, "the budget's removal did not")


def test_a_team_joining_an_organisation_comes_under_its_budget_on_every_replica(
    postgres_pair: tuple[str, str, str],
) -> None:
    first, second, _ = postgres_pair
    org = f"org-{time.monotonic_ns()}"
    budget = {"scope": "org", "scope_id": org, "period": "day", "limit_usd": 0.0}
    admin(first).put("/admin/budgets", json=budget).raise_for_status()
    team = admin(first).post("/admin/teams", json={"name": org}).json()
    key = admin(first).post("/admin/keys", json={"name": "t", "team_id": team["id"]}).json()
    assert refusal(first, key["key"]) is None  # no organisation, no org budget
    assert refusal(second, key["key"]) is None
    admin(first).patch(f"/admin/teams/{team['id']}", json={"organization": org})
    # The replica that made the change applied it to its budgets at once (it waited for the
    # next full reload); the other hears of it.
    assert refusal(first, key["key"]) == "budget_exceeded"
    within(1.0, lambda: refusal(second, key["key"]) == "budget_exceeded", "no org budget there")


def test_the_change_feed_listens_again_after_a_store_outage(
    postgres_pair: tuple[str, str, str],
) -> None:
    first, second, database = postgres_pair
    made = admin(first).post("/admin/keys", json={"name": "outage"}).json()
    assert refusal(second, made["key"]) is None
    cut(database)  # every connection of both replicas ends, the listening one too
    time.sleep(0.5)
    restore(database)
    admin(first).post(f"/admin/keys/{made['id']}/block").raise_for_status()
    within(5.0, lambda: refusal(second, made["key"]) == "key_blocked", "the block was lost")
    again = admin(first).post("/admin/keys", json={"name": "after"}).json()
    assert refusal(second, again["key"]) is None
    admin(first).post(f"/admin/keys/{again['id']}/revoke").raise_for_status()
    within(1.0, lambda: refusal(second, again["key"]) == "key_revoked", "the feed is not back")


def replica(url: str) -> dict[str, Any]:
    """What ``/admin/deployments`` says of the replica that answered."""
    answer = admin(url).get("/admin/deployments")
    answer.raise_for_status()
    view: dict[str, Any] = answer.json()["replica"]
    return view


def model_names(url: str) -> set[str]:
    return {m["id"] for m in admin(url).get("/v1/models").json()["data"]}


def test_a_reload_through_one_replica_reloads_all_and_each_says_what_it_runs(
    postgres_pair: tuple[str, str, str], log_dir: Path
) -> None:
    first, second, _ = postgres_pair
    before = [replica(first), replica(second)]
    assert before[0]["id"] != before[1]["id"]  # health in the answer is that replica's own
    assert before[0]["config_version"] == before[1]["config_version"]
    version = before[0]["config_version"]
    assert f'tollway_config_info{{version="{version}"}} 1.0' in httpx.get(second + "/metrics").text
    # The second replica's file gains a model; the reload is asked of the first.
    path = log_dir / f"gateway-{second.rsplit(':', 1)[1]}.yaml"
    original = path.read_text()
    changed = yaml.safe_load(original)
    changed["models"].append({**changed["models"][0], "name": "extra"})
    path.write_text(yaml.safe_dump(changed))
    try:
        answer = admin(first).post("/admin/reload").json()
        assert (answer["replica"], answer["config_version"]) == (before[0]["id"], version)
        within(1.0, lambda: "extra" in model_names(second), "the other replica did not reload")
        drifted = replica(second)["config_version"]
        assert drifted != version  # the two run different configs, and say so
        metrics = httpx.get(second + "/metrics").text
        assert f'tollway_config_info{{version="{drifted}"}} 1.0' in metrics
        assert version not in metrics

        # Each replica's reload is in the shared audit trail: the one asked, and the other.
        def reloads() -> dict[tuple[str, str], Any]:
            page = admin(first).get("/admin/audit", params={"action": "config.*"}).json()
            newest_last = reversed(page["data"])
            return {(e["details"]["replica"], e["details"]["trigger"]): e for e in newest_last}

        within(1.0, lambda: (before[1]["id"], "replica") in reloads(), "no audit event")
        events = reloads()
        asked = events[(before[0]["id"], "admin_api")]
        assert asked["actor"] == "bootstrap-admin" and asked["details"]["version"] == version
        followed = events[(before[1]["id"], "replica")]
        assert followed["actor"] == "system" and followed["action"] == "config.reload"
        assert (followed["details"]["previous_version"], followed["details"]["version"]) == (
            version, drifted,
        )  # fmt: skip
    finally:
        path.write_text(original)
        admin(second).post("/admin/reload").raise_for_status()
    assert replica(second)["config_version"] == version
    assert "extra" not in model_names(second)


def upstream_refuses(url: str) -> bool:
    """Whether the vaulted model fails for want of a good credential (502)."""
    try:
        works(url, CLIENT_KEY, "vaulted")
    except openai.APIStatusError as exc:
        assert exc.status_code == 502, exc
        return True
    return False


def test_a_credential_changed_on_one_replica_is_used_by_the_others(
    replicas: tuple[str, str],
) -> None:
    first, second = replicas
    assert upstream_refuses(second)  # no credential yet
    put = {"name": "sim", "provider": "openai", "secret": UPSTREAM_KEY}
    admin(first).put("/admin/credentials/sim", json=put).raise_for_status()
    assert not upstream_refuses(first)
    # The other replica read the store's credentials at start only: it never saw this one.
    within(1.5, lambda: not upstream_refuses(second), "the other replica lacks the credential")
    admin(first).put("/admin/credentials/sim", json={**put, "secret": "sk-rotated-wrong"})
    within(1.5, lambda: upstream_refuses(second), "the other replica still has the old secret")
    admin(first).put("/admin/credentials/sim", json=put).raise_for_status()
    within(1.5, lambda: not upstream_refuses(second), "the other replica missed the rotation")
    admin(first).delete("/admin/credentials/sim").raise_for_status()
    within(1.5, lambda: upstream_refuses(second), "the other replica kept a deleted credential")


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database (its URL) for one test."""
    databases = postgres_database()
    url = next(databases)
    yield url
    next(databases, None)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend for one test: PostgreSQL, or a SQLite file."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fleet.db"
        return
    yield request.getfixturevalue("database")


async def test_replicas_starting_together_make_one_first_admin(any_database: str) -> None:
    database = any_database
    await migrate(database)
    stores = [Store(database) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        made = await asyncio.gather(*(ensure_admin(Identity(store)) for store in stores))
        admins = await stores[0].users.find(role="admin")
        keys = await stores[0].keys.find()
    finally:
        for store in stores:
            await store.close()
    assert len([key for key in made if key is not None]) == 1
    assert len(admins) == 1
    assert len(keys) == 1


def own_pid_namespace() -> list[str]:
    """A command prefix that runs a process as PID 1 in a PID namespace of its own, as a
    container's entrypoint runs; the test is skipped where namespaces cannot be made."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"]
    try:
        made = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("unshare is not available")
    if made.returncode != 0:
        pytest.skip("PID namespaces cannot be made here (unshare needs privileges)")
    return prefix


@contextmanager
def gateway_as_pid_one(log_dir: Path, config: dict[str, Any], store: str) -> Iterator[str]:
    """``tollway serve`` as PID 1 on this host: two are two containers on one host's
    network (same hostname, same process id)."""
    port = free_port()
    config_path = log_dir / f"pid-one-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [*own_pid_namespace(), *tollway_command("serve", "--port", str(port))]
    command += ["--config", str(config_path)]
    env = {**os.environ, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "TOLLWAY_STORE_URL": store}
    env |= {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_VAULT_KEY": VAULT_KEY}
    process = Process(command, log_dir / f"pid-one-{port}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health/ready", proc=process.proc)
        yield url
    finally:
        # unshare does not pass SIGTERM on to the gateway; its process group reaches both.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.proc.pid, signal.SIGTERM)
        process.stop()


def test_replicas_with_one_host_name_and_process_id_still_hear_each_other(
    database: str, log_dir: Path, simulator_url: str
) -> None:
    config = fleet_config(simulator_url, database, "1h")  # what arrives, arrives by the feed
    config["server"] = {"reload_interval": None}
    with (
        gateway_as_pid_one(log_dir, config, database) as first,
        gateway_as_pid_one(log_dir, config, database) as second,
    ):
        made = admin(first).post("/admin/keys", json={"name": "pid-one"}).json()
        assert refusal(second, made["key"]) is None
        admin(first).post(f"/admin/keys/{made['id']}/revoke").raise_for_status()
        within(1.0, lambda: refusal(second, made["key"]) == "key_revoked", "not heard")
        assert replica(first)["id"] != replica(second)["id"]  # told apart by an operator too
