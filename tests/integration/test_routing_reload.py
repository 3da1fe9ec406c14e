"""Model groups reload without a restart: on a config file change, on SIGHUP, on the admin
route; requests in flight finish on the old table; an invalid config is refused."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import UPSTREAM_KEY
from tests.support import (
    CLIENT_KEY,
    Process,
    free_port,
    running_gateway,
    tollway_command,
    wait_http,
)

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


def _group(name: str, simulator_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "deployments": [
            {"provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
             "api_key": "env:TEST_UPSTREAM_KEY"}
        ],
    }  # fmt: skip


def _config_file(url: str, log_dir: Path) -> Path:
    return log_dir / f"gateway-{url.rsplit(':', 1)[1]}.yaml"


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


def _models(url: str) -> set[str]:
    answer = httpx.get(url + "/v1/models", headers=ADMIN)
    return {model["id"] for model in answer.json()["data"]}


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def watched(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, Process]]:
    config = {
        "server": {"reload_interval": "200ms"},
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [_group("old-name", simulator_url)],
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as running:
        yield running


def test_a_file_change_swaps_the_groups_and_streams_in_flight_finish(
    watched: tuple[str, Process], log_dir: Path, simulator_url: str
) -> None:
    url, process = watched
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    chunks: list[str] = []
    finish: list[str | None] = []

    def slow_stream() -> None:
        stream = client.chat.completions.create(
            model="old-name",
            messages=[{"role": "user", "content": "tell me a long story"}],
            max_tokens=24,
            stream=True,
            extra_headers={"x-sim-tpot-ms": "60"},
        )
        for chunk in stream:
            if chunk.choices:
                chunks.append(chunk.choices[0].delta.content or "")
                finish.append(chunk.choices[0].finish_reason)

    reader = threading.Thread(target=slow_stream)
    reader.start()
    assert _wait_for(lambda: bool(chunks))  # the stream is under way on the old table

    def swap(config: dict[str, Any]) -> None:
        config["models"] = [_group("new-name", simulator_url)]

    _rewrite(_config_file(url, log_dir), swap)
    assert _wait_for(lambda: _models(url) == {"new-name"})
    reader.join(timeout=20)
    assert not reader.is_alive()
    assert finish[-1] is not None  # the old group's stream ran to its end
    assert len(chunks) > 5
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="old-name", messages=[{"role": "user", "content": "x"}]
        )
    assert "config reloaded" in process.output()


def test_an_invalid_config_is_refused_and_the_old_one_stays(
    watched: tuple[str, Process], log_dir: Path
) -> None:
    url, process = watched
    path = _config_file(url, log_dir)
    path.write_text(path.read_text() + "\nrouting: {failure_threshold: -1}\n")
    assert _wait_for(lambda: "config reload refused" in process.output())
    refused = next(line for line in process.output().splitlines() if "reload refused" in line)
    assert "failure_threshold" in refused  # the whole reason on the one line
    assert "routing.failure_threshold" in refused
    assert ":;" not in refused  # "gateway-1.yaml: 1 problem(s):; gateway-1.yaml: routing..."
    assert _models(url) == {"old-name"}
    answer = httpx.post(url + "/admin/reload", headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "reload_refused"


def test_a_reload_of_an_api_base_with_credentials_is_refused_unsaid(
    watched: tuple[str, Process], log_dir: Path, simulator_url: str
) -> None:
    # A password in a URL would be in every log line and error naming the upstream: the key
    # goes in api_key. The refusal names where it is, never the password.
    url, process = watched
    password = "hunter2-in-the-url"
    leaky = _group("leaky", simulator_url.replace("://", f"://alice:{password}@"))
    _rewrite(_config_file(url, log_dir), lambda config: config["models"].append(leaky))
    assert _wait_for(lambda: "config reload refused" in process.output())
    [refused] = [line for line in process.output().splitlines() if "reload refused" in line]
    assert "models[1].deployments[0].api_base: credentials in the URL" in refused
    assert _models(url) == {"old-name"}
    answer = httpx.post(url + "/admin/reload", headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "reload_refused"
    assert password not in answer.text and password not in process.output()


def test_a_reload_of_an_infinite_number_is_refused_and_the_file_watch_goes_on(
    watched: tuple[str, Process], log_dir: Path, simulator_url: str
) -> None:
    # An infinite budget once passed validation and failed while the limits' book was built
    # (no integer is infinite): an OverflowError that ended the file-watch task with nothing
    # logged, after part of the new config had been applied. Numbers must be finite now; a
    # failure of any other kind is logged and the watch goes on as well (Gateway.reload).
    url, process = watched
    path = _config_file(url, log_dir)
    infinite = {"scope": "team", "id": "t", "period": "month", "limit_usd": float("inf")}
    _rewrite(path, lambda config: config.update(limits={"budgets": [infinite]}))
    assert _wait_for(lambda: "config reload refused" in process.output())
    [refused] = [line for line in process.output().splitlines() if "reload refused" in line]
    assert "limits.budgets[0].limit_usd" in refused and "finite" in refused
    assert "Traceback" not in process.output()
    assert _models(url) == {"old-name"}  # nothing of the new config applied

    def fixed(config: dict[str, Any]) -> None:
        del config["limits"]
        config["models"].append(_group("new-name", simulator_url))

    _rewrite(path, fixed)
    assert _wait_for(lambda: _models(url) == {"old-name", "new-name"})


def test_sighup_and_the_admin_route_reload(log_dir: Path, simulator_url: str) -> None:
    config = {"server": {"reload_interval": None}, "models": [_group("first", simulator_url)]}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, process):
        path = _config_file(url, log_dir)
        _rewrite(path, lambda c: c["models"].append(_group("second", simulator_url)))
        time.sleep(0.3)
        assert _models(url) == {"first"}  # no watching: nothing happens on its own
        process.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _models(url) == {"first", "second"})

        _rewrite(path, lambda c: c["models"].append(_group("third", simulator_url)))
        answer = httpx.post(url + "/admin/reload", headers=ADMIN)
        assert answer.status_code == 200 and answer.json()["models"] == 3
        assert _models(url) == {"first", "second", "third"}
        assert process.proc.poll() is None  # SIGHUP did not end the process


def test_a_reload_applies_new_limits(log_dir: Path, simulator_url: str) -> None:
    config = {"server": {"reload_interval": None}, "models": [_group("limited", simulator_url)]}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "limited", "messages": [{"role": "user", "content": "x"}]}
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert "x-ratelimit-limit-requests" not in raw.headers
        _rewrite(
            _config_file(url, log_dir),
            lambda c: c.update(limits={"models": {"limited": {"rpm": 2}}}),
        )
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        client.chat.completions.create(**ask)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(**ask)
        assert caught.value.code == "rate_limit_exceeded"


def test_a_budget_a_reload_removes_leaves_metrics(log_dir: Path, simulator_url: str) -> None:
    # Its tollway_budget_utilisation_ratio series stayed in /metrics, at its last share.
    def budget(period: str) -> dict[str, Any]:
        return {"scope": "org", "id": "*", "period": period, "limit_usd": 100}

    config = {
        "server": {"reload_interval": None},
        "models": [_group("budgeted", simulator_url)],
        "limits": {"budgets": [budget("day"), budget("month")]},
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "budgeted", "messages": [{"role": "user", "content": "x"}]}
        client.chat.completions.create(**ask)

        def series() -> set[str]:
            text = httpx.get(url + "/metrics", headers=ADMIN).text
            return {
                line.split("period=")[1].split('"')[1]
                for line in text.splitlines()
                if line.startswith("tollway_budget_utilisation_ratio{")
            }

        assert series() == {"day", "month"}
        _rewrite(
            _config_file(url, log_dir),
            lambda c: c.update(limits={"budgets": [budget("month")]}),
        )
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert series() == {"month"}
        client.chat.completions.create(**ask)
        assert series() == {"month"}


def test_a_deployment_a_reload_removes_leaves_the_circuit_gauge(
    log_dir: Path, simulator_url: str
) -> None:
    # Its tollway_circuit_state series stayed in /metrics at its last state: a deployment
    # removed while its circuit was open read "open" (2) for the life of the process, and an
    # alert on open circuits never resolved, though the deployment was gone.
    working = {**_group("chat", simulator_url)["deployments"][0], "id": "working"}
    broken = {**working, "id": "broken", "api_base": f"http://127.0.0.1:{free_port()}/v1"}
    config = {
        "server": {"reload_interval": None},
        "routing": {"failure_threshold": 1, "cooldown": "60s"},
        "models": [{"name": "chat", "deployments": [broken, working]}],
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        client.chat.completions.create(**ask)  # broken fails, its circuit opens; working serves

        def circuits() -> dict[str, float]:
            text = httpx.get(url + "/metrics").text
            return {
                line.split('deployment="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("tollway_circuit_state{")
            }

        assert circuits() == {"broken": 2.0}
        _rewrite(_config_file(url, log_dir), lambda c: c["models"][0]["deployments"].pop(0))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert circuits() == {}
        client.chat.completions.create(**ask)
        assert circuits() == {}
        client.close()


def _reloads(url: str, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` config reload events of the audit trail, oldest first."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        answer = httpx.get(url + "/admin/audit", params={"action": "config.*"}, headers=ADMIN)
        found = answer.json()["data"]
        return len(found) >= count

    assert _wait_for(enough), found
    return found[:count][::-1]


def test_every_reload_is_in_the_audit_trail(log_dir: Path, simulator_url: str) -> None:
    # A reload changes what requests are routed to and may spend; it left no audit event,
    # whether an admin asked for it, SIGHUP, or a change of the file.
    config = {"server": {"reload_interval": "200ms"}, "models": [_group("one", simulator_url)]}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, process):
        path = _config_file(url, log_dir)
        first = httpx.get(url + "/admin/deployments", headers=ADMIN).json()["replica"]
        _rewrite(path, lambda c: c["models"].append(_group("two", simulator_url)))
        assert _wait_for(lambda: _models(url) == {"one", "two"})
        _reloads(url, 1)
        process.proc.send_signal(signal.SIGHUP)
        _reloads(url, 2)
        answer = httpx.post(url + "/admin/reload", headers=ADMIN)
        assert answer.status_code == 200
        path.write_text(path.read_text() + "\nrouting: {failure_threshold: -1}\n")
        assert _wait_for(lambda: "config reload refused" in process.output())
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 400
        events = _reloads(url, 5)
    assert [(e["action"], e["details"]["trigger"]) for e in events] == [
        ("config.reload", "file_change"),
        ("config.reload", "sighup"),
        ("config.reload", "admin_api"),
        ("config.reload_refused", "file_change"),
        ("config.reload_refused", "admin_api"),
    ]
    assert [e["actor"] for e in events] == ["system", "system", "bootstrap-admin", "system",
                                            "bootstrap-admin"]  # fmt: skip
    changed = events[0]["details"]
    assert changed["previous_version"] == first["config_version"] != changed["version"]
    assert changed["models"] == 2 and changed["replica"] == first["id"]
    assert events[2]["details"]["version"] == answer.json()["config_version"]
    assert events[2]["request_id"] == answer.headers["x-request-id"]
    # A refused reload names the config that stays, and never what was wrong with the file.
    assert events[4]["details"] == {"trigger": "admin_api", "replica": first["id"],
                                    "version": answer.json()["config_version"]}  # fmt: skip


def test_health_stays_with_the_deployment_not_its_place_in_the_group(
    log_dir: Path, simulator_url: str
) -> None:
    # Deployments without an ``id`` are named by their place (``chat#0``), and health was
    # kept by that name: removing a broken first deployment gave its open circuit, its
    # failures and its last error to the healthy one that moved up to ``chat#0``, and traffic
    # went around a deployment that had never failed.
    closed = f"http://127.0.0.1:{free_port()}/v1"
    working = _group("chat", simulator_url)["deployments"][0]
    broken = {**working, "api_base": closed}
    config = {
        "server": {"reload_interval": None},
        "routing": {"failure_threshold": 1, "cooldown": "60s"},
        "models": [{"name": "chat", "deployments": [broken, working, working]}],
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-tollway-deployment"] == "chat#1"  # chat#0's circuit is open

        _rewrite(_config_file(url, log_dir), lambda c: c["models"][0]["deployments"].pop(0))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        rows = httpx.get(url + "/admin/deployments", headers=ADMIN).json()["data"]
        first = next(row for row in rows if row["id"] == "chat#0")
        assert first["circuit"] == "closed"
        assert first["failures"] == 0 and first["last_error"] is None
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-tollway-deployment"] == "chat#0"
        client.close()


def test_a_reload_that_changes_a_limit_applies_to_callers_already_counted(
    log_dir: Path, simulator_url: str
) -> None:
    # The memory backend made a scope's bucket from the limit in force at its first request
    # and kept it: lowering rpm from 100 to 5 by a reload (or through the admin API) left
    # the running caller at 100 a minute until a restart, while the headers announced 5.
    config = {
        "server": {"reload_interval": None},
        "models": [_group("limited", simulator_url)],
        "limits": {"models": {"limited": {"rpm": 100}}},
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "limited", "messages": [{"role": "user", "content": "x"}]}
        for _ in range(3):
            client.chat.completions.create(**ask)
        path = _config_file(url, log_dir)
        _rewrite(path, lambda c: c.update(limits={"models": {"limited": {"rpm": 5}}}))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        # As on Redis: the bucket keeps its level, cut to the new size (never refilled).
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        assert raw.headers["x-ratelimit-remaining-requests"] == "4"
        for _ in range(4):
            client.chat.completions.create(**ask)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(**ask)
        # Taken away (another limit of the scope left): the old rate no longer refuses.
        _rewrite(path, lambda c: c.update(limits={"models": {"limited": {"tpm": 1_000_000}}}))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert "x-ratelimit-limit-requests" not in raw.headers
        client.close()


def test_a_sighup_while_the_gateway_starts_is_a_reload_once_it_serves(
    log_dir: Path, simulator_url: str
) -> None:
    # The SIGHUP handler was installed only once the gateway had started: a SIGHUP during
    # start-up (migrations, loading identities: seconds; a config reloader sidecar sends one
    # on every change) took its default action and ended the process (exit 129).
    port = free_port()
    path = log_dir / f"starting-{port}.yaml"
    store = f"sqlite+aiosqlite:///{log_dir}/starting-{port}.db"  # new: migrations to run
    config = {"store": {"url": store}, "server": {"reload_interval": None},
              "models": [_group("before", simulator_url)]}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "TOLLWAY_STORE_URL": store,
           "TEST_UPSTREAM_KEY": UPSTREAM_KEY}  # fmt: skip
    command = tollway_command("serve", "--config", str(path), "--port", str(port))
    process = Process(command, log_dir / f"starting-{port}.log", env=env)
    try:
        assert _wait_for(lambda: "Running upgrade" in process.output(), 20.0)
        _rewrite(path, lambda c: c.update(models=[_group("after", simulator_url)]))
        process.proc.send_signal(signal.SIGHUP)  # while the store migrates
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health/ready", proc=process.proc)
        assert _wait_for(lambda: _models(url) == {"after"})
        assert "SIGHUP while starting" in process.output()
    finally:
        process.stop()
    assert process.proc.returncode == 0, process.output()


def test_a_reload_applies_new_routing_settings_at_once(log_dir: Path, simulator_url: str) -> None:
    # The new router and pipeline were built before the health book took the new routing
    # settings, and read ``exploration`` (and ``backoff``) from it: a reload's routing
    # settings applied only from the reload after it.
    fast = {**_group("chat", simulator_url)["deployments"][0], "id": "fast"}
    slow = {**fast, "id": "slow", "headers": {"x-sim-ttft-ms": "150"}}
    config = {
        "server": {"reload_interval": None},
        "routing": {"exploration": 0.0},
        "models": [{"name": "chat", "strategy": "latency", "deployments": [fast, slow]}],
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        ask: Any = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}

        def served() -> str:
            raw = client.chat.completions.with_raw_response.create(**ask)
            return raw.headers["x-tollway-deployment"]

        assert {served(), served()} == {"fast", "slow"}  # each measured once, unmeasured first
        assert {served() for _ in range(5)} == {"fast"}  # no exploration

        # Every request explores: it starts at a random candidate other than the fastest.
        _rewrite(_config_file(url, log_dir), lambda c: c.update(routing={"exploration": 1.0}))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert {served() for _ in range(5)} == {"slow"}
        client.close()


def _restart_warnings(output: str) -> list[str]:
    lines = output.splitlines()
    return [line.split("WARNING tollway: ")[1] for line in lines if "apply at" in line]


def test_a_reload_warns_of_a_restart_only_for_what_the_file_changed(
    log_dir: Path, simulator_url: str
) -> None:
    # The listen address the command line gave (--port, --host; every gateway under a
    # supervisor that picks its port) or that port 0 got was taken for the file's: every
    # reload, of model groups alone, warned "config sections server changed: they apply at
    # restart", and so an operator learnt to ignore the line that tells of a real one.
    config = {
        "server": {"reload_interval": None, "port": 0},
        "models": [_group("first", simulator_url)],
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env, "--host", "127.0.0.1") as (url, process):
        path = _config_file(url, log_dir)
        _rewrite(path, lambda c: c["models"].append(_group("second", simulator_url)))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert _models(url) == {"first", "second"}
        assert _restart_warnings(process.output()) == []

        _rewrite(path, lambda c: c["server"].update(access_log=True))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert _restart_warnings(process.output()) == [
            "config sections server changed: they apply at restart"
        ]


def test_a_limiter_backend_a_reload_cannot_apply_stays_as_it_runs(
    log_dir: Path, simulator_url: str
) -> None:
    # A reload took the new `limits.backend` (and redis_url, redis_prefix, redis_timeout)
    # into the running config while the limiter stayed the one started with: the config
    # version named a Redis backend the gateway did not run, and the next reload compared
    # with it and no longer warned that a restart was still due.
    config = {"server": {"reload_interval": None}, "models": [_group("chat", simulator_url)]}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_REDIS_URL": "redis://127.0.0.1:1/0"}
    with running_gateway(log_dir, config, env) as (url, process):
        path = _config_file(url, log_dir)
        first = httpx.post(url + "/admin/reload", headers=ADMIN).json()["config_version"]
        redis = {"backend": "redis", "redis_url": "env:TEST_REDIS_URL"}
        _rewrite(path, lambda c: c.update(limits=redis))
        answer = httpx.post(url + "/admin/reload", headers=ADMIN).json()
        assert answer["config_version"] == first  # nothing of it is in force
        _rewrite(path, lambda c: c["models"].append(_group("more", simulator_url)))
        assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 200
        assert _models(url) == {"chat", "more"}
        warned = [line for line in process.output().splitlines() if "backend" in line]
        assert len(warned) == 2, warned  # each reload: the file still asks for a restart
