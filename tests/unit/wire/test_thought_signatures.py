"""Gemini's thought signatures on Chat Completions tool calls (Google's extra_content)."""

from __future__ import annotations

from typing import Any

from tollway.core.types import ChatResponse, Choice, Message, ReasoningPart, TextPart, ToolCall
from tollway.wire.gemini_request import request_to_wire
from tollway.wire.openai_request import request_from_wire
from tollway.wire.openai_response import response_to_wire


def carried(signature: str) -> dict[str, Any]:
    return {"extra_content": {"google": {"thought_signature": signature}}}


def call(name: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"c_{name}", "type": "function", "function": {"name": name}, **extra}


def test_each_carried_signature_goes_back_on_its_calls_part() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    call("a", **carried("sigA")),
                    call("b"),
                    call("c", **carried("sigC")),
                ],
            },
            *({"role": "tool", "tool_call_id": f"c_{n}", "content": "ok"} for n in "abc"),
        ],
    }
    wire = request_to_wire(request_from_wire(body), "gemini-3-pro")
    parts = wire["contents"][1]["parts"]
    assert [(next(iter(p)), p.get("thoughtSignature")) for p in parts] == [
        ("text", None),
        ("functionCall", "sigA"),
        ("functionCall", None),
        ("functionCall", "sigC"),
    ]


def test_a_turn_without_signatures_gets_the_placeholder_as_before() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("a")]},
            {"role": "tool", "tool_call_id": "c_a", "content": "ok"},
        ],
    }
    parts = request_to_wire(request_from_wire(body), "gemini-3-pro")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"


def test_an_answers_call_carries_the_gemini_signature_before_it_only() -> None:
    calls = [ToolCall("c_a", "a", "{}", position=2), ToolCall("c_b", "b", "{}", position=2)]
    content: Any = [TextPart("x"), ReasoningPart(signature="gemini:sigA")]
    message = Message(role="assistant", content=content, tool_calls=calls)
    answer = ChatResponse("r", "m", 0, [Choice(0, message, "tool_calls")], wire_format="gemini")
    wire = response_to_wire(answer)["choices"][0]["message"]
    assert wire["content"] == "x"
    assert wire["tool_calls"][0]["extra_content"] == carried("sigA")["extra_content"]
    assert "extra_content" not in wire["tool_calls"][1]
    claude = ReasoningPart(text="t", signature="claude-signature")
    message.content = [claude]
    message.tool_calls = [ToolCall("c_a", "a", "{}", position=1)]
    assert "extra_content" not in response_to_wire(answer)["choices"][0]["message"]["tool_calls"][0]
