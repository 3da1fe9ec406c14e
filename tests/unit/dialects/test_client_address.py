"""What ``X-Forwarded-For`` entries and peers are read as, and which are trusted proxies'
(dialects/client_address.py; the whole rule runs through a gateway in
tests/integration/test_trusted_proxies.py)."""

from __future__ import annotations

import ipaddress

import pytest

from tollway.dialects.client_address import TrustedProxies, parse_address


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("  203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:8443", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::ffff:203.0.113.7", "::ffff:cb00:7107"),
    ],
)
def test_an_address_is_read_with_or_without_a_port(entry: str, address: str) -> None:
    assert str(parse_address(entry)) == address


@pytest.mark.parametrize(
    "entry",
    ["", "unknown", "_hidden", "203.0.113.7:http", "[2001:db8::7", "[2001:db8::7]443",
     "2001:db8::7]:443", "203.0.113.300", "10.0.0.0/8", "example.com"],
)  # fmt: skip
def test_anything_else_is_no_address(entry: str) -> None:
    assert parse_address(entry) is None


def test_trust_goes_by_network_and_version() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])

    def trusted(text: str) -> bool:
        return proxies.trusts(ipaddress.ip_address(text))

    assert trusted("10.20.30.40") and trusted("2001:db8::1")
    assert trusted("::ffff:10.0.0.1")  # a dual-stack listener's IPv4 peer
    assert not trusted("11.0.0.1") and not trusted("2001:db9::1")
    # An IPv6 address whose low 32 bits spell 10.x.x.x is no IPv4 proxy.
    assert not trusted("::a00:1")
    assert not TrustedProxies(["::/96"]).trusts(ipaddress.ip_address("10.0.0.1"))
