"""Read YAML into plain data while remembering where each value came from.

PyYAML silently keeps the last of two equal keys and silently turns some
unquoted text into numbers or booleans (`52:54:00:12:34:56` is a base-60
integer in YAML 1.1, `no` is False).  Walking the node tree ourselves lets
validation report duplicates, and quote the text the user actually wrote
when YAML read it as something else.

A config is untrusted text (a file anyone may hand over, a control-socket
request), so reading it is bounded before YAML builds anything: the bytes
must be UTF-8 text (not UTF-16, Latin-1 or binary) of at most MAX_BYTES; a
first pass over libyaml's events (flat, no recursion) refuses nesting deeper
than MAX_DEPTH and more than MAX_NODES values, before libyaml's composer
(which recurses in C, and crashes the process on 100,000 `[`) runs; aliases
may be used, but what they expand to counts against MAX_NODES and MAX_DEPTH
too, and an alias inside its own anchor is refused (a "billion laughs" is an
error in milliseconds, not gigabytes).  A number too long for any field is
kept as a `HugeNumber`, which validation reports as out of range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from flows import collector, fastyaml


@dataclass(frozen=True)
class Origin:
    line: int  # 1-based
    text: str | None  # the scalar exactly as written; None for mappings and lists
    quoted: bool = False


class Source:
    """Parsed data plus, for each field path, where it was written.

    Read by the fast reader (flows.fastyaml), a source keeps its text instead of origins, and
    reads the origins exactly (libyaml's node tree) the first time an error asks for one: a
    valid config never pays for them."""

    def __init__(self, data: Any, origins: dict[str, Origin] | None = None,
                 duplicates: list[tuple[str, int]] | None = None, *, text: str | None = None) -> None:
        self.data = data
        self.duplicates = duplicates if duplicates is not None else []  # (path, line)
        self._origins = origins
        self._text = text

    @property
    def origins(self) -> dict[str, Origin]:
        if self._origins is None:
            self._origins = _exact(self._text).origins if self._text is not None else {}
        return self._origins

    def line(self, path: str) -> int | None:
        origin = self.origins.get(path)
        return origin.line if origin else None

    def written(self, path: str) -> str | None:
        origin = self.origins.get(path)
        return origin.text if origin else None


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def join(path: str, key: object) -> str:
    """Field paths as errors print them: `hosts.c1.ports[0].mac`."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


MAX_BYTES = 8 << 20  # 2.4 times the 100,000-flow benchmark config (3.3 MB)
MAX_DEPTH = 32  # a config nests 5 deep (hosts.h1.ports[0].mac); the testbed section a few more
MAX_NODES = 1_000_000  # values, aliases expanded; the 100,000-flow config has about 210,000
MAX_NUMBER_DIGITS = 80  # 2**64 has 20 digits; no field takes a longer number


@dataclass(frozen=True)
class HugeNumber:
    """An integer too long to be a value of any field (Python would need seconds to convert
    it, or refuse): validation reports it as out of range."""

    text: str

    @property
    def digits(self) -> int:
        return sum(c.isdigit() for c in self.text)

    def __str__(self) -> str:
        return f"a number of {self.digits:,} digits"


def decode(data: bytes) -> str:
    """The text of a config file's bytes; YamlError when they are too many, or not UTF-8 text."""
    if len(data) > MAX_BYTES:
        raise too_large(len(data))
    for bom, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                          (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise YamlError(f"not UTF-8 text: it starts with a {encoding} byte-order mark; save it as UTF-8",
                            None)
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        what = "UTF-16 or UTF-32 text (NUL bytes between the letters)" if _looks_utf16(data) else "binary data"
        raise YamlError(f"not UTF-8 text but {what}: a NUL byte at offset {nul}; a config is UTF-8 YAML text", line)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start:error.start + 1].hex()
        raise YamlError(f"not UTF-8 text: byte 0x{bad} at offset {error.start} ({error.reason}); "
                        "save the file as UTF-8 (Latin-1 and other encodings are not read)", line) from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is harmless


def too_large(size: int) -> YamlError:
    return YamlError(f"{size / (1 << 20):.1f} MiB is more than a config may be ({MAX_BYTES >> 20} MiB)", None)


def _looks_utf16(data: bytes) -> bool:
    head = data[:64]
    return head.count(0) * 3 >= len(head)


# libyaml's parser is ten times faster than PyYAML's own, and gives the same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_VALUES = (yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)


def load(text: str) -> Source:
    """Parse one YAML document; raise YamlError for text that is not YAML or exceeds a limit.

    The fast reader (flows.fastyaml) takes the plain YAML configs are written in; whatever it
    declines (anchors, tags, duplicate keys, deep nesting, long numbers, too many values, ...) is
    read exactly, with every bound of the module docstring checked before libyaml's composer."""
    _check_text(text)
    if _fast_may_read(text):
        try:
            return Source(fastyaml.load(text, MAX_DEPTH, MAX_NUMBER_DIGITS), duplicates=[], text=text)
        except fastyaml.Unsupported:
            pass
    return _exact(text)


def _fast_may_read(text: str) -> bool:
    """At most MAX_NODES values for certain: a line or a flow entry holds at most a key and a value."""
    return 2 * (text.count(",") + text.count("\n") + 1) <= MAX_NODES


def _exact(text: str) -> Source:
    """libyaml's node tree, bounded (the prescan, what aliases expand to), walked for every value's origin.
    `text` has passed `_check_text` (in `load`)."""
    # the collector would walk the growing node tree again and again: 3/4 of the time
    with collector.paused():
        try:
            aliases = _prescan(text)
            loader = _LOADER(text)
            try:
                node = loader.get_single_node()
                source = Source(None)
                if node is not None:
                    if aliases:  # without them the tree is what the prescan counted
                        _expansion(node)
                    source.data = _convert(loader, node, "", source)
                return source
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark else None
            raise YamlError(f"not valid YAML: {error.problem or error}", line) from None
        except yaml.YAMLError as error:
            raise YamlError(f"not valid YAML: {error}", None) from None


def _check_text(text: str) -> None:
    if len(text) > MAX_BYTES:  # characters: a text from a request has no bytes to count
        raise YamlError(f"{len(text):,} characters is more than a config may be ({MAX_BYTES >> 20} MiB)", None)
    if "\x00" in text:
        raise YamlError("binary data, not YAML text (a NUL character)", text.count("\n", 0, text.index("\x00")) + 1)


def _prescan(text: str) -> int:
    """libyaml's events, one after another (its parser keeps its own stack; nothing recurses):
    refuse deep nesting and too many values before the composer builds anything.  Returns how
    many aliases the text uses."""
    loader = _LOADER(text)
    depth = values = aliases = 0
    try:
        while True:
            event = loader.get_event()
            if event is None:
                return aliases
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
            if isinstance(event, _VALUES):
                values += 1
                if values > MAX_NODES:
                    raise YamlError(f"more than {MAX_NODES:,} values; a config of 100,000 flows has about "
                                    "210,000", event.start_mark.line + 1)
            if isinstance(event, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(f"nested more than {MAX_DEPTH} deep (a config needs 5)", event.start_mark.line + 1)
            elif isinstance(event, _CLOSE):
                depth -= 1
    finally:
        loader.dispose()


def _expansion(root: yaml.Node) -> None:
    """What the document's aliases expand to: at most MAX_NODES values, nested at most MAX_DEPTH
    deep, and no alias inside its own anchor (the node graph must be a tree once expanded).

    Each distinct node is sized once (aliases share nodes), with an explicit stack: an alias chain
    may be deeper than Python's recursion limit."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise YamlError(f"its aliases expand to more than {MAX_NODES:,} values (a \"billion laughs\"?)",
                                node.start_mark.line + 1)
            if depth[key] > MAX_DEPTH + 1:
                raise YamlError(f"its aliases nest more than {MAX_DEPTH} deep", node.start_mark.line + 1)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YamlError("an alias refers to a collection it is inside of (it would never end)",
                                child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """A scalar's value, as YAML reads it; a number too long for any field stays text (HugeNumber)."""
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_NUMBER_DIGITS:
        return HugeNumber(node.value)
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError) as error:  # a date like 2001-13-45, say
        raise YamlError(f"YAML cannot read {node.value[:40]!r}: {error}", node.start_mark.line + 1) from None


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: Source) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        source.origins[path] = Origin(line, node.value, node.style in ("'", '"'))
        return _scalar(loader, node)
    source.origins[path] = Origin(line, None)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, join(path, index), source)
                for index, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("a mapping key must be a plain value", key_node.start_mark.line + 1)
            key = _scalar(loader, key_node)
            if isinstance(key, HugeNumber):
                key = key.text
            child = f"{path}.{key}" if path else str(key)
            if key in result:
                source.duplicates.append((child, key_node.start_mark.line + 1))
            source.origins[child + "#key"] = Origin(key_node.start_mark.line + 1, key_node.value)
            result[key] = _convert(loader, value_node, child, source)
        return result
    raise YamlError(f"unsupported YAML node {node.tag}", line)
