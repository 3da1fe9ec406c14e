"""The rule of ``truncation: "auto"``: which of a conversation's turns go first."""

from __future__ import annotations

from tollway.core.types import Message, ToolCall
from tollway.routing.truncation import cuts, oldest_dropped, without_oldest


def _user(text: str) -> Message:
    return Message("user", text)


def _answer(text: str) -> Message:
    return Message("assistant", text)


def _call(call_id: str) -> Message:
    return Message("assistant", None, tool_calls=[ToolCall(call_id, "get_weather", "{}")])


def _output(call_id: str) -> Message:
    return Message("tool", f"output of {call_id}", tool_call_id=call_id)


def _texts(messages: list[Message]) -> list[str]:
    return [m.content if isinstance(m.content, str) else f"call {m.tool_calls}" for m in messages]


class _AtMost:
    """A fit that holds for conversations of at most ``count`` messages (a count's stand-in)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.asked = 0

    def __call__(self, messages: list[Message]) -> bool:
        self.asked += 1
        return len(messages) <= self.count


CONVERSATION = [
    Message("system", "instructions"),
    _user("q1"),
    _answer("a1"),
    _user("q2"),
    _call("c2"),
    _output("c2"),
    _answer("a2"),
    Message("developer", "mid-conversation note"),
    _user("q3"),
    _answer("a3"),
    _user("latest"),
    _call("c4"),
    _output("c4"),
]


def test_a_conversation_is_cut_only_before_a_user_turn_up_to_the_latest() -> None:
    assert cuts(CONVERSATION) == [3, 8, 10]


def test_system_and_developer_messages_stay_where_they_were() -> None:
    kept, indices = without_oldest(CONVERSATION, 8)
    assert indices == [0, 7, 8, 9, 10, 11, 12]
    assert _texts(kept)[:4] == ["instructions", "mid-conversation note", "q3", "a3"]


def test_the_fewest_oldest_turns_go() -> None:
    # 13 messages; at most 8 fit: q1 and a1 go, then q2's turn with its call and output.
    dropped = oldest_dropped(CONVERSATION, _AtMost(8))
    assert dropped is not None
    messages, indices = dropped
    assert indices == [0, 7, 8, 9, 10, 11, 12]
    assert messages[1].role == "developer" and messages[2].content == "q3"
    # The latest turn (the user's message, the call it led to and its output) is whole.
    assert messages[-3:] == CONVERSATION[-3:]


def test_the_cut_is_searched_for_by_halves() -> None:
    conversation = [Message("system", "s")]
    for turn in range(200):
        conversation += [_user(f"q{turn}"), _answer(f"a{turn}")]
    fits = _AtMost(21)
    dropped = oldest_dropped(conversation, fits)
    assert dropped is not None and len(dropped[0]) == 21  # the system message and 10 turns
    assert dropped[0][1].content == "q190"  # a user turn first
    assert fits.asked <= 10


def test_a_function_call_and_its_output_go_together() -> None:
    # A user message between a call and its output (a client interjecting): no cut there,
    # which would keep the output and drop its call.
    conversation = [
        _user("q1"),
        _call("c1"),
        _user("while you look it up"),
        _output("c1"),
        _answer("a1"),
        _user("latest"),
    ]
    assert cuts(conversation) == [5]
    dropped = oldest_dropped(conversation, _AtMost(5))
    assert dropped is not None
    assert _texts(dropped[0]) == ["latest"]


def test_nothing_fits_when_the_latest_turn_alone_is_too_long() -> None:
    assert oldest_dropped(CONVERSATION, _AtMost(3)) is None
    # Nothing before the latest user message, so nothing to drop.
    assert oldest_dropped([Message("system", "s"), _user("only")], _AtMost(0)) is None
    assert cuts([_answer("a"), _output("x")]) == []


def test_a_conversation_that_opens_with_the_assistant_may_lose_that_turn() -> None:
    conversation = [_answer("greeting"), _user("q1"), _answer("a1"), _user("latest")]
    assert cuts(conversation) == [1, 3]
    dropped = oldest_dropped(conversation, _AtMost(3))
    assert dropped is not None and _texts(dropped[0]) == ["q1", "a1", "latest"]
