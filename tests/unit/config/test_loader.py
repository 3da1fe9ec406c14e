"""Config loading: valid files, and errors that name the file, the path and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config import (
    ConfigError,
    SecretRef,
    default_settings,
    load_settings,
    parse_duration,
    validate_settings,
)

GOOD = """
server: {port: 4100, max_body_size: 1MiB}
upstream:
  timeouts: {connect: 500ms, first_byte: 30s, total: 2m}
models:
  - name: gpt-4o
    deployments:
      - provider: openai
        model: gpt-4o
        api_key: env:OPENAI_API_KEY
        timeouts: {first_byte: 10s}
      - provider: azure_openai
        model: gpt-4o
        api_base: https://example.openai.azure.com
        api_version: 2024-10-21
        api_key: file:/run/secrets/azure
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tollway.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_units_resolved(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.server.port == 4100
    assert settings.server.max_body_size == 1024 * 1024
    assert settings.upstream.timeouts.connect == 0.5
    assert settings.upstream.timeouts.total == 120
    group = settings.models[0]
    assert group.deployments[0].api_key == SecretRef("env:OPENAI_API_KEY")
    merged = settings.upstream.timeouts.merged(group.deployments[0].timeouts)
    assert (merged.connect, merged.first_byte, merged.total) == (0.5, 10, 120)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "models: [{name: a, deployments: [{provider: nope, model: m}]}]",
            "models[0].deployments[0].provider: unknown provider 'nope'",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai}]}]",
            "models[0].deployments[0].model: required option missing",
        ),
        ("server: {port: 4000, prot: 1}", "server.prot: unknown option"),
        (
            "server: {trusted_proxies: [10.0.0.0/8, 10.0.0.300]}",
            "server.trusted_proxies[1]: '10.0.0.300' is not an address or a CIDR network",
        ),
        (
            # A mistyped prefix is not made a network: it would trust one nobody named.
            "server: {trusted_proxies: ['2001:db8::/32', 10.1.0.0/8]}",
            "server.trusted_proxies[1]: '10.1.0.0/8' has bits set past its prefix: the network"
            " is 10.0.0.0/8",
        ),
        ("upstream: {timeouts: {connect: soon}}", "upstream.timeouts.connect: 'soon' is not a"),
        ("models: [{name: a, deployments: []}]", "models[0].deployments: List should have at"),
        (
            "models: [{name: a, deployments: [{provider: azure_openai, model: m, "
            "api_base: 'https://x'}]}]",
            "needs api_version",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai, model: m, "
            "headers: {Authorization: x}}]}]",
            "must be set with api_key",
        ),
        (
            "models: [{name: a, deployments: [{provider: azure_openai, model: m, "
            "api_base: 'https://x', api_version: v1, api_key: 'env:K', azure_ad_token: 'env:T'}]}]",
            "set api_key or azure_ad_token, not both",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai, model: m, "
            "azure_ad_token: 'env:T'}]}]",
            "'azure_ad_token' is for provider 'azure_openai', not 'openai'",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai, model: m}]},"
            " {name: a, deployments: [{provider: openai, model: m}]}]",
            "models[1].name: 'a' is the name of models[0] too: model names must be unique",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai, model: m, "
            "api_base: embedded-simulator}]}]",
            "models[0].deployments[0].api_base: 'embedded-simulator' needs simulator.enabled",
        ),
        (
            "models: [{name: a, deployments: [{provider: anthropic, model: m, "
            "tokenizer: o200k_base}]}]",
            "provider 'anthropic' cannot declare a tokenizer",
        ),
        (
            "models: [{name: a, deployments: [{provider: vllm, model: m, tokenizer: llama3}]}]",
            "models[0].deployments[0].tokenizer: Input should be 'o200k_base' or 'cl100k_base'",
        ),
        (
            # One id naming two targets would share one health record, rate limits and
            # metrics label between two upstreams.
            "models: [{name: a, deployments: [{provider: openai, model: m, id: d}]},"
            " {name: b, deployments: [{provider: openai, model: other, id: d}]}]",
            "models[1].deployments[0].id: deployment id 'd' names another deployment in "
            "models[0].deployments[0]",
        ),
        (
            # YAML's .inf and .nan are floats: no budget, price or time limit is infinite.
            "limits: {budgets: [{scope: team, id: t, period: month, limit_usd: .inf}]}",
            "limits.budgets[0].limit_usd: Input should be a finite number",
        ),
        (
            "models: [{name: a, deployments: [{provider: openai, model: m, "
            "price: {input: .nan, output: 1}}]}]",
            "models[0].deployments[0].price.input: Input should be a finite number",
        ),
        ("upstream: {timeouts: {total: .inf}}", "upstream.timeouts.total: Input should be a fin"),
        ("server: [1, 2", "line 1, column"),
        ("- just\n- a list", "top level must be a mapping"),
    ],
)
def test_errors_name_file_path_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_durations() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("5s") == 5
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration(3) == 3
    for bad in ("-1s", "0", "fast", True, "5 parsecs"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_secret_refs_dump_redacted(tmp_path: Path) -> None:
    text = (
        "models: [{name: a, deployments: [{provider: openai, model: m, "
        "api_key: sk-literal-secret-value}]}]"
    )
    settings = load_settings(write(tmp_path, text))
    dumped = settings.model_dump_json()
    assert "sk-literal-secret-value" not in dumped
    assert "***" in dumped
    assert "sk-literal-secret-value" not in repr(settings)
    assert SecretRef("env:X").redacted() == "env:X"
    with pytest.raises(ValueError):
        SecretRef("env:")


def test_embedded_default_offers_demo_models_and_providers_when_keyed() -> None:
    bare = default_settings({})
    assert bare.simulator.enabled
    names = {g.name for g in bare.models}
    assert names == {"demo-chat", "demo-chat-large", "demo-embed", "demo-claude"}
    claude = next(g for g in bare.models if g.name == "demo-claude")
    assert claude.deployments[0].provider == "anthropic"
    assert claude.deployments[0].api_base == "embedded-simulator"
    assert claude.owned_by == "tollway"
    keyed = default_settings({"OPENAI_API_KEY": "sk-x"})
    names = {g.name for g in keyed.models}
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} <= names
    assert not any(name.startswith("claude-") for name in names)
    gpt = next(g for g in keyed.models if g.name == "gpt-4o")
    assert gpt.deployments[0].api_key == SecretRef("env:OPENAI_API_KEY")
    anthropic = default_settings({"ANTHROPIC_API_KEY": "sk-ant-x"})
    names = {g.name for g in anthropic.models}
    assert {"claude-sonnet-5-5", "claude-haiku-4-5"} <= names
    assert "gpt-4o" not in names
    sonnet = next(g for g in anthropic.models if g.name == "claude-sonnet-5-5")
    assert sonnet.deployments[0].provider == "anthropic"
    assert sonnet.deployments[0].api_key == SecretRef("env:ANTHROPIC_API_KEY")
    assert sonnet.owned_by == "anthropic"


def test_a_deployment_shared_by_two_groups_keeps_its_id(tmp_path: Path) -> None:
    text = (
        "models: [{name: a, deployments: [{provider: openai, model: m, id: d, weight: 2}]},"
        " {name: b, deployments: [{provider: openai, model: m, id: d}]}]"
    )
    settings = load_settings(write(tmp_path, text))
    assert [g.deployments[0].id for g in settings.models] == ["d", "d"]


@pytest.mark.parametrize(
    "api_base",
    [
        "https://alice-name:hunter2-secret@llm.example.com/v1",
        "https://alice-name@llm.example.com/v1",
        "https://:hunter2-secret@llm.example.com/v1",
        "HTTP://alice-name:hunter2-secret@[::1]:8000/v1",
    ],
)
def test_an_api_base_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, api_base: str
) -> None:
    # A URL's userinfo ends up in logs, errors and admin answers; the key has its reference.
    text = (
        "models: [{name: a, deployments: [{provider: openai, model: m}, {provider: vllm, "
        f"model: m, api_base: '{api_base}', api_key: 'env:K'}}]}}]"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}: models[0].deployments[1].api_base: " in message
    assert "credentials" in message and "api_key: env:" in message
    assert "hunter2-secret" not in message
    assert "alice-name" not in message


def test_an_api_base_with_an_at_sign_past_its_host_loads(tmp_path: Path) -> None:
    # Only the authority's userinfo is a credential: '@' in a path or query is not one.
    api_base = "https://llm.example.com/v1/@team?tag=a@b"
    text = (
        "models: [{name: a, deployments: [{provider: vllm, model: m, "
        f"api_base: '{api_base}'}}]}}]"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.models[0].deployments[0].api_base == api_base


def test_drain_delay_is_none_by_default_and_never_negative() -> None:
    assert validate_settings({}, source="t.yaml").server.drain_delay == 0
    for given, seconds in (("0s", 0), (0, 0), ("5s", 5), ("1500ms", 1.5)):
        server = validate_settings({"server": {"drain_delay": given}}, source="t.yaml").server
        assert server.drain_delay == seconds
    assert server.model_dump(mode="json")["drain_delay"] == "1.5s"
    assert (
        validate_settings({}, source="t.yaml").server.model_dump(mode="json")["drain_delay"] == "0s"
    )
    for bad in ("-1s", -1, "soon", True):
        with pytest.raises(ConfigError, match=r"server\.drain_delay"):
            validate_settings({"server": {"drain_delay": bad}}, source="t.yaml")
