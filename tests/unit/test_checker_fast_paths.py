"""The checker's fast paths for MACs and IPv4 addresses decide as the general ones do."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.checker import Checker
from flows.fields import ipv4_quad
from flows.yamlsource import Source

octets = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "", "1a", "-1"]))


def _general(text: str) -> tuple[bool, str | None]:
    """(valid unicast IPv4 for a port, its canonical text) by ipaddress alone."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False, None
    if address.version != 4 or address.is_unspecified or address.is_multicast or address.is_loopback \
            or address.is_reserved:
        return False, None
    return True, str(address)


@settings(max_examples=500, deadline=None)
@given(st.tuples(octets, octets, octets, octets).map(".".join))
def test_a_port_address_is_judged_as_ipaddress_judges_it(text: str) -> None:
    check = Checker(Source(None))
    got = check.tenant_ip("hosts.h.ports[0].ip", text)
    valid, canonical = _general(text)
    assert (got is not None) == valid, text
    assert got == canonical
    if ipv4_quad(text) is not None:
        assert ipv4_quad(text) == int(ipaddress.IPv4Address(text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFg:", max_size=20))
def test_a_mac_is_judged_as_six_hex_pairs(text: str) -> None:
    check = Checker(Source(None))
    parts = text.split(":")
    pairs = len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)
    usable = pairs and not int(parts[0], 16) & 1 and text.lower() != "00:00:00:00:00:00"
    assert (check.mac("m", text) is not None) == usable, text
