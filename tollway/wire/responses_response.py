"""Canonical answers as OpenAI Responses API ``Response`` objects: output items and usage.

A choice's text becomes one ``message`` item and each tool call a ``function_call`` item
(``call_id`` is the upstream's call id, which the client sends back in its
``function_call_output``). A ``length`` finish makes the response ``incomplete`` with reason
``max_output_tokens``, and its last item (the text or the call it cut off) ``incomplete``.
Only the first choice is rendered: the Responses API has no ``n``. An OpenAI upstream's
``refusal`` (a structured-output request the model declined) is the message's ``refusal``
part, as the Responses API gives it; the web searches another family ran (Claude's) are
``web_search_call`` items before the message, and the web sources its text cites are the
``output_text`` part's ``url_citation`` annotations; the reasoning the answer holds (an
OpenAI-compatible server's ``reasoning_content`` / ``reasoning``, Claude's thinking, Gemini's
thought summaries, Bedrock's reasoning text) is a ``reasoning`` item before it, its text in
``content`` (``reasoning_text`` parts, as OpenAI's open-weight models give it) with an empty
``summary``;
when the client asked for a summary (``reasoning.summary``), its text is the ``summary``
instead (``summary_text`` parts, one per block of reasoning) and the item has no ``content``,
as OpenAI's reasoning models answer, so a client is not shown it twice. The item's id is
the gateway's (``rs_tw`` and hexadecimal, ``reasoning_id``), so that one sent back is not
taken for an item OpenAI stored (``wire/responses_upstream.py``). Claude's signed thinking
is also the item's ``encrypted_content``, for the client to send back
(``wire/responses_reasoning.py``), and so are Gemini's thought signatures, each with the part
it was on (``wire/responses_thought_signatures.py``); other encrypted reasoning is not
rendered. Other extras
of the upstream's wire format (fingerprints, annotations) are not rendered, but an
OpenAI-format choice's log probabilities (asked with ``include``) are the ``output_text`` part's
``logprobs``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tollway.core.types import (
    JSON,
    ChatResponse,
    FinishReason,
    Message,
    ReasoningPart,
    TokenLogprob,
    UrlCitation,
    Usage,
)
from tollway.wire.crossing import reasoning_of, refusal_of
from tollway.wire.openai_response import logprobs_to_wire
from tollway.wire.responses_reasoning import carried, seal
from tollway.wire.responses_thought_signatures import seal as seal_signatures
from tollway.wire.responses_thought_signatures import signatures_of

_OPENAI = "openai"
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


GATEWAY_REASONING = "rs_tw"
"""How the ids of the reasoning items the gateway writes start: OpenAI's are ``rs_`` and
hexadecimal, so an item sent back with one is known to be no item OpenAI stored."""


def new_id(prefix: str) -> str:
    """A fresh identifier in OpenAI's style: ``resp_...``, ``msg_...``, ``fc_...``."""
    return f"{prefix}_{secrets.token_hex(24)}"


def reasoning_id() -> str:
    """A fresh ``reasoning`` item id, OpenAI's look with the gateway's mark:
    ``rs_tw`` and hexadecimal."""
    return f"{GATEWAY_REASONING}{secrets.token_hex(24)}"


def usage_to_wire(usage: Usage) -> JSON:
    """A Responses ``usage`` object."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def status_for(finish: FinishReason | None) -> tuple[str, JSON | None]:
    """The response ``status`` and ``incomplete_details`` a finish reason stands for."""
    reason = _INCOMPLETE_REASONS.get(finish or "")
    return ("completed", None) if reason is None else ("incomplete", {"reason": reason})


def output_text(
    text: str, logprobs: list[JSON] | None = None, annotations: list[JSON] | None = None
) -> JSON:
    """An ``output_text`` content part (``logprobs``: its tokens', when asked)."""
    return {
        "type": "output_text",
        "text": text,
        "annotations": annotations or [],
        "logprobs": logprobs or [],
    }


def url_citation(citation: UrlCitation) -> JSON:
    """A ``url_citation`` annotation: the web source of ``text[start_index:end_index]``."""
    return {
        "type": "url_citation",
        "url": citation.url,
        "title": citation.title,
        "start_index": citation.start,
        "end_index": citation.end,
    }


def web_search_item(item_id: str, query: str, status: str) -> JSON:
    """A ``web_search_call`` output item: a search another family ran for ``query``."""
    action = {"type": "search", "query": query}
    return {"id": item_id, "type": "web_search_call", "status": status, "action": action}


def logprobs_of(
    extra: JSON | None, wire_format: str | None, scored: list[TokenLogprob] | None = None
) -> list[JSON]:
    """The log probabilities of an OpenAI-format choice's text (its ``logprobs.content``), or
    another provider's read by its codec (``scored``: Gemini's), as the Responses API's
    ``output_text`` part lists them; none from other formats."""
    if scored is not None:
        extra, wire_format = {"logprobs": logprobs_to_wire(scored)}, _OPENAI
    if wire_format != _OPENAI or not extra:
        return []
    logprobs = extra.get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list):
        return []
    out = []
    for token in tokens:
        if isinstance(token, dict):
            entry = _scored(token)
            alternatives = token.get("top_logprobs") or []
            entry["top_logprobs"] = [_scored(alt) for alt in alternatives if isinstance(alt, dict)]
            out.append(entry)
    return out


def _scored(token: JSON) -> JSON:
    """A token and its log probability; its bytes, which the Responses API always gives, made
    from the token when Chat Completions gave none."""
    text = token.get("token")
    text = text if isinstance(text, str) else ""
    raw = token.get("bytes")
    return {"token": text, "logprob": token.get("logprob"), "bytes": raw or list(text.encode())}


def refusal_part(refusal: str) -> JSON:
    """A ``refusal`` content part."""
    return {"type": "refusal", "refusal": refusal}


def reasoning_text(text: str) -> JSON:
    """A ``reasoning_text`` content part of a ``reasoning`` item."""
    return {"type": "reasoning_text", "text": text}


def summary_text(text: str) -> JSON:
    """A ``summary_text`` part of a ``reasoning`` item's ``summary``."""
    return {"type": "summary_text", "text": text}


def asks_summary(echo: JSON) -> bool:
    """Whether the request (the settings its answer repeats back) asked for a reasoning
    summary: its ``reasoning.summary``."""
    reasoning = echo.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") is not None


def reasoning_item(item_id: str, texts: list[str], status: str, *, summarised: bool) -> JSON:
    """A ``reasoning`` output item holding ``texts``: ``summary_text`` parts in ``summary``
    (``summarised``: the client asked for a summary) or ``reasoning_text`` parts in
    ``content``."""
    if summarised:
        summary = [summary_text(text) for text in texts]
        return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}
    content = [reasoning_text(text) for text in texts]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def message_item(item_id: str, content: list[JSON], status: str) -> JSON:
    """An assistant ``message`` output item with these content parts."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    """A ``function_call`` output item."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def response_object(
    response_id: str,
    model: str,
    created_at: int,
    echo: JSON,
    *,
    status: str,
    output: list[JSON],
    usage: Usage | None = None,
    incomplete_details: JSON | None = None,
) -> JSON:
    """A whole ``Response`` object; ``echo`` holds the request settings it repeats back."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
        "usage": None if usage is None else usage_to_wire(usage),
        **echo,
    }


def response_to_wire(response: ChatResponse, echo: JSON) -> dict[str, Any]:
    """The Responses API body for a complete answer."""
    choice = response.choices[0] if response.choices else None
    status, incomplete = status_for(None if choice is None else choice.finish_reason)
    output: list[JSON] = []
    if choice is not None:
        message = choice.message
        reasoning = _reasoning(message, response.wire_format)
        sealed = _sealed(message)
        if reasoning or sealed:
            summarised = asks_summary(echo)
            item = reasoning_item(reasoning_id(), reasoning, "completed", summarised=summarised)
            if sealed is not None:
                item["encrypted_content"] = sealed
            output.append(item)
        output.extend(
            web_search_item(new_id("ws"), query, "completed")
            for query in message.web_searches or ()
        )
        content = _content(message, response.wire_format, choice.extra, choice.logprobs)
        if content or not message.tool_calls:
            output.append(message_item(new_id("msg"), content or [output_text("")], "completed"))
        output.extend(
            function_call_item(new_id("fc"), call.id, call.name, call.arguments, "completed")
            for call in message.tool_calls or ()
        )
        output[-1]["status"] = status  # what a length finish cut off is the answer's end
    return response_object(
        new_id("resp"),
        response.model,
        response.created or int(time.time()),
        echo,
        status=status,
        output=output,
        usage=response.usage,
        incomplete_details=incomplete,
    )


def _reasoning(message: Message, wire_format: str | None) -> list[str]:
    """The reasoning's texts, a block each."""
    given = reasoning_of(message.extra, wire_format)
    if given is not None:
        return [given]
    content = message.content
    if not isinstance(content, list):
        return []
    return [p.text for p in content if isinstance(p, ReasoningPart) and p.text]


def _sealed(message: Message) -> str | None:
    """Claude's signed thinking (``wire/responses_reasoning.py``) or Gemini's thought
    signatures (``wire/responses_thought_signatures.py``), for the client to send back: an
    answer is one family's."""
    content = message.content
    if not isinstance(content, list):
        return None
    claudes = seal(carried([p for p in content if isinstance(p, ReasoningPart)]))
    return claudes or seal_signatures(signatures_of(message))


def _content(
    message: Message,
    wire_format: str | None,
    choice_extra: JSON,
    tokens: list[TokenLogprob] | None,
) -> list[JSON]:
    text = message.text()
    logprobs = logprobs_of(choice_extra, wire_format, tokens)
    cited = [url_citation(citation) for citation in message.citations or ()]
    content = [output_text(text, logprobs, cited)] if text else []
    refusal = refusal_of(message.extra, wire_format)
    if refusal is not None:
        content.append(refusal_part(refusal))
    return content
