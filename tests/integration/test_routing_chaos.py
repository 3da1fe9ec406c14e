"""Routing under failure, over real sockets: two simulator processes as deployments, one of
them made to fail, stall, rate-limit or slow down; clients use the real SDKs and httpx.

Every model group here has its own deployments (ids), so the health one test teaches the
gateway never leaks into another; the simulators' server-wide faults are reset after each.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support import CLIENT_KEY, free_port, running_gateway, running_simulator, wait_for_ids

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
HI = [{"role": "user", "content": "hello there"}]


def _deployment(sim: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "sim-chat",
        "api_base": sim + "/v1",
        "id": ident,
        **extra,
    }


def _busy(retry_after: str) -> dict[str, str]:
    """Deployment headers that make the simulator answer every call with this 429."""
    return {"x-sim-fault": "status:429", "x-sim-retry-after": retry_after}


def _overloaded(status: int, retry_after: str, millis: str | None = None) -> dict[str, str]:
    """Deployment headers that make the simulator answer every call with this overload, and
    say how long to wait (``retry-after``, and or only ``retry-after-ms``)."""
    headers = {"x-sim-fault": f"status:{status}"}
    if retry_after:
        headers["x-sim-retry-after"] = retry_after
    if millis is not None:
        headers["x-sim-retry-after-ms"] = millis
    return headers


def _claude(sim: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "anthropic", "model": "sim-chat", "api_base": sim, "id": ident, **extra}


def _pair(name: str, a: str, b: str, **group: Any) -> dict[str, Any]:
    """A group of a primary on simulator ``a`` and a backup on ``b``."""
    first = group.pop("primary", {})
    second = group.pop("backup", {})
    return {
        "name": name,
        "deployments": [
            _deployment(a, f"{name}-primary", **first),
            _deployment(b, f"{name}-backup", **second),
        ],
        **group,
    }


@pytest.fixture(scope="module")
def sims(log_dir: Path) -> Iterator[tuple[str, str]]:
    with running_simulator(log_dir) as a, running_simulator(log_dir) as b:
        yield a, b


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on: a deployment there cannot be reached."""
    return free_port()


@pytest.fixture(scope="module")
def gateway(log_dir: Path, sims: tuple[str, str], closed_port: int) -> Iterator[str]:
    a, b = sims
    closed = f"http://127.0.0.1:{closed_port}"
    config = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "routing": {
            "failure_threshold": 3,
            "cooldown": "1s",
            "rate_limit_cooldown": "1s",
            "backoff": "10ms",
            "exploration": 0.1,
        },
        "models": [
            _pair("failing", a, b, retries=1),
            _pair("limited", a, b),
            _pair("stalled", a, b, primary={"timeouts": {"first_byte": "500ms"}}),
            _pair("hurried", a, b, latency_threshold="300ms"),
            {"name": "hurried-claude", "latency_threshold": "300ms", "deployments": [
                _claude(a, "hurried-claude-primary"), _claude(b, "hurried-claude-backup")]},
            _pair("canary", a, b, strategy="weighted", primary={"weight": 90},
                  backup={"weight": 10}),
            _pair("fastest", a, b, strategy="latency"),
            _pair("cheapest", a, b, strategy="cost", primary={"price": {"input": 5, "output": 15}},
                  backup={"price": {"input": 0.15, "output": 0.6}}),
            _pair("windows", a, b, primary={"context_window": 64},
                  backup={"context_window": 100_000}),
            {"name": "small-only", "deployments": [_deployment(a, "small", context_window=64)]},
            {"name": "single", "deployments": [_deployment(a, "single-a")]},
            {"name": "guarded", "deployments": [_deployment(a, "guarded-a")],
             "fallbacks": ["shelter"]},
            {"name": "shelter", "deployments": [_deployment(b, "shelter-b")]},
            _pair("probed", a, b),
            _pair("lone", a, b, latency_threshold="300ms"),
            _pair("retried", a, b, retries=1),
            _pair("reprobed", a, b),
            _pair("owned", a, b),
            _pair("outlived", a, b),
            _pair("bounded", a, b, deadline="700ms", retries=1),
            _pair("unhurried", a, b, deadline="5s", primary={"timeouts": {"first_byte": "300ms"}}),
            {"name": "cutoff", "deployments": [_deployment(a, "cutoff-a")], "deadline": "500ms",
             "fallbacks": ["cutoff-shelter"]},
            {"name": "cutoff-shelter", "deployments": [_deployment(b, "cutoff-shelter-b")]},
            {"name": "unreachable", "deployments": [_deployment(closed, "unreachable-a")]},
            _pair("rekeyed", a, b, primary={"headers": {"x-sim-fault": "status:401"}}),
            *(_pair(f"crowded-{family}", a, b, primary={"headers": _busy("4")},
                    backup={"headers": _busy("30")}) for family in ("openai", "anthropic")),
            {"name": "silent", "deployments": [
                _deployment(a, "silent-a", timeouts={"first_byte": "300ms"})]},
            _pair("overloaded", a, b, retries=1, primary={"headers": _overloaded(503, "30")}),
            _pair("overloaded-ms", a, b, retries=1,
                  primary={"headers": _overloaded(503, "", millis="20000")}),
            {"name": "overloaded-claude", "retries": 1, "deployments": [
                _claude(a, "overloaded-claude-primary", headers=_overloaded(529, "30")),
                _claude(b, "overloaded-claude-backup")]},
            *(_pair(f"cooling-{family}", a, b, primary={"headers": _overloaded(503, "4")},
                    backup={"headers": _overloaded(503, "30")})
              for family in ("openai", "anthropic")),
            {"name": "spread", "strategy": "weighted", "deployments": [
                _deployment(a, "spread-a", weight=2, headers=_busy("60")),
                _deployment(a, "spread-b", weight=1), _deployment(b, "spread-c", weight=1)]},
            _pair("paced", a, b, strategy="latency",
                  primary={"headers": {"x-sim-tpot-ms": "40"}},
                  backup={"headers": {"x-sim-ttft-ms": "80"}}),
            _pair("severed", a, b, strategy="latency",
                  primary={"headers": {"x-sim-ttft-ms": "200", "x-sim-fault": "stop-after:2"}}),
            {"name": "embed-bounded", "kind": "embedding", "deadline": "800ms", "deployments": [{
                "provider": "vertex_ai", "model": "gemini-embedding-001",
                "api_base": a + "/v1/projects/test/locations/europe-west4", "api_key": "sim-key",
                "id": "embed-bounded-a", "price": {"input": 1000, "output": 0},
                "headers": {"x-sim-ttft-ms": "300"}}]},
        ],
        # The probed group's primary has a token limit of its own (issue 5's per-deployment
        # limits), so admission can refuse it while its circuit waits for a probe.
        "limits": {"deployments": {"probed-primary": {"tpm": 1000}}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as (url, _):
        yield url


@pytest.fixture(autouse=True)
def calm(sims: tuple[str, str]) -> Iterator[None]:
    """Each test starts and ends with well-behaved simulators."""
    yield
    for sim in sims:
        httpx.post(sim + "/_sim/config", json={"fault": None, "ttft_ms": 0}).raise_for_status()


def _sim_config(sim: str, **settings: Any) -> None:
    httpx.post(sim + "/_sim/config", json=settings).raise_for_status()


def _chat(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": HI, "max_tokens": 4, **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=ADMIN, timeout=30)


def _health(url: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(url + "/admin/deployments", headers=ADMIN).json()["data"]
    return {row["id"]: row for row in rows}


def test_a_failing_primary_is_invisible_to_clients(gateway: str, sims: tuple[str, str]) -> None:
    _sim_config(sims[0], fault="status:500")
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    served = []
    for _ in range(12):
        raw = client.chat.completions.with_raw_response.create(model="failing", messages=HI)
        assert raw.parse().choices[0].message.content
        served.append((raw.headers["x-tollway-deployment"], int(raw.headers["x-tollway-attempts"])))
    assert {deployment for deployment, _ in served} == {"failing-backup"}
    # The first requests try the primary twice (retries: 1) before the backup...
    assert served[0][1] == 3
    # ...until three failures in a row open its circuit, and it is skipped.
    assert served[-1][1] == 1
    assert _health(gateway)["failing-primary"]["circuit"] == "open"

    _sim_config(sims[0], fault=None)
    time.sleep(1.2)  # the cooldown: the next request is the half-open probe
    probe = _chat(gateway, "failing")
    assert probe.status_code == 200
    assert probe.headers["x-tollway-deployment"] == "failing-primary"
    assert _health(gateway)["failing-primary"]["circuit"] == "closed"


def test_a_rate_limited_primary_rests_for_its_retry_after(
    gateway: str, sims: tuple[str, str]
) -> None:
    _sim_config(sims[0], fault="status:429")
    first = _chat(gateway, "limited")
    assert first.status_code == 200
    assert first.headers["x-tollway-deployment"] == "limited-backup"
    assert first.headers["x-tollway-fallbacks"] == "1"
    second = _chat(gateway, "limited")
    assert second.headers["x-tollway-deployment"] == "limited-backup"
    assert second.headers["x-tollway-attempts"] == "1"  # resting: not even tried
    assert _health(gateway)["limited-primary"]["rate_limited_for_s"] > 0
    assert _health(gateway)["limited-primary"]["circuit"] == "closed"  # busy is not broken

    _sim_config(sims[0], fault=None)
    time.sleep(1.1)  # the simulator's retry-after is 1 s
    back = _chat(gateway, "limited")
    assert back.headers["x-tollway-deployment"] == "limited-primary"


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_when_every_candidate_is_busy_the_client_waits_for_the_soonest(
    gateway: str, family: str
) -> None:
    # The primary asks for 4 s, the backup, tried last, for 30 s: the primary may serve first.
    model = f"crowded-{family}"
    if family == "openai":
        client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=model, messages=HI, max_tokens=4)
        headers = caught.value.response.headers
    else:
        claude = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as limited:
            claude.messages.create(model=model, messages=HI, max_tokens=4)
        headers = limited.value.response.headers
    assert headers["x-tollway-attempts"] == "2" and headers["x-tollway-deployment"] == (
        f"{model}-backup"
    )
    assert headers["retry-after"] == "4"


@pytest.mark.parametrize(
    ("model", "wait"), [("overloaded", 30), ("overloaded-ms", 20), ("overloaded-claude", 30)]
)
def test_an_overload_that_says_how_long_to_wait_rests_the_deployment(
    gateway: str, model: str, wait: float
) -> None:
    # The primary answers 503 (OpenAI's retry-after, or only its retry-after-ms), or 529 as
    # Anthropic does, asking for a wait: it was retried at once and tried again by the next
    # request, as if it had not asked.
    first = _chat(gateway, model)
    assert first.status_code == 200, first.text
    assert first.headers["x-tollway-deployment"] == f"{model}-backup"
    assert first.headers["x-tollway-attempts"] == "2"  # no retry on the deployment (retries: 1)
    second = _chat(gateway, model)
    assert second.headers["x-tollway-deployment"] == f"{model}-backup"
    assert second.headers["x-tollway-attempts"] == "1"  # resting: not even tried
    primary = _health(gateway)[f"{model}-primary"]
    assert wait - 5 < primary["rate_limited_for_s"] <= wait
    assert primary["circuit"] == "closed" and primary["consecutive_failures"] == 0


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_when_every_candidate_is_cooling_down_the_client_is_told_when_to_come_back(
    gateway: str, family: str
) -> None:
    # Both deployments are overloaded; the primary asks for 4 s, the backup for 30 s.
    model = f"cooling-{family}"
    errors = []
    for _ in range(2):
        started = time.monotonic()
        if family == "openai":
            error: openai.APIStatusError | anthropic.APIStatusError = _openai_error(
                gateway, model, False
            )
            assert error.status_code == 503 and error.code == "server_is_overloaded"
        else:
            error = _anthropic_error(gateway, model)
            assert isinstance(error, anthropic.OverloadedError)  # 529 overloaded_error
        assert time.monotonic() - started < 2  # an answer at once, never a hang
        errors.append(error.response.headers)
    tried, cooling = errors
    assert tried["x-tollway-attempts"] == "2"
    assert tried["retry-after"] == "4"  # the soonest any asked for, not the last one's 30
    # Now both rest: neither is called before its time, and the client hears when the
    # first may serve again.
    assert "x-tollway-deployment" not in cooling and "x-tollway-attempts" not in cooling
    assert 1 <= int(cooling["retry-after"]) <= 4


def test_a_first_byte_that_never_comes_fails_over_within_the_limit(
    gateway: str, sims: tuple[str, str]
) -> None:
    _sim_config(sims[0], fault="hang")
    started = time.monotonic()
    answer = _chat(gateway, "stalled")
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.headers["x-tollway-deployment"] == "stalled-backup"
    # 500 ms first-byte limit, checked every 50 ms, plus the backup's own answer.
    assert 0.5 <= elapsed < 1.5


def test_a_slow_candidate_is_abandoned_at_the_latency_threshold(
    gateway: str, sims: tuple[str, str]
) -> None:
    _sim_config(sims[0], ttft_ms=3000)
    started = time.monotonic()
    answer = _chat(gateway, "hurried")
    elapsed = time.monotonic() - started
    assert answer.headers["x-tollway-deployment"] == "hurried-backup"
    assert 0.3 <= elapsed < 1.5


@pytest.mark.parametrize("fault", ["keepalive", "keepalive-after:0"])
def test_a_stream_of_keep_alives_is_abandoned_at_the_latency_threshold(
    gateway: str, sims: tuple[str, str], fault: str
) -> None:
    # Keep-alive comments, before the stream's head or after it, are no first token: the
    # threshold bounds the wait for the first content, and the client gets the backup's.
    _sim_config(sims[0], fault=fault)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="hurried", messages=HI, stream=True, max_tokens=4, timeout=10
    )
    chunks = list(raw.parse())
    assert raw.headers["x-tollway-deployment"] == "hurried-backup"
    assert 0.3 <= time.monotonic() - started < 1.5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_an_anthropic_stream_silent_after_its_head_is_abandoned_at_the_latency_threshold(
    gateway: str, sims: tuple[str, str]
) -> None:
    # message_start and its ping came at once; the first text never does.
    _sim_config(sims[0], fault="keepalive-after:0")
    client = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)
    started = time.monotonic()
    raw = client.messages.with_raw_response.create(
        model="hurried-claude", messages=HI, max_tokens=4, stream=True, timeout=10
    )
    events = list(raw.parse())
    assert raw.headers["x-tollway-deployment"] == "hurried-claude-backup"
    assert 0.3 <= time.monotonic() - started < 1.5
    assert events[-1].type == "message_stop"


def test_a_first_token_that_never_comes_after_keep_alives_fails_over_within_the_limit(
    gateway: str, sims: tuple[str, str]
) -> None:
    _sim_config(sims[0], fault="keepalive-after:0")
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gateway + "/v1/chat/completions",
        json={"model": "stalled", "messages": HI, "max_tokens": 4, "stream": True},
        headers=ADMIN,
        timeout=10,
    ) as answer:
        body = answer.read()
    assert answer.headers["x-tollway-deployment"] == "stalled-backup"
    assert 0.5 <= time.monotonic() - started < 1.5
    assert b"\ndata: [DONE]\n" in body


def test_when_every_candidate_is_slow_the_last_is_waited_for(
    gateway: str, sims: tuple[str, str]
) -> None:
    for sim in sims:
        _sim_config(sim, ttft_ms=600)
    answer = _chat(gateway, "hurried")
    assert answer.status_code == 200
    assert answer.headers["x-tollway-deployment"] == "hurried-backup"


def test_the_last_candidate_that_can_answer_is_waited_for_in_full(
    gateway: str, sims: tuple[str, str]
) -> None:
    # The backup's circuit opens while the primary only asks to be left alone (a 429 with
    # retry-after 0 rests it for no time and says nothing against it).
    _sim_config(sims[0], fault="status:429")
    _sim_config(sims[1], fault="status:500")
    for _ in range(3):
        httpx.post(
            gateway + "/v1/chat/completions",
            json={"model": "lone", "messages": HI, "max_tokens": 4},
            headers={**ADMIN, "x-sim-retry-after": "0"},
            timeout=30,
        )
    assert _health(gateway)["lone-backup"]["circuit"] == "open"
    # Now the primary answers, slower than the group's latency threshold: it is the only
    # candidate that can answer, so it is not given up at the threshold.
    _sim_config(sims[0], fault=None, ttft_ms=800)
    _sim_config(sims[1], fault=None)
    started = time.monotonic()
    answer = _chat(gateway, "lone")
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tollway-deployment"] == "lone-primary"
    assert elapsed >= 0.8


def test_a_stream_may_pause_longer_than_the_latency_threshold_once_it_has_begun(
    gateway: str,
) -> None:
    # The threshold bounds the wait for the first token; pauses between later tokens (a
    # model thinking, a tool call being written) are bounded by the deployment's own limit.
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="hurried",
        messages=HI,
        stream=True,
        max_tokens=4,
        extra_headers={"x-sim-tpot-ms": "450"},
    )
    assert raw.headers["x-tollway-deployment"] == "hurried-primary"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_a_deadline_bounds_the_wait_over_every_candidate(
    gateway: str, sims: tuple[str, str]
) -> None:
    before = _health(gateway)
    started = time.monotonic()
    answer = httpx.post(
        gateway + "/v1/chat/completions",
        json={"model": "bounded", "messages": HI, "max_tokens": 4},
        headers={**ADMIN, "x-sim-ttft-ms": "3000"},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    error = answer.json()["error"]
    assert error["code"] == "deadline_exceeded"
    assert "deadline of 0.7s" in error["message"]
    assert 0.7 <= elapsed < 1.5  # the deadline, checked every 50 ms; not 3 s, not 6 s
    # The deadline cut the wait short: no failure is held against either deployment.
    after = _health(gateway)
    for ident in ("bounded-primary", "bounded-backup"):
        assert after[ident]["failures"] == before[ident]["failures"]
        assert after[ident]["circuit"] == "closed"


def test_a_deadline_leaves_time_for_the_next_candidate_only_if_some_is_left(
    gateway: str, sims: tuple[str, str]
) -> None:
    # A quick failure leaves time: the backup answers within the deadline.
    _sim_config(sims[0], fault="status:500")
    answer = _chat(gateway, "bounded")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tollway-deployment"] == "bounded-backup"


def test_a_stream_that_has_begun_outlives_the_deadline(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="bounded",
        messages=HI,
        stream=True,
        max_tokens=4,
        extra_headers={"x-sim-tpot-ms": "300"},
    )
    chunks = list(stream)
    assert time.monotonic() - started > 0.7  # longer than the deadline, and whole
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_a_timeout_of_the_deployments_own_limit_counts_against_it_under_a_deadline(
    gateway: str, sims: tuple[str, str]
) -> None:
    # The deadline (5 s) cuts nothing but the total of an answer in one piece; the primary's
    # own first-byte limit (300 ms) is what gives up on it: its failure, as without a deadline.
    _sim_config(sims[0], ttft_ms=2000)
    before = _health(gateway)["unhurried-primary"]["failures"]
    answer = _chat(gateway, "unhurried")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tollway-deployment"] == "unhurried-backup"
    primary = _health(gateway)["unhurried-primary"]
    assert primary["failures"] == before + 1
    assert primary["last_error"] == "upstream_first_byte_timeout"


def test_a_request_past_its_deadline_leaves_a_half_open_circuits_probe_to_the_next(
    gateway: str, sims: tuple[str, str]
) -> None:
    # The fallback's circuit opens (three failures), and its cooldown (1 s) passes.
    _sim_config(sims[1], fault="status:500")
    for _ in range(3):
        assert _chat(gateway, "cutoff-shelter").status_code == 502
    assert _health(gateway)["cutoff-shelter-b"]["circuit"] == "open"
    _sim_config(sims[1], fault=None)
    time.sleep(1.2)
    # The primary takes the whole deadline: the fallback is not tried, nor its probe claimed.
    _sim_config(sims[0], ttft_ms=3000)
    overdue = _chat(gateway, "cutoff")
    assert overdue.status_code == 504, overdue.text
    assert overdue.json()["error"]["code"] == "deadline_exceeded"
    # So the next request whose primary fails probes the fallback, which answers.
    _sim_config(sims[0], ttft_ms=0, fault="status:500")
    answer = _chat(gateway, "cutoff")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tollway-deployment"] == "cutoff-shelter-b"
    assert _health(gateway)["cutoff-shelter-b"]["circuit"] == "closed"


def test_a_failed_probe_is_not_retried_on_the_deployment_it_reopened(
    gateway: str, sims: tuple[str, str]
) -> None:
    _sim_config(sims[0], fault="reset")
    for _ in range(2):  # two calls each (a retry), three failures open the circuit
        assert _chat(gateway, "retried").headers["x-tollway-deployment"] == "retried-backup"
    assert _health(gateway)["retried-primary"]["circuit"] == "open"
    time.sleep(1.2)  # the cooldown: the next request probes the primary, which still fails
    probe = _chat(gateway, "retried")
    assert probe.headers["x-tollway-deployment"] == "retried-backup"
    assert probe.headers["x-tollway-attempts"] == "2"  # the probe and the backup, no retry
    assert _health(gateway)["retried-primary"]["circuit"] == "open"


def test_a_streamed_probe_closes_the_circuit_at_its_first_content(
    gateway: str, sims: tuple[str, str]
) -> None:
    # A stream counts as answered at its first content, but a streamed probe closed the
    # circuit only when it ended: a long answer kept a recovered deployment half-open, and
    # every other request went around it, for as long as the answer took.
    _sim_config(sims[0], fault="status:500")
    for _ in range(3):
        assert _chat(gateway, "reprobed").headers["x-tollway-deployment"] == "reprobed-backup"
    assert _health(gateway)["reprobed-primary"]["circuit"] == "open"
    _sim_config(sims[0], fault=None)
    time.sleep(1.2)  # the cooldown: the next request probes the primary
    body = {"model": "reprobed", "messages": HI, "max_tokens": 20, "stream": True}
    slow = {**ADMIN, "x-sim-tpot-ms": "300"}
    with httpx.stream(
        "POST", gateway + "/v1/chat/completions", json=body, headers=slow, timeout=30
    ) as probe:
        assert probe.headers["x-tollway-deployment"] == "reprobed-primary"
        lines = probe.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        assert _health(gateway)["reprobed-primary"]["circuit"] == "closed"
        during = _chat(gateway, "reprobed")
        assert during.headers["x-tollway-deployment"] == "reprobed-primary"
        assert any(line == "data: [DONE]" for line in lines)
    assert _health(gateway)["reprobed-primary"]["in_flight"] == 0


def test_a_request_that_was_no_probe_never_gives_the_probe_away(
    gateway: str, sims: tuple[str, str]
) -> None:
    # Any request that ended without an outcome (its client left, the provider refused it
    # as malformed, a 429) while the circuit was half-open cleared the probe, though it was
    # not the probe: the next request probed too, while the real probe was still under way.
    slow = {**ADMIN, "x-sim-ttft-ms": "3000"}
    body = {"model": "owned", "messages": HI, "max_tokens": 4}

    def leaving() -> None:  # sent while the circuit is closed; its client leaves after 2 s
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gateway + "/v1/chat/completions", json=body, headers=slow, timeout=2)

    def probing() -> None:
        answer = httpx.post(gateway + "/v1/chat/completions", json=body, headers=slow, timeout=30)
        probes.append(answer.headers.get("x-tollway-deployment"))

    probes: list[str | None] = []
    old = threading.Thread(target=leaving)
    old.start()
    time.sleep(0.3)
    _sim_config(sims[0], fault="status:500")
    for _ in range(3):
        assert _chat(gateway, "owned").headers["x-tollway-deployment"] == "owned-backup"
    assert _health(gateway)["owned-primary"]["circuit"] == "open"
    _sim_config(sims[0], fault=None)
    time.sleep(1.1)  # the cooldown: the next request probes the primary, slowly
    probe = threading.Thread(target=probing)
    probe.start()
    old.join()  # its client has left
    time.sleep(0.3)  # and the gateway has noticed (within 50 ms)
    assert _health(gateway)["owned-primary"]["probe_in_flight"] is True
    assert _chat(gateway, "owned").headers["x-tollway-deployment"] == "owned-backup"
    probe.join()
    assert probes == ["owned-primary"]
    primary = _health(gateway)["owned-primary"]
    assert primary["circuit"] == "closed" and primary["in_flight"] == 0


def test_a_request_that_was_no_probe_failing_leaves_the_probe_under_way_the_only_one(
    gateway: str, sims: tuple[str, str]
) -> None:
    # A request sent before the circuit opened that failed while the probe was under way
    # reopened the circuit and cleared the probe: a cooldown later, a second request probed
    # while the first probe was still out (a failing deployment's earlier requests, ending one
    # by one, let through a probe each).
    def send(headers: dict[str, str], into: list[str], stream: bool = False) -> None:
        body = {"model": "outlived", "messages": HI, "max_tokens": 30, "stream": stream}
        answer = httpx.post(
            gateway + "/v1/chat/completions", json=body, headers={**ADMIN, **headers}, timeout=30
        )
        into.append(answer.headers["x-tollway-deployment"])

    earlier: list[str] = []
    probes: list[str] = []
    cut = {"x-sim-tpot-ms": "150", "x-sim-fault": "stop-after:15"}  # cut after about 2.2 s
    old = threading.Thread(target=send, args=(cut, earlier, True))
    old.start()  # a stream begun while the circuit is closed
    time.sleep(0.2)
    _sim_config(sims[0], fault="status:500")
    for _ in range(3):
        assert _chat(gateway, "outlived").headers["x-tollway-deployment"] == "outlived-backup"
    assert _health(gateway)["outlived-primary"]["circuit"] == "open"
    _sim_config(sims[0], fault=None)
    time.sleep(1.1)  # the cooldown: the next request probes the primary, slowly
    probe = threading.Thread(target=send, args=({"x-sim-ttft-ms": "3000"}, probes))
    probe.start()
    old.join()  # the earlier stream was cut: a failure of the primary's
    assert earlier == ["outlived-primary"]
    primary = _health(gateway)["outlived-primary"]
    assert primary["circuit"] == "half_open" and primary["probe_in_flight"] is True, primary
    time.sleep(1.1)  # a cooldown later, the probe is still under way: no other request probes
    assert _chat(gateway, "outlived").headers["x-tollway-deployment"] == "outlived-backup"
    probe.join()
    assert probes == ["outlived-primary"]
    primary = _health(gateway)["outlived-primary"]
    assert primary["circuit"] == "closed" and primary["in_flight"] == 0


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_stream_cut_after_its_first_chunk_ends_with_a_clean_error(
    gateway: str, family: str
) -> None:
    cut = {"x-sim-fault": "stop-after:1"}
    received = []
    started = time.monotonic()
    if family == "openai":
        client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(openai.APIError) as caught:
            stream = client.chat.completions.create(
                model="single", messages=HI, stream=True, max_tokens=8, extra_headers=cut
            )
            for chunk in stream:
                received.append(chunk)
        assert "closed the connection" in str(caught.value) or "ended" in str(caught.value)
    else:
        claude = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)
        with (
            pytest.raises(anthropic.APIError),
            claude.messages.stream(
                model="single", messages=HI, max_tokens=8, extra_headers=cut
            ) as events,
        ):
            for event in events:
                received.append(event)
    assert received, "the first chunk reached the client before the cut"
    assert time.monotonic() - started < 10


def test_a_weighted_split_holds_over_two_thousand_requests(gateway: str) -> None:
    async def run() -> Counter[str]:
        counts: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=gateway, headers=ADMIN, limits=limits) as client:
            body = {"model": "canary", "messages": HI, "max_tokens": 1}
            gate = asyncio.Semaphore(32)

            async def one() -> None:
                async with gate:
                    answer = await client.post("/v1/chat/completions", json=body, timeout=30)
                    counts[answer.headers["x-tollway-deployment"]] += 1

            await asyncio.gather(*(one() for _ in range(2000)))
        return counts

    counts = asyncio.run(run())
    assert sum(counts.values()) == 2000
    share = counts["canary-primary"] / 2000
    assert 0.87 <= share <= 0.93, counts


def test_an_unavailable_weighted_picks_share_is_spread_by_weight(gateway: str) -> None:
    # 'spread-a' (weight 2 of 4) rests after its first 429 (retry-after 60 s). Its half of
    # the first picks fell on its neighbour 'spread-b' (75/25); by weight it is 50/50.
    while _health(gateway)["spread-a"]["rate_limited_for_s"] == 0:
        assert _chat(gateway, "spread").status_code == 200

    async def run() -> Counter[str]:
        counts: Counter[str] = Counter()
        async with httpx.AsyncClient(base_url=gateway, headers=ADMIN) as client:
            body = {"model": "spread", "messages": HI, "max_tokens": 1}
            gate = asyncio.Semaphore(16)

            async def one() -> None:
                async with gate:
                    answer = await client.post("/v1/chat/completions", json=body, timeout=30)
                    counts[answer.headers["x-tollway-deployment"]] += 1

            await asyncio.gather(*(one() for _ in range(400)))
        return counts

    counts = asyncio.run(run())
    assert counts["spread-a"] == 0
    # Out of 400 at 50%, 'spread-b' gets over 60% less than once in 10,000 runs.
    assert 0.4 <= counts["spread-b"] / 400 <= 0.6, counts


def test_latency_routing_ranks_streams_and_whole_answers_apart(gateway: str) -> None:
    # The primary starts streams at once but takes 160 ms for a whole 4-token answer; the
    # backup takes 80 ms for either. Whole answers' times were averaged as times to the first
    # token, so streams went to the backup, the slower one to start.
    def served(requests: int, stream: bool) -> Counter[str]:
        return Counter(
            _chat(gateway, "paced", stream=stream).headers["x-tollway-deployment"]
            for _ in range(requests)
        )

    served(6, stream=False)  # both measured for whole answers...
    served(4, stream=True)  # ...and for streams
    # Exploration sends 10% to the other: 10 or more of 30 less than once in 3,000 runs.
    assert served(30, stream=True)["paced-primary"] >= 21
    assert served(30, stream=False)["paced-backup"] >= 21


def test_a_stream_cut_after_its_first_content_still_measures_its_first_token(
    gateway: str,
) -> None:
    # A stream that failed after its first content fed no time to first content, though it
    # was known: a deployment whose streams all broke midway stayed unmeasured for streams,
    # and the latency strategy sent it every stream first (to be measured), however slow.
    body = {"model": "severed", "messages": HI, "max_tokens": 8, "stream": True}
    for _ in range(30):  # exploration may start a stream at the backup
        with httpx.stream(
            "POST", gateway + "/v1/chat/completions", json=body, headers=ADMIN, timeout=30
        ) as answer:
            served = answer.headers["x-tollway-deployment"]
            text = answer.read().decode()
        if served == "severed-primary":
            break
    assert served == "severed-primary"
    assert '"content"' in text and '"error"' in text  # content, then the cut's error event
    primary = _health(gateway)["severed-primary"]
    assert primary["failures"] == 1 and primary["in_flight"] == 0
    assert primary["ewma_ttft_ms"] is not None and primary["ewma_ttft_ms"] >= 200, primary


def test_latency_routing_follows_the_faster_deployment(gateway: str, sims: tuple[str, str]) -> None:
    def served(requests: int) -> Counter[str]:
        return Counter(
            _chat(gateway, "fastest").headers["x-tollway-deployment"] for _ in range(requests)
        )

    # Exploration sends 10% of requests to the other candidate, so out of 60 the slower one
    # gets about 6: 15 or more would happen by chance less than once in 3,000 runs.
    _sim_config(sims[0], ttft_ms=300)  # the primary turns slow
    served(10)  # it is measured...
    assert served(60)["fastest-backup"] >= 45  # ...and most traffic moves away
    _sim_config(sims[0], ttft_ms=0)
    _sim_config(sims[1], ttft_ms=300)  # now the backup is the slow one
    # Exploration measures the recovered primary again: twice brings its average below the
    # backup's. (A fixed 30 requests explored it less than twice about once in 20 runs.)
    explored = Counter[str]()
    while explored["fastest-primary"] < 2 and explored.total() < 200:
        explored += served(5)
    assert explored["fastest-primary"] >= 2
    assert served(60)["fastest-primary"] >= 45


def test_latency_routing_measures_a_new_deployment_with_one_request_at_a_time(
    log_dir: Path, sims: tuple[str, str]
) -> None:
    # A deployment never measured goes first so that it gets measured, but it went first
    # for every request until its first one ended: a slow newcomer (a start, a reload that
    # adds it) took all the traffic for as long as that first answer took.
    a, b = sims
    slow = {"x-sim-ttft-ms": "1500"}
    group = _pair("newcomer", a, b, strategy="latency", backup={"headers": slow})
    config = {"routing": {"exploration": 0.0}, "models": [group]}
    with running_gateway(log_dir, config) as (url, _):
        assert _chat(url, "newcomer").headers["x-tollway-deployment"] == "newcomer-primary"

        async def run() -> list[str]:
            async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
                body = {"model": "newcomer", "messages": HI, "max_tokens": 1}

                async def one(delay: float) -> str:
                    await asyncio.sleep(delay)
                    answer = await client.post("/v1/chat/completions", json=body, timeout=30)
                    return answer.headers["x-tollway-deployment"]

                return await asyncio.gather(*(one(0.1 * n) for n in range(5)))

        served = asyncio.run(run())
    # The first measures the backup; the others go to the primary meanwhile.
    assert served == ["newcomer-backup", *["newcomer-primary"] * 4]


def test_cost_routing_prefers_the_cheaper_deployment(gateway: str) -> None:
    answer = _chat(gateway, "cheapest")
    assert answer.headers["x-tollway-deployment"] == "cheapest-backup"


def test_requests_skip_deployments_whose_window_cannot_hold_them(gateway: str) -> None:
    short = _chat(gateway, "windows")
    assert short.headers["x-tollway-deployment"] == "windows-primary"
    long_messages = [{"role": "user", "content": "word " * 400}]
    long = _chat(gateway, "windows", messages=long_messages)
    assert long.status_code == 200
    assert long.headers["x-tollway-deployment"] == "windows-backup"
    refused = _chat(gateway, "small-only", messages=long_messages)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "64 tokens" in error["message"]


def test_fallback_groups_follow_the_callers_allowed_models(
    gateway: str, sims: tuple[str, str]
) -> None:
    key = httpx.post(
        gateway + "/admin/keys",
        json={"name": "guarded-only", "allowed_models": ["guarded"]},
        headers=ADMIN,
    ).json()["key"]
    _sim_config(sims[0], fault="status:503")
    rescued = _chat(gateway, "guarded")
    assert rescued.status_code == 200
    assert rescued.headers["x-tollway-deployment"] == "shelter-b"
    body = {"model": "guarded", "messages": HI, "max_tokens": 4}
    refused = httpx.post(
        gateway + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    # 'shelter' is not this key's to use: no fallback, the primary's overload (503) as it is.
    assert refused.status_code == 503


def test_deployment_health_never_shows_a_credential(gateway: str) -> None:
    text = httpx.get(gateway + "/admin/deployments", headers=ADMIN).text
    assert "api_key" not in text and "Bearer" not in text
    assert '"circuit"' in text


def test_a_probe_refused_by_the_deployments_own_limit_goes_to_the_next_request(
    gateway: str, sims: tuple[str, str]
) -> None:
    # Most of the primary's 1,000 tokens a minute taken by one long prompt it answers.
    long = [{"role": "user", "content": "toll " * 850}]
    assert _chat(gateway, "probed", messages=long).headers["x-tollway-deployment"] == (
        "probed-primary"
    )
    _sim_config(sims[0], fault="status:500")
    for _ in range(3):  # the failure threshold: the circuit opens, the backup answers
        assert _chat(gateway, "probed").headers["x-tollway-deployment"] == "probed-backup"
    _sim_config(sims[0], fault=None)
    assert _health(gateway)["probed-primary"]["circuit"] == "open"
    time.sleep(1.2)  # the cooldown: the next request may probe the primary
    # Too large for what is left of the primary's minute: its own limit refuses it before
    # any call, and the backup answers. The probe it had claimed must not be lost with it.
    big = _chat(gateway, "probed", max_tokens=600)
    assert big.status_code == 200 and big.headers["x-tollway-deployment"] == "probed-backup"
    small = _chat(gateway, "probed")  # fits: it is the probe, and it closes the circuit
    assert small.headers["x-tollway-deployment"] == "probed-primary"
    assert _health(gateway)["probed-primary"]["circuit"] == "closed"


def test_a_refused_credential_fails_over_and_counts_against_the_deployment(
    gateway: str,
) -> None:
    # The primary's provider refuses the gateway's key for it (401) on every call.
    for _ in range(3):
        answer = _chat(gateway, "rekeyed")
        assert answer.status_code == 200
        assert answer.headers["x-tollway-deployment"] == "rekeyed-backup"
    primary = _health(gateway)["rekeyed-primary"]
    # Its fault, not the client's: three failures (the threshold) open its circuit.
    assert (primary["failures"], primary["circuit"]) == (3, "open")
    assert "401" in primary["last_error_detail"]
    assert _chat(gateway, "rekeyed").headers["x-tollway-attempts"] == "1"  # skipped now


# --- what a failed upstream's error tells the client ---------------------------------------


def _no_address(message: str, address: str) -> None:
    """``message`` names neither the upstream's URL nor its host or port."""
    host, port = address.removeprefix("http://").split(":")
    assert "http://" not in message and host not in message and f":{port}" not in message


def _openai_error(gateway: str, model: str, stream: bool, **headers: str) -> openai.APIStatusError:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=model, messages=HI, max_tokens=4, stream=stream, extra_headers=headers
        )
    return caught.value


def _anthropic_error(gateway: str, model: str, **headers: str) -> anthropic.APIStatusError:
    claude = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model=model, messages=HI, max_tokens=4, extra_headers=headers)
    return caught.value


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_is_named_by_its_deployment_not_its_address(
    gateway: str, closed_port: int, stream: bool
) -> None:
    address = f"http://127.0.0.1:{closed_port}"
    error = _openai_error(gateway, "unreachable", stream)
    assert error.status_code == 502
    assert "'unreachable-a'" in error.message and "'unreachable'" in error.message
    _no_address(error.message, address)
    _no_address(str(error.body), address)

    refused = _anthropic_error(gateway, "unreachable")
    assert refused.status_code == 502
    body = refused.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert "'unreachable-a'" in body["error"]["message"]
    _no_address(body["error"]["message"], address)

    # The operator still learns where the gateway could not connect.
    assert address in _health(gateway)["unreachable-a"]["last_error_detail"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_first_byte_that_never_comes_is_named_by_its_deployment_not_its_address(
    gateway: str, sims: tuple[str, str], stream: bool
) -> None:
    error = _openai_error(gateway, "silent", stream, **{"x-sim-fault": "hang"})
    assert error.status_code == 504 and error.code == "upstream_first_byte_timeout"
    assert "'silent-a'" in error.message and "first-byte timeout" in error.message
    _no_address(error.message, sims[0])

    timed_out = _anthropic_error(gateway, "silent", **{"x-sim-fault": "hang"})
    assert timed_out.status_code == 504
    body = timed_out.body
    assert isinstance(body, dict) and "'silent-a'" in body["error"]["message"]
    assert body["error"]["type"] == "timeout_error"  # Anthropic's own name for a 504
    _no_address(body["error"]["message"], sims[0])
    assert sims[0] in _health(gateway)["silent-a"]["last_error_detail"]


def test_an_upstream_that_goes_silent_mid_answer_is_named_by_its_deployment_not_its_address(
    gateway: str, sims: tuple[str, str]
) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.create(
            model="silent",
            messages=HI,
            max_tokens=4,
            stream=True,
            extra_headers={"x-sim-tpot-ms": "1000"},
        )
        for chunk in stream:
            received.append(chunk)
    assert received, "the first chunk came before the silence"
    assert "went silent mid-answer" in caught.value.message
    assert "'silent-a'" in caught.value.message
    _no_address(caught.value.message, sims[0])


def test_split_embeddings_end_at_the_deadline_and_are_charged_for_what_was_answered(
    gateway: str,
) -> None:
    # A gemini-embedding model on Vertex AI takes one text a call: 12 texts are 12 calls, 4 at
    # a time, 300 ms each, so three rounds. Each round got the deadline's whole 800 ms, and the
    # answer came after 900 ms; the third round may only have the 200 ms left.
    texts = [f"text number {index}" for index in range(12)]
    started = time.monotonic()
    answer = httpx.post(
        gateway + "/v1/embeddings",
        json={"model": "embed-bounded", "input": texts},
        headers={**ADMIN, "x-request-id": "split-embeddings-deadline"},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert 0.8 <= elapsed < 1.3
    # The two rounds answered (8 texts, 3 tokens each) were billed: so is the request.
    logged = wait_for_ids(
        lambda: httpx.get(gateway + "/admin/logs?since=1h", headers=ADMIN).json()["data"],
        {"split-embeddings-deadline"},
        "logged",
    )["split-embeddings-deadline"]
    assert logged["status"] == 504
    assert logged["input_tokens"] == 24
    assert logged["cost_usd"] == pytest.approx(24 * 1000 / 1_000_000)
