"""Bedrock Converse's image and document blocks, checked as Bedrock checks them.

Wherever a message holds one (a turn's content or a tool result's): an image's ``format``
is ``png``, ``jpeg``, ``gif`` or ``webp`` and its ``source`` one of ``bytes`` (base64 in
JSON) or ``s3Location``; a document has a ``name`` of 1 to 200 characters, only letters,
digits, whitespace (never two in a row), hyphens, parentheses and square brackets (and
underscores, which Bedrock takes though its reference leaves them out), a ``format`` of
its list and a ``source`` of one kind; and no two documents of the request's messages share
a name (botocore's ``DocumentBlock``, ``ImageBlock``; the words are Bedrock's). The system
prompt holds neither: its blocks are ``text``, ``guardContent`` or ``cachePoint``
(``SystemContentBlock``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from tollway.simulator.content import InvalidRequest

IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
DOCUMENT_FORMATS = ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md")
_NAME_CHARACTERS = re.compile(r"[a-zA-Z0-9_\s\-()\[\]]+")
_TWO_SPACES = re.compile(r"\s\s")
_LONGEST_NAME = 200
_BAD_NAME = (
    "The document file name can only contain alphanumeric characters, whitespace characters, "
    "hyphens, parentheses, and square brackets. The name can't contain more than one "
    "consecutive whitespace character. Check that the file name conforms to these "
    "restrictions and retry your request."
)
_SAME_NAME = (
    "Messages can't contain duplicate document names. Rename the document and retry your request."
)


_SYSTEM_BLOCKS = ("text", "guardContent", "cachePoint")


def check_system(system: Any) -> None:
    """Refuse a ``system`` block of a kind ``SystemContentBlock`` does not have."""
    for index, block in enumerate(system if isinstance(system, list) else ()):
        kinds = list(block) if isinstance(block, dict) else []
        if len(kinds) != 1 or kinds[0] not in _SYSTEM_BLOCKS:
            raise InvalidRequest(
                f"Invalid system.{index}: a system content block is one of "
                f"{', '.join(_SYSTEM_BLOCKS)}, not {', '.join(kinds) or 'nothing'}.",
                "system",
            )


def check_media(messages: list[dict[str, Any]]) -> None:
    """Refuse, as Bedrock does, the images and documents of ``messages`` it would refuse."""
    names: set[str] = set()
    for where, block in _media(messages):
        if isinstance(block.get("image"), dict):
            _check_image(block["image"], f"{where}.image")
        if isinstance(block.get("document"), dict):
            name = _check_document(block["document"], f"{where}.document")
            if name in names:
                raise InvalidRequest(_SAME_NAME, "name")
            names.add(name)


def _media(messages: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each block of the messages, a tool result's own blocks too, with where it is."""
    for index, message in enumerate(messages):
        content = message.get("content")
        for position, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict):
                continue
            where = f"messages.{index}.member.content.{position}.member"
            yield where, block
            result = block.get("toolResult")
            inner = result.get("content") if isinstance(result, dict) else None
            for number, item in enumerate(inner if isinstance(inner, list) else ()):
                if isinstance(item, dict):
                    yield f"{where}.toolResult.content.{number}.member", item


def _enum(value: Any, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise InvalidRequest(
            f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]",
            where.rsplit(".", 1)[-1],
        )


def _one_source(source: Any, kinds: tuple[str, ...], where: str) -> str:
    """The one kind of a source union, else Bedrock's 400."""
    given: list[str] = [k for k in source if k in kinds] if isinstance(source, dict) else []
    if len(given) != 1 or len(source) != 1:
        raise InvalidRequest(
            f"The {where}.source must hold exactly one of {', '.join(kinds)}.", "source"
        )
    return given[0]


def _check_image(image: dict[str, Any], where: str) -> None:
    _enum(image.get("format"), IMAGE_FORMATS, f"{where}.format")
    if _one_source(image.get("source"), ("bytes", "s3Location"), where) == "bytes":
        _check_bytes(image["source"]["bytes"], where)


def _check_document(document: dict[str, Any], where: str) -> str:
    """The document's name, once its fields are checked."""
    if "format" in document:
        _enum(document["format"], DOCUMENT_FORMATS, f"{where}.format")
    kinds = ("bytes", "s3Location", "text", "content")
    if _one_source(document.get("source"), kinds, where) == "bytes":
        _check_bytes(document["source"]["bytes"], where)
    name = document.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= _LONGEST_NAME:
        raise InvalidRequest(
            f"1 validation error detected: Value at '{where}.name' failed to satisfy "
            f"constraint: Member must have length between 1 and {_LONGEST_NAME}",
            "name",
        )
    if not _NAME_CHARACTERS.fullmatch(name) or _TWO_SPACES.search(name):
        raise InvalidRequest(_BAD_NAME, "name")
    return name


def _check_bytes(data: Any, where: str) -> None:
    try:
        base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"The {where}.source.bytes is not valid base64.", "bytes") from None
