"""Deterministic reply content and token counting, shared by every dialect.

Token rule (the same for OpenAI, Azure and Anthropic, so usage survives a dialect hop):

* Output text is split into words, each carrying the whitespace before it ("Simulated",
  " reply", " to:", ...); every word is one token and one streamed chunk.
* JSON output (a ``json_object`` / ``json_schema`` reply, tool-call arguments) is emitted in
  fragments of ``JSON_FRAGMENT_CHARS`` characters; every fragment is one token and one chunk.
  Chat Completions' tool calls are cut at ``max_tokens`` fragments (``cut_calls``), as OpenAI
  ends a call the limit stops mid-way; the other APIs' calls come whole.
* Prompt tokens: ``MESSAGE_OVERHEAD`` per message (a system prompt counts as a message) plus one
  per whitespace-separated word of its text (text parts, tool results, tool-call arguments),
  ``IMAGE_TOKENS`` per image and ``TOOL_TOKENS`` per tool definition.

A text reply is ``"Simulated reply to: <first ECHO_WORDS words of the last user message>"``
followed by ``FILLER_WORDS`` in order (wrapping round), cut to the requested length; choice ``i``
of an ``n > 1`` request says ``"Simulated reply #<i+1> to:"`` instead. A prompt that asks for
reasoning is first answered with ``"Simulated reasoning about: <the same words>"`` and filler,
as long as the reply would be (not cut by ``max_tokens``: a budget of its own), one token a
word too. A refusal is its words, one token each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

JSON = dict[str, Any]
Finish = Literal["stop", "length", "stop_sequence", "tool_calls", "refusal"]

FILLER_WORDS: tuple[str, ...] = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)  # fmt: skip
ECHO_WORDS = 8
JSON_FRAGMENT_CHARS = 8
MESSAGE_OVERHEAD = 3
IMAGE_TOKENS = 85
TOOL_TOKENS = 10
SAMPLE_STRING = "sample"

_FILLER_PIECES = tuple(" " + word for word in FILLER_WORDS)
_PARALLEL = re.compile(r"\bparallel\b", re.IGNORECASE)
_MAX_SCHEMA_DEPTH = 8


class InvalidRequest(ValueError):
    """A request the real API would reject with a 400; ``param`` names the offending field,
    ``code`` is the API's own word for the problem (``None``: its default)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(slots=True)
class ToolSpec:
    """A callable tool: its name and JSON schema for the arguments."""

    name: str
    schema: JSON | None


@dataclass(slots=True)
class Prompt:
    """What the generator needs from a request, already pulled out of its dialect."""

    last_user_text: str
    tool_result_text: str | None = None
    last_is_user: bool = True
    tools: list[ToolSpec] = field(default_factory=list)
    tool_mode: Literal["auto", "none", "required"] = "auto"
    forced_tool: str | None = None
    parallel_tools: bool = True
    json_mode: bool = False
    json_schema: JSON | None = None
    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    target_tokens: int = 16
    reasoning: bool = False
    """Reason (``Completion.reasoning``) before answering."""


@dataclass(slots=True)
class ToolCallOut:
    """A tool call in a reply; ``fragments`` is how its arguments are streamed."""

    id: str
    name: str
    arguments: str
    fragments: list[str]

    def input(self) -> Any:
        """The arguments as a parsed JSON value."""
        return orjson.loads(self.arguments)


@dataclass(slots=True)
class Completion:
    """One generated choice: content pieces (one per token) or tool calls, and why it ended."""

    pieces: list[str]
    finish: Finish
    stop_sequence: str | None = None
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    """The reasoning before the answer, one piece a token (empty: none)."""

    @property
    def text(self) -> str:
        """The content as one string."""
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        """Tokens produced: reasoning and content pieces plus tool-argument fragments."""
        calls = sum(len(call.fragments) for call in self.tool_calls)
        return len(self.reasoning) + len(self.pieces) + calls


def refusal(text: str) -> Completion:
    """A declined answer: ``text`` in word pieces, one token each, ending ``refusal``."""
    words = text.split()
    return Completion([words[0], *(" " + word for word in words[1:])], "refusal")


def word_count(text: str) -> int:
    """Whitespace-separated words in ``text``: the simulator's token count for text."""
    return len(text.split())


def json_fragments(text: str) -> list[str]:
    """Split JSON text into the fixed-size fragments it is streamed (and counted) in."""
    step = JSON_FRAGMENT_CHARS
    return [text[i : i + step] for i in range(0, len(text), step)]


def reply_pieces(lead: str, source: str, target: int, variant: int = 0) -> list[str]:
    """The word pieces of a deterministic reply: lead, echoed source words, filler."""
    if variant:
        lead = lead.replace(" reply", f" reply #{variant + 1}", 1)
    words = lead.split()
    echoed = source.split()[:ECHO_WORDS]
    words.extend(echoed or ["(empty)"])
    pieces = [words[0], *(" " + word for word in words[1:target])]
    if len(pieces) >= target:
        return pieces[:target]
    count = len(_FILLER_PIECES)
    start = (variant * 3) % count
    pieces.extend(_FILLER_PIECES[(start + k) % count] for k in range(target - len(pieces)))
    return pieces


def apply_limits(pieces: list[str], max_tokens: int | None, stops: list[str]) -> Completion:
    """Cap ``pieces`` at ``max_tokens`` and cut before the earliest stop sequence."""
    finish: Finish = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[: max(max_tokens, 0)]
        finish = "length"
    if not stops:
        return Completion(pieces, finish)
    text = "".join(pieces)
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop) if stop else -1
        if index >= 0 and (best is None or index < best[0]):
            best = (index, stop)
    if best is None:
        return Completion(pieces, finish)
    return Completion(_cut(pieces, best[0]), "stop_sequence", best[1])


def cut_calls(completion: Completion, max_tokens: int | None) -> Completion:
    """``completion`` with its tool calls cut at ``max_tokens`` argument fragments, as an API
    whose arguments are text (Chat Completions) ends a call the limit stops mid-way: the
    arguments written so far (not yet JSON), finish ``length``; a call not begun is left out."""
    if max_tokens is None or not completion.tool_calls:
        return completion
    left = max_tokens  # a call's answer has no text; reasoning is a budget of its own
    if sum(len(call.fragments) for call in completion.tool_calls) <= left:
        return completion
    calls: list[ToolCallOut] = []
    for call in completion.tool_calls:
        if left <= 0:
            break
        fragments = call.fragments[:left]
        left -= len(fragments)
        calls.append(ToolCallOut(call.id, call.name, "".join(fragments), fragments))
    completion.tool_calls, completion.finish = calls, "length"
    return completion


def _cut(pieces: list[str], index: int) -> list[str]:
    kept: list[str] = []
    position = 0
    for piece in pieces:
        end = position + len(piece)
        if end <= index:
            kept.append(piece)
        else:
            head = piece[: index - position]
            # A bare space left over from the stopped word would be a token of nothing.
            if head.strip():
                kept.append(head)
            break
        position = end
    return kept


def sample_value(schema: Any, depth: int = 0, root: JSON | None = None) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema; ``root`` is the document
    a local ``$ref`` (``#/$defs/Home``, as pydantic writes nested models) points into."""
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return SAMPLE_STRING
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return sample_value(_resolve(root, ref), depth + 1, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return sample_value((non_null or options)[0], depth + 1, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    return _sample_by_type(kind, schema, depth, root)


def _resolve(root: JSON, ref: str) -> Any:
    """The subschema a local JSON pointer names, or None (a sample string) when it names none."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node.get(token) if isinstance(node, dict) else None
    return node


def _sample_by_type(kind: Any, schema: JSON, depth: int, root: JSON) -> Any:
    if kind == "object":
        return sample_object(schema, depth, root)
    if kind == "array":
        items = schema.get("items")
        return [sample_value(items, depth + 1, root)] if isinstance(items, dict) else []
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return SAMPLE_STRING


def sample_object(schema: JSON | None, depth: int = 0, root: JSON | None = None) -> JSON:
    """Fill an object schema's required properties (all of them when none is required)."""
    if not schema:
        return {}
    root = schema if root is None else root
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required")
    names = required if isinstance(required, list) else list(properties)
    return {name: sample_value(properties.get(name), depth + 1, root) for name in names}


def choose_tools(prompt: Prompt) -> list[ToolSpec]:
    """The tools the reply calls: none, the forced/first one, or the first two in parallel."""
    tools = prompt.tools
    if (
        not tools
        or prompt.tool_mode == "none"
        or prompt.tool_result_text is not None
        or not prompt.last_is_user
    ):
        return []
    if prompt.forced_tool is not None:
        for tool in tools:
            if tool.name == prompt.forced_tool:
                return [tool]
        raise InvalidRequest(f"tool {prompt.forced_tool!r} is not among the tools", "tool_choice")
    if len(tools) >= 2 and prompt.parallel_tools and _PARALLEL.search(prompt.last_user_text):
        return tools[:2]
    return tools[:1]


def complete(prompt: Prompt, variant: int, new_tool_id: Callable[[], str]) -> Completion:
    """Generate choice number ``variant`` of the reply to ``prompt``."""
    completion = _answer(prompt, variant, new_tool_id)
    if prompt.reasoning:
        source = prompt.last_user_text if prompt.tool_result_text is None else "the tool result"
        completion.reasoning = reply_pieces(
            "Simulated reasoning about:", source, prompt.target_tokens, variant
        )
    return completion


def _answer(prompt: Prompt, variant: int, new_tool_id: Callable[[], str]) -> Completion:
    calls = choose_tools(prompt)
    if calls:
        out = []
        for tool in calls:
            arguments = orjson.dumps(sample_object(tool.schema)).decode()
            out.append(ToolCallOut(new_tool_id(), tool.name, arguments, json_fragments(arguments)))
        return Completion([], "tool_calls", tool_calls=out)
    if prompt.tool_result_text is not None:
        pieces = reply_pieces(
            "Simulated reply to tool result:",
            prompt.tool_result_text,
            prompt.target_tokens,
            variant,
        )
    else:
        pieces = reply_pieces(
            "Simulated reply to:", prompt.last_user_text, prompt.target_tokens, variant
        )
    if prompt.json_schema is not None or prompt.json_mode:
        pieces = json_fragments(_json_reply(prompt, "".join(pieces)))
    return apply_limits(pieces, prompt.max_tokens, prompt.stop)


def _json_reply(prompt: Prompt, text: str) -> str:
    if prompt.json_schema is not None and isinstance(prompt.json_schema.get("properties"), dict):
        return orjson.dumps(sample_object(prompt.json_schema)).decode()
    return orjson.dumps({"answer": text}).decode()


_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


# What Claude's structured output refuses beside open objects: numeric and length bounds.
_UNSUPPORTED_BOUNDS = (
    *("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    *("minLength", "maxLength", "maxItems", "uniqueItems"),
)


def check_closed(schema: Any, param: str) -> None:
    """Structured output's rules (Anthropic's, and Bedrock's for every model): every object
    says ``"additionalProperties": false`` and no schema has a numeric or length bound
    (``minimum``, ``maxLength`` ...), or a 400 in Anthropic's words naming ``param``."""
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object and schema.get("additionalProperties") is not False:
        message = (
            f"{param}: For 'object' type, 'additionalProperties' must be explicitly set to false"
        )
        raise InvalidRequest(message, param)
    for bound in _UNSUPPORTED_BOUNDS:
        if bound in schema:
            message = f"{param}: For '{kind}' type, property '{bound}' is not supported"
            raise InvalidRequest(message, param)
    for key in _SUBSCHEMAS:
        check_closed(schema.get(key), param)
    for key in _SUBSCHEMA_LISTS:
        for item in schema.get(key) or ():
            check_closed(item, param)
    for key in _SUBSCHEMA_MAPS:
        inner = schema.get(key)
        for item in inner.values() if isinstance(inner, dict) else ():
            check_closed(item, param)


def check_strict(schema: Any, subject: str, param: str, code: str | None = None) -> None:
    """OpenAI's strict mode (a ``json_schema`` response format, a function's ``parameters``):
    every object says ``"additionalProperties": false`` and lists every property in
    ``required`` (an optional one is a union with null), or a 400 in OpenAI's words naming
    ``param``; ``subject`` is what its message names (``response_format 'person'``)."""
    _check_strict(schema, (), subject, param, code)


def _check_strict(
    schema: Any, context: tuple[str, ...], subject: str, param: str, code: str | None
) -> None:
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        where = f"Invalid schema for {subject}: In context={context!r}, "
        if schema.get("additionalProperties") is not False:
            message = where + "'additionalProperties' is required to be supplied and to be false."
            raise InvalidRequest(message, param, code)
        properties = schema.get("properties")
        required = schema.get("required")
        listed = set(required) if isinstance(required, list) else set()
        missing = [name for name in properties or () if name not in listed]
        if missing:
            message = where + (
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'."
            )
            raise InvalidRequest(message, param, code)
    for key in _SUBSCHEMAS:
        _check_strict(schema.get(key), (*context, key), subject, param, code)
    for key in _SUBSCHEMA_LISTS:
        for index, item in enumerate(schema.get(key) or ()):
            _check_strict(item, (*context, key, str(index)), subject, param, code)
    for key in _SUBSCHEMA_MAPS:
        inner = schema.get(key)
        for name, item in inner.items() if isinstance(inner, dict) else ():
            _check_strict(item, (*context, key, name), subject, param, code)
