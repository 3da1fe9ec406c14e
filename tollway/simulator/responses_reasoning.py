"""OpenAI's encrypted reasoning (a ``reasoning`` item's ``encrypted_content``), as the
simulator seals it and reads it back.

A reasoning model's ``reasoning`` item carries ``encrypted_content`` when ``include`` asks
(``reasoning.encrypted_content``): the model's reasoning sealed with a key only OpenAI holds,
for a client that keeps no state at OpenAI (``store: false``) to send back in ``input``.
The simulator seals it with a key of its own (``seal``: the look of OpenAI's Fernet tokens,
``gAAAAA``, then base64 of a MAC and the text). A reasoning item sent back whose
``encrypted_content`` the simulator did not seal (another provider's, a gateway's, one
altered) is refused as OpenAI refuses it (``check``): a 400 ``invalid_request_error``,
code ``invalid_encrypted_content``, ``param`` null, naming the item (its ``id``) or, without
one, the content's first and last four characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable

from tollway.simulator.content import JSON, InvalidRequest

_LOOK = "gAAAAA"
"""How OpenAI's encrypted content starts (a Fernet token's version byte and timestamp)."""
_KEY = b"tollway-sim-openai-reasoning\0"
_MAC = 16
_REASON = "Reason: Encrypted content could not be decrypted or parsed."


def seal(reasoning: str) -> str:
    """``reasoning`` as the ``encrypted_content`` of its item."""
    text = reasoning.encode()
    return _LOOK + base64.b64encode(_mac(text) + text).decode()


def check(item: JSON, stored: Callable[[str], bool]) -> None:
    """Refuse a reasoning ``item`` whose ``encrypted_content`` is not the simulator's, or,
    without one, whose ``id`` is of no item ``stored``, in OpenAI's words."""
    sealed = item.get("encrypted_content")
    if sealed is None:
        _check_stored(item.get("id"), stored)
        return
    if _readable(sealed):
        return
    named = item.get("id")
    if isinstance(named, str) and named:
        what = f"for item {named}"
    else:
        text = str(sealed)
        what = f"{text[:4]}...{text[-4:]}"
    message = f"The encrypted content {what} could not be verified. {_REASON}"
    raise InvalidRequest(message, None, "invalid_encrypted_content")


def _check_stored(item_id: object, stored: Callable[[str], bool]) -> None:
    """Refuse an item sent back by ``item_id`` alone that was never stored."""
    if not isinstance(item_id, str) or stored(item_id):
        return
    message = (
        f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to "
        "false. Try again with `store` set to true, or remove this item from your input."
    )
    raise InvalidRequest(message, "input")


def _readable(sealed: object) -> bool:
    if not isinstance(sealed, str) or not sealed.startswith(_LOOK):
        return False
    try:
        raw = base64.b64decode(sealed[len(_LOOK) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    mac, text = raw[:_MAC], raw[_MAC:]
    return len(mac) == _MAC and hmac.compare_digest(mac, _mac(text))


def _mac(text: bytes) -> bytes:
    return hmac.new(_KEY, text, hashlib.sha256).digest()[:_MAC]
