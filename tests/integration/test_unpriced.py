"""``limits.unpriced``: whether a request under a budget may reach a deployment with no price.

Two ``tollway serve`` processes on the simulator, one with ``unpriced: refuse`` and one on the
default (``allow``), the same models on each; budgets set through the admin API.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import UPSTREAM_KEY
from tests.support import (
    CLIENT_KEY,
    Process,
    admin_request,
    budgeted_key,
    logged_row,
    running_gateways,
    tollway_command,
)

ADMIN = {"authorization": f"Bearer {CLIENT_KEY}"}
LOCAL = "llama-local-7b"  # in no catalog: unpriced
PRICE = {"input": 1.0, "output": 2.0}


def config(simulator_url: str, unpriced: str | None) -> dict[str, Any]:
    def deployment(model: str, **extra: Any) -> dict[str, Any]:
        return {"provider": "openai", "model": model, "api_base": simulator_url + "/v1",
                "api_key": "env:TEST_UPSTREAM_KEY", **extra}  # fmt: skip

    limits: dict[str, Any] = {"spend_flush_interval": "1s"}
    if unpriced is not None:
        limits["unpriced"] = unpriced
    return {
        "models": [
            {
                "name": "mixed",
                "strategy": "priority",  # the unpriced one first: skipping it is seen
                "deployments": [
                    deployment(LOCAL, id="unpriced-dep"),
                    deployment("sim-chat", id="priced-dep", price=PRICE),
                ],
            },
            {"name": "local", "deployments": [deployment(LOCAL, id="local-dep")]},
            {"name": "free", "deployments": [deployment(LOCAL, price={"input": 0, "output": 0})]},
            {
                "name": "local-embed",
                "kind": "embedding",
                "deployments": [deployment("house-embed", id="local-embed-dep")],
            },
        ],
        "limits": limits,
    }


@pytest.fixture(scope="module")
def gateways(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, str, Process]]:
    """The gateway refusing unpriced deployments under a budget, the default one, and the
    refusing one's process (for its log)."""
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    setups = [(config(simulator_url, "refuse"), env), (config(simulator_url, None), env)]
    with running_gateways(log_dir, setups) as [(refusing, process), (allowing, _)]:
        yield refusing, allowing, process


@pytest.fixture
def refusing(gateways: tuple[str, str, Process]) -> str:
    return gateways[0]


@pytest.fixture
def allowing(gateways: tuple[str, str, Process]) -> str:
    return gateways[1]


def spent_and_held(url: str, key_id: str) -> tuple[float, float]:
    rows = admin_request(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
    return rows[0]["spent_usd"], rows[0]["reserved_usd"]


def never_sent(simulator_url: str, marker: str) -> bool:
    recorded = httpx.get(simulator_url + "/_sim/requests").json()
    return not any(marker in str(request["json"]) for request in recorded)


def ask(url: str, key: str, model: str) -> Any:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )


def test_refuse_under_a_budget_serves_from_the_priced_candidate(refusing: str) -> None:
    key_id, key = budgeted_key(refusing, "unpriced")
    raw = ask(refusing, key, "mixed")
    assert raw.headers["x-tollway-deployment"] == "priced-dep"
    assert float(raw.headers["x-tollway-cost-usd"]) > 0
    assert spent_and_held(refusing, key_id)[0] > 0


def test_refuse_under_a_budget_serves_a_model_priced_at_zero(refusing: str) -> None:
    _, key = budgeted_key(refusing, "unpriced")
    assert ask(refusing, key, "free").headers["x-tollway-cost-usd"] == "0"


def _refused_openai(url: str, key: str, marker: str, call: str) -> openai.PermissionDeniedError:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    headers = {"x-request-id": marker}
    with pytest.raises(openai.PermissionDeniedError) as caught:
        if call == "chat":
            client.chat.completions.create(
                model="local", messages=[{"role": "user", "content": marker}], max_tokens=8,
                extra_headers=headers,
            )  # fmt: skip
        elif call == "responses":
            client.responses.create(
                model="local", input=marker, max_output_tokens=16, extra_headers=headers
            )
        else:
            client.embeddings.create(model="local-embed", input=marker, extra_headers=headers)
    return caught.value


@pytest.mark.parametrize("call", ["chat", "responses", "embeddings"])
def test_refuse_under_a_budget_with_only_unpriced_candidates_is_an_openai_403(
    refusing: str, simulator_url: str, call: str
) -> None:
    key_id, key = budgeted_key(refusing, "unpriced")
    marker = f"t-unpriced-{call}-{uuid.uuid4().hex[:10]}"
    error = _refused_openai(refusing, key, marker, call)
    assert error.status_code == 403
    assert error.code == "model_unpriced" and error.type == "permission_error"
    model = "local-embed" if call == "embeddings" else "local"
    assert f"'{model}'" in error.message and "no price" in error.message
    assert "budget" in error.message
    assert never_sent(simulator_url, marker)
    assert spent_and_held(refusing, key_id) == (0, 0)
    row = logged_row(refusing, marker, ADMIN)
    assert (row["status"], row["error_code"]) == (403, "model_unpriced")
    assert row["deployment_id"] is None and not row["cost_usd"]


def test_refuse_under_a_budget_with_only_unpriced_candidates_is_an_anthropic_403(
    refusing: str, simulator_url: str
) -> None:
    key_id, key = budgeted_key(refusing, "unpriced")
    marker = f"t-unpriced-messages-{uuid.uuid4().hex[:10]}"
    client = anthropic.Anthropic(base_url=refusing, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(
            model="local", max_tokens=8, messages=[{"role": "user", "content": marker}],
            extra_headers={"x-request-id": marker},
        )  # fmt: skip
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert "'local'" in body["error"]["message"] and "no price" in body["error"]["message"]
    assert never_sent(simulator_url, marker)
    assert spent_and_held(refusing, key_id) == (0, 0)
    row = logged_row(refusing, marker, ADMIN)
    assert (row["status"], row["error_code"]) == (403, "model_unpriced")


def test_refuse_without_a_budget_applying_serves_unpriced_models(refusing: str) -> None:
    raw = ask(refusing, CLIENT_KEY, "local")  # the admin key: under no budget
    assert raw.headers["x-tollway-deployment"] == "local-dep"
    assert ask(refusing, CLIENT_KEY, "mixed").headers["x-tollway-deployment"] == "unpriced-dep"


def test_allow_is_the_default_and_serves_unpriced_models_under_a_budget(allowing: str) -> None:
    key_id, key = budgeted_key(allowing, "unpriced")
    assert ask(allowing, key, "mixed").headers["x-tollway-deployment"] == "unpriced-dep"
    raw = ask(allowing, key, "local")
    assert (raw.headers["x-tollway-deployment"], raw.headers["x-tollway-cost-usd"]) == (
        "local-dep",
        "0",
    )
    assert spent_and_held(allowing, key_id) == (0, 0)


def test_start_up_warns_of_models_only_unpriced_deployments_serve(
    gateways: tuple[str, str, Process],
) -> None:
    warned = [line for line in gateways[2].output().splitlines() if "limits.unpriced" in line]
    assert len(warned) == 2 and all(" WARNING " in line for line in warned)
    assert any("'local'" in line for line in warned)
    assert any("'local-embed'" in line for line in warned)


def test_config_check_warns_of_models_only_unpriced_deployments_serve(
    tmp_path: Path, simulator_url: str
) -> None:
    path = tmp_path / "refuse.yaml"
    path.write_text(yaml.safe_dump(config(simulator_url, "refuse")))
    result = subprocess.run(
        tollway_command("config", "check", "--no-secrets", str(path)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "limits.unpriced" in line]
    assert len(warned) == 2 and all(line.startswith(f"{path}: warning:") for line in warned)
    allowed = tmp_path / "allow.yaml"
    allowed.write_text(yaml.safe_dump(config(simulator_url, None)))
    result = subprocess.run(
        tollway_command("config", "check", "--no-secrets", str(allowed)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "limits.unpriced" not in result.stderr


def estimate(url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(url + "/v1/estimate", json=body, headers=headers, timeout=10)


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@pytest.mark.parametrize(
    "body", [{"model": "local", **CHAT}, {"model": "local-embed", "input": "hi"}], ids=str
)
def test_the_estimate_under_a_budget_is_the_403_the_request_would_get(
    refusing: str, body: dict[str, Any]
) -> None:
    key_id, key = budgeted_key(refusing, "unpriced")
    answer = estimate(refusing, key, body)
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "model_unpriced" and error["type"] == "permission_error"
    assert f"'{body['model']}'" in error["message"]
    assert spent_and_held(refusing, key_id) == (0, 0)


def test_the_estimate_under_a_budget_leaves_out_the_unpriced_candidates(refusing: str) -> None:
    _, key = budgeted_key(refusing, "unpriced")
    answer = estimate(refusing, key, {"model": "mixed", **CHAT})
    assert answer.status_code == 200, answer.text
    quoted = answer.json()
    assert [row["deployment"] for row in quoted["deployments"]] == ["priced-dep"]
    assert quoted["cost_usd"]["min"] > 0  # the unpriced candidate's $0 is not what it costs


def test_the_estimate_quotes_unpriced_candidates_where_they_may_serve(
    refusing: str, allowing: str
) -> None:
    # Without a budget (refuse asks nothing of such a caller), and under ``allow``.
    _, key = budgeted_key(allowing, "unpriced")
    for url, caller in ((refusing, CLIENT_KEY), (allowing, key)):
        for model in ("local", "mixed"):
            answer = estimate(url, caller, {"model": model, **CHAT})
            assert answer.status_code == 200, answer.text
            rows = answer.json()["deployments"]
            assert any(not row["priced"] for row in rows)
