"""AWS event-stream framing for the simulated Bedrock streams: messages to bytes.

botocore only decodes this framing, so the simulator (a test double) encodes it itself:
prelude (total length, headers length, CRC32 of those 8 bytes), headers (name length, name,
type 7 = string, value length, value), payload, CRC32 of everything before it.
"""

from __future__ import annotations

import struct
from binascii import crc32
from collections.abc import Mapping
from typing import Any

import orjson

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One framed message with string headers."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", crc32(message))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(raw_name))
        + raw_name
        + struct.pack(">BH", _STRING, len(raw_value))
        + raw_value
    )


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message of ``event_type`` with a JSON payload."""
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, orjson.dumps(payload))


def exception(exception_type: str, message: str) -> bytes:
    """An ``exception`` message, as a stream reports a failure after its first event."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))
