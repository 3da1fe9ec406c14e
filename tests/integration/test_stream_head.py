"""A stream's head is held until its first content, so a failure right after it fails over.

Two simulator processes serve each model group: a primary whose every stream fails (an
overload error event or a cut connection, after its head or after some content) and a
healthy backup. Clients are the real ``openai`` and ``anthropic`` SDKs; every group has its
own deployments, so one test's failures never open another's circuit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import BEDROCK_MODEL
from tests.support import CLIENT_KEY, running_gateway, running_simulator

HI = [{"role": "user", "content": "hello there"}]
FAMILIES = ("openai", "anthropic", "gemini", "bedrock")


def _deployment(family: str, sim: str, ident: str, fault: str | None) -> dict[str, Any]:
    deployment: dict[str, Any] = {"provider": family, "model": "sim-chat", "api_base": sim}
    if family == "openai":
        deployment["api_base"] = sim + "/v1"
    elif family == "bedrock":
        deployment |= {"model": BEDROCK_MODEL, "region": "us-east-1", "api_key": "env:SIM_KEY"}
    if fault is not None:
        deployment["headers"] = {"x-sim-fault": fault}
    return {**deployment, "id": ident}


def _pair(name: str, family: str, sims: tuple[str, str], fault: str) -> dict[str, Any]:
    """A group whose primary (on the first simulator) fails with ``fault``."""
    return {
        "name": name,
        "deployments": [
            _deployment(family, sims[0], f"{name}-primary", fault),
            _deployment(family, sims[1], f"{name}-backup", None),
        ],
    }


def _groups(sims: tuple[str, str]) -> list[dict[str, Any]]:
    groups = []
    for family in FAMILIES:
        groups += [
            _pair(f"overloaded-after-head-{family}", family, sims, "error-after:0"),
            _pair(f"cut-after-head-{family}", family, sims, "stop-after:0"),
            _pair(f"overloaded-after-content-{family}", family, sims, "error-after:2"),
        ]
    return groups


@pytest.fixture(scope="module")
def sims(log_dir: Path) -> Iterator[tuple[str, str]]:
    with running_simulator(log_dir) as a, running_simulator(log_dir) as b:
        yield a, b


@pytest.fixture(scope="module")
def gateway(log_dir: Path, sims: tuple[str, str]) -> Iterator[str]:
    config = {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"}},
        "models": _groups(sims),
    }
    with running_gateway(log_dir, config, {"SIM_KEY": "sim-open-access"}) as (url, _):
        yield url


def _openai(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _claude(gateway: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)


def _health(url: str) -> dict[str, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    rows = httpx.get(url + "/admin/deployments", headers=headers).json()["data"]
    return {row["id"]: row for row in rows}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("failure", ["overloaded", "cut"])
def test_a_primary_failing_right_after_its_head_is_invisible_to_openai_clients(
    gateway: str, family: str, failure: str
) -> None:
    model = f"{failure}-after-head-{family}"
    raw = _openai(gateway).chat.completions.with_raw_response.create(
        model=model, messages=HI, stream=True, max_tokens=6
    )
    assert raw.headers["x-tollway-deployment"] == f"{model}-backup"
    assert raw.headers["x-tollway-fallbacks"] == "1"
    chunks = list(raw.parse())  # raises on an error event
    # One well-formed stream: the backup's, with one id, one role and one finish.
    assert len({chunk.id for chunk in chunks}) == 1
    choices = [choice for chunk in chunks for choice in chunk.choices]
    assert [c.delta.role for c in choices if c.delta.role] == ["assistant"]
    assert [c.finish_reason for c in choices if c.finish_reason] == ["length"]
    text = "".join(c.delta.content or "" for c in choices)
    assert text.startswith("Simulated reply to: hello there")
    # The primary failed; the failure counts against it as any failed attempt does.
    assert _health(gateway)[f"{model}-primary"]["failures"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_anthropics_overload_after_message_start_is_invisible_to_anthropic_clients(
    gateway: str, family: str
) -> None:
    # The most common real failure: message_start, then an overloaded_error event.
    model = f"overloaded-after-head-{family}"
    events = []
    with _claude(gateway).messages.stream(model=model, messages=HI, max_tokens=6) as stream:
        for event in stream:
            events.append(event)
        answer = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds.count("message_start") == 1 and kinds[0] == "message_start"
    assert kinds.count("message_stop") == 1 and kinds[-1] == "message_stop"
    assert answer.content[0].type == "text"
    assert answer.content[0].text.startswith("Simulated reply to: hello there")
    assert answer.stop_reason == "max_tokens"
    assert stream.response.headers["x-tollway-deployment"] == f"{model}-backup"


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_failure_after_content_is_still_a_clean_error_event(gateway: str, family: str) -> None:
    # Content reached the client: no failover is possible; the stream ends with an error
    # event in the client's dialect, never a hang or a second answer.
    model = f"overloaded-after-content-{family}"
    text = ""
    if family == "openai":
        with pytest.raises(openai.APIError) as caught:
            stream = _openai(gateway).chat.completions.create(
                model=model, messages=HI, stream=True, max_tokens=6
            )
            for chunk in stream:
                text += "".join(c.delta.content or "" for c in chunk.choices)
        assert "overloaded" in str(caught.value).lower() or "503" in str(caught.value)
    else:
        with (
            pytest.raises(anthropic.APIStatusError) as failed,
            _claude(gateway).messages.stream(model=model, messages=HI, max_tokens=6) as stream,
        ):
            for event in stream:
                if event.type == "text":
                    text += event.text
        assert failed.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert text.startswith("Simulated reply")  # the first content was relayed at once
