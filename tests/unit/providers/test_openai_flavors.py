"""What each member of the OpenAI family wants the output limit called, whether it takes
``stream_options`` and the client's ``include_obfuscation``, and what Mistral takes of tools."""

from __future__ import annotations

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import Deployment, UpstreamTimeouts
from tollway.providers.openai import AZURE, MISTRAL, MISTRAL_FIELDS, OPENAI


def _deployment(provider: str, api_base: str, api_version: str | None = None) -> Deployment:
    return Deployment(
        id="d",
        provider=provider,
        model="m",
        api_base=api_base,
        timeouts=UpstreamTimeouts(connect=1, first_byte=1, total=1),
        api_version=api_version,
    )


@pytest.mark.parametrize(
    ("api_version", "newer"),
    [
        ("2024-02-01", False),
        ("2024-06-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("preview", True),
    ],
)
def test_azure_names_the_limit_max_completion_tokens_from_the_version_that_knows_it(
    api_version: str, newer: bool
) -> None:
    deployment = _deployment("azure_openai", "https://x.openai.azure.com", api_version)
    assert AZURE.completion_tokens(deployment) is newer


OPENAIS_HOSTS = (
    "https://api.openai.com/v1",
    "https://eu.api.openai.com/v1",
    "https://us.api.openai.com/v1",
)
"""OpenAI's API and its data residency hosts, whose reasoning models refuse max_tokens alike."""
NOT_OPENAIS = ("http://127.0.0.1:8000/v1", "https://api.openai.com.example.net/v1")


def test_only_openais_own_api_among_compatible_servers_wants_max_completion_tokens() -> None:
    for api_base in OPENAIS_HOSTS:
        assert OPENAI.completion_tokens(_deployment("openai", api_base)), api_base
    for api_base in NOT_OPENAIS:
        assert not OPENAI.completion_tokens(_deployment("openai", api_base)), api_base


@pytest.mark.parametrize(
    ("api_version", "takes"),
    [
        ("2023-05-15", False),
        ("2024-06-01", False),
        ("2024-07-01-preview", False),
        ("2024-08-01-preview", True),
        ("2024-10-21", True),
        ("v1", True),
        ("preview", True),
    ],
)
def test_azure_is_sent_stream_options_from_the_version_that_knows_it(
    api_version: str, takes: bool
) -> None:
    deployment = _deployment("azure_openai", "https://x.openai.azure.com", api_version)
    assert AZURE.stream_options(deployment) is takes


def test_only_openais_own_api_is_sent_the_clients_include_obfuscation() -> None:
    # Only OpenAI pads its stream events (the obfuscation field); nothing to turn off elsewhere.
    for api_base in OPENAIS_HOSTS:
        assert OPENAI.obfuscation(_deployment("openai", api_base)), api_base
    for api_base in NOT_OPENAIS:
        assert not OPENAI.obfuscation(_deployment("openai", api_base)), api_base
    azure = _deployment("azure_openai", "https://x.openai.azure.com", "2024-10-21")
    assert not AZURE.obfuscation(azure)
    assert not MISTRAL.obfuscation(_deployment("mistral", "https://api.mistral.ai/v1"))


def test_mistral_is_sent_tools_without_a_cache_hint_and_refuses_fields_it_lacks() -> None:
    function = {"name": "f", "parameters": {"type": "object"}}
    hinted = {"type": "function", "function": function, "cache_control": {"type": "ephemeral"}}
    body = MISTRAL_FIELDS.apply({"model": "m", "messages": [], "tools": [hinted]})
    assert body["tools"] == [{"type": "function", "function": function}]
    odd = {"type": "function", "function": function, "defer_loading": True}
    with pytest.raises(InvalidRequest) as caught:
        MISTRAL_FIELDS.apply({"model": "m", "messages": [], "tools": [odd]})
    assert caught.value.param == "tools[0].defer_loading"
