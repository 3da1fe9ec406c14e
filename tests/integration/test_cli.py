"""The command line: config check, serve on the embedded default, and the admin commands."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.support import (
    CLIENT_KEY,
    Process,
    free_port,
    running_gateway,
    self_signed,
    tollway_command,
    wait_http,
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tollway_command(*args), capture_output=True, text=True, timeout=60, env=env
    )


def test_config_check_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("models: [{name: m, deployments: [{provider: openai, model: gpt-4o}]}]\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 0
    assert f"{path}: OK (1 models, 1 deployments)" in result.stdout


def test_config_check_lists_every_problem_with_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "server: {port: 99999}\n"
        "models: [{name: m, deployments: [{provider: openia, model: gpt-4o}]}]\n"
    )
    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: server.port:" in result.stderr
    assert f"{path}: models[0].deployments[0].provider: unknown provider 'openia'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_suggests_the_option_a_typo_meant(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "server: {prot: 5000}\n"
        "telemetry: {tracing: {zzz: 1}}\n"
        "models: [{name: m, deployments: [{provider: openai, model: gpt-4o, api_kye: x}]}]\n"
    )
    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: server.prot: unknown option (did you mean 'port'?)" in result.stderr
    deployment = "models[0].deployments[0]"
    assert f"{deployment}.api_kye: unknown option (did you mean 'api_key'?)" in result.stderr
    assert "telemetry.tracing.zzz: unknown option (options here: enabled, " in result.stderr


def test_config_check_refuses_an_azure_api_base_with_the_path_the_gateway_adds(
    tmp_path: Path,
) -> None:
    # The openai SDK's base_url for Azure's v1 API, and the portal's target URI, end in paths
    # the gateway adds itself: taken as they were, every call went to /openai/v1/openai/v1/...
    # and was Azure's 404, a failure at the first request rather than at the check.
    bases = (
        ("v1", "https://res.openai.azure.com/openai/v1/"),
        ("2024-10-21", "https://res.openai.azure.com/openai"),
        ("2024-10-21", "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions"),
        ("v1", "https://apim.example.com/aoai"),  # an API Management front's own suffix
    )
    deployments = ", ".join(
        f"{{provider: azure_openai, model: gpt-4o, api_version: '{version}', api_base: '{base}'}}"
        for version, base in bases
    )
    path = tmp_path / "azure.yaml"
    path.write_text(f"models: [{{name: m, deployments: [{deployments}]}}]\n")
    result = run_cli("config", "check", "--no-secrets", str(path))
    assert result.returncode == 2
    assert f"{path}: 3 problem(s):" in result.stderr
    for index in range(3):
        assert (
            f"{path}: models[0].deployments[{index}]: api_base is the resource's endpoint, "
            "'https://res.openai.azure.com', without /openai/...: the gateway adds that path"
        ) in result.stderr
    assert "deployments[3]" not in result.stderr


def test_config_check_refuses_an_option_written_twice(tmp_path: Path) -> None:
    # YAML kept the last of two `limits:` sections: the first one's budget was dropped
    # without a word and the file was "OK". Merges (<<) may still override.
    path = tmp_path / "twice.yaml"
    path.write_text(
        "limits:\n"
        "  budgets: [{scope: org, id: '*', limit_usd: 100}]\n"
        "models:\n"
        "  - name: m\n"
        "    deployments:\n"
        "      - &base {provider: openai, model: gpt-4o}\n"
        "      - {<<: *base, model: gpt-4o-mini}\n"
        "limits:\n"
        "  models: {m: {rpm: 10}}\n"
    )
    result = run_cli("config", "check", "--no-secrets", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: line 8, column 1: invalid YAML: 'limits' is written twice in one mapping"
    )
    path.write_text(path.read_text().rsplit("limits:", 1)[0])  # once, with its merge
    merged = run_cli("config", "check", "--no-secrets", str(path))
    assert merged.returncode == 0, merged.stderr


def test_problems_between_model_groups_name_where_they_are(tmp_path: Path) -> None:
    # Checks across deployments and groups (a fallback to no group, a name or an id taken
    # twice, the embedded simulator switched off) said "(top level)" or "models[3]" and
    # stopped at the first: in a file of forty groups, where to look was left to the reader.
    path = tmp_path / "groups.yaml"
    path.write_text(
        "models:\n"
        "  - {name: a, fallbacks: [gpt, b], deployments: [{provider: openai, model: m, id: x}]}\n"
        "  - {name: gpt, deployments: [{provider: openai, model: other, id: x}]}\n"
        "  - {name: a, deployments: [{provider: openai, model: m}]}\n"
        "  - name: sim\n"
        "    deployments:\n"
        "      - {provider: openai, model: m}\n"
        "      - {provider: openai, model: m, api_base: embedded-simulator}\n"
    )
    result = run_cli("config", "check", "--no-secrets", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: 4 problem(s):",
        f"  {path}: models[0].fallbacks[1]: 'b' is not a chat model of this config",
        f"  {path}: models[1].deployments[0].id: deployment id 'x' names another deployment in "
        "models[0].deployments[0]: a provider, model, api_base, azure_deployment or region of "
        "its own needs an id of its own",
        f"  {path}: models[2].name: 'a' is the name of models[0] too: model names must be unique",
        f"  {path}: models[3].deployments[1].api_base: 'embedded-simulator' needs "
        "simulator.enabled: true",
    ]
    path.write_text(
        "models:\n"
        "  - {name: a, fallbacks: [b, a], deployments: [{provider: openai, model: m}]}\n"
        "  - name: b\n"
        "    deployments:\n"
        "      - {provider: openai, model: m, id: s}\n"
        "      - {provider: openai, model: m, id: s}\n"
    )
    result = run_cli("config", "check", "--no-secrets", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: 2 problem(s):",
        f"  {path}: models[0].fallbacks[1]: a model group cannot fall back to itself",
        f"  {path}: models[1].deployments[1].id: deployment id 's' is deployments[0]'s too: "
        "ids must be unique in a group",
    ]


def test_text_yaml_reads_as_another_type_is_named_where_it_is_and_how_to_write_it(
    tmp_path: Path,
) -> None:
    # YAML reads an unquoted no, 42 or 2023-06-01 as a boolean, a number or a date. Where
    # the config wants text, the check said "Input should be a valid string" (of a value
    # that looks like text in the file) and named a map's key as a list's entry:
    # "limits.teams[0].[key]" for the team `no`.
    path = tmp_path / "typed.yaml"
    path.write_text(
        "auth: {anonymous_models: [demo, yes]}\n"
        "models:\n"
        "  - name: a\n"
        "    deployments:\n"
        "      - {provider: anthropic, model: m, headers: {anthropic-version: 2023-06-01}}\n"
        "limits:\n"
        "  teams: {no: {rpm: 1}, 42: {rpm: 2}, ok: {rpm: 3}}\n"
        "  budgets: [{scope: team, id: 0755, limit_usd: 1}]\n"
    )
    result = run_cli("config", "check", "--no-secrets", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: 5 problem(s):",
        f"  {path}: auth.anonymous_models[1]: YAML read this as the boolean true (yes, on "
        "and true all are), not text: write it in quotes",
        f"  {path}: limits.teams.false: YAML read this key as the boolean false (no, off and "
        "false all are), not text: write it in quotes",
        f"  {path}: limits.teams.42: YAML read this key as the number 42, not text: write it "
        "in quotes",
        f"  {path}: limits.budgets[0].id: YAML read this as the number 493, not text: write it "
        "in quotes",
        f"  {path}: models[0].deployments[0].headers.anthropic-version: YAML read this as the "
        "date 2023-06-01, not text: write it in quotes",
    ]


def test_a_config_file_that_is_not_utf8_is_one_line_naming_the_file_and_line(
    tmp_path: Path,
) -> None:
    # A comment saved as Latin-1 by an editor ("café"): config check and serve printed a
    # page of traceback ending in UnicodeDecodeError, with exit 1, and named no file.
    path = tmp_path / "latin1.yaml"
    path.write_bytes("server: {port: 4000}\n# café\nmodels: []\n".encode("latin-1"))
    expected = f"{path}: line 2, column 6: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    for args in (["config", "check", str(path)], ["serve", "--config", str(path)]):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == expected, result.stderr


def test_config_check_rejects_env_and_file_secrets_it_cannot_read(tmp_path: Path) -> None:
    # They were "OK" and first showed as a failed request once the gateway needed them.
    key_file = tmp_path / "present-key"
    key_file.write_text("sk-present")
    path = tmp_path / "secrets.yaml"
    deployments = [
        {"provider": "openai", "model": "gpt-4o", "api_key": "env:TOLLWAY_TEST_UNSET_VAR"},
        {"provider": "openai", "model": "gpt-4o", "api_key": "file:/nonexistent/key"},
        {"provider": "openai", "model": "gpt-4o", "api_key": f"file:{key_file}"},
        {"provider": "openai", "model": "gpt-4o", "api_key": "env:TOLLWAY_TEST_SET_VAR"},
        {"provider": "openai", "model": "gpt-4o", "api_key": "vault:in-the-store"},
    ]
    path.write_text(json.dumps({"models": [{"name": "m", "deployments": deployments}]}))
    env = {**os.environ, "TOLLWAY_TEST_SET_VAR": "sk-set"}
    env.pop("TOLLWAY_TEST_UNSET_VAR", None)
    result = run_cli("config", "check", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: 2 problem(s):",
        f"  {path}: models[0].deployments[0].api_key: environment variable "
        "TOLLWAY_TEST_UNSET_VAR is not set",
        f"  {path}: models[0].deployments[1].api_key: file /nonexistent/key does not exist "
        "or cannot be read",
    ]
    elsewhere = run_cli("config", "check", "--no-secrets", str(path), env=env)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert f"{path}: OK (1 models, 5 deployments)" in elsewhere.stdout


@pytest.fixture(scope="module")
def embedded(log_dir: Path) -> Iterator[tuple[str, Process]]:
    """``tollway serve`` with no config file at all (and, as on a first day, no vault key)."""
    with running_gateway(log_dir, None, {"TOLLWAY_VAULT_KEY": ""}) as running:
        yield running


def test_embedded_default_answers_at_once(embedded: tuple[str, Process]) -> None:
    url = embedded[0]
    reply = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "demo-chat", "messages": [{"role": "user", "content": "first try"}]},
    )
    assert reply.status_code == 200
    assert "first try" in reply.json()["choices"][0]["message"]["content"]
    names = {m.id for m in openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY).models.list()}
    assert names == {"demo-chat", "demo-chat-large", "demo-claude", "demo-embed"}


def test_every_embedded_demo_model_has_a_price(embedded: tuple[str, Process]) -> None:
    # A first start warned that demo-chat-large had no price, and its answers cost 0.
    url, process = embedded
    for model in ("demo-chat", "demo-chat-large", "demo-claude"):
        reply = httpx.post(
            url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "price me"}]},
        )
        assert reply.status_code == 200, reply.text
        assert float(reply.headers["x-tollway-cost-usd"]) > 0, model
    assert "has no price" not in process.output()


def test_key_ids_are_printed_whole_for_the_next_command(
    embedded: tuple[str, Process],
) -> None:
    # `keys list` cut ids to "d8f609b1-…" in an 80-column table, so `budgets set key <id>`
    # had nothing to paste; piped, the table is wide; on a narrow terminal the id folds.
    env = {**os.environ, "TOLLWAY_URL": embedded[0], "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    created = run_cli("keys", "create", "--name", "whole-id", "--json", env=env)
    key_id = json.loads(created.stdout)["id"]
    env.pop("COLUMNS", None)
    assert key_id in run_cli("keys", "list", env=env).stdout
    narrow = run_cli("keys", "list", env={**env, "COLUMNS": "80"}).stdout
    assert "…" not in "".join(line.split("│")[1] for line in narrow.splitlines() if "│" in line)
    assert key_id in "".join(
        line.split("│")[1].strip() for line in narrow.splitlines() if "│" in line
    )


def test_embedded_default_serves_the_anthropic_sdk(embedded: tuple[str, Process]) -> None:
    client = anthropic.Anthropic(base_url=embedded[0], api_key=CLIENT_KEY, max_retries=0)
    message = client.messages.create(
        model="demo-claude", max_tokens=64, messages=[{"role": "user", "content": "hi claude"}]
    )
    assert "hi claude" in message.content[0].text  # type: ignore[union-attr]


def test_the_admin_api_asks_a_caller_without_a_key_for_one(
    embedded: tuple[str, Process],
) -> None:
    # Anonymous callers may use the demo models, but the admin API needs a credential: 401.
    for method, path in [("GET", "/admin/whoami"), ("GET", "/admin/keys"), ("POST", "/admin/keys")]:
        answer = httpx.request(method, embedded[0] + path, json={"name": "x"})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "missing_api_key"


def test_provider_keys_in_the_environment_add_their_models(log_dir: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-not-used-here", "ANTHROPIC_API_KEY": "sk-ant-not-used"}
    with running_gateway(log_dir, None, env) as (url, process):
        listed = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        names = {m["id"] for m in listed.json()["data"]}
        assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "demo-chat"} <= names
        anonymous = {m["id"] for m in httpx.get(url + "/v1/models").json()["data"]}
        assert anonymous == {"demo-chat", "demo-chat-large", "demo-claude", "demo-embed"}
        assert any(name.startswith("claude-") for name in names)
    assert "sk-not-used-here" not in process.output()


def test_serve_without_its_store_says_so_in_one_line() -> None:
    # A replica started while PostgreSQL is down: its supervisor restarts it, and the log
    # should say why in a line (it was a page of traceback).
    store = f"postgresql+asyncpg://tollway:hunter2-password@127.0.0.1:{free_port()}/fleet"
    env = {**os.environ, "TOLLWAY_STORE_URL": store, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    result = run_cli("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert "tollway: cannot start: cannot use the store at postgresql+asyncpg://tollway:***@" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_first_start_prints_an_admin_key_once(tmp_path: Path) -> None:
    # Its own log directory: this output holds a key on purpose, which the suite-wide leak
    # check (test_zz_no_secret_leaks) would rightly flag anywhere else.
    store = f"sqlite+aiosqlite:///{tmp_path}/first.db"
    env = {"TOLLWAY_ADMIN_KEY": "", "TOLLWAY_STORE_URL": store}
    with running_gateway(tmp_path, None, env) as (url, process):
        printed = re.findall(r"tw-[A-Za-z0-9_-]{40}", process.output())
        assert len(printed) == 1
        # The hint named no URL, and the CLI requires one: it failed as printed.
        hint = f"TOLLWAY_URL={url} TOLLWAY_ADMIN_KEY=<that key> tollway keys create"
        assert hint in process.output()
        me = httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {printed[0]}"})
        assert me.json()["role"] == "admin"
    with running_gateway(tmp_path, None, env) as (_, again):
        assert not re.findall(r"tw-[A-Za-z0-9_-]{40}", again.output())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_serve_on_the_ipv6_wildcard_takes_ipv4_clients_too(tmp_path: Path) -> None:
    # `--host ::` listened on IPv6 only (asyncio sets IPV6_V6ONLY on the sockets it makes):
    # IPv4 clients were refused (a kubelet's IPv4 probe, the request log's `::ffff:` spelling
    # in docs/observability.md), so was the URL the first start printed for the CLI
    # (http://127.0.0.1:PORT), and the log said "Tollway on http://:::PORT".
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    env = {
        **os.environ,
        "TOLLWAY_ADMIN_KEY": "",
        "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/dual.db",
    }
    args = tollway_command("serve", "--host", "::", "--port", str(port))
    process = Process(args, tmp_path / "dual.log", env=env)
    try:
        wait_http(f"http://[::1]:{port}/health/ready", proc=process.proc)
        printed = re.findall(r"tw-[A-Za-z0-9_-]{40}", process.output())
        assert len(printed) == 1
        assert f"TOLLWAY_URL=http://127.0.0.1:{port} TOLLWAY_ADMIN_KEY=" in process.output()
        admin = {"Authorization": f"Bearer {printed[0]}"}
        me = httpx.get(f"http://127.0.0.1:{port}/admin/whoami", headers=admin, timeout=10)
        assert me.json()["role"] == "admin"
        chat = {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=chat, timeout=10)
        assert answer.status_code == 200
        assert f"Tollway on http://[::]:{port} (config: " in process.output()
    finally:
        process.stop()


def _said(output: str) -> str:
    """``output`` as one line of words: Rich wraps messages and draws boxes around them."""
    return " ".join(output.replace("│", " ").split())


def _serve_fails(*args: str, env: dict[str, str], cwd: Path) -> str:
    """``tollway serve ARGS``, which must exit 1 with one line saying why; that line."""
    result = subprocess.run(
        tollway_command("serve", *args), capture_output=True, text=True, timeout=60, env=env,
        cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    # A second gateway started by mistake showed a page of Rich traceback ending in
    # "OSError: [Errno 98] error while attempting to bind".
    env = {
        **os.environ,
        "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/busy.db",
        "TOLLWAY_ADMIN_KEY": CLIENT_KEY,
    }
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = _serve_fails("--port", str(port), env=env, cwd=tmp_path)
    assert line == (
        f"tollway: cannot start: 127.0.0.1:{port} is in use (another gateway running?); "
        "free it or pick --port"
    )
    # It bound first: the store was neither created nor migrated (and no first admin key
    # made) for a gateway that could not listen.
    assert not (tmp_path / "busy.db").exists()


def test_serve_on_port_0_says_the_port_it_got(tmp_path: Path) -> None:
    # --port 0 (any free port) logged ":0", which no client can use.
    env = {**os.environ, "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/any.db"}
    process = subprocess.Popen(
        tollway_command("serve", "--port", "0"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Tollway on http://" in line:
                break
        port = int(line.split("Tollway on http://127.0.0.1:", 1)[1].split(" ", 1)[0])
        assert port > 0
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(30)


def test_serve_with_an_admin_key_it_cannot_use_says_so_in_one_line(tmp_path: Path) -> None:
    # Both were a traceback: a TOLLWAY_ADMIN_KEY under 20 characters (BootstrapError), and
    # an auth.admin_key naming a variable that is not set (MissingCredential).
    env = {**os.environ, "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/admin.db"}
    short = _serve_fails(
        "--port", str(free_port()), env={**env, "TOLLWAY_ADMIN_KEY": "too-short"}, cwd=tmp_path
    )
    assert short == "tollway: cannot start: the admin key must be at least 20 characters long"
    config = tmp_path / "admin.yaml"
    config.write_text("auth: {admin_key: env:TOLLWAY_TEST_UNSET_ADMIN_KEY}\n")
    env.pop("TOLLWAY_TEST_UNSET_ADMIN_KEY", None)
    unset = _serve_fails("-c", str(config), "--port", str(free_port()), env=env, cwd=tmp_path)
    assert unset == (
        "tollway: cannot start: auth.admin_key: credential env:TOLLWAY_TEST_UNSET_ADMIN_KEY "
        "is not set"
    )


def test_an_admin_key_with_a_line_end_is_the_key_without_it(tmp_path: Path) -> None:
    # Pinned with its line end (as a Kubernetes secret made from a file holds it), the key
    # matched nothing a client can send: every admin call was a 401, and no admin was made.
    with running_gateway(tmp_path, None, {"TOLLWAY_ADMIN_KEY": CLIENT_KEY + "\n"}) as (url, _):
        me = httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert me.status_code == 200 and me.json()["role"] == "admin"
    env = {**os.environ, "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/admin.db"}
    inside = CLIENT_KEY[:6] + "\r" + CLIENT_KEY[6:]
    said = _serve_fails(
        "--port", str(free_port()), env={**env, "TOLLWAY_ADMIN_KEY": inside}, cwd=tmp_path
    )
    assert said == (
        "tollway: cannot start: the admin key holds a control character at character 7, which "
        "no request can carry"
    )


def test_serve_that_fails_part_way_says_so_in_one_line_and_nothing_else(tmp_path: Path) -> None:
    # A tracing header naming an unset variable stopped the start with a page of Rich
    # traceback (RuntimeError) and "Unclosed client session": the start that failed left
    # its upstream session open.
    pytest.importorskip("opentelemetry.sdk")
    env = {
        **os.environ,
        "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/tracing.db",
        "TOLLWAY_ADMIN_KEY": CLIENT_KEY,
    }
    env.pop("TOLLWAY_TEST_UNSET_OTLP_TOKEN", None)
    config = tmp_path / "tracing.yaml"
    headers = '{authorization: "env:TOLLWAY_TEST_UNSET_OTLP_TOKEN"}'
    config.write_text(f"telemetry: {{tracing: {{enabled: true, headers: {headers}}}}}\n")
    args = ("-c", str(config), "--port", str(free_port()))
    result = subprocess.run(
        tollway_command("serve", "--log-level", "warning", *args), capture_output=True,
        text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "tollway: cannot start: telemetry.tracing.headers: credential "
        "env:TOLLWAY_TEST_UNSET_OTLP_TOKEN is not set"
    )


def test_serve_on_a_sqlite_file_in_a_missing_directory_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    # SQLite said only "unable to open database file", and about one start in six the
    # connection that failed left a thread whose "Event loop is closed" traceback followed.
    env = {**os.environ, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    missing = f"sqlite+aiosqlite:///{tmp_path}/no-such-directory/x.db"

    def start(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tollway_command("serve", "--log-level", "warning", "--port", str(free_port())),
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**env, "TOLLWAY_STORE_URL": missing},
        )  # fmt: skip

    # The thread's traceback came about one start in six: eight starts, four at a time (a
    # start is mostly imports, one core each).
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(start, range(8)))
    for result in results:
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            f"tollway: cannot start: cannot use the store at {missing}: the directory "
            f"{tmp_path}/no-such-directory does not exist"
        )


def test_serve_refuses_an_unknown_log_level_as_a_usage_error() -> None:
    # logging.basicConfig raised "ValueError: Unknown level: 'VERBOSE'" as a traceback.
    result = run_cli("serve", "--log-level", "verbose")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'verbose' is not one of debug, info, warning, error" in _said(result.stderr)


def test_serve_refuses_a_port_out_of_range_as_a_usage_error(tmp_path: Path) -> None:
    # --port skipped the config's bounds: 70000 listened on 4464 (70000 - 65536) while the
    # log said 70000, and -1 ended in "[Errno -8] Servname not supported for ai_socktype".
    env = {**os.environ, "TOLLWAY_STORE_URL": f"sqlite+aiosqlite:///{tmp_path}/never.db"}
    for port in ("70000", "-1"):
        result = subprocess.run(
            tollway_command("serve", "--port", port), capture_output=True, text=True,
            timeout=30, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "Invalid value for '--port': Input should be" in _said(result.stderr)
        assert not (tmp_path / "never.db").exists()  # refused before anything started


def test_serve_help_says_what_host_and_port_default_to() -> None:
    # "Listen address [config: server.host]" printed as "Listen address": Rich took the
    # brackets for markup.
    result = run_cli("serve", "--help", env={**os.environ, "COLUMNS": "200"})
    assert "Listen address (default: the config's server.host)" in result.stdout
    assert "Listen port (default: the config's server.port)" in result.stdout
    # The help printed the docstring's reST quotes: "use it as ``api_key: vault:NAME``".
    vault = run_cli("credentials", "add", "--help", env={**os.environ, "COLUMNS": "200"})
    assert "use it as api_key: vault:NAME." in vault.stdout


def _admin_env(url: str) -> dict[str, str]:
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    env.pop("COLUMNS", None)
    return env


def test_limits_of_a_deployment_id_or_a_model_with_a_slash_can_be_deleted(
    embedded: tuple[str, Process],
) -> None:
    # Ids went into the URL as they were: "demo-chat#0" (a default deployment id) lost its
    # "#0" as a URL fragment, so the delete asked for deployment 'demo-chat' (404), and
    # "vendor/model" split the path (404 unknown_url).
    env = _admin_env(embedded[0])
    for scope, scope_id in (("deployment", "demo-chat#0"), ("model", "vendor/model")):
        made = run_cli("limits", "set", scope, scope_id, "--rpm", "5", env=env)
        assert made.returncode == 0, made.stderr
        gone = run_cli("limits", "delete", scope, scope_id, env=env)
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout.strip() == f"limits of {scope} {scope_id} removed"
    left = json.loads(run_cli("limits", "list", "--json", env=env).stdout)["data"]
    assert {row["scope_id"] for row in left} & {"demo-chat#0", "vendor/model"} == set()


def test_every_json_output_is_the_admin_apis_answer_and_nothing_else(
    embedded: tuple[str, Process],
) -> None:
    # `teams create --json` printed a one-item array where `keys create --json` printed the
    # object, and lists printed their rows without the answer's `next_cursor`.
    url = embedded[0]
    env = _admin_env(url)

    def api(path: str) -> object:
        answer = httpx.get(url + path, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def printed(*args: str) -> object:
        result = run_cli(*args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # one JSON document and nothing else

    team = printed("teams", "create", f"json-{uuid.uuid4().hex[:6]}")
    assert isinstance(team, dict) and team in api("/admin/teams")["data"]  # type: ignore[index]
    user = printed("users", "create", "--name", "json", "--service")
    assert isinstance(user, dict) and user["kind"] == "service"
    key = printed("keys", "create", "--name", "json", "--user", user["id"])
    assert isinstance(key, dict) and key["key"].startswith("tw-")
    budget = printed("budgets", "set", "key", key["id"], "5", "--period", "day")
    assert isinstance(budget, dict) and budget["scope_id"] == key["id"]
    limit = printed("limits", "set", "user", user["id"], "--rpm", "5")
    assert limit == {"scope": "user", "scope_id": user["id"], "tpm": None, "rpm": 5,
                     "max_concurrent": None, "source": "store"}  # fmt: skip
    # Reads from here on: each a CLI process (mostly imports), run four at a time. The audit
    # trail first and alone, before the refused calls below may add to it.
    assert printed("audit", "list", "--limit", "5") == api("/admin/audit?limit=5")

    def same_as_api(args: tuple[str, ...], path: str) -> Callable[[], None]:
        def check() -> None:
            assert printed(*args) == api(path), args

        return check

    def spend() -> None:
        spend = printed("spend")
        budgets = api("/admin/budgets")
        assert isinstance(spend, dict) and set(spend) == set(budgets)  # type: ignore[arg-type]
        assert sorted(map(str, spend["data"])) == sorted(map(str, budgets["data"]))  # type: ignore[index]

    def logs() -> None:
        logs = printed("logs", "list", "--limit", "1")
        assert isinstance(logs, dict) and set(logs) == {"data", "next_cursor"}

    def report() -> None:
        report = printed("report", "--by", "model")
        assert isinstance(report, dict) and set(report) == {"group_by", "data"}

    # Errors: a message on stderr, a non-zero exit, nothing on stdout for a script to parse.
    def fails(args: tuple[str, ...], said: str) -> Callable[[], None]:
        def check() -> None:
            failed = run_cli(*args, "--json", env=env)
            assert failed.returncode == 1 and failed.stdout == "", (args, failed.stdout)
            assert said in _said(failed.stderr), failed.stderr

        return check

    checks = [
        same_as_api(("teams", "list"), "/admin/teams"),
        same_as_api(("users", "list"), "/admin/users"),
        same_as_api(("keys", "list"), "/admin/keys"),
        same_as_api(("credentials", "list"), "/admin/credentials"),
        same_as_api(("budgets", "list"), "/admin/budgets"),
        same_as_api(("limits", "list"), "/admin/limits"),
        spend,
        logs,
        report,
        fails(
            ("budgets", "set", "team", "no-such-team", "5"), "404: no team with id 'no-such-team'"
        ),
        fails(("keys", "list", "--admin-key", "tw-not-a-key-at-all-xxxxxxxx"), "401"),
        fails(("logs", "list", "--limit", "0"), "400"),
    ]
    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(check) for check in checks]:
            done.result()  # an assertion that failed in a check is raised here


def test_a_tag_without_a_value_is_a_usage_error(embedded: tuple[str, Process]) -> None:
    # "ValueError: dictionary update sequence element #0 has length 1" as a traceback.
    result = run_cli(
        "keys", "create", "--name", "tagged", "--tag", "service", env=_admin_env(embedded[0])
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--tag takes KEY=VALUE" in _said(result.stderr)


class _NotAGateway(http.server.BaseHTTPRequestHandler):
    """A web server on the URL given for the gateway: a sign-in page for every path."""

    def do_GET(self) -> None:
        body = b"<html><body>Please sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_the_cli_says_what_is_wrong_with_the_gateway_url(embedded: tuple[str, Process]) -> None:
    # Without a scheme the CLI said "UnsupportedProtocol"; a web server that is not the
    # gateway answering 200 made it fail with a JSONDecodeError traceback.
    env = _admin_env(embedded[0])
    bare = embedded[0].removeprefix("http://")
    result = run_cli("keys", "list", "--url", bare, env=env)
    assert result.returncode == 1
    assert "must start with http:// or https://" in result.stderr
    assert repr(bare) in result.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        other = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_cli("keys", "list", "--url", other, env=env)
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"not a Tollway answer (is {other} the gateway?)" in _said(result.stderr)


def test_an_admin_key_no_header_can_carry_is_refused_without_printing_it(
    embedded: tuple[str, Process], tmp_path: Path
) -> None:
    # A key read from a file kept its line end: httpx refused the header, and the CLI printed
    # "cannot reach the gateway: Illegal header value b'Bearer <the key>\\r'"; one with a
    # character beyond ASCII failed with a traceback.
    env = _admin_env(embedded[0])
    for line_end in ("\n", "\r\n"):  # around the key: dropped, as the gateway drops it
        result = run_cli(
            "keys", "list", "--json", env={**env, "TOLLWAY_ADMIN_KEY": CLIENT_KEY + line_end}
        )
        assert result.returncode == 0, result.stderr
        assert "data" in json.loads(result.stdout)
    inside = {
        "\r": "the control character \\x0d at character 7",
        "é": "a non-ASCII character at character 7",
    }
    for char, said in inside.items():
        key = CLIENT_KEY[:6] + char + CLIENT_KEY[6:]
        for args in (("keys", "list"), ("logs", "export", "-o", str(tmp_path / "out.csv"))):
            result = run_cli(*args, env={**env, "TOLLWAY_ADMIN_KEY": key})
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr and "cannot reach" not in result.stderr
            assert f"the admin key (--admin-key or TOLLWAY_ADMIN_KEY) holds {said}" in _said(
                result.stderr
            )
            assert CLIENT_KEY[6:] not in result.stderr + result.stdout
        result = run_cli("scan", str(tmp_path), "--import", env={**env, "TOLLWAY_ADMIN_KEY": key})
        assert result.returncode == 2  # a usage error, before anything is scanned or sent
        assert f"TOLLWAY_ADMIN_KEY holds {said}" in _said(result.stderr)
        assert CLIENT_KEY[6:] not in result.stderr + result.stdout


class _EmptyKeyList(http.server.BaseHTTPRequestHandler):
    """A gateway behind TLS, as far as `keys list` can tell: no keys."""

    def do_GET(self) -> None:
        body = b'{"data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_the_cli_says_why_it_cannot_reach_the_gateway(
    embedded: tuple[str, Process], tmp_path: Path
) -> None:
    # Every failure to connect said only "ConnectError": a gateway that is down, a host name
    # that does not resolve, https:// to a plain-HTTP port and a certificate signed by a
    # private CA looked alike, and nothing said how to trust that CA.
    env = _admin_env(embedded[0])
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)

    def said(url: str, **extra: str) -> str:
        result = run_cli("keys", "list", "--url", url, env={**env, **extra})
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stderr
        # One line, however long, for a log collector or grep: Rich wrapped it at 80 columns
        # wherever stderr was no terminal.
        assert len(result.stderr.splitlines()) == 1, result.stderr
        return _said(result.stderr)

    closed = f"http://127.0.0.1:{free_port()}"
    assert said(closed) == f"cannot reach the gateway at {closed}: connection refused"
    plain = embedded[0].replace("http://", "https://")
    assert said(plain) == (
        f"cannot reach the gateway at {plain}: the TLS handshake failed "
        "([SSL: WRONG_VERSION_NUMBER] wrong version number); does it take http://?"
    )
    cert, key = self_signed(tmp_path, "127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyKeyList)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        behind_tls = f"https://127.0.0.1:{server.server_address[1]}"
        assert said(behind_tls) == (
            f"cannot reach the gateway at {behind_tls}: its TLS certificate is not trusted "
            "(certificate verify failed: self-signed certificate); if a private CA signed it, "
            "set SSL_CERT_FILE to that CA's certificate (PEM)"
        )
        trusted = run_cli("keys", "list", "--json", "--url", behind_tls,
                          env={**env, "SSL_CERT_FILE": str(cert)})  # fmt: skip
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads(trusted.stdout) == {"data": []}
    finally:
        server.shutdown()


def test_logs_list_piped_keeps_the_request_id_whole(embedded: tuple[str, Process]) -> None:
    # Piped, the table was cut to 80 columns: the request id, the column to grep for, came
    # out as "re" or "req_c06".
    url = embedded[0]
    answer = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "demo-chat", "messages": [{"role": "user", "content": "log me"}]},
    )
    request_id = answer.headers["x-request-id"]
    env = _admin_env(url)
    deadline = time.monotonic() + 10
    while request_id not in run_cli("logs", "list", "--json", "--limit", "5", env=env).stdout:
        assert time.monotonic() < deadline, "the request never reached the request log"
        time.sleep(0.2)
    assert request_id in run_cli("logs", "list", "--limit", "5", env=env).stdout


def test_report_shows_a_small_cost_in_plain_digits(embedded: tuple[str, Process]) -> None:
    # One demo request costs $0.000068, which the table showed as "6.8e-05".
    url = embedded[0]
    env = _admin_env(url)
    service = f"tiny-{uuid.uuid4().hex[:8]}"
    made = run_cli(
        "keys", "create", "--name", service, "--tag", f"service={service}", "--json", env=env
    )
    key = json.loads(made.stdout)["key"]
    answer = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "demo-chat", "messages": [{"role": "user", "content": "Hello"}]},
    )
    cost = answer.headers["x-tollway-cost-usd"]
    assert float(cost) < 1e-4
    args = ("report", "--by", "service", "--service", service)
    deadline = time.monotonic() + 10
    while service not in run_cli(*args, "--json", env=env).stdout:
        assert time.monotonic() < deadline, "the request never reached the request log"
        time.sleep(0.2)
    table = run_cli(*args, env=env).stdout
    assert f" {cost} " in table
    assert "e-0" not in table


def test_a_credential_without_a_vault_key_is_refused_saying_what_to_set(
    embedded: tuple[str, Process],
) -> None:
    # The gateway has no TOLLWAY_VAULT_KEY: adding a credential was a 500 ("see its log"),
    # the reason only in the gateway's traceback.
    env = _admin_env(embedded[0])
    result = run_cli("credentials", "add", "first-day", "openai", "--secret", "sk-test-x", env=env)
    assert result.returncode == 1
    said = _said(result.stderr)
    assert said.startswith(
        "503: TOLLWAY_VAULT_KEY is not set: it encrypts the provider credentials"
    )
    assert "Fernet.generate_key()" in said
    answer = httpx.put(
        embedded[0] + "/admin/credentials/first-day",
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        json={"name": "first-day", "provider": "openai", "secret": "sk-test-x"},
    )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "vault_unavailable"
    assert "sk-test-x" not in answer.text
    assert "Traceback" not in embedded[1].output()


def test_the_audit_trail_takes_the_page_sizes_the_request_log_takes(
    embedded: tuple[str, Process],
) -> None:
    # /admin/audit cut limit=5000 to 1000 without a word and refused 0 without naming the
    # parameter, where /admin/logs refuses both with param 'limit'.
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    for path in ("/admin/audit", "/admin/logs"):
        for limit in ("0", "5000"):
            answer = httpx.get(embedded[0] + path, params={"limit": limit}, headers=headers)
            assert answer.status_code == 400, (path, limit)
            error = answer.json()["error"]
            assert (error["param"], error["message"]) == (
                "limit",
                "'limit' must be between 1 and 1000",
            )
        assert httpx.get(embedded[0] + path, params={"limit": "1000"}, headers=headers).is_success


def test_a_budget_crossing_logs_the_limit_as_precisely_as_the_spend(
    embedded: tuple[str, Process],
) -> None:
    # "budget key ... crossed 50%: $0.000068 of $0.00 spent": the limit had two decimals.
    url, process = embedded
    env = _admin_env(url)
    made = json.loads(run_cli("keys", "create", "--name", "tiny-budget", "--json", env=env).stdout)
    budget = run_cli("budgets", "set", "key", made["id"], "0.0001", "--period", "day", env=env)
    assert budget.returncode == 0, budget.stderr
    answer = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {made['key']}"},
        json={
            "model": "demo-chat",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    assert answer.status_code == 200, answer.text
    cost = answer.headers["x-tollway-cost-usd"].rstrip("0")
    deadline = time.monotonic() + 10
    while not (lines := [x for x in process.output().splitlines() if f"{made['id']} (" in x]):
        assert time.monotonic() < deadline, "no budget event was logged"
        time.sleep(0.1)
    assert lines[0].endswith(f"crossed 50%: ${cost} of $0.0001 spent")


def test_report_takes_an_age_as_logs_list_does(embedded: tuple[str, Process]) -> None:
    # `tollway logs list --since 24h` worked, `tollway report --since 24h` was refused:
    # "400: 'since' is not an ISO 8601 date or time".
    url = embedded[0]
    env = _admin_env(url)
    service = f"aged-{uuid.uuid4().hex[:8]}"
    made = run_cli(
        "keys", "create", "--name", service, "--tag", f"service={service}", "--json", env=env
    )
    httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {json.loads(made.stdout)['key']}"},
        json={"model": "demo-chat", "messages": [{"role": "user", "content": "Hello"}]},
    ).raise_for_status()
    args = ("report", "--by", "service", "--service", service, "--json")
    deadline = time.monotonic() + 10
    while not (rows := json.loads(run_cli(*args, "--since", "24h", env=env).stdout)["data"]):
        assert time.monotonic() < deadline, "the request never reached the report"
        time.sleep(0.2)
    assert [row["requests"] for row in rows] == [1]
    assert json.loads(run_cli(*args, "--until", "24h", env=env).stdout)["data"] == []
    bad = run_cli(*args, "--since", "yesterday", env=env)
    assert bad.returncode == 1
    assert "'since' must be an ISO 8601 time or an age such as 24h or 7d" in _said(bad.stderr)
    # The API filters a report by key, user and provider too; the CLI had no option for
    # them, so `tollway report` could not say what one key spent (`logs list --key` could).
    key_id = json.loads(made.stdout)["id"]
    by_key = run_cli("report", "--by", "key", "--key", key_id, "--provider", "openai",
                     "--json", env=env)  # fmt: skip
    assert by_key.returncode == 0, by_key.stderr
    assert [(r["key"], r["requests"]) for r in json.loads(by_key.stdout)["data"]] == [(key_id, 1)]
    nobody = run_cli("report", "--key", key_id, "--user", "nobody", "--json", env=env)
    assert json.loads(nobody.stdout)["data"] == []


def test_a_key_expiring_past_the_calendar_is_a_400_not_a_500(
    embedded: tuple[str, Process],
) -> None:
    # --expires-in 100000000h (past year 9999) was an OverflowError: "500: The gateway
    # failed to handle request ...", with a traceback in the gateway's log.
    result = run_cli(
        "keys", "create", "--name", "forever", "--expires-in", "100000000h",
        env=_admin_env(embedded[0]),
    )  # fmt: skip
    assert result.returncode == 1
    assert _said(result.stderr) == (
        "400: 'expires_in': must be at most 876000h (100 years); leave it out for no expiry"
    )
    assert "OverflowError" not in embedded[1].output()


def test_an_age_older_than_the_calendar_is_a_400(embedded: tuple[str, Process]) -> None:
    # /admin/logs?since=99999999d was an OverflowError: a 500 with a traceback.
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    for path in ("/admin/logs", "/admin/reports/usage"):
        answer = httpx.get(embedded[0] + path, params={"since": "99999999d"}, headers=headers)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert (error["param"], error["message"]) == (
            "since",
            "'since' reaches back past year 1: '99999999d'",
        )
    assert "OverflowError" not in embedded[1].output()


def test_prices_piped_are_whole() -> None:
    # Piped, the catalog was cut to 80 columns: "inp…", "128…", "16,3…".
    env = {**os.environ}
    env.pop("COLUMNS", None)
    table = run_cli("prices", "--model", "gpt-4o", env=env).stdout
    assert "…" not in table
    row = next(line for line in table.splitlines() if " gpt-4o " in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]][:7] == [
        "openai", "gpt-4o", "2.5", "1.25", "", "10", "128,000",
    ]  # fmt: skip


def test_client_text_cannot_send_escape_sequences_to_the_admins_terminal(
    embedded: tuple[str, Process],
) -> None:
    # Any key holder chooses the model name, and the request log keeps it: `tollway logs
    # list` and `tollway report --by model` printed it as it came, so an ESC sequence in it
    # reached the admin's terminal (retitle it, write its clipboard with OSC 52, hide rows
    # by clearing or concealing them); a right-to-left override reordered what was shown.
    url = embedded[0]
    env = _admin_env(url)
    model = f"m{uuid.uuid4().hex[:4]}\x1b]0;pwned\x07\x1b[8m\u202e"
    answer = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "x"}]},
    )
    assert answer.status_code == 404
    listed = ("logs", "list", "--model", model, "--limit", "5")
    deadline = time.monotonic() + 10
    while answer.headers["x-request-id"] not in run_cli(*listed, "--json", env=env).stdout:
        assert time.monotonic() < deadline, "the request never reached the request log"
        time.sleep(0.2)
    listing = run_cli(*listed, env=env).stdout
    report = run_cli("report", "--by", "model", "--model", model, env=env).stdout
    for shown in (listing, report):
        assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert r"\x1b]0;pwned\x07\x1b[8m\u202e" in listing  # shown, as text
    assert r"\x1b]0;" in report  # the report cuts long names to the column
