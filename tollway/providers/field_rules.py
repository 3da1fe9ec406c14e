"""What a strict OpenAI-compatible service renames, ignores or refuses among OpenAI's fields.

The OpenAI codec writes one body for the whole family, fields the client sent included. A
server that validates strictly (Mistral: any field its schema lacks is a 422
``extra_forbidden``, in the body and in each message) needs that body narrowed first, by data
(``FieldRules``) rather than code per provider:

- a field it knows by another name is sent under that name (the client's own use of that name
  wins);
- a field that only steers storage, billing or abuse monitoring is left out (the answer is the
  same without it);
- a field that would change the answer (log probabilities, token biases, audio, ...) is a 400
  naming it, unless its value asks for nothing (null, false, zero, empty, ``["text"]``; but
  ``web_search_options: {}`` asks for a search), when it is left out like the rest;
- a role it lacks is sent as its counterpart (``developer`` as ``system``);
- a tool field it lacks is left out when it is a cache hint (``cache_control``), else a 400;
  a field of a tool's ``function`` it lacks is a 400 unless its value asks for nothing;
- a message field its role lacks is left out when it says nothing (an SDK's echoed
  ``refusal: null``, ``annotations: []``) or is a participant ``name`` (as for every family
  without one); any other is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway.core.errors import InvalidRequest
from tollway.wire.crossing import CACHE_HINT, asks_nothing


@dataclass(frozen=True, slots=True)
class FieldRules:
    """The top-level and message fields one service takes, as data."""

    provider: str
    """The provider's name, for errors (``mistral``)."""
    renamed: Mapping[str, str]
    """OpenAI's name -> the service's (``seed`` -> ``random_seed``)."""
    dropped: frozenset[str]
    """Fields left out: they steer storage, billing or monitoring, never the answer."""
    refused: frozenset[str]
    """Fields the service lacks that would change the answer: a 400 when they ask for
    something."""
    roles: Mapping[str, str]
    """Roles the service lacks -> the role it has for them."""
    message_keys: Mapping[str, frozenset[str]]
    """Per role, the message fields the service takes; a role not listed is not checked."""
    tool_keys: frozenset[str] | None = None
    """The fields of a tool the service takes (``None``: not checked); a client's cache hint
    beside them (``cache_control``) is left out, as for every family that needs none."""
    function_keys: frozenset[str] | None = None
    """The fields of a tool's ``function`` the service takes (``None``: not checked)."""

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (the codec's, changed in place) as the service takes it."""
        for key in [k for k in body if k in self.renamed or k in self.dropped or k in self.refused]:
            value = body.pop(key)
            if key in self.renamed:
                body.setdefault(self.renamed[key], value)
            elif key in self.refused and not asks_nothing(value, key):
                raise InvalidRequest(
                    f"'{key}' is not supported by {self.provider} deployments", param=key
                )
        for index, message in enumerate(body.get("messages") or ()):
            self._message(message, index)
        if self.tool_keys is not None and body.get("tools"):
            self._tools(body["tools"], self.tool_keys)
        if self.function_keys is not None and body.get("tools"):
            self._functions(body["tools"], self.function_keys)
        return body

    def _functions(self, tools: list[Any], allowed: frozenset[str]) -> None:
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict):
                continue
            for key in [k for k in function if k not in allowed]:
                if not asks_nothing(function[key], key):
                    param = f"tools[{index}].function.{key}"
                    raise InvalidRequest(
                        f"'{param}' is not supported by {self.provider} deployments", param=param
                    )
                del function[key]

    def _tools(self, tools: list[Any], allowed: frozenset[str]) -> None:
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict):
                continue
            for key in [k for k in tool if k not in allowed]:
                if key != CACHE_HINT and not asks_nothing(tool[key], key):
                    param = f"tools[{index}].{key}"
                    raise InvalidRequest(
                        f"'{param}' is not supported by {self.provider} deployments", param=param
                    )
                del tool[key]

    def _message(self, message: dict[str, Any], index: int) -> None:
        role = message.get("role")
        if not isinstance(role, str):
            return
        if role in self.roles:
            role = message["role"] = self.roles[role]
        allowed = self.message_keys.get(role)
        if allowed is None:
            return
        for key in [k for k in message if k not in allowed]:
            if key != "name" and not asks_nothing(message[key], key):
                param = f"messages[{index}].{key}"
                raise InvalidRequest(
                    f"'{param}' is not supported by {self.provider} deployments", param=param
                )
            del message[key]
