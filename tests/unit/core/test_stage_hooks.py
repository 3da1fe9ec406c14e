"""The pipeline's stage hooks: a hook answers ``None`` at once or an awaitable to wait for.

Stages with nothing to do on a request (no limit in force, a counter to bump) answer
``None`` without making a coroutine; the pipeline must still run every entered stage's
hooks in order, whether each one answered at once or had to be awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from tollway.config.schema import RoutingConfig
from tollway.core.context import RequestContext
from tollway.core.pipeline import Pipeline, Reply, Stage
from tollway.core.types import ChatRequest, ChatResponse, Message
from tollway.routing.health import HealthBook
from tollway.routing.router import Router
from tollway.routing.table import RoutingTable

Log = list[str]


class Plain(Stage):
    """Hooks that answer at once."""

    def __init__(self, name: str, log: Log) -> None:
        self.name, self._log = name, log

    def on_request(self, ctx: RequestContext) -> None:
        self._log.append(f"request {self.name}")

    def on_complete(self, ctx: RequestContext) -> None:
        self._log.append(f"complete {self.name}")


class Waiting(Stage):
    """Hooks that are coroutines; ``reply`` answers the request early."""

    def __init__(self, name: str, log: Log, reply: ChatResponse | None = None) -> None:
        self.name, self._log, self._reply = name, log, reply

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        self._log.append(f"request {self.name}")
        return self._reply

    async def on_complete(self, ctx: RequestContext) -> None:
        self._log.append(f"complete {self.name}")


class Sometimes(Stage):
    """A plain hook that returns a coroutine only when it has work (as admission does)."""

    def __init__(self, name: str, log: Log, busy: bool) -> None:
        self.name, self._log, self._busy = name, log, busy

    def on_request(self, ctx: RequestContext) -> Awaitable[Reply | None] | None:
        if not self._busy:
            self._log.append(f"request {self.name} (at once)")
            return None
        return self._work("request")

    def on_complete(self, ctx: RequestContext) -> Awaitable[None] | None:
        if not self._busy:
            self._log.append(f"complete {self.name} (at once)")
            return None
        return self._work("complete")

    async def _work(self, hook: str) -> None:
        self._log.append(f"{hook} {self.name} (awaited)")


def _pipeline(*stages: Stage) -> Pipeline:
    router = Router(RoutingTable([]), HealthBook(RoutingConfig()))
    return Pipeline(router, {}, {}, stages=stages)


def _context() -> RequestContext:
    chat = ChatRequest(model="m", messages=[Message("user", "hi")], wire_format="openai")
    return RequestContext("req-1", "chat", "m", {}, chat=chat)


async def _run(*stages: Stage) -> tuple[Reply | None, int]:
    """Enter and finish one request through ``stages``: the early reply, the stages entered."""
    pipeline = _pipeline(*stages)
    ctx = _context()
    pending = pipeline._enter_stages(ctx)
    reply = None if pending is None else await pending
    finishing = pipeline.finish(ctx)
    if finishing is not None:
        await finishing
    return reply, ctx.stages_entered


async def test_hooks_that_answer_at_once_make_nothing_to_await() -> None:
    log: Log = []
    pipeline = _pipeline(Plain("a", log), Sometimes("b", log, busy=False), Plain("c", log))
    ctx = _context()
    assert pipeline._enter_stages(ctx) is None
    assert ctx.stages_entered == 3
    assert pipeline.finish(ctx) is None
    assert ctx.finished_at is not None
    assert log == [
        "request a", "request b (at once)", "request c",
        "complete c", "complete b (at once)", "complete a",
    ]  # fmt: skip


async def test_awaited_hooks_and_plain_ones_run_in_order_both_ways() -> None:
    log: Log = []
    stages = (
        Plain("a", log), Waiting("b", log), Plain("c", log), Sometimes("d", log, busy=True),
        Plain("e", log),
    )  # fmt: skip
    assert await _run(*stages) == (None, 5)
    assert log == [
        "request a", "request b", "request c", "request d (awaited)", "request e",
        "complete e", "complete d (awaited)", "complete c", "complete b", "complete a",
    ]  # fmt: skip


async def test_an_early_reply_stops_entering_and_only_entered_stages_complete() -> None:
    log: Log = []
    reply = ChatResponse("early", "m", 0, [], None)
    stages = (Plain("a", log), Waiting("b", log, reply=reply), Plain("c", log))
    early, entered = await _run(*stages)
    assert early is reply and entered == 2
    assert log == ["request a", "request b", "complete b", "complete a"]


async def test_a_reply_after_an_awaited_hook_also_stops_entering() -> None:
    log: Log = []
    reply = ChatResponse("early", "m", 0, [], None)
    stages = (
        Sometimes("a", log, busy=True), Plain("b", log), Waiting("c", log, reply=reply),
        Plain("d", log),
    )  # fmt: skip
    early, entered = await _run(*stages)
    assert early is reply and entered == 3
    assert log == [
        "request a (awaited)", "request b", "request c",
        "complete c", "complete b", "complete a (awaited)",
    ]  # fmt: skip


class Failing(Stage):
    """A stage whose ``on_complete`` raises: at once, or once awaited."""

    def __init__(self, name: str, log: Log, awaited: bool) -> None:
        self.name, self._log, self._awaited = name, log, awaited

    def on_complete(self, ctx: RequestContext) -> Awaitable[None] | None:
        self._log.append(f"complete {self.name}")
        if self._awaited:
            return self._fail()
        raise RuntimeError("a bug in a completion hook")

    async def _fail(self) -> None:
        raise RuntimeError("a bug in an awaited completion hook")


async def test_a_completion_hook_that_fails_does_not_stop_the_stages_before_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The request log and metrics are the first stages, so they complete last: a later
    # stage's on_complete that raised kept them from seeing the request at all (and turned
    # the client's answer into a 500).
    log: Log = []
    stages = (
        Plain("log", log), Failing("x", log, awaited=False), Waiting("b", log),
        Failing("y", log, awaited=True), Plain("c", log),
    )  # fmt: skip
    assert await _run(*stages) == (None, 5)
    assert log[-5:] == ["complete c", "complete y", "complete b", "complete x", "complete log"]
    failures = [r for r in caplog.records if "failed completing it" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "request req-1: stage y failed completing it",
        "request req-1: stage x failed completing it",
    ]
    assert all(r.exc_info is not None for r in failures)  # with the traceback
