"""Shared fixtures: one simulator and one gateway process per test session."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx._transports import default as httpx_transports

from tests.support import Process, running_gateway, running_simulator

UPSTREAM_KEY = "sk-upstream-test-0123456789abcdef"
AWS_ACCESS_KEY_ID = "AKIDTOLLWAYTEST00001"
AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTOLLWAYKEY"
BEDROCK_MODEL = "anthropic.claude-sim-v1:0"


@pytest.fixture(scope="session", autouse=True)
def one_tls_context_for_every_http_client() -> Iterator[None]:
    """The httpx clients the tests make (the openai and anthropic SDKs' too) share one default
    TLS context. Each new client built its own, loading the CA bundle: 18 ms of CPU, for the
    thousands of clients made for plain-HTTP calls to local processes (a minute of the
    suite). A context or CA file a test passes as ``verify`` is used as it is."""
    create = httpx_transports.create_ssl_context
    shared: dict[tuple[bool, bool], ssl.SSLContext] = {}

    def shared_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if not isinstance(verify, bool) or cert is not None:
            return create(verify=verify, cert=cert, trust_env=trust_env)
        if (verify, trust_env) not in shared:
            shared[verify, trust_env] = create(verify=verify, trust_env=trust_env)
        return shared[verify, trust_env]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx_transports, "create_ssl_context", shared_context)
        yield


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where child processes write their output."""
    return tmp_path_factory.mktemp("processes")


@pytest.fixture(scope="session")
def simulator_url(log_dir: Path) -> Iterator[str]:
    """A simulated provider process that requires ``UPSTREAM_KEY`` (or SigV4 for Bedrock)."""
    aws = ["--aws-access-key-id", AWS_ACCESS_KEY_ID, "--aws-secret-access-key"]
    with running_simulator(log_dir, "--api-key", UPSTREAM_KEY, *aws, AWS_SECRET_ACCESS_KEY) as url:
        yield url


def gateway_config(simulator_url: str, **upstream: Any) -> dict[str, Any]:
    """A gateway config with models of every provider family on the simulator, some broken."""
    base = f"{simulator_url}/v1"
    key = "env:TEST_UPSTREAM_KEY"
    return {
        # Many tests share these groups and make the simulator answer one request with a 429
        # (or an overload) asking for a wait: the deployment would rest for it, refusing the
        # next tests' requests. Rests are routing's own tests' (test_routing_chaos.py).
        "routing": {"retry_after_max": "1ms"},
        "upstream": upstream
        or {
            "timeouts": {"connect": "2s", "first_byte": "2s", "total": "10s"},
            "forward_headers": ["x-sim-*"],
        },
        "models": [
            {
                "name": "test-chat",
                "deployments": [
                    {"provider": "openai", "model": "sim-chat", "api_base": base, "api_key": key}
                ],
            },
            {
                "name": "vendor/test-chat",
                "deployments": [
                    {"provider": "openai", "model": "sim-chat", "api_base": base, "api_key": key}
                ],
            },
            {
                "name": "test-mistral",
                "deployments": [
                    {
                        "provider": "mistral",
                        "model": "sim-chat",
                        "api_base": f"{simulator_url}/mistral/v1",  # as strict as Mistral
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-magistral",  # a reasoning model: content as thinking chunks
                "deployments": [
                    {
                        "provider": "mistral",
                        "model": "magistral-medium-latest",
                        "api_base": f"{simulator_url}/mistral/v1",
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-embed",
                "kind": "embedding",
                "deployments": [
                    {"provider": "openai", "model": "sim-embed", "api_base": base, "api_key": key}
                ],
            },
            {
                "name": "test-azure",
                "deployments": [
                    {
                        "provider": "azure_openai",
                        "model": "sim-chat",
                        "azure_deployment": "my-chat",
                        "api_base": simulator_url,
                        "api_version": "2024-10-21",
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-azure-2024-06",  # an api-version that predates stream_options
                "deployments": [
                    {
                        "provider": "azure_openai",
                        "model": "sim-chat",
                        "azure_deployment": "my-old-chat",
                        "api_base": simulator_url,
                        "api_version": "2024-06-01",
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-azure-v1",
                "deployments": [
                    {
                        "provider": "azure_openai",
                        "model": "sim-chat",
                        "azure_deployment": "my-chat-v1",
                        "api_base": simulator_url,
                        "api_version": "v1",
                        # A Microsoft Entra ID access token, not the resource's key.
                        "azure_ad_token": key,
                    }
                ],
            },
            {
                "name": "test-fallback",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "sim-chat",
                        "api_base": "http://127.0.0.1:9/v1",
                        "api_key": key,
                        "id": "dead-primary",
                    },
                    {
                        "provider": "openai",
                        "model": "sim-chat",
                        "api_base": base,
                        "api_key": key,
                        "id": "live-secondary",
                    },
                ],
            },
            {
                "name": "test-badkey",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "sim-chat",
                        "api_base": base,
                        "api_key": "env:TEST_WRONG_KEY",
                    }
                ],
            },
            {
                "name": "test-claude",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-claude-badkey",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": "env:TEST_WRONG_KEY",
                    }
                ],
            },
            *bedrock_groups(simulator_url),
            {
                "name": "test-gemini",
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-gemini-3",  # thinks at a thinkingLevel, not within a budget
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "gemini-3-flash-preview",
                        "api_base": simulator_url,
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-vertex",
                "deployments": [
                    {
                        "provider": "vertex_ai",
                        "model": "sim-chat",
                        "api_base": f"{simulator_url}/v1/projects/test/locations/europe-west4",
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-gemini-embed",
                "kind": "embedding",
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "sim-embed",
                        "api_base": simulator_url,
                        "api_key": key,
                    }
                ],
            },
            {
                "name": "test-gemini-badkey",
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": "env:TEST_WRONG_KEY",
                    }
                ],
            },
        ],
    }


def bedrock_groups(simulator_url: str) -> list[dict[str, Any]]:
    """Bedrock models on the simulator: SigV4-signed, with a Bedrock API key, a wrong secret."""
    base = {"provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1"}
    signed = {**base, "api_base": simulator_url, "aws_access_key_id": "env:TEST_AWS_KEY_ID"}
    return [
        {"name": "test-bedrock", "deployments": [
            {**signed, "aws_secret_access_key": "env:TEST_AWS_SECRET_KEY"}]},
        {"name": "test-bedrock-apikey", "deployments": [
            {**base, "api_base": simulator_url, "api_key": "env:TEST_UPSTREAM_KEY"}]},
        {"name": "test-bedrock-badsecret", "deployments": [
            {**signed, "aws_secret_access_key": "env:TEST_WRONG_KEY"}]},
    ]  # fmt: skip


@pytest.fixture(scope="session")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, Process]]:
    """A gateway process in front of the simulator; yields (base URL, process)."""
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_WRONG_KEY": "sk-wrong-key-for-test-9876"}
    env |= {"TEST_AWS_KEY_ID": AWS_ACCESS_KEY_ID, "TEST_AWS_SECRET_KEY": AWS_SECRET_ACCESS_KEY}
    with running_gateway(log_dir, gateway_config(simulator_url), env) as running:
        yield running


@pytest.fixture(scope="session")
def gateway_url(gateway: tuple[str, Process]) -> str:
    """The gateway's base URL (no /v1)."""
    return gateway[0]
