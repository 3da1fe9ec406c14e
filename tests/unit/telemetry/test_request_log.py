"""The request log's parts that need no database: redaction, the queue, its metrics, the spool."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from tollway.config.schema import RequestLogConfig
from tollway.core.context import RequestContext
from tollway.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
)
from tollway.store import Store
from tollway.store.request_log import PLAIN_COLUMNS
from tollway.telemetry.bodies import BodyPolicy
from tollway.telemetry.metrics import Metrics
from tollway.telemetry.request_log import RequestLogWriter, _plain
from tollway.telemetry.request_log_stage import entry
from tollway.telemetry.spool import Spool

POLICY = BodyPolicy(max_chars=200, redact=True)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("write to Ana.Lima+x@mail.example.co.uk today", "write to [EMAIL] today"),
        ("Authorization: Bearer abc.DEF-123_456789", "Authorization: Bearer [SECRET]"),
        ("key sk-proj-AbCdEf0123456789xyz and more", "key [SECRET] and more"),
        ("anthropic sk-ant-api03-AbCdEf0123456789", "anthropic [SECRET]"),
        ("gateway tw-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd", "gateway [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [SECRET] here"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [SECRET]"),
        ("google AIzaSyA-abcdefghijklmnopqrstuvwxyz012345", "google [SECRET]"),
        ("jwt eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4", "jwt [SECRET]"),
        ("card 4111-1111-1111-1111.", "card [CARD]."),
        ("card 378282246310005 amex", "card [CARD] amex"),
        ("not a card 1234567890123456", "not a card 1234567890123456"),
        ("ssn 078-05-1120 ok", "ssn [SSN] ok"),
        ("sk-short is fine, so is a task-force", "sk-short is fine, so is a task-force"),
        ("nul\x00byte", "nulbyte"),
    ],
)
def test_redactions(text: str, kept: str) -> None:
    assert POLICY.text(text) == kept


def test_long_texts_are_cut_and_a_secret_across_the_cut_is_still_redacted() -> None:
    policy = BodyPolicy(max_chars=20, redact=True)
    cut = policy.text("x" * 15 + " sk-" + "A" * 30 + " tail")
    assert cut.startswith("x" * 15 + " [SEC") and "AAAA" not in cut
    assert cut.endswith("more chars]")
    assert BodyPolicy(max_chars=5, redact=False).text("abcdefgh") == "abcde…[3 more chars]"
    assert BodyPolicy(max_chars=100, redact=False).text("me@example.com") == "me@example.com"


def test_a_cut_text_holds_only_its_first_max_chars_redacted() -> None:
    """Replacements shorten the text; the cut is still where the original's first max_chars
    characters end (a secret across it replaced whole), never in the margin past it, where
    the margin's end may have halved an address and left it unredacted."""
    policy = BodyPolicy(max_chars=20, redact=True)
    text = "ab a@b.com c@d.com e@f.com g@h.com sk-" + "A" * 20 + " " + "w@x.org" * 40
    assert policy.text(text) == f"ab [EMAIL] [EMAIL] [EMAIL]…[{len(text) - 20} more chars]"
    lines = "".join(f"person{i:03d}@example.com;" for i in range(40))  # 22 characters each
    assert policy.text(lines) == f"[EMAIL]…[{len(lines) - 20} more chars]"


def test_prompt_and_response_shapes() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            Message("user", [TextPart("look at me@example.com"), ImagePart(url="http://i")]),
            Message("assistant", None, tool_calls=[ToolCall("c1", "lookup", '{"q": "x"}')]),
            Message("tool", "found", tool_call_id="c1"),
        ],
    )
    assert POLICY.prompt(request) == {
        "messages": [
            {"role": "user", "content": "look at [EMAIL]", "images": 1},
            {"role": "assistant", "content": "",
             "tool_calls": [{"name": "lookup", "arguments": '{"q": "x"}'}]},
            {"role": "tool", "content": "found", "tool_call_id": "c1"},
        ]
    }  # fmt: skip
    assert POLICY.prompt(EmbeddingRequest(model="e", input=[[1, 2, 3]])) == {
        "input": ["[3 tokens]"]
    }
    streamed: list[object] = [
        "Hel", "lo", ToolCallDelta(0, "c", "get", '{"a"'), ToolCallDelta(0, None, None, ": 1}"),
    ]  # fmt: skip
    assert POLICY.response(streamed) == {
        "text": "Hello", "tool_calls": [{"name": "get", "arguments": '{"a": 1}'}]
    }  # fmt: skip
    whole = ChatResponse("id", "m", 0, [Choice(0, Message("assistant", "done"), "stop")])
    assert POLICY.response([whole]) == {"text": "done"}
    assert POLICY.response([]) is None


def finished(n: int = 0) -> RequestContext:
    ctx = RequestContext(request_id=f"r{n}", endpoint="chat", model="m", client_headers={})
    ctx.finished_at = ctx.started + 0.01
    return ctx


def test_a_full_queue_drops_and_counts_and_the_metrics_say_so(tmp_path: Path) -> None:
    writer = RequestLogWriter(Store(), RequestLogConfig(queue_size=3), tmp_path)
    metrics = Metrics()
    metrics.watch_request_log(writer)
    old = (time.time_ns() // 1000 - 42_000_000, *entry(finished())[1:])  # 42 s ago, in µs
    writer.put_nowait(old)
    for n in range(4):
        writer.put_nowait(entry(finished(n)))
    assert (writer.queue_depth(), writer.dropped) == (3, 2)
    assert 41.5 < writer.lag() < 60

    def sample(name: str) -> float:
        value = metrics.registry.get_sample_value(name)
        assert value is not None, name
        return value

    assert sample("tollway_request_log_queue_depth") == 3
    assert sample("tollway_request_log_records_dropped_total") == 2
    assert sample("tollway_request_log_records_written_total") == 0
    assert sample("tollway_request_log_lag_seconds") > 41


def partial_files(path: Path) -> list[Path]:
    return list(path.glob("*.tmp"))


async def test_the_spool_keeps_batches_across_a_restart(tmp_path: Path) -> None:
    at = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    rows = [{"at": at, "seq": 1, "prompt": {"messages": []}}, {"at": at, "seq": 2, "prompt": None}]
    spool = Spool(tmp_path)
    await spool.open()
    first = await spool.write("chain", rows[:1])
    await spool.write("chain", rows[1:])
    (tmp_path / "half-written.tmp").write_bytes(b'{"at"')
    again = Spool(tmp_path)
    await again.open()
    assert (again.pending_files, again.pending_rows) == (2, 2)
    assert again.oldest() == at.timestamp()
    assert partial_files(tmp_path) == []
    assert again.first() == first
    assert await again.read(first) == rows[:1]
    await again.remove(first)
    assert again.pending_files == 1 and not first.exists()


async def test_under_steady_load_the_writer_waits_for_a_batch_or_the_interval(
    tmp_path: Path,
) -> None:
    # Rows keep arriving while a batch is written; the writer must still wait for a full
    # batch or the flush interval, not insert the few that came meanwhile without pause.
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/log.db")
    await store.open(migrate=True)
    config = RequestLogConfig(batch_size=10_000, flush_interval=0.2)
    writer = RequestLogWriter(store, config, tmp_path / "spool")
    await writer.start()
    inserts, last, n = 0, 0, 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for _ in range(2):
                n += 1
                writer.put_nowait(entry(finished(n)))
            await asyncio.sleep(0.001)
            if writer.written != last:
                inserts, last = inserts + 1, writer.written
    finally:
        await writer.close()
        await store.close()
    assert writer.written == n and writer.dropped == 0
    # One second at a 0.2 s interval: about five batches (the bug wrote one every few ms).
    assert 3 <= inserts <= 8, inserts


@pytest.mark.parametrize(
    ("column", "value", "plain"),
    [
        ("model", "m", True),
        ("model", "m" * 200, True),  # at its column's length
        ("model", "m" * 201, False),
        ("request_id", "r" * 129, False),
        ("user_id", "é 名前", True),  # not ASCII, but UTF-8
        ("user_id", "", True),
        ("user_id", "a\x00b", False),
        ("team_id", "t\ud800", False),  # a lone surrogate: no UTF-8
        ("team_id", "\udc00", False),
        ("served_model", "s" * 201, False),
        ("guardrails", '["a\\u0000"]', False),
    ],
)
def test_a_batch_goes_to_the_store_as_it_is_only_without_text_to_clean(
    column: str, value: str, plain: bool
) -> None:
    # The batch's checks look at each column's longest text and at all its distinct text
    # joined: one odd value in any row of a batch of ordinary entries makes the batch into
    # rows (which cut and clean it); otherwise it goes to the store as it is.
    made = [entry(finished(n)) for n in range(30)]
    odd = list(made[7])
    odd[PLAIN_COLUMNS.index(column)] = value
    made[7] = tuple(odd)  # type: ignore[assignment]
    assert _plain(made) is plain
    made[7] = entry(finished(7))
    assert _plain(made) is True
