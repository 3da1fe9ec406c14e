"""The request pipeline: stages around routing and the provider call.

A stage is any object with some of the hooks of ``Stage``. ``on_request`` hooks run in
order and may answer early by returning a reply (a short-circuit value, not an exception);
``on_complete`` hooks run in reverse for every stage whose ``on_request`` ran, whatever
happened. ``on_attempt`` / ``on_attempt_end`` run around every upstream call (a stage may
refuse a candidate, e.g. one whose own rate limit is full, by raising a retryable error).
The pipeline is built from config and never changes; a reload builds a new one.

Every request is planned by the router (routing/router.py) and tried candidate by candidate
while nothing has been sent to the client: a transient failure (5xx, reset, cut answer) is
retried on the same deployment up to the group's ``retries`` with jittered backoff; a rate
limit, a timeout or the last retry moves on to the next candidate; a client error (400 and
the like) ends the request at once. Each outcome updates the deployment's health. A stream
is an attempt until its first content: the head before it is held (``wire/stream_head.py``),
so a failure right after the head still fails over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Literal, TypeVar

from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    wait_headers,
    wait_value,
)
from tollway.core.types import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Deployment,
    EmbeddingResponse,
    ToolCallDelta,
    Usage,
)
from tollway.pricing.metering import (
    Metering,
    format_cost,
    read_at_most,
    reasoning_chars,
    streamed_reasoning_chars,
)
from tollway.pricing.tokens import COUNT_AHEAD_CHARS, TokenCounter, inline_pdfs, long_texts
from tollway.providers import retry_waits
from tollway.providers.base import ChatProvider, EmbeddingProvider, RequestChecker
from tollway.providers.base import TokenCounter as ProviderTokenCounter
from tollway.providers.deadlines import OPENING
from tollway.routing.health import DeploymentHealth, Waited, retry_after_seconds
from tollway.routing.router import Router
from tollway.routing.strategies import Candidate
from tollway.routing.table import RoutingTable, within
from tollway.wire.crossing import ANSWER_FIELDS_STREAM
from tollway.wire.stream_head import HELD_AT_MOST, opens_only

log = logging.getLogger("tollway.pipeline")

Reply = ChatResponse | EmbeddingResponse
_Result = TypeVar("_Result")
Once = Callable[[RequestContext, Deployment], Awaitable[_Result]]
Stream = tuple[list[ChatChunk], AsyncIterator[ChatChunk]]
"""A stream's chunks in hand (its held head and first content) and the rest to come."""


class Stage:
    """A pipeline stage; subclasses override the hooks they need (the rest cost nothing).

    A hook other than ``on_chunk`` returns an awaitable (an ``async def`` hook does) or
    ``None`` when it has nothing to wait for: a hook that usually finds nothing to do (no
    limit in force, a counter to bump) is a plain method that answers ``None`` at once and
    returns a coroutine only for the real work. A coroutine made and awaited for nothing costs
    several times a plain call, on every request, for every such hook.
    """

    name = "stage"
    reads_answers = True
    """Whether ``on_response`` reads a complete answer's content (its choices); a stage that
    reads only the context says False, so an answer sent on as the upstream's bytes need not
    be parsed for it (``ChatRequest.answer_as_is``)."""
    writes_requests = True
    """Whether ``on_request`` or ``on_attempt`` may change the request (``ctx.chat``); a stage
    that only reads it says False, so a plain client body may be sent upstream as it came
    (``ChatRequest.wire_body``)."""
    counts_input = False
    """Whether the stage counts the request's input tokens (admission does): a large request
    is then counted ahead, off the event loop (``Pipeline.count_ahead``)."""

    def on_request(self, ctx: RequestContext) -> Awaitable[Reply | None] | None:
        """Before routing; an awaitable that gives a reply answers without calling a
        provider (``None``, or one that gives ``None``, goes on)."""
        return None

    def on_attempt(self, ctx: RequestContext, deployment: Deployment) -> Awaitable[None] | None:
        """Before each upstream call; raise a retryable ``GatewayError`` to skip ``deployment``."""
        return None

    def on_attempt_end(self, ctx: RequestContext, attempt: Attempt) -> Awaitable[None] | None:
        """After each upstream call (a stream's when it ends); ``attempt.error`` says how."""
        return None

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
        """Each streamed chunk on its way out; ``None`` drops it. A stage that changes a
        chunk sets its ``raw`` to ``None`` (else the client is sent the upstream's bytes)."""
        return chunk

    def on_costed(self, ctx: RequestContext) -> Awaitable[None] | None:
        """A complete (non-streamed) answer, chat or embeddings, has been costed
        (``ctx.cost_usd``), before its headers are made: admission settles here."""
        return None

    def on_response(
        self, ctx: RequestContext, response: ChatResponse
    ) -> Awaitable[ChatResponse] | None:
        """A complete (non-streamed) answer on its way out; ``None`` leaves it as it is. A
        stage that changes it sets its ``raw`` to ``None`` (else the client is sent the
        upstream's bytes)."""
        return None

    def on_complete(self, ctx: RequestContext) -> Awaitable[None] | None:
        """After the last byte, or after a failure; ``ctx.error`` says which."""
        return None


def _overrides(stage: Stage, hook: str) -> bool:
    return getattr(type(stage), hook) is not getattr(Stage, hook)


class Pipeline:
    """Runs requests through the stages, the router and the providers."""

    def __init__(
        self,
        router: Router,
        chat_providers: Mapping[str, ChatProvider],
        embedding_providers: Mapping[str, EmbeddingProvider],
        stages: Sequence[Stage] = (),
        metering: Metering | None = None,
    ) -> None:
        self.router = router
        self.metering = metering or Metering(TokenCounter())
        self._health = router.health
        self._chat_providers = chat_providers
        self._embedding_providers = embedding_providers
        self._stages = tuple(stages)
        # Only stages that override a hook are called for it: empty hooks cost nothing.
        self._chunk_stages = tuple(s for s in self._stages if _overrides(s, "on_chunk"))
        self._response_stages = tuple(s for s in self._stages if _overrides(s, "on_response"))
        self._costed_stages = tuple(s for s in self._stages if _overrides(s, "on_costed"))
        self._answers_read = any(s.reads_answers for s in self._response_stages)
        self._attempt_stages = tuple(s for s in self._stages if _overrides(s, "on_attempt"))
        self._attempt_end_stages = tuple(s for s in self._stages if _overrides(s, "on_attempt_end"))
        # Membership by identity: the stages that override each of the two per-request hooks.
        self._request_hooked = frozenset(s for s in self._stages if _overrides(s, "on_request"))
        self._counts_input = any(stage.counts_input for stage in self._stages)
        self._requests_written = any(
            s.writes_requests
            for s in self._stages
            if _overrides(s, "on_request") or _overrides(s, "on_attempt")
        )
        self._complete_hooked = frozenset(s for s in self._stages if _overrides(s, "on_complete"))
        config = router.config  # this table's settings (the health book's may be older)
        self._backoff, self._backoff_max = config.backoff, config.backoff_max

    @property
    def routing(self) -> RoutingTable:
        """The routing table this pipeline plans with."""
        return self.router.table

    def _enter_stages(self, ctx: RequestContext) -> Awaitable[Reply | None] | None:
        """Run the ``on_request`` hooks in order from the first stage not entered yet; what
        is left to await, or ``None`` when every hook answered at once with nothing (no
        coroutine made for the usual case)."""
        hooked = self._request_hooked
        for stage in self._stages[ctx.stages_entered :]:
            ctx.stages_entered += 1
            if stage in hooked:
                pending = stage.on_request(ctx)
                if pending is not None:
                    return self._enter_rest(ctx, pending)
        return None

    async def _enter_rest(
        self, ctx: RequestContext, pending: Awaitable[Reply | None]
    ) -> Reply | None:
        reply = await pending
        if reply is not None:
            return reply
        later = self._enter_stages(ctx)
        return None if later is None else await later

    def finish(self, ctx: RequestContext) -> Awaitable[None] | None:
        """Run ``on_complete`` of every entered stage in reverse; call once per request, and
        await what it returns (``None`` when every hook finished at once)."""
        ctx.finished_at = time.perf_counter()
        return self._complete_before(ctx, ctx.stages_entered)

    def _complete_before(self, ctx: RequestContext, end: int) -> Awaitable[None] | None:
        """``on_complete`` of the stages before ``end``, last first, up to one that has
        something to await (the rest follow it). A hook that fails is logged and the rest
        still run: the request log and metrics (the first stages) see every request."""
        hooked = self._complete_hooked
        stages = self._stages
        for index in range(end - 1, -1, -1):
            stage = stages[index]
            if stage in hooked:
                try:
                    pending = stage.on_complete(ctx)
                except Exception:
                    _completion_failed(ctx, stage)
                    continue
                if pending is not None:
                    return self._complete_rest(ctx, pending, index)
        self._finished(ctx)
        return None

    async def _complete_rest(self, ctx: RequestContext, pending: Awaitable[None], end: int) -> None:
        try:
            await pending
        except Exception:
            _completion_failed(ctx, self._stages[end])
        later = self._complete_before(ctx, end)
        if later is not None:
            await later

    @staticmethod
    def _finished(ctx: RequestContext) -> None:
        if ctx.error is not None or len(ctx.tries) > 1:
            _drop_tracebacks(ctx)

    # --- chat ---------------------------------------------------------------------------

    async def chat(self, ctx: RequestContext) -> ChatResponse:
        """A complete answer, from a stage or the first candidate deployment that gives one."""
        assert ctx.chat is not None
        if self._answers_read:
            ctx.chat.answer_as_is = False
        if self._requests_written:
            ctx.chat.wire_body = None
        entering = self._enter_stages(ctx)
        early = None if entering is None else await entering
        if isinstance(early, ChatResponse):
            response = early
        else:
            try:
                response = await self._attempts(ctx, "chat", self._chat_once)
            except GatewayError:
                # A prompt the provider read before its client left was billed: so is the client.
                await spent_counted(ctx)
                self.metering.settle_spent(ctx)
                raise
        # Costed before the response stages, so admission can settle and say so.
        ctx.usage = response.usage
        if response.usage is None:  # estimated from the answer (Metering)
            form = response.wire_format
            for choice in response.choices:
                thought = reasoning_chars(choice.message, form)
                ctx.reasoning_chars += thought
                ctx.output_chars += _answer_chars(choice, thought)
        cost = self.metering.settle(ctx)
        if len(ctx.tries) > 1:
            # And what the attempts it failed over from were billed (a prompt a time limit
            # cut the call after sending), though another deployment answered.
            await spent_counted(ctx)
            cost = self.metering.add_spent(ctx)
        ctx.response_headers["x-tollway-cost-usd"] = format_cost(cost)
        for stage in self._costed_stages:
            pending = stage.on_costed(ctx)
            if pending is not None:
                await pending
        for stage in self._response_stages:
            changed = stage.on_response(ctx, response)
            if changed is not None:
                response = await changed
        return response

    def _chat_once(self, ctx: RequestContext, deployment: Deployment) -> Awaitable[ChatResponse]:
        # The provider's own coroutine, not one around it: a layer less to pass on every resume.
        assert ctx.chat is not None
        return self._chat_providers[deployment.provider].chat(ctx.chat, deployment)

    async def stream(self, ctx: RequestContext) -> AsyncIterator[ChatChunk]:
        """The answer as chunks; failover is possible until its first content is in hand (the
        stream's head before it is held: ``wire/stream_head.py``)."""
        assert ctx.chat is not None
        if self._requests_written:
            ctx.chat.wire_body = None
        entering = self._enter_stages(ctx)
        early = None if entering is None else await entering
        if isinstance(early, ChatResponse):
            ctx.deployment = None
            replay = response_as_chunks(early)
            return self._forward(ctx, [await anext(replay)], replay, None)
        try:
            in_hand, rest = await self._attempts(ctx, "chat", self._stream_once, streaming=True)
        except GatewayError:
            # Server-side tool calls a failed attempt finished were billed: so is the client.
            await spent_counted(ctx)
            self.metering.settle_spent(ctx)
            raise
        return self._forward(ctx, in_hand, rest, self._health.of(ctx.tries[-1].deployment))

    async def _stream_once(self, ctx: RequestContext, deployment: Deployment) -> Stream:
        """The stream's chunks up to its first content (the head before it held, so that a
        failure after the head is still this attempt's, and fails over), and the rest."""
        assert ctx.chat is not None
        chunks = self._chat_providers[deployment.provider].stream(ctx.chat, deployment)
        in_hand: list[ChatChunk] = []
        # Until this attempt has content, its upstream's first-byte limit (a latency
        # threshold's, a deadline's) runs on through the head: it bounds the first token.
        opening = OPENING.set(ctx.tries[-1])
        try:
            try:
                chunk = await anext(chunks)
            finally:
                OPENING.reset(opening)  # the upstream call, started by now, has it
            while opens_only(chunk) and len(in_hand) < HELD_AT_MOST:
                in_hand.append(chunk)
                chunk = await anext(chunks)
        except StopAsyncIteration:
            if not in_hand:
                raise UpstreamProtocolError("upstream stream was empty") from None
            # A stream that ended cleanly after its head (an empty answer) is that answer.
            return in_hand, chunks
        except BaseException as exc:
            await chunks.aclose()  # type: ignore[attr-defined]
            if isinstance(exc, UpstreamError):
                # Failed after its head (an error event, a time limit, a cut connection):
                # what the head reported used (the prompt, server tool calls) was billed.
                exc.spent = _head_spent(in_hand) or exc.spent
            elif isinstance(exc, ClientDisconnected):
                ctx.tries[-1].spent = _prompt_reported(in_hand)
            raise
        in_hand.append(chunk)
        ctx.tries[-1].first_chunk_at = time.perf_counter()
        return in_hand, chunks

    async def _forward(
        self,
        ctx: RequestContext,
        in_hand: list[ChatChunk],
        rest: AsyncIterator[ChatChunk],
        health: DeploymentHealth | None,
    ) -> AsyncIterator[ChatChunk]:
        ctx.first_token_at = time.perf_counter()
        outcome: GatewayError | Literal["abandoned"] | None = "abandoned"
        passed = 0  # of the chunks in hand (a few, once a request: no cost to each chunk)
        try:
            for chunk in in_hand:
                passed += 1
                outgoing = self._outgoing(ctx, chunk)
                if outgoing is not None:
                    yield outgoing
            async for chunk in rest:
                outgoing = self._outgoing(ctx, chunk)
                if outgoing is not None:
                    yield outgoing
            outcome = None
        except GatewayError as exc:
            outcome = exc
            if health is not None:
                _blame(exc, ctx.tries[-1].deployment)
            raise
        finally:
            try:
                if outcome == "abandoned" and health is not None:
                    # Its consumer stopped (its client left as the stream began, or mid-way):
                    # what the upstream had sent by then was generated, and is billed.
                    await self._count_unsent(ctx, in_hand[passed:], rest)
            finally:  # a cancellation (the server stopping) met there settles all the same
                await self._end_stream(ctx, rest, health, outcome)

    async def _end_stream(
        self,
        ctx: RequestContext,
        rest: AsyncIterator[ChatChunk],
        health: DeploymentHealth | None,
        outcome: GatewayError | Literal["abandoned"] | None,
    ) -> None:
        """Close the upstream stream, settle what it generated, end its attempt."""
        await rest.aclose()  # type: ignore[attr-defined]
        # Whatever ended the stream, what was generated is accounted for.
        self.metering.settle(ctx)
        if len(ctx.tries) > 1:
            # And what the failed attempts before it were billed (their tool calls, a
            # prompt a time limit cut after sending).
            await spent_counted(ctx)
            self.metering.add_spent(ctx)
        if health is not None:
            await self._close_stream_attempt(ctx, health, outcome)

    def _outgoing(
        self, ctx: RequestContext, chunk: ChatChunk, unsent: bool = False
    ) -> ChatChunk | None:
        """``chunk`` counted and passed through the chunk stages (``None``: a stage dropped
        it). ``unsent``: a chunk its client will never have (it left), counted only."""
        if chunk.usage is not None:
            ctx.usage = chunk.usage
        for choice in chunk.choices:
            if choice.content:
                ctx.output_chars += len(choice.content)
            if choice.tool_calls:
                ctx.output_chars += sum(_delta_chars(c) for c in choice.tool_calls)
            if choice.reasoning is not None or choice.extra:
                thought = streamed_reasoning_chars(choice, chunk.wire_format)
                ctx.output_chars += thought
                ctx.reasoning_chars += thought
        so_far = chunk.usage_so_far
        if so_far is not None:
            ctx.usage_so_far = so_far
            if so_far.input_tokens or so_far.output_tokens:
                # A report of tokens covers the output so far; one of tool calls only (a
                # Responses stream's search done) does not.
                ctx.output_chars_so_far = ctx.output_chars
        if unsent:
            return None
        for stage in self._chunk_stages:
            changed = stage.on_chunk(ctx, chunk)
            if changed is None:
                return None
            chunk = changed
        return chunk

    async def _count_unsent(
        self, ctx: RequestContext, held: list[ChatChunk], rest: AsyncIterator[ChatChunk]
    ) -> None:
        """Count what a stream's upstream sent that its consumer will never take: the chunks
        still held (its first content, when the client left before the response head could
        be written) and those already received, read without waiting for more (the rest of
        the network read the last chunk came in, what the connection has buffered since).

        A wait cuts the reading: ``asyncio.timeout(0)`` fires at the first await that does
        not complete at once, so nothing is read that had not arrived. Not while the task is
        being cancelled (the server stopping): that cancellation must go on.
        """
        for chunk in held:
            self._outgoing(ctx, chunk, unsent=True)
        task = asyncio.current_task()
        if task is None or task.cancelling():
            return
        try:
            async with asyncio.timeout(0):
                async for chunk in rest:
                    self._outgoing(ctx, chunk, unsent=True)
        except (TimeoutError, GatewayError):
            pass  # what had arrived is counted; the stream is closed next, either way

    async def _close_stream_attempt(
        self,
        ctx: RequestContext,
        health: DeploymentHealth,
        outcome: GatewayError | Literal["abandoned"] | None,
    ) -> None:
        attempt = ctx.tries[-1]
        now = time.perf_counter()
        attempt.ended = now
        if outcome == "abandoned":
            self._health.abandoned(health)
        elif isinstance(outcome, ClientDisconnected):
            # Its client hung up while it waited for the upstream: how the request ends, and
            # no outcome of the deployment's.
            ctx.error, attempt.cut_short = outcome, True
            self._health.abandoned(health)
        elif isinstance(outcome, UpstreamTimeout) and outcome.client_held:
            # Cut at the total limit while the stream waited on its client (one reading it
            # slowly, or not at all): no failure of the deployment's, whose circuit slow
            # readers could otherwise open for everyone.
            attempt.error, attempt.cut_short = outcome, True
            self._health.abandoned(health)
        else:
            begun = attempt.first_chunk_at
            ttft = None if begun is None else begun - attempt.started
            if outcome is None:
                self._health.succeeded(health, now - attempt.started, ttft)
            else:
                attempt.error = outcome
                # After its first content: it says how soon the stream began, all the same.
                self._health.failed(health, outcome, now - attempt.started, None, ttft=ttft)
        for stage in self._attempt_end_stages:
            pending = stage.on_attempt_end(ctx, attempt)
            if pending is not None:
                await pending

    # --- attempts -----------------------------------------------------------------------

    async def _attempts(
        self,
        ctx: RequestContext,
        kind: Literal["chat", "embedding"],
        once: Once[_Result],
        streaming: bool = False,
    ) -> _Result:
        """The first answer of the planned candidates; the last failure when none gives one
        (a 429 with the soonest ``retry-after`` any candidate asked for)."""
        candidates, retries, deadline = self.router.plan(ctx, kind)
        until = None if deadline is None else _clock() + deadline
        last_error: GatewayError | None = None
        soonest: tuple[float, str] | None = None
        resting: list[Candidate] | None = None  # set aside by their circuit, best first
        cooling: list[DeploymentHealth] = []  # set aside because the provider asked to wait
        outgrown: int | None = None  # the largest window a provider said the request overflows
        for index, (deployment, health) in enumerate(candidates):
            now = time.monotonic()
            if until is not None and _clock() >= until:
                break  # before ``available``, which may claim a half-open circuit's probe
            if outgrown is not None and (deployment.context_window or _UNKNOWN) <= outgrown:
                continue  # no larger than one that could not hold it
            if not health.available(now):
                if now < health.resting_until:
                    cooling.append(health)
                else:
                    resting = resting or []
                    resting.append((deployment, health))
                continue
            if deployment.hurried and not any(
                h.could_answer(now) for _, h in candidates[index + 1 :]
            ):
                # The last candidate that can answer gets its own first-byte limit in full.
                deployment = self.router.table.unhurried(deployment)
            # ``available`` let it through on a half-open circuit only as the probe.
            probe = health.state == "half_open"
            try:
                return await self._try(
                    ctx, deployment, health, once, retries, streaming, until, probe
                )
            except GatewayError as exc:
                if isinstance(exc, UpstreamStatusError) and exc.overflows_context:
                    # Too long for this deployment's window, not for every candidate's: one
                    # with a larger window (or one not known) may hold it.
                    window = deployment.context_window
                    if window is not None:
                        outgrown = max(outgrown or 0, window)
                elif not exc.retryable:
                    raise
                last_error = exc
                if exc.status == 429 or exc.anthropic_status == 529:
                    soonest = _sooner(soonest, _asked_wait(exc))
        if until is not None and _clock() >= until:
            assert deadline is not None
            raise _overdue(ctx, deadline, last_error)
        last_resort = _last_resort(resting, last_error, outgrown)
        if last_resort is not None:
            # Every candidate that could serve is set aside, some only by its circuit: try the
            # best of those rather than none (one that asked to wait is not called before its
            # time).
            deployment, health = last_resort
            if deployment.hurried:
                deployment = self.router.table.unhurried(deployment)
            return await self._try(ctx, deployment, health, once, 0, streaming, until)
        if last_error is None:
            raise _cooling_down(ctx.model, cooling)
        if (last_error.status == 429 or last_error.anthropic_status == 529) and (
            soonest is not None or cooling
        ):
            # Every candidate is busy: the client may come back when the first of them may
            # serve again, not when the last one tried asked.
            for health in cooling:
                soonest = _sooner(soonest, wait_value(health.resting_until - time.monotonic()))
            assert soonest is not None
            headers = {k: v for k, v in last_error.headers.items() if not k.startswith("retry-")}
            last_error.headers = {**headers, **wait_headers(soonest[1])}
        raise last_error

    async def _try(
        self,
        ctx: RequestContext,
        deployment: Deployment,
        health: DeploymentHealth,
        once: Once[_Result],
        retries: int,
        streaming: bool,
        until: float | None = None,
        probe: bool = False,
    ) -> _Result:
        """``once`` on ``deployment``, retried on transient failures; raises the last one.
        With a deadline (``until``, on the loop's clock), each call gets only the time left.
        ``probe``: this request claimed the deployment's half-open probe, which an end
        without an outcome hands to the next request (no other request's end does)."""
        target = deployment
        failure: GatewayError | None = None
        for retry in range(retries + 1):
            if retry:
                cap = min(self._backoff_max, self._backoff * 2 ** (retry - 1))
                delay = random.uniform(0, cap)
                if until is not None and _clock() + delay >= until:
                    assert failure is not None
                    raise failure  # no time left to try here again
                await asyncio.sleep(delay)
                assert failure is not None
                if not _retriable(health):  # another request's outcome meanwhile
                    raise failure
            try:
                # Before each call, a retry's too: the failed call's end gave back what it
                # had taken of the deployment's own limits, which the retry takes again.
                for stage in self._attempt_stages:
                    pending = stage.on_attempt(ctx, deployment)
                    if pending is not None:
                        await pending
            except BaseException:
                self._health.released(health, probe)  # refused before any call: not its failure
                raise
            if until is not None:
                # Never 0: aiohttp reads a zero connect limit as none at all.
                target = within(deployment, max(until - _clock(), 0.001), streaming, until)
            attempt = _begin(ctx, deployment)
            self._health.started(health)
            try:
                result = await once(ctx, target)
            except ClientDisconnected as exc:
                # Its client hung up while it waited (providers/deadlines.py): how the request
                # ends, no outcome of the deployment's, and no other candidate to try.
                attempt.ended, attempt.cut_short = time.perf_counter(), True
                ctx.error = exc
                if attempt.spent is None and exc.prompt_sent:
                    # Sent, and no usage came (a stream's head reports it: kept): the
                    # provider read the prompt (an embeddings request's input) first, and
                    # bills it, answer or none.
                    self._charge_prompt(ctx, attempt)
                self._health.abandoned(health, probe)
                for stage in self._attempt_end_stages:
                    pending = stage.on_attempt_end(ctx, attempt)
                    if pending is not None:
                        await pending
                raise
            except GatewayError as exc:
                now = time.perf_counter()
                attempt.ended, attempt.error = now, exc
                if isinstance(exc, UpstreamError) and exc.spent is not None:
                    attempt.spent = exc.spent
                elif isinstance(exc, UpstreamTimeout) and exc.prompt_sent:
                    # A time limit cut it once sent, before any usage came (a complete
                    # answer's, a stream's head's): the provider read the prompt, and bills it.
                    self._charge_prompt(ctx, attempt)
                _blame(exc, deployment)
                if _cut_short(exc, until):
                    # Cut short by the deadline, not by the deployment's own limits.
                    attempt.cut_short = True
                    self._health.abandoned(health, probe)
                else:
                    waited: Waited = "first_token" if streaming else "answer"
                    self._health.failed(health, exc, now - attempt.started, waited, probe)
                for stage in self._attempt_end_stages:
                    pending = stage.on_attempt_end(ctx, attempt)
                    if pending is not None:
                        await pending
                if (
                    retry < retries
                    and _transient(exc)
                    and _retriable(health)
                    and (until is None or _clock() < until)
                ):
                    failure = exc
                    continue
                raise
            except BaseException:
                attempt.ended = time.perf_counter()
                self._health.abandoned(health, probe)
                raise
            if not streaming:
                now = time.perf_counter()
                attempt.ended = now
                self._health.succeeded(health, now - attempt.started, None, False)
                for stage in self._attempt_end_stages:
                    pending = stage.on_attempt_end(ctx, attempt)
                    if pending is not None:
                        await pending
            else:
                self._health.answered(health)  # a stream has begun: a probe has answered
            return result
        raise AssertionError("unreachable: the last retry returns or raises")

    def _charge_prompt(self, ctx: RequestContext, attempt: Attempt) -> None:
        """Charge ``attempt`` (a call cut once sent, before any usage came) the prompt the
        provider read: admission's count, else counted in a worker thread meanwhile
        (``spent_counted`` collects it before the request is settled)."""
        attempt.spent_estimated = True
        known = ctx.input_tokens_estimate
        if known is not None:
            attempt.spent = Usage(input_tokens=read_at_most(known, attempt.deployment))
            return
        count = asyncio.to_thread(self.metering.prompt_spent, ctx, attempt.deployment)
        attempt.counting = asyncio.ensure_future(count)

    # --- the rest -----------------------------------------------------------------------

    async def count_ahead(self, ctx: RequestContext, *, always: bool = False) -> None:
        """Count a large request's long texts in a worker thread, with the encodings of every
        deployment that could serve it, before anything counts them on the event loop
        (routing, admission, metering then find the counts kept: pricing/tokens.py). Unless
        ``always``, only where something will count them: a stage (admission), the context
        windows of the model's group, or a ``cost`` group's long-context tier."""
        request = ctx.chat if ctx.chat is not None else ctx.embedding
        if request is None:
            return
        if not (always or self._counts_input or self.router.counts_input(ctx.model)):
            return  # metering counts only an answer without usage: not worth it ahead
        texts, pdfs = long_texts(request), inline_pdfs(request)
        if (
            sum(map(len, texts)) + sum(len(data) - start for data, start in pdfs)
            <= COUNT_AHEAD_CHARS
        ):
            return
        table = self.router.table
        group = table.get(ctx.model)
        if group is None:
            return  # routing refuses it, uncounted
        counter = self.metering.counter
        deployments = [*group.deployments]
        for fallback in table.fallback_chain(group.name):
            deployments += fallback.deployments
        encodings = {counter.encoding_of(d.provider, d.model, d.tokenizer) for d in deployments}
        await asyncio.to_thread(counter.count_ahead, texts, sorted(encodings), pdfs)

    async def count_tokens(self, ctx: RequestContext) -> tuple[int, bool]:
        """Input tokens of ``ctx.chat`` on the model's first deployment, and whether the
        provider counted them (else the local tokenizer did: exact for OpenAI's models where
        OpenAI serves them, and for a deployment that declares its ``tokenizer``).

        A request the deployment could not be sent is refused as a chat call would refuse
        it: the provider translates it either way (for its own count, or only to check it),
        so a count never answers for what a chat call would answer with a 400.
        No stages run: counting is free and sends nothing to a model.

        A provider's count the deployment cannot give now (its circuit open, resting after a
        429, or its call failing: unreachable, a 5xx, a timeout) is the local count: the
        client asked for a count, which one is at hand, not for that deployment's failure.
        """
        assert ctx.chat is not None
        deployment = self.router.first(ctx.model, "chat")
        provider = self._chat_providers[deployment.provider]
        if isinstance(provider, ProviderTokenCounter) and self._health.of(deployment).could_answer(
            time.monotonic()
        ):
            _begin(ctx, deployment)
            try:
                return await provider.count_tokens(ctx.chat, deployment), True
            except GatewayError as exc:
                _blame(exc, deployment)
                if not exc.retryable:  # the request's own fault (a 400), or its client gone
                    raise
                ctx.deployment = None  # no deployment served it: the answer says none
        await self.count_ahead(ctx, always=True)
        if isinstance(provider, RequestChecker):
            provider.check(ctx.chat, deployment)
        return self.metering.input_tokens(ctx, deployment), False

    async def embed(self, ctx: RequestContext) -> EmbeddingResponse:
        """Embeddings from a stage or the first candidate deployment that gives them."""
        assert ctx.embedding is not None
        entering = self._enter_stages(ctx)
        early = None if entering is None else await entering
        if isinstance(early, EmbeddingResponse):
            return early
        try:
            response = await self._attempts(ctx, "embedding", self._embed_once)
        except GatewayError:
            # Batches answered (an input read) before the request failed were billed: so is
            # the client.
            await spent_counted(ctx)
            self.metering.settle_spent(ctx)
            raise
        if not response.usage.input_tokens:
            # No usage reported (Google's batchEmbedContents answers the embeddings only; no
            # input of a request is empty): counted here, as a chat answer without usage is,
            # so the client, the cost and budgets see the tokens Google bills.
            counted = self.metering.input_tokens(ctx, ctx.deployment)
            response.usage = replace(response.usage, input_tokens=counted)
            ctx.usage_estimated = True
        ctx.usage = response.usage
        cost = self.metering.settle(ctx)
        if len(ctx.tries) > 1:
            # Batches an earlier deployment answered before one failed were billed: so is
            # the client, though another deployment then answered the whole request.
            await spent_counted(ctx)
            cost = self.metering.add_spent(ctx)
        ctx.response_headers["x-tollway-cost-usd"] = format_cost(cost)
        for stage in self._costed_stages:
            pending = stage.on_costed(ctx)
            if pending is not None:
                await pending
        return response

    def _embed_once(
        self, ctx: RequestContext, deployment: Deployment
    ) -> Awaitable[EmbeddingResponse]:
        assert ctx.embedding is not None
        return self._embedding_providers[deployment.provider].embed(ctx.embedding, deployment)


async def spent_counted(ctx: RequestContext) -> None:
    """Collect the prompts of the request's cut attempts counted off the event loop
    (``Attempt.counting``) into their ``spent``."""
    for attempt in ctx.tries:
        counting = attempt.counting
        if counting is not None:
            attempt.spent, attempt.counting = await counting, None


def _head_spent(held: list[ChatChunk]) -> Usage | None:
    """What the held head of a stream that failed before its first content reported used:
    the prompt's tokens (and output so far) of its last report of tokens, with the
    server-side tool calls its last report of them said done (a Responses stream's finished
    web search); the provider billed them, though the request fails over."""
    prompt = _prompt_reported(held)
    calls = next(
        (
            c.usage_so_far.tool_calls
            for c in reversed(held)
            if c.usage_so_far and c.usage_so_far.tool_calls
        ),
        None,
    )
    if calls and (prompt is None or not prompt.tool_calls):
        return replace(prompt or Usage(), tool_calls=dict(calls))
    return prompt


def _prompt_reported(held: list[ChatChunk]) -> Usage | None:
    """What the held head of a stream cut before its first content (its client left, a time
    limit passed, an error event) reported used: the prompt's tokens (Anthropic's
    ``message_start``, Gemini's first usage), read and billed by the provider by then. The
    attempt's spent usage, charged as a stream cut after its head is."""
    for chunk in reversed(held):
        so_far = chunk.usage_so_far
        if so_far is not None and so_far.input_tokens:  # else it says nothing of the prompt
            return so_far
    return None


def _overdue(
    ctx: RequestContext, deadline: float, last_error: GatewayError | None
) -> DeadlineExceeded:
    """The client's error when the model group's deadline has passed."""
    tries = "attempt" if ctx.attempts == 1 else "attempts"
    message = f"No answer for '{ctx.model}' within its deadline of {deadline:g}s"
    message += f" ({ctx.attempts} {tries}"
    if last_error is not None and not isinstance(last_error, UpstreamTimeout):
        message += f"; the last failed: {last_error.message}"
    return DeadlineExceeded(message + ").")


def _cut_short(error: GatewayError, until: float | None) -> bool:
    """Whether ``error`` is the deadline's doing: a timeout once it has passed (the limits
    ``within`` cut end there, and the deployment's own limits end before it). A deployment's
    own limit (a connect or first-byte limit the deadline left as it was) is its failure."""
    return until is not None and isinstance(error, UpstreamTimeout) and _clock() >= until


_UNKNOWN = 1 << 62
"""A context window not known: larger than any known one."""


def _clock() -> float:
    """The event loop's clock, which the upstream time limits (``Deadlines``) run on: a
    deadline kept on another clock (``time.monotonic``, ahead of uvloop's, which is read once
    a loop turn in whole milliseconds) could see a limit it cut fire just before it passed.
    Read only for groups with a deadline."""
    return asyncio.get_running_loop().time()


def _transient(error: GatewayError) -> bool:
    """Worth retrying on the same deployment: not a rate limit, not a timeout, not an
    overload that asked for a wait (the deployment rests for it)."""
    if isinstance(error, UpstreamTimeout):
        return False
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status >= 500 and not error.rests
    return error.retryable


def _retriable(health: DeploymentHealth) -> bool:
    """Whether the deployment may be tried again now: never once a failure opened its
    circuit (this one, or another request's), nor while it rests because another request's
    429 or overload asked for a wait (one that rests is not called before its time)."""
    return health.state == "closed" and time.monotonic() >= health.resting_until


def _last_resort(
    resting: list[Candidate] | None, failure: GatewayError | None, outgrown: int | None
) -> Candidate | None:
    """The candidate to try though its circuit set it aside: the best of ``resting`` when
    none was tried, or when those tried only found the request too long for their windows
    (``outgrown``, the largest), the best whose window is larger (or not known)."""
    if not resting:
        return None
    if failure is None:
        return resting[0]
    if not (isinstance(failure, UpstreamStatusError) and failure.overflows_context):
        return None
    for deployment, health in resting:
        if outgrown is None or (deployment.context_window or _UNKNOWN) > outgrown:
            return deployment, health
    return None


def _wait_header(seconds: float) -> str:
    """A ``retry-after`` value for a wait of ``seconds``: whole seconds, rounded up."""
    return str(max(1, math.ceil(seconds)))


def _asked_wait(error: GatewayError) -> str | None:
    """The wait ``error`` asks for, as precisely as known: a provider's own (to the
    millisecond, where it said so), else the client's: a refusal of the gateway's own (a
    deployment at its own rate limit) says it to the millisecond in ``retry-after-ms``."""
    if isinstance(error, UpstreamStatusError) and error.retry_after:
        return error.retry_after
    return retry_waits.retry_after(error.headers)  # read as an upstream's are


def _cooling_down(model: str, cooling: Sequence[DeploymentHealth]) -> UpstreamStatusError:
    """The client's error when every candidate rests because its provider asked for a wait
    (a 429, an overload with ``retry-after``): none is called before its time, and the client
    is told when the first may serve again, in the words of the soonest one's status."""
    first = min(cooling, key=lambda health: health.resting_until)
    left = first.resting_until - time.monotonic()
    what = "rate limited" if first.rest_status == 429 else "overloaded"
    return UpstreamStatusError(
        first.rest_status,
        f"Every deployment of model '{model}' is {what} and asked the gateway to wait; "
        f"none is called before its time. Retry after {_wait_header(left)}s.",
        retry_after=wait_value(left),
    )


def _sooner(soonest: tuple[float, str] | None, retry_after: str | None) -> tuple[float, str] | None:
    """The sooner of ``soonest`` and ``retry_after`` (delta-seconds or an HTTP date), as
    seconds and the header's value; one that is neither is passed over."""
    seconds = retry_after_seconds(retry_after)
    if seconds is None or retry_after is None:
        return soonest
    if soonest is None or seconds < soonest[0]:
        return seconds, retry_after
    return soonest


def _blame(error: GatewayError, deployment: Deployment) -> None:
    """An upstream failure names its deployment, never its address, to the client; the log
    keeps the operator's detail (a busy deployment's 429 or a refused request is no news)."""
    if not isinstance(error, UpstreamError):
        return
    error.blame(deployment.id, deployment.group, deployment.api_base)
    if isinstance(error, UpstreamTimeout) and error.client_held:
        return  # its client's slowness, not the deployment's failure
    if error.retryable and error.status != 429:
        detail = error.detail or error.message
        log.warning(
            "deployment %s (model group %s) failed: %s", deployment.id, deployment.group, detail
        )


def _begin(ctx: RequestContext, deployment: Deployment) -> Attempt:
    ctx.attempts += 1
    ctx.deployment = deployment
    attempt = Attempt(deployment, time.perf_counter())
    ctx.tries.append(attempt)
    return attempt


async def discard(chunks: AsyncIterator[ChatChunk]) -> None:
    """End a stream ``Pipeline.stream`` gave that its dialect could not send a byte of (its
    client left before the response head could be written).

    Its ending (the upstream call closed, the deployment's in-flight count released, what
    was generated settled, the chunks its client never had included, the attempt's end told
    to the stages) is the ``finally`` of a
    generator, which ``aclose`` runs only once the generator has started: so it is started
    first. Its first chunk is in hand (``Pipeline.stream`` gives a stream only then), so this
    waits on nothing.
    """
    try:
        await anext(chunks, None)
    except GatewayError:
        pass  # it ended, and ended itself
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def response_as_chunks(response: ChatResponse) -> AsyncIterator[ChatChunk]:
    """Replay a complete answer as a stream: content, then finish reasons, then usage.

    An answer of a format whose chunks carry its fields alike (``ANSWER_FIELDS_STREAM``:
    OpenAI's) keeps them, its message's in the delta (a refusal, reasoning text), its
    choice's beside it (logprobs) and its own on each chunk (``system_fingerprint``); another
    format's are said in other shapes in a stream, so its chunks carry none.
    """
    fields = response.wire_format in ANSWER_FIELDS_STREAM
    wire_format = response.wire_format if fields else None
    extra = response.extra if fields else {}

    def chunk(choices: list[ChunkChoice]) -> ChatChunk:
        return ChatChunk(
            id=response.id,
            model=response.model,
            created=response.created,
            choices=choices,
            extra=dict(extra),
            wire_format=wire_format,
        )

    yield chunk([_opening_delta(choice, fields) for choice in response.choices])
    yield chunk(
        [
            ChunkChoice(
                index=choice.index,
                finish_reason=choice.finish_reason,
                stop_sequence=choice.stop_sequence,
            )
            for choice in response.choices
        ]
    )
    if response.usage is not None:
        last = chunk([])
        last.usage = response.usage
        yield last


def _opening_delta(choice: Choice, fields: bool) -> ChunkChoice:
    """One choice of a replayed answer whole in a delta; ``fields``: with the message's and the
    choice's own fields."""
    message = choice.message
    calls = message.tool_calls
    choice_extra = None
    if fields and choice.extra:
        # An answer's null logprobs is no chunk field: a chunk's is written null anyway.
        kept = choice.extra.items()
        choice_extra = {k: v for k, v in kept if k != "logprobs" or v is not None} or None
    return ChunkChoice(
        index=choice.index,
        role="assistant",
        content=message.text() or None,
        tool_calls=None
        if not calls
        else [
            ToolCallDelta(
                index=i,
                id=call.id,
                name=call.name,
                arguments=call.arguments,
                extra=(call.extra or None) if fields else None,
            )
            for i, call in enumerate(calls)
        ],
        extra=dict(message.extra) if fields else {},
        choice_extra=choice_extra,
    )


def _answer_chars(choice: Choice, reasoning: int) -> int:
    """The characters one choice of a complete answer generated: its reasoning (``reasoning``
    of them), text and tool calls."""
    message = choice.message
    chars = len(message.text()) + reasoning
    if message.tool_calls:
        chars += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    return chars


def _delta_chars(delta: ToolCallDelta) -> int:
    return len(delta.name or "") + len(delta.arguments)


def _drop_tracebacks(ctx: RequestContext) -> None:
    """Free the frames a finished request's errors still hold.

    A kept error's traceback holds the frames it passed through, and they hold ``ctx``,
    which holds the error: a reference cycle per failed request (and per failed attempt)
    that only the cyclic garbage collector frees. During an upstream outage, when every
    request fails, the collector then took about a quarter of the gateway's CPU.
    """
    for kept in (ctx.error, *(attempt.error for attempt in ctx.tries)):
        error: BaseException | None = kept
        for _ in range(8):  # the error and the chain it was raised from, bounded
            if error is None:
                break
            error.__traceback__ = None
            error = error.__context__


def _completion_failed(ctx: RequestContext, stage: Stage) -> None:
    """A stage's ``on_complete`` raised: a bug, logged with its traceback; the answer the
    client got stands and the other stages still complete the request."""
    log.exception("request %s: stage %s failed completing it", ctx.request_id, stage.name)
