"""A ``functionResponse`` part checked as Google checks it, and the media it carries.

Google reads a request's JSON into its protocol buffers: a field the message does not have is
a 400 ("Unknown name ... Cannot find field"), a field's name may be written in lowerCamelCase
or snake_case, and ``bytes`` must be base64 (standard or URL-safe, padded or not). The two
APIs' ``FunctionResponse`` differ (``google.ai.generativelanguage.v1beta`` and
``google.cloud.aiplatform.v1``):

- Gemini API: ``id``, ``name``, ``response``, ``parts``, ``willContinue``, ``scheduling``; a
  part of ``parts`` holds ``inlineData`` (``mimeType``, ``data``) and nothing else.
- Vertex AI: ``name``, ``response``, ``parts``; a part holds ``inlineData`` (``mimeType``,
  ``data``, ``displayName``) or ``fileData`` (``mimeType``, ``fileUri``, ``displayName``).

``name`` must be given and ``response`` be an object; a part holds exactly one kind of media
(the ``data`` oneof), with its ``mimeType`` and its ``data`` or ``fileUri``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.simulator.content import InvalidRequest

_CAPITAL = re.compile(r"(?<!^)([A-Z])")


@dataclass(frozen=True, slots=True)
class _Shape:
    """The fields of one API's ``FunctionResponse`` and of each kind of its parts' media."""

    response: frozenset[str]
    media: dict[str, frozenset[str]]


_GEMINI_API = _Shape(
    response=frozenset({"id", "name", "response", "parts", "will_continue", "scheduling"}),
    media={"inline_data": frozenset({"mime_type", "data"})},
)
_VERTEX_AI = _Shape(
    response=frozenset({"name", "response", "parts"}),
    media={
        "inline_data": frozenset({"mime_type", "data", "display_name"}),
        "file_data": frozenset({"mime_type", "file_uri", "display_name"}),
    },
)


def function_response_media(result: Any, param: str, *, vertex: bool) -> int:
    """How many media parts the ``functionResponse`` at ``param`` (Google's path to it, such
    as ``contents[2].parts[0].function_response``) carries; an InvalidRequest where Google
    would answer a 400. ``vertex``: checked as Vertex AI's, else as the Gemini API's."""
    shape = _VERTEX_AI if vertex else _GEMINI_API
    fields = _fields(result, shape.response, param)
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"* GenerateContentRequest.{param}.name: Name cannot be empty.", param)
    response = fields.get("response")
    if response is not None and not isinstance(response, dict):
        raise InvalidRequest(
            _invalid(f"{param}.response", "google.protobuf.Struct", response), param
        )
    parts = fields.get("parts")
    if parts is None:
        return 0
    if not isinstance(parts, list):
        raise InvalidRequest(_invalid(f"{param}.parts", "FunctionResponsePart", parts), param)
    for index, part in enumerate(parts):
        _check_part(part, f"{param}.parts[{index}]", shape)
    return len(parts)


def _check_part(part: Any, param: str, shape: _Shape) -> None:
    fields = _fields(part, frozenset(shape.media), param)
    kinds = list(fields)
    if not kinds:
        message = (
            f"* GenerateContentRequest.{param}.data: required oneof field 'data' must have "
            "one initialized field"
        )
        raise InvalidRequest(message, param)
    if len(kinds) > 1:
        message = (
            "Invalid JSON payload received. Oneof field 'data' is already set. "
            f"Cannot set '{kinds[1]}'"
        )
        raise InvalidRequest(message, param)
    kind = kinds[0]
    media = _fields(fields[kind], shape.media[kind], f"{param}.{kind}")
    source = "data" if kind == "inline_data" else "file_uri"
    for key in ("mime_type", source):
        if not isinstance(media.get(key), str) or not media[key]:
            message = f"* GenerateContentRequest.{param}.{kind}.{key}: required field is empty"
            raise InvalidRequest(message, param)
    if kind == "inline_data" and not _is_base64(media["data"]):
        shown = media["data"][:40]
        message = (
            f"Invalid value at '{param}.inline_data.data' (TYPE_BYTES), "
            f'Base64 decoding failed for "{shown}"'
        )
        raise InvalidRequest(message, param)


def _fields(value: Any, known: frozenset[str], param: str) -> dict[str, Any]:
    """An object's fields by their snake_case names; a name ``known`` lacks is Google's 400."""
    if not isinstance(value, dict):
        raise InvalidRequest(_invalid(param, "object", value), param)
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = _CAPITAL.sub(r"_\1", key).lower()
        if name not in known:
            message = (
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{param}': "
                "Cannot find field."
            )
            raise InvalidRequest(message, param)
        fields[name] = item
    return fields


def _invalid(param: str, kind: str, value: Any) -> str:
    return f"Invalid value at '{param}' ({kind}), {orjson.dumps(value).decode()[:40]}"


def _is_base64(data: str) -> bool:
    standard = data.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
