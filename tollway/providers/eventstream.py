"""AWS event-stream framing (``application/vnd.amazon.eventstream``): raw bytes to messages.

Each message is a prelude (total length, headers length, prelude CRC32), typed headers, a
payload and a message CRC32. botocore's decoder checks both checksums; it is imported when a
decoder is made, so only deployments that need it need botocore installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway.core.errors import UpstreamProtocolError


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message: its headers (``:message-type``, ``:event-type``, ...) and payload."""

    headers: Mapping[str, Any]
    payload: bytes


class EventStreamDecoder:
    """Decodes the messages of one stream from pieces of bytes as they arrive."""

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError

        self._buffer = EventStreamBuffer()
        self._parser_error: type[Exception] = ParserError

    def feed(self, data: bytes) -> list[EventMessage]:
        """The messages ``data`` completes (a message may span pieces); raises when corrupt."""
        self._buffer.add_data(data)
        try:
            return [EventMessage(message.headers, message.payload) for message in self._buffer]
        except self._parser_error as exc:
            raise UpstreamProtocolError(f"upstream event stream is corrupt: {exc}") from None
