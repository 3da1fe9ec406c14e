"""The upstream SSE reader (providers/sse.py ``read_events``) fed read by read."""

from __future__ import annotations

import asyncio

from aiohttp import streams

from tollway.providers.sse import read_events


class _Connection:
    """What a StreamReader asks of its connection: always open, flow control ignored."""

    connected = True
    _reading_paused = False

    def pause_reading(self, **_: object) -> None:
        pass

    def resume_reading(self, **_: object) -> None:
        pass


def _reader() -> streams.StreamReader:
    return streams.StreamReader(_Connection(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_an_event_in_many_reads_without_line_ends_arrives_whole() -> None:
    reader = _reader()
    events = read_events(reader)
    body = b'data: {"x": "' + b"a" * 300_000 + b'"}\r\n\r\n'
    for start in range(0, len(body), 4096):
        reader.feed_data(body[start : start + 4096])
    reader.feed_eof()
    got = [event.data async for event in events]
    assert got == [body[6:-4]]


async def test_an_event_ended_by_bare_carriage_returns_is_not_held_by_the_next_read() -> None:
    # The final \r waits for a possible \n; a next read without one shows the \r ended the
    # line by itself, so the event is handed on then, not at the next line end or the end.
    reader = _reader()
    events = read_events(reader)
    first = asyncio.ensure_future(anext(events))
    for piece in (b"data: a\r\r", b"data: b"):  # two reads
        reader.feed_data(piece)
        await asyncio.sleep(0.01)
    assert first.done(), "the event waited for a later read"
    assert first.result().data == b"a"
    reader.feed_data(b"\r\r")
    reader.feed_eof()
    assert [event.data async for event in events] == [b"b"]


async def test_an_event_quoting_the_credential_has_it_masked_split_across_reads() -> None:
    reader = _reader()
    events = read_events(reader, ("sk-upstream-0123456789", "AKIDEXAMPLE"))
    body = b'data: {"error": "bad key sk-upstream-0123456789 for AKIDEXAMPLE"}\n\ndata: ok\n\n'
    for piece in (body[:20], body[20:40], body[40:]):
        reader.feed_data(piece)
    reader.feed_eof()
    got = [event.data async for event in events]
    assert got == [b'{"error": "bad key *** for ***"}', b"ok"]


async def test_an_event_quoting_the_credential_json_escaped_has_it_masked() -> None:
    reader = _reader()
    key = "ABSKQmVkcm9ja0FQSUtleS1/dGVzdDo+c2VjcmV0=="
    events = read_events(reader, key)
    escaped = key.replace("/", "\\/").replace("+", "\\u002B").encode()
    reader.feed_data(b'data: {"error": "bad key ' + escaped + b'"}\n\ndata: ok\n\n')
    reader.feed_eof()
    assert [event.data async for event in events] == [b'{"error": "bad key ***"}', b"ok"]


async def test_a_short_key_is_not_masked_in_a_streamed_answer() -> None:
    reader = _reader()
    events = read_events(reader, "x")
    reader.feed_data(b'data: {"content": "x"}\n\n')
    reader.feed_eof()
    assert [event.data async for event in events] == [b'{"content": "x"}']


async def test_a_byte_order_mark_before_the_stream_is_ignored_even_cut_across_reads() -> None:
    for cut in (1, 2, 3, 4):
        reader = _reader()
        events = read_events(reader)
        body = b'\xef\xbb\xbfevent: start\ndata: {"a": 1}\n\ndata: \xef\xbb\xbf\n\n'
        reader.feed_data(body[:cut])
        reader.feed_data(body[cut:])
        reader.feed_eof()
        got = [(event.event, event.data) async for event in events]
        # Only the stream's first bytes: a mark inside an event is its data.
        assert got == [("start", b'{"a": 1}'), (None, b"\xef\xbb\xbf")], cut


async def test_events_without_data_are_not_dispatched() -> None:
    reader = _reader()
    events = read_events(reader)
    reader.feed_data(b"data:\n\nevent: ping\ndata:\n\n: keep-alive\n\ndata: x\n\ndata:\ndata:\n\n")
    reader.feed_eof()
    assert [event.data async for event in events] == [b"x", b"\n"]
