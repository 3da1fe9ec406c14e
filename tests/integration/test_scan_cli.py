"""``tollway scan`` as a real process: table, JSON, exit codes, and ``--import``.

``--import`` runs against a real gateway process and checks what its admin API stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from tests.support import CLIENT_KEY, ROOT, free_port, running_gateway
from tests.unit.scan.fakes import fake_key, fake_line
from tollway.scan import scan_app
from tollway.scan.masking import mask

ADMIN_KEY = "tw-admin-test-key"


@dataclass
class Tree:
    """A temporary source tree with fake keys, and what a scan should report."""

    root: Path
    keys: dict[str, str] = field(default_factory=dict)
    """Each fake key by name, as planted."""

    def write(self, relative: str, content: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _notebook(source: str, output: str) -> str:
    cell = {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {},
        "source": source.splitlines(keepends=True),
        "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}],
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Keys in .env files, code, YAML, a Dockerfile, CI and a notebook; plus clean files."""
    tree = Tree(tmp_path / "shop")
    openai_line, tree.keys["openai"] = fake_line("openai-project-key")
    tree.keys["anthropic"] = fake_key("anthropic-api-key")
    tree.keys["groq"] = fake_key("groq-api-key")
    tree.keys["google"] = fake_key("google-api-key")
    tree.keys["aws"] = fake_key("aws-access-key-id")
    tree.keys["hf"] = fake_key("huggingface-access-token")
    tree.write("billing/.env", f"OPENAI_API_KEY={tree.keys['openai']}\nDEBUG=1\n")
    tree.write("billing/app.py", f"import openai\n\n{openai_line}\n")
    tree.write("search/config.yaml", f"llm:\n  ANTHROPIC_API_KEY: {tree.keys['anthropic']}\n")
    tree.write("search/Dockerfile", f"FROM python:3.11\nENV GROQ_API_KEY={tree.keys['groq']}\n")
    tree.write(".github/workflows/ci.yml", f"env:\n  AWS_ACCESS_KEY_ID: {tree.keys['aws']}\n")
    tree.write(
        "notebooks/explore.ipynb",
        _notebook(f"genai.configure(api_key='{tree.keys['google']}')\n", f"{tree.keys['hf']}\n"),
    )
    tree.write("README.md", "Set OPENAI_API_KEY=sk-proj-... in your .env file.\n")
    tree.write("node_modules/pkg/index.js", f"const k = '{fake_key('xai-api-key')}';\n")
    return tree


def _environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TOLLWAY_") and name != "COLUMNS"
    }
    environment["NO_PROXY"] = "127.0.0.1,localhost"
    environment.update(extra or {})
    return environment


def run_scan(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tollway.scan", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=_environment(env)
    )


def assert_no_key_leaked(tree: Tree, *outputs: str) -> None:
    for name, key in tree.keys.items():
        for output in outputs:
            assert key not in output, f"the {name} key was printed in full"


def test_a_scan_lists_every_key_masked_with_its_place_and_exits_1(tree: Tree) -> None:
    result = run_scan(str(tree.root))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    for place in (
        "billing/.env:1",
        "billing/app.py:3",
        "search/config.yaml:2",
        "search/Dockerfile:2",
        ".github/workflows/ci.yml:2",
        "notebooks/explore.ipynb:",
        "(cell 1, line 1)",
        "(cell 1 output, line 1)",
    ):
        assert place in out
    assert mask(tree.keys["openai"], "sk-proj-") in out
    assert mask(tree.keys["anthropic"], "sk-ant-api03-") in out
    assert mask(tree.keys["aws"], "AKIA") in out
    assert "7 keys found in 7 files" in out
    assert "openai: 2" in out and "anthropic: 1" in out and "huggingface: 1" in out
    assert "README.md" not in out and "node_modules" not in out
    assert_no_key_leaked(tree, result.stdout, result.stderr)


def test_json_output_is_masked_and_complete(tree: Tree) -> None:
    result = run_scan(str(tree.root), "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    findings = document["findings"]
    assert len(findings) == 7
    assert document["summary"]["openai"] == 2
    notebook = [f for f in findings if f["path"] == "notebooks/explore.ipynb"]
    assert [(f["cell"], f["cell_line"], f["in_output"]) for f in notebook] == [
        (1, 1, False),
        (1, 1, True),
    ]
    env_finding = next(f for f in findings if f["path"] == "billing/.env")
    assert env_finding["masked"] == mask(tree.keys["openai"], "sk-proj-")
    assert env_finding["variable"] == "OPENAI_API_KEY"
    assert_no_key_leaked(tree, result.stdout, result.stderr)


def test_a_clean_tree_exits_0(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import os\nKEY = os.environ['OPENAI_API_KEY']\n")
    result = run_scan(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "No provider keys found in 1 file." in result.stdout
    assert json.loads(run_scan(str(tmp_path), "--json").stdout)["findings"] == []


def test_usage_errors_exit_2(tree: Tree, tmp_path: Path) -> None:
    missing = run_scan(str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert "Invalid value for 'path'" in missing.stderr
    assert run_scan(str(tree.root), "--no-such-flag").returncode == 2
    no_gateway = run_scan(str(tree.root), "--import")
    assert no_gateway.returncode == 2
    assert "TOLLWAY_URL" in no_gateway.stderr and "TOLLWAY_ADMIN_KEY" in no_gateway.stderr
    bad_url = run_scan(str(tree.root), "--import", "--gateway-url", "gateway:8080")
    assert bad_url.returncode == 2
    assert "must start with http://" in bad_url.stderr


def test_the_scan_app_registers_as_a_tollway_subcommand(tree: Tree) -> None:
    app = typer.Typer()

    @app.command()
    def serve() -> None:
        """Stands in for the other tollway commands."""

    app.add_typer(scan_app)
    result = CliRunner().invoke(app, ["scan", str(tree.root), "--json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["findings"]) == 7


# --import, against a real gateway ----------------------------------------------------------

VAULT_KEY = "cMQ5ntLHFUx7ArDfh11W-S3pdvakc5TaHIM9p3pNBDg="  # a test-only Fernet key


@pytest.fixture(scope="module")
def gateway(log_dir: Path) -> Iterator[str]:
    """A gateway process whose admin API ``--import`` talks to."""
    config = {"models": [{"name": "m", "deployments": [{"provider": "openai", "model": "m"}]}]}
    with running_gateway(log_dir, config, {"TOLLWAY_VAULT_KEY": VAULT_KEY}) as (url, _):
        yield url


def admin_get(url: str, path: str, key: str = CLIENT_KEY) -> Any:
    response = httpx.get(url + path, headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return response.json()


def scan_keys(url: str) -> list[dict[str, Any]]:
    return [k for k in admin_get(url, "/admin/keys")["data"] if k["name"].startswith("scan:")]


def test_import_stores_keys_and_prints_the_lines_that_replace_them(
    tree: Tree, gateway: str
) -> None:
    env = {"TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    before = {k["id"] for k in scan_keys(gateway)}
    result = run_scan(str(tree.root), "--import", env=env)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    stored = {c["name"]: c["provider"] for c in admin_get(gateway, "/admin/credentials")["data"]}
    digests = {name.rsplit("-", 1)[-1] for name in stored}
    assert {"openai", "anthropic", "groq", "gemini", "huggingface"} <= set(stored.values())
    made = [k for k in scan_keys(gateway) if k["id"] not in before]
    assert sorted(k["tags"]["service"] for k in made) == ["billing", "notebooks", "search"]
    assert f"OPENAI_BASE_URL={gateway}/v1" in out
    assert f"ANTHROPIC_BASE_URL={gateway}\n" in out
    assert "id and secret pair" in out
    new_key = next(
        line.strip().split("=", 1)[1]
        for line in out.splitlines()
        if line.strip().startswith("OPENAI_API_KEY=tw-")
    )
    me = admin_get(gateway, "/admin/whoami", new_key)
    assert me["kind"] == "key" and me["key_prefix"] == new_key[:12]
    assert_no_key_leaked(tree, out, result.stderr)
    assert digests  # credential names carry a short hash, never the key

    again = run_scan(str(tree.root), "--import", env=env)
    assert again.returncode == 1, again.stderr
    assert "already stored" in again.stdout
    assert len([k for k in scan_keys(gateway) if k["id"] not in before]) == 3
    assert_no_key_leaked(tree, again.stdout, again.stderr)


def test_import_with_json_reports_each_replacement(tree: Tree, log_dir: Path) -> None:
    # A gateway of its own: the tree's keys are already stored in the module's one.
    config = {"models": [{"name": "m", "deployments": [{"provider": "openai", "model": "m"}]}]}
    with running_gateway(log_dir, config, {"TOLLWAY_VAULT_KEY": VAULT_KEY}) as (gateway, _):
        env = {"TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
        result = run_scan(str(tree.root), "--import", "--json", env=env)
    assert result.returncode == 1, result.stderr
    imports = json.loads(result.stdout)["imports"]
    env_import = next(item for item in imports if item["path"] == "billing/.env")
    assert env_import["status"] == "stored"
    assert env_import["credential"].startswith("openai-billing-")
    assert env_import["replacement"][0] == f"OPENAI_BASE_URL={gateway}/v1"
    assert_no_key_leaked(tree, result.stdout, result.stderr)


def test_import_with_a_refused_admin_key_exits_3(tree: Tree, gateway: str) -> None:
    env = {"TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": "tw-not-an-admin-key-xxxxxxxxxxxx"}
    result = run_scan(str(tree.root), "--import", env=env)
    assert result.returncode == 3
    assert "refused the admin key (401" in result.stderr
    assert "billing/.env:1" in result.stdout
    assert_no_key_leaked(tree, result.stdout, result.stderr)


def test_import_with_an_unreachable_gateway_exits_3(tree: Tree) -> None:
    env = {"TOLLWAY_URL": f"http://127.0.0.1:{free_port()}", "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    result = run_scan(str(tree.root), "--import", env=env)
    assert result.returncode == 3
    assert "cannot reach the gateway at http://127.0.0.1:" in result.stderr
    assert_no_key_leaked(tree, result.stdout, result.stderr)
