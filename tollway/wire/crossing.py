"""What a request or an answer loses when it crosses from one wire format to another.

Every codec tags what it parses with its ``wire_format``; the ``extra`` fields at every level
are then in that format's terms and mean nothing to another. A codec about to write a value
that came from another format passes it through here first:

- top-level request fields that only steer storage, caching, billing or latency
  (``DROPPABLE``) are left out; any other is a 400 naming it, never a silent drop;
- a request asking the provider to hold the conversation (``SERVER_STATE``: Anthropic's
  ``thread``) is a 400 in the words the client's SDK reads as "send the whole conversation
  without it" (``ThreadUnsupported``): no other family holds one;
- per-message, per-part and per-tool extras (labels, cache hints, annotations) are left out,
  but a failed tool call (Anthropic's ``is_error``) is said in its result's text, or as its
  result's error status for a family that has one (``ERROR_STATUS``: Bedrock's);
- a client's cache hints (``GIVES_CACHE_HINTS``: an Anthropic client's ``cache_control`` on a
  block, a tool or a tool result, or top-level: on the last block; an OpenAI-format client's
  on a content part, a tool, a tool call, a tool message, or a message: on its last block) are kept
  for a family whose codec writes them (``WRITES_CACHE_HINTS``: Anthropic's as they are,
  Bedrock's as ``cachePoint`` blocks), so the prompt is still cached;
- a prefilled answer (a final assistant message) is a 400 for OpenAI deployments, which
  cannot continue one, and so is an image in a tool result;
- an OpenAI client's own ``stream_options`` (vLLM's ``continuous_usage_stats``) are a 400
  naming them in a stream unless they ask for nothing;
- more stop sequences than the target's API takes (``MOST_STOP_SEQUENCES``: Chat Completions'
  4, Gemini's 5, Converse's 2500) are a 400 naming ``stop`` (an Anthropic client's
  ``stop_sequences``: ``anthropic_paths``) before any call, not cut short: the answer would
  go on past a sequence the client asked it to stop at;
- ``top_k`` (Anthropic's, canonical) is a 400 for a family that has no such setting
  (``TAKES_TOP_K``: Chat Completions has none);
- Anthropic's ``max_tokens: 0`` (warm the prompt cache, generate nothing) is a 400 for other
  families, whose APIs take at least 1 and have no such call;
- an OpenAI assistant turn's ``audio`` (a spoken answer by its id) or legacy
  ``function_call`` is a 400 naming it (``_SAID_IN_OPENAI_FIELDS``): the turn would lose
  what it said; so is a legacy function call's result (a message of role ``function``);
- an OpenAI assistant turn's ``refusal`` (the field, or ``refusal`` content parts) becomes
  its text, and an assistant turn with nothing in it is left out for Anthropic, which refuses
  empty content (by its codec, which numbers the messages as the client did:
  ``SKIPS_EMPTY_TURNS``);
- reasoning in an assistant turn goes back only to the provider that signed it
  (``REPLAYS_REASONING``: Claude's thinking to Anthropic or Bedrock, Gemini's thought
  signatures to Gemini): reasoning no provider signed (an OpenAI-compatible server's) cannot
  be verified, so it is left out;
- a tool call's id (and its result's) that the target's API would refuse (``CALL_IDS``: a
  character Anthropic or Bedrock does not take, more than OpenAI's 40 or Bedrock's 64) is
  rewritten to one it takes, the same for the call and its result (``call_id_for``);
- a document by URL is a 400 for the families that fetch no file (``FETCHES_DOCUMENTS``:
  only Anthropic's API does), saying what they take instead;
- a document's Anthropic settings (``citations``, ``context``) are a 400 for the others,
  but ``citations`` is kept for Bedrock, whose Converse cites documents too
  (``CITES_DOCUMENTS``); a document in a tool result is a 400 for OpenAI, which takes only
  text there;
- content parts and tools the gateway does not model are a 400 naming their type, and so is
  a field of a tool's ``function`` the gateway does not model (unless it asks for nothing);
- answers and chunks lose their extras (they are the other format's details), and an answer
  loses its content blocks of kinds the gateway does not model (server tool blocks, ...);
- what an OpenAI-format answer says in fields other formats have words for is said in theirs:
  its ``refusal`` becomes the answer's text and its finish ``content_filter`` (Anthropic's
  ``refusal``), the reasoning text an OpenAI-compatible server sends beside the answer
  (``reasoning_content``, ``reasoning``) a ``ReasoningPart``; streamed, the writers read the
  same fields of each delta (``refusal_of``, ``reasoning_of``), as a refusal's finish is only
  known at its end;
- a Bedrock answer's ``stopReason`` that Anthropic's API has too (``model_context_window_exceeded``,
  a ``stop_sequence`` Bedrock did not name) is said to Anthropic's clients in those words
  (``anthropic_stop_reason_of``), where the canonical finish (``length``, ``stop``) says less;
- a chunk that names no answer (``is_preamble``: Azure opens its streams with one holding
  only ``prompt_filter_results``, its id and model empty) starts nothing in another format:
  the answer's identity comes from the first chunk that has one.

A value tagged with the target format, or not tagged at all (built in code), is unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from tollway.core.errors import InvalidRequest, ThreadUnsupported
from tollway.core.types import (
    JSON,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    ContentPart,
    DocumentPart,
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

DROPPABLE: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        # max_completion_tokens stays in extra only to keep its name for OpenAI upstreams;
        # its value is the canonical max_tokens.
        "openai": frozenset(
            {"store", "metadata", "service_tier", "prompt_cache_key", "prompt_cache_retention",
             "prompt_cache_options", "safety_identifier", "prediction", "max_completion_tokens"}
        ),
        "anthropic": frozenset(
            {"service_tier", "metadata", "cache_control", "inference_geo", "speed",
             "diagnostics", "container"}
        ),
        "gemini": frozenset({"labels"}),
        "bedrock": frozenset({"requestMetadata", "performanceConfig", "serviceTier"}),
    }
)  # fmt: skip
"""Per format, the request fields a hop to another format may drop without changing the answer."""

SERVER_STATE: Mapping[str, str] = MappingProxyType({"anthropic": "thread"})
"""Per format, the request field that asks the provider to hold the conversation (Anthropic's
Threads: ``{"type": "create"}``, then ``continue`` with only the new turn), which a hop to
another format cannot honour."""

TAKES_TOP_K = frozenset({"anthropic", "bedrock", "gemini"})
"""Formats whose codecs write ``ChatRequest.top_k`` (Gemini's ``topK``, Claude's ``top_k`` on
Bedrock); for the others it is a 400 naming it."""
MOST_STOP_SEQUENCES: Mapping[str, int] = MappingProxyType(
    {"openai": 4, "gemini": 5, "bedrock": 2500}
)
"""Per format, the most stop sequences its API takes: Chat Completions' ``stop`` (OpenAI's
API; Mistral's the same), Gemini's ``generationConfig.stopSequences``, Converse's
``inferenceConfig.stopSequences`` (a model may take fewer, and says so in its own 400)."""
GIVES_CACHE_HINTS = frozenset({"anthropic", "openai"})
"""Formats whose clients mark where a prompt may be cached with Anthropic's ``cache_control``:
Anthropic's own, and OpenAI-format clients that use Anthropic's (LangChain, LiteLLM and
Portkey style: on a content part, a tool call, or a message)."""
WRITES_CACHE_HINTS = frozenset({"anthropic", "bedrock"})
"""Formats whose codecs write a client's ``cache_control`` (kept in the extras of parts, tool
results, tool calls and tools): Anthropic's as it is, Bedrock's as ``cachePoint`` blocks; the
others drop it."""
CACHE_HINT = "cache_control"
CITES_DOCUMENTS = frozenset({"bedrock"})
"""Families besides Anthropic whose codec sends a document's ``citations`` (in Anthropic's
words, kept in the document's extras) and reads the answer's citations: Bedrock's Converse."""
FETCHES_DOCUMENTS = frozenset({"anthropic"})
"""Formats whose providers fetch a document by URL (a ``DocumentPart``'s ``url``)."""
_NO_DOCUMENT_URLS: Mapping[str, str] = MappingProxyType(
    {
        "bedrock": "Bedrock reads documents only as bytes or from S3",
        "gemini": "Gemini fetches files only from its Files API or Cloud Storage",
        "openai": "Chat Completions takes files only inline ('file_data') or by 'file_id'",
    }
)
"""Per format that fetches no document, what it takes instead (the 400's words)."""
ERROR_STATUS: Mapping[str, JSON] = MappingProxyType({"bedrock": {"status": "error"}})
"""Per format, the tool result fields that say a call failed (Anthropic's ``is_error``): the
others are told in the result's text."""

ANSWER_FIELDS_STREAM = frozenset({"openai"})
"""Formats whose stream chunks carry an answer's own fields as the answer does: Chat
Completions' message fields are its deltas' (``refusal``, ``reasoning_content``), its choice's
its chunk choice's (``logprobs``), its answer's its chunk's (``system_fingerprint``). An
answer of such a format replayed as a stream keeps them (``Pipeline.response_as_chunks``)."""

SKIPS_EMPTY_TURNS = frozenset({"anthropic", "bedrock", "gemini"})
"""Formats whose codecs leave out an assistant turn with nothing in them to send (no text,
no call, no reasoning the target is sent back): their APIs refuse empty content, and the
turn says nothing. For the others, such a turn of nothing but reasoning is left out here."""
_SAID_IN_OPENAI_FIELDS = ("audio", "function_call")
"""An OpenAI assistant turn's fields that hold what it said: a spoken answer by its id on
OpenAI's servers, a legacy function call. No other family can be sent them, and the turn
without them says less or nothing (it was left out), so a non-null one is a 400 naming it;
the ``null`` an SDK echoes back with an answer asks for nothing."""
_FUNCTION_TOOL_TYPES = (None, "function", "custom")
_ID_CHARACTERS = re.compile(r"[a-zA-Z0-9_-]+")
_ANY_CHARACTERS = re.compile(r".+", re.DOTALL)
_NOT_ID_CHARACTER = re.compile(r"[^a-zA-Z0-9_-]")
CALL_IDS: Mapping[str, tuple[re.Pattern[str], int]] = MappingProxyType(
    {
        "anthropic": (_ID_CHARACTERS, 64),
        "bedrock": (_ID_CHARACTERS, 64),
        "openai": (_ANY_CHARACTERS, 40),
    }
)
"""Per format, the tool call ids its API takes (characters, longest): Anthropic's
``^[a-zA-Z0-9_-]+$`` (its own ids are about 30 long), Bedrock's the same and at most 64,
OpenAI's at most 40. Ids another family made (an OpenAI-compatible server's
``functions.get_weather:0``, vLLM's 46-character ``chatcmpl-tool-...``) are made to fit
(``call_id_for``); Gemini matches results to calls by name, and is sent no foreign id."""
REPLAYS_REASONING: Mapping[str, str] = MappingProxyType(
    {"anthropic": "claude", "bedrock": "claude", "gemini": "gemini"}
)
"""Formats whose providers take a turn's signed reasoning back, and whose signatures they take
(``ReasoningPart.signer``): Claude's thinking, which it needs back in the turn of a tool call;
Gemini's thought signatures, which Gemini 3 needs back on the turn's function calls. The others
are sent a replayed turn without it."""
_OPENAI = "openai"
_ANTHROPIC = "anthropic"
_OPENAI_REASONING = ("reasoning_content", "reasoning")
"""Where OpenAI-compatible servers put the reasoning text beside the answer: DeepSeek and
vLLM's ``reasoning_content``, the ``reasoning`` of Groq, OpenRouter, Ollama and newer vLLM."""


def refusal_of(extra: JSON, wire_format: str | None) -> str | None:
    """An OpenAI-format answer's refusal (whole, or a streamed piece) in a message's or
    delta's extras; ``None`` from other formats, whose extras mean something else."""
    refusal = extra.get("refusal") if wire_format == _OPENAI else None
    return refusal if isinstance(refusal, str) and refusal else None


def reasoning_of(extra: JSON, wire_format: str | None) -> str | None:
    """The reasoning text (whole, or a streamed piece) an OpenAI-compatible server sent in a
    message's or delta's extras, or a streamed piece of Claude's thinking (a ``thinking_delta``
    an Anthropic stream's chunk carries as it came); ``None`` from other formats."""
    if wire_format == _ANTHROPIC and extra:
        delta = extra.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "thinking_delta":
            text = delta.get("thinking")
            return text if isinstance(text, str) and text else None
        return None
    if wire_format != _OPENAI or not extra:
        return None
    for key in _OPENAI_REASONING:
        text = extra.get(key)
        if isinstance(text, str) and text:
            return text
    return None


_BEDROCK = "bedrock"
_SHARED_STOP_REASONS = frozenset({"model_context_window_exceeded", "stop_sequence"})
"""Bedrock's stop reasons (Claude's, on Bedrock) that Anthropic's API states in the same words
and the canonical finish does not tell apart (``length``, ``stop``)."""


def anthropic_stop_reason_of(extra: JSON, wire_format: str | None) -> str | None:
    """A Bedrock choice's exact ``stopReason`` (kept in its extras) when Anthropic's API has
    the same one; ``None`` from other formats, or for reasons the canonical finish says."""
    if wire_format != _BEDROCK or not extra:
        return None
    reason = extra.get("stopReason")
    return reason if isinstance(reason, str) and reason in _SHARED_STOP_REASONS else None


def is_foreign(wire_format: str | None, target: str) -> bool:
    """Whether a value tagged ``wire_format`` carries extras in another format than ``target``."""
    return wire_format is not None and wire_format != target


_ON_WHEN_PRESENT = frozenset({"web_search_options"})
"""Fields whose empty object asks for something: ``web_search_options: {}`` is how OpenAI's
search models are asked to search, with every option at its default."""


def asks_nothing(value: object, key: str | None = None) -> bool:
    """Whether field ``key``'s value is its default (null, false, zero, empty, text only,
    off), so it crosses as absent: ``logprobs: false``, ``presence_penalty: 0``,
    ``logit_bias: {}``, ``modalities: ["text"]``, ``thinking: {"type": "disabled"}``; for a
    field an empty object turns on (``web_search_options``), only null."""
    if key in _ON_WHEN_PRESENT:
        return value is None
    if value is None or value is False or value == 0 or value == {} or value == []:
        return True
    return value == ["text"] or value == {"type": "disabled"}


def _a(word: str) -> str:
    return ("an " if word[:1] in ("a", "e", "i", "o", "u") else "a ") + word


def request_for(request: ChatRequest, target: str) -> ChatRequest:
    """``request`` as a codec of ``target`` may write it: foreign extras checked and left out."""
    origin = request.wire_format
    if origin is None or origin == target:
        return request
    droppable = DROPPABLE.get(origin, frozenset())
    state = SERVER_STATE.get(origin)
    if state is not None and not asks_nothing(request.extra.get(state), state):
        raise ThreadUnsupported(
            f"'{state}' (a conversation the server holds) cannot be translated for "
            f"{_a(target)} deployment: send the whole conversation without it",
            param=state,
        )
    for key, value in request.extra.items():
        if key == "output_config" and isinstance(value, dict) and "effort" in value:
            key = "output_config.effort"  # Claude's; a family with an equivalent took it out
            value = value["effort"]
        if key not in droppable and not asks_nothing(value, key):
            raise InvalidRequest(
                f"'{key}' cannot be translated for {_a(target)} deployment", param=key
            )
    for key, value in (request.stream_options_extra or {}).items():
        # Only a stream is sent them (another family's codec writes none of them).
        if request.stream and not asks_nothing(value, key):
            param = f"stream_options.{key}"
            raise InvalidRequest(
                f"'{param}' cannot be translated for {_a(target)} deployment", param=param
            )
    most = MOST_STOP_SEQUENCES.get(target)
    if request.stop and most is not None and len(request.stop) > most:
        raise InvalidRequest(
            f"'stop' holds {len(request.stop)} sequences, and {_a(target)} deployment takes at "
            f"most {most}: send {most} or fewer",
            param="stop",
        )
    if request.top_k is not None and target not in TAKES_TOP_K:
        raise InvalidRequest(
            f"'top_k' cannot be translated for {_a(target)} deployment", param="top_k"
        )
    if target in _CHECKS_NO_THINKING_BUDGET:
        _check_thinking_budget(request)
    if request.max_tokens == 0:
        raise InvalidRequest(
            f"'max_tokens' 0 (a prompt cache pre-warm) cannot be translated for {_a(target)} "
            "deployment: it generates at least 1 token",
            param="max_tokens",
        )
    if target == "openai" and request.messages and request.messages[-1].role == "assistant":
        # A prefilled answer: OpenAI's API starts a new answer instead of continuing it.
        raise InvalidRequest(
            "a final assistant message (a prefilled answer to continue) cannot be translated "
            "for an openai deployment",
            param="messages",
        )
    hints = origin in GIVES_CACHE_HINTS and target in WRITES_CACHE_HINTS
    # A turn a codec leaves out itself stays here, so the codec's errors number the
    # messages as the client did.
    skips = target in SKIPS_EMPTY_TURNS
    messages = [
        _plain_message(message, target, hints, f"messages[{index}]")
        for index, message in enumerate(_last_block_cached(request, hints))
        if skips or not _only_reasoning_left_out(message, target)
    ]
    return replace(
        request,
        messages=messages,
        tools=None
        if request.tools is None
        else [_plain_tool(t, target, hints, i) for i, t in enumerate(request.tools)],
        extra={},
        stream_options_extra=None,
        wire_format=None,
    )


_CHECKS_NO_THINKING_BUDGET = frozenset({"openai", "gemini"})
"""Formats whose upstreams take any budget beside any ``max_tokens`` (Claude's, Anthropic's
and Bedrock's, check it themselves, and know the betas that lift it)."""


def _check_thinking_budget(request: ChatRequest) -> None:
    """A 400 for Anthropic's ``thinking`` budget not below ``max_tokens``, as Claude answers
    it: it thinks within ``max_tokens``, so another family would answer what Claude cannot."""
    thinking, limit = request.thinking, request.max_tokens
    if thinking is None or thinking.get("type") != "enabled" or limit is None:
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int) and budget >= limit:
        raise InvalidRequest(
            f"'max_tokens' ({limit}) must be greater than 'thinking.budget_tokens' ({budget})",
            param="thinking.budget_tokens",
        )


def _hint(extra: JSON, hints: bool) -> JSON:
    """The cache hint of ``extra``, kept when the target writes hints (else nothing)."""
    return {CACHE_HINT: extra[CACHE_HINT]} if hints and CACHE_HINT in extra else {}


def _last_block_cached(request: ChatRequest, hints: bool) -> list[Message]:
    """The messages with a top-level ``cache_control`` (Anthropic caches up to the last block
    it can) on the last message's last block, and, from an OpenAI-format client, each
    message's own ``cache_control`` on its last block (neither Anthropic nor Bedrock has a
    message-level one)."""
    control = request.extra.get(CACHE_HINT)
    messages = request.messages
    if not hints or not messages:
        return messages
    if request.wire_format == _OPENAI:
        messages = [_on_last_block(m, m.extra[CACHE_HINT]) if _marks(m) else m for m in messages]
    if not control:
        return messages
    return [*messages[:-1], _on_last_block(messages[-1], control)]


def _marks(message: Message) -> bool:
    """Whether an OpenAI-format message carries a ``cache_control`` of its own (a tool result
    keeps it in its extras: the result is the block it marks)."""
    return CACHE_HINT in message.extra and message.role != "tool"


def _on_last_block(message: Message, control: Any) -> Message:
    """``message`` with the cache hint ``control`` on its last block: its last text or image,
    its last tool call, or the message itself when it is a tool result; left out of the
    message's own extras."""
    hint = {CACHE_HINT: control}
    if message.role == "tool":
        return replace(message, extra={**message.extra, **hint})
    extra = {k: v for k, v in message.extra.items() if k != CACHE_HINT}
    content, calls = message.content, message.tool_calls
    if calls:  # an OpenAI turn's calls come after its content
        last_call = replace(calls[-1], extra={**calls[-1].extra, **hint})
        return replace(message, tool_calls=[*calls[:-1], last_call], extra=extra)
    if isinstance(content, str) and content:
        return replace(message, content=[TextPart(content, extra=hint)], extra=extra)
    if isinstance(content, list) and content and isinstance(content[-1], (TextPart, ImagePart)):
        cached = replace(content[-1], extra={**content[-1].extra, **hint})
        return replace(message, content=[*content[:-1], cached], extra=extra)
    return replace(message, extra=extra)


def _only_reasoning_left_out(message: Message, target: str) -> bool:
    """Whether ``message`` is an assistant turn of nothing but reasoning that ``target`` is
    not sent back (a turn cut off while the model reasoned): it says nothing there."""
    content = message.content
    if message.role != "assistant" or message.tool_calls or not isinstance(content, list):
        return False
    signer = REPLAYS_REASONING.get(target)
    return bool(content) and all(
        isinstance(p, ReasoningPart) and (p.signer is None or p.signer != signer) for p in content
    )


def _plain_message(message: Message, target: str, hints: bool, param: str) -> Message:
    """``message`` (at ``param``, for errors) as ``target`` may take it."""
    if "tool_calls" in message.extra:  # calls of tools the gateway does not model (custom)
        raise InvalidRequest(
            f"calls of custom tools cannot be translated for {_a(target)} deployment",
            param=f"{param}.tool_calls",
        )
    if message.role == "function":
        raise InvalidRequest(
            f"a message of role 'function' (a legacy function call's result) cannot be "
            f"translated for {_a(target)} deployment: send tool calls and 'tool' messages",
            param=f"{param}.role",
        )
    for key in _SAID_IN_OPENAI_FIELDS:
        if message.role == "assistant" and message.extra.get(key) is not None:
            raise InvalidRequest(
                f"an assistant turn's '{key}' cannot be translated for {_a(target)} "
                "deployment: send what it said as the turn's content",
                param=f"{param}.{key}",
            )
    if message.role == "assistant" and isinstance(message.content, list):
        signer = REPLAYS_REASONING.get(target)
        message = without_parts(message, lambda p: p.signer is not None and p.signer == signer)
    content = message.content
    if isinstance(content, list):
        declined = message.role == "assistant"
        content = [
            _plain_part(
                _refusal_as_text(part) if declined else part,
                target,
                hints,
                f"{param}.content[{index}]",
            )
            for index, part in enumerate(content)
        ]
    extra = _hint(message.extra, hints)
    if message.role == "tool":
        content = _tool_result(message, content, target, param)
        if message.extra.get("is_error") is True:
            extra |= ERROR_STATUS.get(target, {})
    elif message.role == "assistant" and not content:
        refusal = message.extra.get("refusal")  # OpenAI's: the words of a declined answer
        if isinstance(refusal, str) and refusal:
            content = refusal
    calls = message.tool_calls
    if calls:
        calls = [
            replace(call, id=call_id_for(call.id, target), extra=_hint(call.extra, hints))
            for call in calls
        ]
    tool_call_id = message.tool_call_id
    if tool_call_id is not None:
        tool_call_id = call_id_for(tool_call_id, target)
    return replace(
        message, content=content, tool_calls=calls, tool_call_id=tool_call_id, extra=extra
    )


def _refusal_as_text(part: ContentPart) -> ContentPart:
    """An OpenAI assistant turn's ``refusal`` part (OpenAI's API takes a turn's content as
    text and refusal parts) as its words, as the turn's ``refusal`` field is said."""
    if isinstance(part, OpaquePart) and part.type == "refusal":
        words = part.data.get("refusal")
        if isinstance(words, str):
            return TextPart(words)
    return part


def call_id_for(call_id: str, target: str) -> str:
    """A tool call's id as ``target`` takes it (``CALL_IDS``): itself when it fits, else its
    letters, digits, ``_`` and ``-`` (the rest as ``_``) cut short enough to end with ``_`` and
    eight hex digits of its hash, so a call and its result, which carry the same id, still
    match, and two ids never become one."""
    rule = CALL_IDS.get(target)
    if rule is None:
        return call_id
    pattern, longest = rule
    if len(call_id) <= longest and pattern.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:8]
    kept = _NOT_ID_CHARACTER.sub("_", call_id)[: longest - len(digest) - 1]
    return f"{kept}_{digest}" if kept else f"call_{digest}"


def _tool_result(
    message: Message, content: str | list[ContentPart] | None, target: str, param: str
) -> str | list[ContentPart] | None:
    """A tool result's content for a family without its origin's details: a failed call
    (Anthropic's ``is_error``) says so in its text, since only the words reach the model,
    unless the family has a field for it (``ERROR_STATUS``)."""
    media = [
        (index, part)
        for index, part in enumerate(content if isinstance(content, list) else ())
        if isinstance(part, (ImagePart, DocumentPart))
    ]
    if target == "openai" and media:  # Chat Completions takes only text in a tool message
        index, part = media[0]
        at = f"{param}.content[{index}]"
        kind = "an image" if isinstance(part, ImagePart) else "a document"
        raise InvalidRequest(
            f"'{at}' is {kind} in a tool result, which cannot be translated for an openai "
            "deployment: Chat Completions takes only text parts in a tool message; send it in "
            "a user message after the result",
            param=at,
        )
    if message.extra.get("is_error") is True and target not in ERROR_STATUS:
        if isinstance(content, list):
            return [TextPart("Error: "), *content]
        return "Error: " + (content or "the tool call failed")
    return content


def _plain_part(part: ContentPart, target: str, hints: bool, param: str) -> ContentPart:
    if isinstance(part, OpaquePart):
        raise InvalidRequest(
            f"content of type '{part.type}' cannot be translated for {_a(target)} deployment",
            param=param,
        )
    if isinstance(part, DocumentPart) and part.url is not None and target not in FETCHES_DOCUMENTS:
        instead = _NO_DOCUMENT_URLS.get(target, "it fetches no file by URL")
        raise InvalidRequest(
            f"'{param}' is a document by URL, which cannot be translated for {_a(target)} "
            f"deployment: {instead}; send the PDF inline as base64 data",
            param=param,
        )
    if not part.extra:
        return part
    if isinstance(part, ReasoningPart):
        return replace(part, extra={})
    if isinstance(part, DocumentPart) and target != _ANTHROPIC:
        _check_document(part, target)
    extra = _hint(part.extra, hints)
    if isinstance(part, DocumentPart) and target in CITES_DOCUMENTS and "citations" in part.extra:
        extra["citations"] = part.extra["citations"]
    return (
        TextPart(part.text, extra=extra)
        if isinstance(part, TextPart)
        else replace(part, extra=extra)
    )


def _check_document(part: DocumentPart, target: str) -> None:
    """A document's Anthropic settings that change the answer and have no counterpart
    elsewhere: ``citations`` (the answer cites the document; Bedrock's Converse has them too,
    ``CITES_DOCUMENTS``) and ``context`` (what the model is told about it) are a 400 naming
    them."""
    citations = part.extra.get("citations")
    enabled = isinstance(citations, dict) and citations.get("enabled") is True
    if enabled and target not in CITES_DOCUMENTS:
        raise InvalidRequest(
            f"a document's 'citations' cannot be translated for {_a(target)} deployment",
            param="messages",
        )
    if part.extra.get("context"):
        raise InvalidRequest(
            f"a document's 'context' cannot be translated for {_a(target)} deployment",
            param="messages",
        )


def without_parts(message: Message, keep_reasoning: Callable[[ReasoningPart], bool]) -> Message:
    """``message`` without the reasoning parts ``keep_reasoning`` refuses; each tool call
    keeps its place among the parts left (``ToolCall.position``)."""
    content = message.content
    if not isinstance(content, list):
        return message
    kept = [not isinstance(p, ReasoningPart) or keep_reasoning(p) for p in content]
    if all(kept):
        return message
    return _keeping(message, content, kept)


def without_empty_text(message: Message) -> Message:
    """``message`` without its empty text parts, when it has others: an OpenAI client's image
    sent without a caption (``[{"type": "text", "text": ""}, {"type": "image_url", ...}]``)
    asks for nothing with that part, which Anthropic refuses (``text content blocks must be
    non-empty``). Content of empty text alone is left for the provider to answer."""
    content = message.content
    if not isinstance(content, list):
        return message
    kept = [not isinstance(p, TextPart) or bool(p.text) for p in content]
    if all(kept) or not (any(kept) or message.tool_calls):
        return message
    return _keeping(message, content, kept)


def _keeping(message: Message, content: list[ContentPart], kept: list[bool]) -> Message:
    """``message`` with only the parts of ``content`` that ``kept`` marks."""
    calls = message.tool_calls
    if calls:
        calls = [_placed_among(call, kept) for call in calls]
    parts = [part for part, keep in zip(content, kept, strict=True) if keep]
    # A turn of calls alone has no content, as the codecs parse one.
    return replace(message, content=None if calls and not parts else parts, tool_calls=calls)


def _plain_tool(tool: Tool, target: str, hints: bool, index: int) -> Tool:
    kind = tool.extra.get("type")
    if kind not in _FUNCTION_TOOL_TYPES:
        raise InvalidRequest(
            f"tools of type '{kind}' cannot be translated for {_a(target)} deployment",
            param="tools",
        )
    if tool.function_extra:
        for key, value in tool.function_extra.items():
            if not asks_nothing(value, key):
                param = f"tools[{index}].function.{key}"
                raise InvalidRequest(
                    f"'{param}' cannot be translated for {_a(target)} deployment", param=param
                )
        tool = replace(tool, function_extra={})
    return replace(tool, extra=_hint(tool.extra, hints)) if tool.extra else tool


def response_for(response: ChatResponse, target: str) -> ChatResponse:
    """``response`` without the extras of another format than ``target``."""
    if not is_foreign(response.wire_format, target):
        return response
    openai = response.wire_format == _OPENAI
    return replace(
        response,
        choices=[_plain_choice(choice, openai) for choice in response.choices],
        usage=_plain_usage(response.usage),
        extra={},
        wire_format=None,
    )


def _plain_choice(choice: Choice, openai: bool) -> Choice:
    if openai and choice.message.extra:
        choice = _said_plainly(choice)
    message = choice.message
    calls = message.tool_calls
    if calls:
        calls = [replace(call, extra={}) if call.extra else call for call in calls]
    content = message.content
    if isinstance(content, list):
        # Blocks of the upstream's own kinds (Bedrock's reasoningContent, Anthropic's
        # thinking, ...) mean nothing to another format's client, whose SDK cannot read them.
        kept = [not isinstance(p, OpaquePart) for p in content]
        if calls and not all(kept):
            # A call's place counts the parts before it: only those kept count now.
            calls = [_placed_among(call, kept) for call in calls]
        content = [_plain_answer_part(p) for p in content if not isinstance(p, OpaquePart)]
    message = replace(message, content=content, tool_calls=calls, extra={})
    return replace(choice, message=message, extra={})


def _said_plainly(choice: Choice) -> Choice:
    """An OpenAI answer's refusal as its text, with the finish other formats call a refusal
    (``content_filter``: Anthropic's ``refusal``), and a compatible server's reasoning text
    as a ``ReasoningPart`` before the answer."""
    message = choice.message
    finish = choice.finish_reason
    content = message.content
    refusal = refusal_of(message.extra, _OPENAI)
    if refusal is not None and not content:
        content = refusal
        if finish in (None, "stop"):
            finish = "content_filter"
    reasoning = reasoning_of(message.extra, _OPENAI)
    if reasoning is not None:
        parts: list[ContentPart] = [ReasoningPart(reasoning)]
        if isinstance(content, list):
            parts.extend(content)
        elif content:
            parts.append(TextPart(content))
        content = parts
        # A call's place counts the parts before it, now one more (the reasoning).
        calls = message.tool_calls
        if calls:
            message = replace(message, tool_calls=[_after_reasoning(c) for c in calls])
    return replace(choice, message=replace(message, content=content), finish_reason=finish)


def _after_reasoning(call: ToolCall) -> ToolCall:
    return call if call.position is None else replace(call, position=call.position + 1)


def _placed_among(call: ToolCall, kept: list[bool]) -> ToolCall:
    if call.position is None:
        return call
    return replace(call, position=sum(kept[: call.position]))


def _plain_answer_part(part: TextPart | ImagePart | DocumentPart | ReasoningPart) -> ContentPart:
    if not part.extra:
        return part
    if isinstance(part, TextPart):
        return TextPart(part.text, citations=part.citations)
    return replace(part, extra={})


def chunk_for(chunk: ChatChunk, target: str) -> ChatChunk:
    """``chunk`` without the extras of another format than ``target``."""
    if not is_foreign(chunk.wire_format, target):
        return chunk
    return replace(
        chunk,
        choices=[_plain_chunk_choice(c) for c in chunk.choices],
        usage=_plain_usage(chunk.usage),
        extra={},
        wire_format=None,
    )


def _plain_chunk_choice(choice: ChunkChoice) -> ChunkChoice:
    calls = choice.tool_calls
    if calls and any(call.extra for call in calls):
        calls = [replace(call, extra=None) if call.extra else call for call in calls]
    elif not (choice.extra or choice.choice_extra):
        return choice
    return replace(choice, extra={}, choice_extra=None, tool_calls=calls)


def is_preamble(chunk: ChatChunk) -> bool:
    """Whether ``chunk`` comes before the answer and names none of it (no choices, usage or
    model), as the ``prompt_filter_results`` chunk Azure opens its streams with."""
    return not chunk.choices and chunk.usage is None and not chunk.model


def _plain_usage(usage: Usage | None) -> Usage | None:
    if usage is None or not usage.extra:
        return usage
    return replace(usage, extra={})
