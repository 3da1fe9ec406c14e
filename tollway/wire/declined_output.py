"""Claude declining a structured output, said to OpenAI-format clients as OpenAI says it.

A model of OpenAI's that declines a request for a schema's JSON answers a refusal rather than
content that is not that JSON: Chat Completions' ``message.refusal`` (``content`` null, finish
``stop``), the Responses API's ``refusal`` part (the response completed). Claude declining
(``stop_reason: "refusal"``, the canonical ``content_filter``, its words the answer's text) a
request for a ``json_schema`` output is the same event, so it is said the same way, and the
SDKs' ``parse`` helpers give ``parsed`` None and the words in ``refusal``, as from OpenAI (as
text, ``responses.parse`` failed validating the words as the schema's JSON). Claude's refusal of
any other request stays a ``content_filter`` stop with its words as content: its safety system
stopped the answer (``crossing``). Streamed, the words have gone out as text before the stop
says they were a refusal: streams are unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from tollway.core.types import ChatRequest, ChatResponse, Choice, ContentPart, TextPart
from tollway.wire.crossing import response_for

_ANTHROPIC = "anthropic"
_OPENAI = "openai"


def as_declined_output(response: ChatResponse, request: ChatRequest) -> ChatResponse:
    """``response`` with Claude's refusals of the structured output ``request`` asked for as
    OpenAI-format refusals (tagged ``openai``: their one extra is OpenAI's ``refusal``); any
    other answer unchanged."""
    wanted = request.response_format
    if wanted is None or wanted.type != "json_schema" or response.wire_format != _ANTHROPIC:
        return response
    if all(choice.finish_reason != "content_filter" for choice in response.choices):
        return response
    plain = response_for(response, _OPENAI)  # Anthropic's extras mean nothing to OpenAI's
    choices = [_declined(c) if c.finish_reason == "content_filter" else c for c in plain.choices]
    return replace(plain, choices=choices, wire_format=_OPENAI, raw=None)


def _declined(choice: Choice) -> Choice:
    """The choice's text as its refusal; its other parts (Claude's thinking) kept."""
    message = choice.message
    content = message.content
    kept: list[ContentPart] = []
    if isinstance(content, list):
        kept = [part for part in content if not isinstance(part, TextPart)]
    declined = replace(message, content=kept or None, extra={"refusal": message.text()})
    return replace(choice, message=declined, finish_reason="stop")
