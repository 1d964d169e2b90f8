"""A fast reader for the plain shape configs have, giving what PyYAML's SafeLoader gives, or nothing.

A 100k-flow config is 3.3 MB of YAML: libyaml's parser alone took 2.3 s
to build its node tree, and walking that tree for every value's origin
another 2.8 s.  Configs, though, use a small part of YAML: block mappings
and sequences, one-line flow mappings and sequences, plain and simply
quoted scalars, comments.  This reader handles exactly that part, line by
line, and raises `Unsupported` on anything else (anchors, tags, block or
multi-line scalars, escapes, duplicate keys, a number in a form it does
not build itself, ...): the caller then reads the text with libyaml as
before, so every document means what PyYAML says it means, and every
error is reported by the exact reader with its line.  Plain scalars are
resolved with PyYAML's own implicit resolvers (YAML 1.1: `no` is False,
`52:54:00:12:34:56` a base-60 integer), so a scalar gets PyYAML's type.
It keeps no origins: those are read (exactly) only when an error needs one.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.reader import Reader
from yaml.resolver import Resolver

_RESOLVERS = Resolver.yaml_implicit_resolvers  # first character -> [(tag, regexp)]
_BOOLS = SafeConstructor.bool_values
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_HEX = re.compile(r"([-+]?)0x([0-9a-fA-F]+)")
# YAML 1.1's line breaks besides \n, and what PyYAML's reader refuses (it then reports where).
_ODD = re.compile(f"[\x85\u2028\u2029]|{Reader.NON_PRINTABLE.pattern}")
_NOT_PLAIN_START = frozenset("&*!|>%@`?,[]{}#'\"")
# One `key: value` of a one-line flow mapping: a plain key, a plain or simply quoted value.
_FLOW_ITEM = re.compile(r"\s*([^\s,{}\[\]:'\"#&*!|>%@`?-][^,{}\[\]:'\"#]*?)\s*:(?:\s+|(?=[,}]|$))"
                        r"('[^']*'|\"[^\"\\]*\"|[^,{}\[\]'\"#]*?)\s*(?:,|$)")
_FLOW_VALUE = re.compile(r"\s*('[^']*'|\"[^\"\\]*\"|[^,{}\[\]'\"#]*?)\s*(?:,|$)")
_KEY = re.compile(r"([^\s,{}\[\]:'\"#&*!|>%@`?-][^:'\"#]*?)\s*:(?:\s+(.*))?$")


class Unsupported(ValueError):
    """The text uses YAML this reader does not handle; read it with libyaml instead."""


def load(text: str, max_depth: int = 32, max_number_digits: int = 80) -> Any:
    """The document as PyYAML's safe_load would give it; raises Unsupported otherwise."""
    lines = _lines(text)
    if not lines:
        raise Unsupported("empty document")
    if re.search(rf"[0-9a-fA-F]{{{max_number_digits + 1}}}", text):
        raise Unsupported("a number longer than any field takes")  # the exact reader keeps it as text
    value, end = _block(lines, 0, lines[0][0], max_depth)
    if end != len(lines):
        raise Unsupported("text after the document")
    return value


def _lines(text: str) -> list[tuple[int, str]]:
    """(indent, content) of each line that holds something; comments dropped."""
    if "\t" in text or "\\" in text or "\r" in text or "\ufeff" in text or _ODD.search(text):
        raise Unsupported("tabs, escapes, carriage returns, a byte order mark, YAML's other line breaks "
                          "or characters YAML refuses")
    result = []
    for raw in text.split("\n"):
        content = raw.strip()
        if not content or content[0] == "#":
            continue
        if "#" in content:
            content = _uncomment(content)
        if content in ("---", "...") or content.startswith(("--- ", "%")):
            raise Unsupported("document markers or directives")
        result.append((len(raw) - len(raw.lstrip(" ")), content))
    return result


def _uncomment(content: str) -> str:
    """The line without its ` # comment` (a '#' inside quotes is text); any other '#' is Unsupported."""
    quote = ""
    for index, char in enumerate(content):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"" and (index == 0 or content[index - 1] in " {[,:"):
            quote = char
        elif char == "#":
            if index == 0 or content[index - 1] != " ":
                raise Unsupported("a '#' inside a value")
            return content[:index].rstrip()
    raise Unsupported("a '#' inside quotes")


def _block(lines: list[tuple[int, str]], pos: int, indent: int, depth: int) -> tuple[Any, int]:
    """`depth`: how many more levels of nesting may follow (deeper is Unsupported: the exact reader
    reports it)."""
    if depth <= 0:
        raise Unsupported("nested deeper than a config may be")
    content = lines[pos][1]
    if content == "-" or content.startswith("- "):
        return _sequence(lines, pos, indent, depth - 1)
    return _mapping(lines, pos, indent, depth - 1)


def _mapping(lines: list[tuple[int, str]], pos: int, indent: int, depth: int) -> tuple[dict[Any, Any], int]:
    result: dict[Any, Any] = {}
    count = len(lines)
    while pos < count:
        line_indent, content = lines[pos]
        if line_indent < indent:
            break
        if line_indent > indent or content == "-" or content.startswith("- "):
            raise Unsupported("unexpected indentation")
        match = _KEY.match(content)
        if match is None:
            raise Unsupported("not a plain `key: value` line")
        key = _scalar(match.group(1))
        if isinstance(key, float) or key in result:
            raise Unsupported("a duplicate or unusual key")
        rest = match.group(2)
        pos += 1
        if rest:
            result[key] = _inline(rest)
            continue
        if pos < count and (lines[pos][0] > indent or (lines[pos][0] == indent and (
                lines[pos][1] == "-" or lines[pos][1].startswith("- ")))):
            result[key], pos = _block(lines, pos, lines[pos][0], depth)
        else:
            result[key] = None
    return result, pos


def _sequence(lines: list[tuple[int, str]], pos: int, indent: int, depth: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    count = len(lines)
    while pos < count:
        line_indent, content = lines[pos]
        if line_indent < indent or (line_indent == indent and not (content == "-" or content.startswith("- "))):
            break
        if line_indent > indent:
            raise Unsupported("unexpected indentation")
        item = content[1:].lstrip(" ")
        if not item:  # the item is the block below
            pos += 1
            if pos < count and lines[pos][0] > indent:
                value, pos = _block(lines, pos, lines[pos][0], depth)
                result.append(value)
            else:
                result.append(None)
            continue
        if item[0] not in "{['\"" and _KEY.match(item):  # `- key: value`, a mapping at the item's column
            column = indent + len(content) - len(item)
            lines[pos] = (column, item)
            if depth <= 0:
                raise Unsupported("nested deeper than a config may be")
            value, pos = _mapping(lines, pos, column, depth - 1)
            result.append(value)
            continue
        result.append(_inline(item))
        pos += 1
    return result, pos


def _inline(text: str) -> Any:
    """A value on one line: a flow mapping, a flow sequence, a quoted or plain scalar."""
    first = text[0]
    if first == "{":
        return _flow_mapping(text)
    if first == "[":
        return _flow_sequence(text)
    if first in "'\"":
        return _quoted(text)
    return _scalar(text)


def _quoted(text: str) -> str:
    quote = text[0]
    if len(text) < 2 or text[-1] != quote or quote in text[1:-1]:
        raise Unsupported("a quoted scalar with escapes or text after it")
    return text[1:-1]


def _flow_mapping(text: str) -> dict[Any, Any]:
    if text[-1] != "}":
        raise Unsupported("a flow mapping over several lines")
    inner = text[1:-1].strip()
    result: dict[Any, Any] = {}
    pos, end = 0, len(inner)
    while pos < end:
        match = _FLOW_ITEM.match(inner, pos)
        if match is None or match.end() == pos:
            raise Unsupported("a flow mapping this reader does not handle")
        key = _scalar(match.group(1))
        if isinstance(key, float) or key in result:
            raise Unsupported("a duplicate or unusual key")
        value = match.group(2)
        result[key] = _quoted(value) if value[:1] in ("'", '"') else _scalar(value)
        pos = match.end()
    return result


def _flow_sequence(text: str) -> list[Any]:
    if text[-1] != "]":
        raise Unsupported("a flow sequence over several lines")
    inner = text[1:-1].strip()
    result: list[Any] = []
    pos, end = 0, len(inner)
    while pos < end:
        match = _FLOW_VALUE.match(inner, pos)
        if match is None or match.end() == pos:
            raise Unsupported("a flow sequence this reader does not handle")
        value = match.group(1)
        if not value:
            raise Unsupported("an empty flow sequence entry")
        result.append(_quoted(value) if value[0] in ("'", '"') else _scalar(value))
        pos = match.end()
    return result


@functools.lru_cache(maxsize=8192)  # keys and many values repeat (every port's `network:`, `mac:`, `ip:`)
def _scalar(text: str) -> Any:
    """A plain scalar, typed as PyYAML's resolvers type it; forms not built here are Unsupported."""
    if not text:
        return None
    if text[0] in _NOT_PLAIN_START or text.startswith(("- ", ": ")) or text == "-" \
            or ": " in text or text.endswith(":") or " #" in text:
        raise Unsupported("not a plain scalar")
    for tag, regexp in _RESOLVERS.get(text[0], ()):
        if regexp.match(text):
            return _construct(tag, text)
    return text


def _construct(tag: str, text: str) -> Any:
    kind = tag.rsplit(":", 1)[-1]
    if kind == "bool":
        return _BOOLS[text.lower()]
    if kind == "null":
        return None
    if kind == "int":
        if _DECIMAL.fullmatch(text):
            return int(text)
        hexadecimal = _HEX.fullmatch(text)
        if hexadecimal:
            sign, digits = hexadecimal.groups()
            return -int(digits, 16) if sign == "-" else int(digits, 16)
    raise Unsupported(f"a {kind} this reader does not build")
