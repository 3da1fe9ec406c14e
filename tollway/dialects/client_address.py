"""The client's address: the connection's peer, or, when that peer is a reverse proxy the
gateway trusts (``server.trusted_proxies``), the address the proxies say the request came
from (``X-Forwarded-For``).

Each proxy appends the address it had the request from to ``X-Forwarded-For``, so the
header's right end is written by the proxies the gateway trusts, and its left end by
whoever sent the request first, who may put any addresses there. The client is therefore
the right-most address that is not itself a trusted proxy: read from the right, past the
trusted ones, to the first address a trusted one vouches for. A header that cannot be read
that far (an entry that is not an address, such as ``unknown``) vouches for nothing, and the
peer is the client, as it is when the peer is not trusted (its header is the client's own
word: never read) or sent none (a proxy's own health check). When every address is a
trusted one (a client inside the proxies' network), the client is the left-most.

The address is what the unknown-key lookup limit (auth/miss_limit.py) goes by, and what the
request log, the audit trail and the access log record as ``source_ip``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_PEERS = 1024
"""Peers whose trust is remembered (they are the proxies, a handful, when the gateway is
behind them; the memory is emptied when full, so a gateway also reached directly by many
clients does not grow it)."""


class TrustedProxies:
    """The peers whose ``X-Forwarded-For`` is read, and the client address it gives."""

    def __init__(self, networks: Iterable[str]) -> None:
        """``networks``: addresses and CIDR networks (``server.trusted_proxies``, validated
        by the config schema)."""
        parsed = [ipaddress.ip_network(network) for network in networks]
        # By version: an IPv4 address's integer would otherwise be "in" an IPv6 network.
        self._v4 = tuple(n for n in parsed if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in parsed if isinstance(n, ipaddress.IPv6Network))
        self._peers: dict[str, bool] = {}

    def client(self, request: web.BaseRequest) -> str | None:
        """The address ``request`` came from (``None`` when the transport has none)."""
        peer = request.remote
        if peer is None or not self._trusts_peer(peer):
            return peer
        headers = request.headers.getall("X-Forwarded-For", ())
        # Proxies that each add a header instead of appending to one: one list, in order.
        hops = (headers[0] if len(headers) == 1 else ",".join(headers)).split(",")
        client: Address | None = None
        for hop in reversed(hops):
            # Walked past trusted addresses only, which only trusted proxies write (or a
            # client inside their network): no one outside makes the gateway read far.
            client = parse_address(hop)
            if client is None:
                return peer
            if not self.trusts(client):
                break
        return peer if client is None else str(client)

    def trusts(self, address: Address) -> bool:
        """Whether ``address`` is a trusted proxy's (an IPv4-mapped IPv6 address as IPv4)."""
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            if mapped is None:
                return any(address in network for network in self._v6)
            address = mapped
        return any(address in network for network in self._v4)

    def _trusts_peer(self, peer: str) -> bool:
        trusted = self._peers.get(peer)
        if trusted is None:
            address = parse_address(peer)
            trusted = address is not None and self.trusts(address)
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            self._peers[peer] = trusted
        return trusted


def client_address(request: web.BaseRequest, proxies: TrustedProxies | None) -> str | None:
    """The address ``request`` came from: its peer, or with ``proxies`` (the gateway's
    ``proxies``, ``None`` when no proxy is trusted) what the trusted ones say."""
    return request.remote if proxies is None else proxies.client(request)


def parse_address(text: str) -> Address | None:
    """An ``X-Forwarded-For`` entry (or a peer) as an address: ``192.0.2.1``,
    ``2001:db8::1``, and the forms with a port some proxies write (``192.0.2.1:443``,
    ``[2001:db8::1]:443``); ``None`` for anything else."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
