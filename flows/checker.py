"""Typed reading of untrusted config data, collecting errors instead of raising.

Each reader returns the value (or None) and records an error with the
field's path, so validation carries on and reports everything at once.
When YAML turned unquoted text into something else, the error quotes what
was written, which is the part users cannot see for themselves.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flows import fields, naming
from flows.yamlsource import HugeNumber, Source

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # Neutron's 36-character IDs fit
IFNAME_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
MAC_PATTERN = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


@dataclass(frozen=True)
class ConfigError:
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}: {self.reason}{where}"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:60]!r}" + ("..." if len(value) > 60 else "")
    if isinstance(value, HugeNumber):
        return str(value)
    return f"the number {value!r}"


class Checker:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.errors: list[ConfigError] = []

    def error(self, path: str, reason: str, line: int | None = None) -> None:
        if line is None:
            line = self._line(path)
        self.errors.append(ConfigError(path or "(top level)", reason, line))

    def _line(self, path: str) -> int | None:
        while True:
            line = self.source.line(path)
            if line is not None or not path:
                return line
            path = path.rsplit(".", 1)[0] if "." in path else ""

    def _wrong(self, path: str, value: object, expected: str) -> None:
        self.error(path, f"must be {expected}, not {_describe(value)}")

    def _wrong_text(self, path: str, value: object, expected: str, origin_path: str | None = None) -> None:
        """Text was expected: when YAML turned unquoted text into something else, say so."""
        origin = self.source.origins.get(origin_path or path)
        if origin is not None and origin.text is not None and not origin.quoted \
                and not isinstance(value, (str, dict, list)):
            self.error(path, f"YAML read {origin.text} as {_describe(value)}; "
                       f"quote it: \"{origin.text}\"", origin.line)
            return
        self._wrong(path, value, expected)

    def mapping(self, path: str, value: object, allowed: Iterable[str] | None,
                required: Iterable[str] = ()) -> dict[str, Any] | None:
        if value is None and path:
            value = {}
        if not isinstance(value, dict):
            self._wrong(path, value, "a mapping")
            return None
        result: dict[str, Any] = {}
        allowed = tuple(allowed) if allowed is not None else None
        for key, item in value.items():
            if not isinstance(key, str):
                if allowed is not None:
                    child = f"{path}.{key}" if path else str(key)
                    self._wrong_text(self.key_path(path, key) if path else child, key, "a key",
                                     origin_path=child + "#key")
                else:
                    result[key] = item  # names are checked by the caller
                continue
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(allowed)})"
                self.error(f"{path}.{key}" if path else key, f"unknown key{hint}")
                continue
            result[key] = item
        for key in required:
            if key not in value:
                self.error(f"{path}.{key}" if path else key, "missing", self._line(path))
        return result

    def key_path(self, parent: str, key: object) -> str:
        """The path of a mapping key as the user wrote it (`networks.no`, not `networks.False`)."""
        if isinstance(key, str):  # a text key is what was written (its origins are read only for errors)
            return f"{parent}.{key}"
        origin = self.source.origins.get(f"{parent}.{key}#key")
        written = origin.text if origin is not None and origin.text is not None else key
        return f"{parent}.{written}"

    def name(self, parent: str, key: object) -> str | None:
        """A network or host name used as a mapping key."""
        path = self.key_path(parent, key)
        if not isinstance(key, str):
            self._wrong_text(path, key, "a name", origin_path=f"{parent}.{key}#key")
            return None
        if not NAME_PATTERN.fullmatch(key):
            self.error(path, "a name is 1-64 letters, digits, '_', '.' or '-', starting with a "
                       "letter or digit")
            return None
        return key

    def text(self, path: str, value: object, what: str, shown_path: str | None = None) -> str | None:
        if isinstance(value, str):
            return value
        self._wrong_text(shown_path or path, value, f"a {what}", origin_path=path)
        return None

    def integer(self, path: str, value: object, low: int, high: int, *, hex_text: bool = False,
                what: str = "value") -> int | None:
        limits = f"{low:#x}..{high:#x}" if hex_text else f"{low}..{high}"
        if isinstance(value, HugeNumber):
            self.error(path, f"{value} is outside {limits}")
            return None
        if isinstance(value, str) and hex_text:
            digits = value.lower().removeprefix("0x").replace(":", "")
            if len(digits) > 32 and _is_hex(digits):
                self.error(path, f"a hexadecimal number of {len(digits):,} digits is outside {limits}")
                return None
            try:
                value = int(digits, 16)
            except ValueError:
                shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
                self.error(path, f"{shown} is not a hexadecimal {what}")
                return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(path, value, f"a whole number ({what})")
            return None
        if not low <= value <= high:
            shown = f"{value:#x}" if hex_text else str(value)
            dead = what == "local VLAN" and value == naming.DEAD_VLAN
            extra = f" ({naming.DEAD_VLAN} is Neutron's dead VLAN)" if dead else ""
            self.error(path, f"{shown} is outside {limits}{extra}")
            return None
        return value

    def boolean(self, path: str, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"must be true or false, not {_describe(value)}")
        return None

    def choice(self, path: str, value: object, choices: Collection[str], what: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self._wrong_text(path, value, f"a {what}")
            return None
        if value not in choices:
            self.error(path, f"unknown {what} {value!r} (known: {', '.join(choices)})")
            return None
        return value

    def sequence(self, path: str, value: object) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(path, value, "a list")
            return []
        return value

    def string_list(self, path: str, value: object) -> list[Any]:
        items = self.sequence(path, value)
        seen: set[object] = set()
        for index, item in enumerate(items):
            if isinstance(item, str) and item in seen:
                self.error(f"{path}[{index}]", f"{item} is listed twice")
            seen.add(item if isinstance(item, str) else id(item))
        return items

    def known(self, path: str, value: object, known: Mapping[str, Any], what: str) -> str | None:
        if not isinstance(value, str):
            self._wrong_text(path, value, f"a {what} name")
            return None
        if value not in known:
            self._unknown(path, value, known, what)
            return None
        return value

    def known_key(self, parent: str, key: object, known: Mapping[str, Any], what: str) -> str | None:
        path = self.key_path(parent, key)
        if not isinstance(key, str):
            self._wrong_text(path, key, f"a {what} name", origin_path=f"{parent}.{key}#key")
            return None
        if key not in known:
            self._unknown(path, key, known, what)
            return None
        return key

    def _unknown(self, path: str, value: str, known: Mapping[str, Any], what: str) -> None:
        names = ", ".join(known) if known else "none"
        self.error(path, f"unknown {what} {value!r} ({what}s: {names})")

    def mac(self, path: str, value: object) -> str | None:
        if not isinstance(value, str):
            self._wrong_text(path, value, "a MAC address")
            return None
        if not MAC_PATTERN.fullmatch(value):
            self.error(path, f"{value!r} is not a MAC address (six hex pairs, colon separated)")
            return None
        mac = value.lower()
        if int(value[:2], 16) & 1:
            self.error(path, f"{mac} is a multicast MAC; a port needs a unicast one")
            return None
        if mac == "00:00:00:00:00:00":
            self.error(path, "00:00:00:00:00:00 is not a usable MAC")
            return None
        return mac

    def _address(self, path: str, value: object, what: str, ipv6: bool) -> IPAddress | None:
        if not isinstance(value, str):
            self._wrong_text(path, value, f"an IP address ({what})")
            return None
        quad = fields.ipv4_quad(value)
        if quad is not None:  # the common case, without ipaddress's parser and properties (50k ports: 0.6 s)
            if not _unicast_quad(quad):
                self.error(path, f"{value} is not a unicast address")
                return None
            return ipaddress.IPv4Address(quad)
        try:
            address = _ip_address(value)
        except ValueError:
            self.error(path, f"{value!r} is not an IP address")
            return None
        if address.version == 6 and not ipv6:
            self.error(path, f"{value} is IPv6; {what} are IPv4 (the ARP responder and the testbed's "
                       "tenant subnets are IPv4)")
            return None
        if (address.is_unspecified or address.is_multicast or address.is_loopback or address.is_reserved
                or address == BROADCAST
                or (address.version == 6 and address.is_link_local)):
            local = " (link-local)" if address.version == 6 and address.is_link_local else ""
            self.error(path, f"{value} is not a unicast address{local}")
            return None
        return address

    def endpoint(self, path: str, value: object) -> str | None:
        """A tunnel endpoint, IPv4 or IPv6, in its canonical text (Neutron hashes the text of an IPv6
        endpoint into the port name, so one address must have one spelling)."""
        address = self._address(path, value, "tunnel endpoints", ipv6=True)
        return str(address) if address is not None else None

    def tenant_ip(self, path: str, value: object) -> str | None:
        if isinstance(value, str):
            quad = fields.ipv4_quad(value)
            if quad is not None and _unicast_quad(quad):
                # Already ipaddress's spelling (no leading zeros): kept as given, with no address
                # object made and printed again (a config can hold a hundred thousand).
                return value
        address = self._address(path, value, "port addresses", ipv6=False)
        return str(address) if address is not None else None

    def ifname(self, path: str, value: object) -> str | None:
        name = self.text(path, value, "port name")
        if name is None:
            return None
        if not IFNAME_PATTERN.fullmatch(name):
            self.error(path, f"{name!r} is not a port name (1-{naming.IFNAME_MAX} characters, "
                       "no spaces or '/')")
            return None
        return name


@functools.lru_cache(maxsize=16384)  # a config of 1,000 hosts is validated on every change the Neutron source makes
def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _unicast_quad(quad: int) -> bool:
    """Not 0.0.0.0, the broadcast, loopback, multicast or reserved (ipaddress's verdicts on a quad)."""
    return not (quad == 0 or quad == 0xFFFFFFFF or quad >> 24 == 127 or quad >> 28 in (0xE, 0xF))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)

