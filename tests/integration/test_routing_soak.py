"""Routing under concurrent chaos: hundreds of mixed requests at once (the openai SDK, plain
and streamed; the anthropic SDK, streamed; clients that leave mid-stream or before the first
byte) while one deployment
flips between 500s and health, one stalls past its first-byte limit, and the config is
reloaded three times (a deployment removed, an invalid file, the original back).

What a single request cannot show is what the gateway's books say once the load is over: each
assertion is an invariant (every request ended, none a 500, in-flight counts back at 0, the
budget's reservations released and its spend the request log's, one log row per request, no
probe claimed by nobody), never a timing or a distribution.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.support import CLIENT_KEY, Process, running_gateway, running_simulator

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: cents a request
REQUESTS = 420
AT_ONCE = 60
EACH_REQUEST_S = 20.0  # a request still unanswered after this has hung
KINDS = ("plain", "streamed", "claude", "left", "streamed", "claude-left", "plain",
         "impatient", "impatient-streamed")  # fmt: skip
"""The clients, in turn: see ``_one``."""


@dataclass(slots=True)
class Sims:
    """The simulators: ``flaky`` flips between 500s and health, ``stalled`` holds its first
    byte past the first-byte limit of the deployment on it, ``steady`` stays well."""

    flaky: str
    stalled: str
    steady: str


@dataclass(slots=True)
class Outcome:
    """How one request ended, as its client saw it."""

    request_id: str
    kind: str
    ok: bool = False
    cancelled: bool = False
    status: int | None = None
    error: str | None = None
    """The SDK's exception, when it raised one (a refusal, or an error event mid-stream)."""
    problem: str | None = None
    """Why the ending is not acceptable (a 500, a malformed error, a hang); None if it is."""


@dataclass(slots=True)
class Served:
    """The module's gateway and where its config file is."""

    url: str
    process: Process
    path: Path
    config: dict[str, Any] = field(default_factory=dict)


def _deployment(sim: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "sim-chat", "api_base": sim + "/v1", "id": ident,
            "price": PRICE, **extra}  # fmt: skip


def _config(sims: Sims) -> dict[str, Any]:
    return {
        "server": {"reload_interval": None},
        "upstream": {"forward_headers": ["x-sim-*"]},
        "routing": {"failure_threshold": 2, "cooldown": "300ms", "backoff": "5ms",
                    "exploration": 0.2},
        "models": [
            {"name": "busy", "strategy": "least-busy", "retries": 1, "deployments": [
                _deployment(sims.flaky, "busy-flaky"),
                _deployment(sims.stalled, "busy-stalled", timeouts={"first_byte": "250ms"}),
                _deployment(sims.steady, "busy-steady")]},
            {"name": "quick", "strategy": "latency", "deployments": [
                _deployment(sims.flaky, "quick-flaky"), _deployment(sims.steady, "quick-steady"),
                {**_deployment(sims.steady, "quick-claude"), "provider": "anthropic",
                 "api_base": sims.steady}]},
        ],
        "limits": {"backend": "memory",
                   # Slots taken and given back as budgets' reservations are: by every end.
                   "models": {"busy": {"max_concurrent": 40}},
                   "deployments": {"busy-flaky": {"max_concurrent": 8}},
                   "budgets": [{"scope": "org", "id": "*", "period": "month",
                                "limit_usd": 100_000}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def sims(log_dir: Path) -> Iterator[Sims]:
    with (
        running_simulator(log_dir) as flaky,
        running_simulator(log_dir) as stalled,
        running_simulator(log_dir) as steady,
    ):
        yield Sims(flaky, stalled, steady)


@pytest.fixture(scope="module")
def served(log_dir: Path, sims: Sims) -> Iterator[Served]:
    with running_gateway(log_dir, _config(sims)) as (url, process):
        path = log_dir / f"gateway-{url.rsplit(':', 1)[1]}.yaml"
        yield Served(url, process, path, yaml.safe_load(path.read_text()))


# --- the clients ----------------------------------------------------------------------------

HI: Any = [{"role": "user", "content": "tell me something about toll roads"}]  # both SDKs' types


def _openai_problem(error: openai.APIError) -> str | None:
    """What is wrong with an OpenAI-dialect error, or None if it is a well-formed one."""
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500 and error.status_code not in (502, 503, 504):
            return f"status {error.status_code}: {error.body}"
        body = error.body
        if not (isinstance(body, dict) and isinstance(body.get("message"), str)):
            return f"no OpenAI error object: {body!r}"
        return None
    if isinstance(error, openai.APIConnectionError):
        return f"connection: {error!r}"
    body = error.body  # an error event in a stream
    if not (isinstance(body, dict) and body.get("message")):
        return f"malformed stream error: {body!r}"
    return None


def _anthropic_problem(error: anthropic.APIError) -> str | None:
    """What is wrong with an Anthropic-dialect error, or None if it is a well-formed one."""
    if isinstance(error, anthropic.APIConnectionError):
        return f"connection: {error!r}"
    body = error.body
    if isinstance(error, anthropic.APIStatusError) and error.status_code == 500:
        return f"status 500: {body!r}"
    inner = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(inner, dict) and inner.get("type") and inner.get("message")):
        return f"no Anthropic error object: {body!r}"
    return None


async def _plain(gpt: openai.AsyncOpenAI, model: str, outcome: Outcome) -> None:
    answer = await gpt.chat.completions.create(
        model=model, messages=HI, max_tokens=6,
        extra_headers={"x-request-id": outcome.request_id},
    )  # fmt: skip
    outcome.ok = bool(answer.choices[0].message.content)


async def _streamed(gpt: openai.AsyncOpenAI, model: str, outcome: Outcome) -> None:
    stream = await gpt.chat.completions.create(
        model=model, messages=HI, max_tokens=8, stream=True,
        extra_headers={"x-request-id": outcome.request_id, "x-sim-tpot-ms": "5"},
    )  # fmt: skip
    finish = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    outcome.ok = finish is not None


async def _left(gpt: openai.AsyncOpenAI, model: str, outcome: Outcome) -> None:
    """A client that reads two chunks of a slow stream and goes away."""
    stream = await gpt.chat.completions.create(
        model=model, messages=HI, max_tokens=40, stream=True,
        extra_headers={"x-request-id": outcome.request_id, "x-sim-tpot-ms": "40"},
    )  # fmt: skip
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 2:
            outcome.cancelled = True
            await stream.close()
            return
    outcome.ok = True  # a stream too short to leave counts as answered


async def _impatient(gpt: openai.AsyncOpenAI, model: str, outcome: Outcome) -> None:
    """A client that gives up while the gateway still waits for the upstream's first byte."""
    outcome.cancelled = True
    streamed = outcome.kind.startswith("impatient-streamed")
    try:
        # A read timeout: the client hangs up 100 ms after its request, half the first-token
        # wait of every deployment.
        await gpt.chat.completions.create(
            model=model, messages=HI, max_tokens=6, stream=streamed,
            extra_headers={"x-request-id": outcome.request_id, "x-sim-ttft-ms": "200"},
            timeout=0.1,
        )  # fmt: skip
    except openai.APITimeoutError:
        return
    outcome.cancelled = False
    outcome.ok = True


async def _claude(
    claude: anthropic.AsyncAnthropic, model: str, outcome: Outcome, leave: bool
) -> None:
    async with claude.messages.stream(
        model=model, messages=HI, max_tokens=8,
        extra_headers={"x-request-id": outcome.request_id,
                       "x-sim-tpot-ms": "40" if leave else "5"},
    ) as stream:  # fmt: skip
        seen = 0
        async for _ in stream:
            seen += 1
            if leave and seen == 4:
                outcome.cancelled = True
                return  # leaving the block closes the connection mid-stream
        message = await stream.get_final_message()
        outcome.ok = message.stop_reason is not None


async def _one(
    gpt: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, index: int, gate: asyncio.Semaphore
) -> Outcome:
    kind = KINDS[index % len(KINDS)]
    model = "busy" if (index // len(KINDS)) % 3 else "quick"  # two in three to least-busy
    outcome = Outcome(f"soak-{uuid.uuid4().hex}", f"{kind}/{model}")
    calls: dict[str, Callable[[], Awaitable[None]]] = {
        "plain": lambda: _plain(gpt, model, outcome),
        "streamed": lambda: _streamed(gpt, model, outcome),
        "left": lambda: _left(gpt, model, outcome),
        "impatient": lambda: _impatient(gpt, model, outcome),
        "impatient-streamed": lambda: _impatient(gpt, model, outcome),
        "claude": lambda: _claude(claude, model, outcome, leave=False),
        "claude-left": lambda: _claude(claude, model, outcome, leave=True),
    }
    async with gate:
        try:
            await asyncio.wait_for(calls[kind](), EACH_REQUEST_S)
        except TimeoutError:
            outcome.problem = f"no end within {EACH_REQUEST_S} s"
        except openai.APIError as exc:
            outcome.status, outcome.error = getattr(exc, "status_code", None), type(exc).__name__
            outcome.problem = _openai_problem(exc)
        except anthropic.APIError as exc:
            outcome.status, outcome.error = getattr(exc, "status_code", None), type(exc).__name__
            outcome.problem = _anthropic_problem(exc)
    return outcome


# --- the chaos ------------------------------------------------------------------------------


async def _flip(sim: str, until: asyncio.Event) -> None:
    """The flaky simulator answers 500 and then is well, in turns."""
    async with httpx.AsyncClient(base_url=sim) as client:
        broken = False
        while not until.is_set():
            broken = not broken
            fault = "status:500" if broken else None
            (await client.post("/_sim/config", json={"fault": fault})).raise_for_status()
            await asyncio.sleep(0.15)
        (await client.post("/_sim/config", json={"fault": None})).raise_for_status()


async def _reloads(served: Served) -> list[str]:
    """Three reloads under load: a deployment removed (and the budget's limit changed), an
    invalid file (by SIGHUP, as an operator's ``kill -HUP``), the original back."""
    original = served.config
    smaller = yaml.safe_load(yaml.safe_dump(original))
    smaller["models"][0]["deployments"].pop()  # busy-steady leaves
    smaller["limits"]["budgets"][0]["limit_usd"] = 90_000
    said = []
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=15) as admin:
        await asyncio.sleep(0.5)
        served.path.write_text(yaml.safe_dump(smaller))
        said.append(str((await admin.post("/admin/reload")).status_code))
        await asyncio.sleep(0.5)
        served.path.write_text(yaml.safe_dump(original) + "\nrouting: {failure_threshold: -1}\n")
        served.process.proc.send_signal(signal.SIGHUP)
        for _ in range(300):  # the refusal is logged before the file is put right (15 s)
            if "config reload refused" in served.process.output():
                said.append("refused")
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        served.path.write_text(yaml.safe_dump(original))
        said.append(str((await admin.post("/admin/reload")).status_code))
    return said


async def _storm(served: Served, sims: Sims) -> tuple[list[Outcome], list[str]]:
    gate = asyncio.Semaphore(AT_ONCE)
    stop = asyncio.Event()
    gpt = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    claude = anthropic.AsyncAnthropic(base_url=served.url, api_key=CLIENT_KEY, max_retries=0)
    async with (
        httpx.AsyncClient(base_url=sims.stalled) as stalled,
        httpx.AsyncClient(base_url=sims.steady) as steady,
    ):
        # Past the 250 ms first-byte limit of the one deployment on it: every call there stalls.
        (await stalled.post("/_sim/config", json={"ttft_ms": 1500})).raise_for_status()
        # One stream in ten there breaks after its first content (a whole answer is a 503).
        fault = {"fault": "error-after:2", "fault_rate": 0.1, "seed": 5}
        (await steady.post("/_sim/config", json=fault)).raise_for_status()
        flipping = asyncio.create_task(_flip(sims.flaky, stop))
        reloading = asyncio.create_task(_reloads(served))
        try:
            requests = [_one(gpt, claude, index, gate) for index in range(REQUESTS)]
            random.Random(7).shuffle(requests)
            outcomes = await asyncio.gather(*requests)
            statuses = await reloading
        finally:
            stop.set()
            await flipping
            (await stalled.post("/_sim/config", json={"ttft_ms": 0})).raise_for_status()
            calm = {"fault": None, "fault_rate": 1.0}
            (await steady.post("/_sim/config", json=calm)).raise_for_status()
            await gpt.close()
            await claude.close()
    return outcomes, statuses


# --- what the books say afterwards ----------------------------------------------------------


def _deployments(url: str) -> list[dict[str, Any]]:
    return list(httpx.get(url + "/admin/deployments", headers=ADMIN).json()["data"])


def _settled(url: str, seconds: float = 10.0) -> list[dict[str, Any]]:
    """The deployments once none has a request in flight (or as they are after ``seconds``)."""
    deadline = time.monotonic() + seconds
    rows = _deployments(url)
    while time.monotonic() < deadline and any(row["in_flight"] for row in rows):
        time.sleep(0.1)
        rows = _deployments(url)
    return rows


def _log(url: str) -> list[dict[str, Any]]:
    """Every request-log row of the last hour (the module's gateway is this test's alone)."""
    rows: list[dict[str, Any]] = []
    params = {"since": "1h", "limit": "1000"}
    while True:
        page = httpx.get(url + "/admin/logs", params=params, headers=ADMIN).json()
        rows += page["data"]
        if not page.get("next_cursor"):
            return rows
        params["cursor"] = page["next_cursor"]


def _logged(url: str, ids: set[str], seconds: float = 15.0) -> list[dict[str, Any]]:
    """The request log once it has a row for each of ``ids`` (written in the background)."""
    deadline = time.monotonic() + seconds
    rows = _log(url)
    while not ids <= {row["request_id"] for row in rows} and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _log(url)
    return rows


def _burst(url: str, model: str, requests: int) -> list[int]:
    """``requests`` at once to ``model``: their statuses."""

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=20) as client:
            body = {"model": model, "messages": HI, "max_tokens": 2}
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body) for _ in range(requests))
            )
        return [answer.status_code for answer in answers]

    return asyncio.run(run())


def _recovered(
    url: str, group: str, requests: int, seconds: float = 20.0
) -> tuple[list[Counter[int]], list[dict[str, Any]]]:
    """Bursts of ``requests`` to ``group``, each a cooldown after the last, until every
    circuit of the group is closed (or ``seconds`` have passed): each burst's statuses, and
    the group's deployments after the last.

    One burst is not enough on a loaded machine: busy-stalled's first-byte limit (250 ms)
    is timed by the gateway's clock, so a probe its simulator answers at once still fails
    when the gateway's process waits that long for a CPU, and the circuit opens for another
    cooldown. A circuit that never closes (a probe claimed and never given back, one never
    offered to a request) stays open or half-open through every burst."""
    deadline = time.monotonic() + seconds
    bursts = []
    while True:
        time.sleep(0.4)  # past the 300 ms cooldown: an open circuit lets its probe through
        bursts.append(Counter(_burst(url, group, requests)))
        rows = [row for row in _settled(url) if row["group"] == group]
        if all(row["circuit"] == "closed" for row in rows) or time.monotonic() > deadline:
            return bursts, rows


def test_the_books_balance_after_a_storm_of_requests_faults_and_reloads(
    served: Served, sims: Sims
) -> None:
    outcomes, said = asyncio.run(_storm(served, sims))
    assert said == ["200", "refused", "200"]  # the invalid file refused, the others applied

    # Every request ended, and every one its client did not leave was answered or refused
    # in its own dialect, never with a 500.
    problems = [(o.kind, o.status, o.problem) for o in outcomes if o.problem]
    assert not problems, problems[:10]
    assert all(o.ok or o.cancelled or o.error for o in outcomes)
    # The storm did what it is for (shares are the chaos's, not asserted): both groups
    # answered, and clients left streams of both SDKs mid-way.
    assert {o.kind.split("/")[1] for o in outcomes if o.ok} == {"busy", "quick"}
    left = {o.kind.split("/")[0] for o in outcomes if o.cancelled}
    assert {"left", "claude-left"} <= left

    # Nothing is in flight any more in the counts least-busy ranks by, and no probe is
    # claimed by a request that has ended.
    rows = _settled(served.url)
    assert {row["id"] for row in rows} == {
        "busy-flaky", "busy-stalled", "busy-steady", "quick-flaky", "quick-steady", "quick-claude"
    }  # fmt: skip
    assert [(row["id"], row["in_flight"]) for row in rows if row["in_flight"]] == []
    assert [row["id"] for row in rows if row["probe_in_flight"]] == []

    # One request-log row per request the gateway was sent, and none of its own. A client
    # that gave up within 100 ms may have gone before the gateway read its request: at most
    # one row for those.
    sent = {o.request_id: o for o in outcomes}
    answered = {o.request_id for o in outcomes if not o.kind.startswith("impatient")}
    log = _logged(served.url, answered)
    logged = Counter(row["request_id"] for row in log)
    assert sorted(answered - set(logged)) == []
    assert {rid: n for rid, n in logged.items() if n > 1} == {}
    assert set(logged) <= set(sent)

    # The budget spent what the log says the requests cost, and holds nothing back. (A row
    # of an impatient client's request may still be on its way to the log: read again.)
    deadline = time.monotonic() + 10
    while True:
        [budget] = httpx.get(served.url + "/admin/budgets", headers=ADMIN).json()["data"]
        cost = sum(row["cost_usd"] for row in log)
        if budget["spent_usd"] == pytest.approx(cost, abs=1e-6 * len(log)):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"spent {budget['spent_usd']}, the log says {cost}")
        time.sleep(0.2)
        log = _log(served.url)
    assert cost > 0
    assert budget["reserved_usd"] == 0, budget

    # Healthy again, every circuit of the least-busy group lets its probe through and
    # closes (none is left half-open waiting for a probe that never comes), and the model's
    # 40 slots are free again: 30 at once all pass, burst after burst.
    bursts, rows = _recovered(served.url, "busy", 30)
    assert [burst for burst in bursts if burst != {200: 30}] == []
    circuits = {row["id"]: (row["circuit"], row["last_error"]) for row in rows}
    assert {state for state, _ in circuits.values()} == {"closed"}, circuits
