"""Local token counts: OpenAI's encodings offline, and the chat framing around them."""

from __future__ import annotations

from tollway.pricing.tokens import TokenCounter
from tollway.wire.openai_request import request_from_wire

COUNTER = TokenCounter()


def test_the_encodings_load_offline_and_count_exactly() -> None:
    # Token ids published in tiktoken's own documentation and tests.
    cl100k = COUNTER.encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert COUNTER.encoding("o200k_base").decode(
        COUNTER.encoding("o200k_base").encode("Bonjour, tout le monde")
    ) == ("Bonjour, tout le monde")
    assert COUNTER.text("hello world", "openai", "gpt-4") == 2


def test_models_get_their_own_encoding() -> None:
    text = "Schöne Grüße aus Köln! 🌍 " * 20
    gpt4o = COUNTER.text(text, "openai", "gpt-4o")
    gpt4 = COUNTER.text(text, "openai", "gpt-4")
    assert gpt4o != gpt4  # o200k_base and cl100k_base differ on this text
    assert COUNTER.text(text, "azure_openai", "gpt-4o") == gpt4o


def test_chat_framing_matches_openais_accounting() -> None:
    request = request_from_wire(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}
    )
    # 3 to prime the reply + 3 for the message + 2 for its text.
    assert COUNTER.chat(request, "openai", "gpt-4o") == 8


def test_tools_and_images_are_counted() -> None:
    plain = request_from_wire({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with_tool = request_from_wire(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    },
                }
            ],
        }
    )
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    low = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
    }
    with_image = request_from_wire(
        {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    )
    with_low = request_from_wire({"model": "m", "messages": [{"role": "user", "content": [low]}]})
    base = COUNTER.chat(plain, "openai", "gpt-4o")
    assert COUNTER.chat(with_tool, "openai", "gpt-4o") > base + 15
    assert COUNTER.chat(with_image, "openai", "gpt-4o") == 6 + 765
    assert COUNTER.chat(with_low, "openai", "gpt-4o") == 6 + 85
    assert COUNTER.chat(with_image, "gemini", "gemini-2.5-flash") == 6 + 258


def test_families_without_an_offline_tokenizer_are_estimated_higher_for_claude() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert COUNTER.text(text, "anthropic", "claude-sonnet-4-5") > COUNTER.text(text)
