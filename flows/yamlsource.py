"""Read YAML into plain data while remembering where each value came from.

PyYAML silently keeps the last of two equal keys and silently turns some
unquoted text into numbers or booleans (`52:54:00:12:34:56` is a base-60
integer in YAML 1.1, `no` is False).  Walking the node tree ourselves lets
validation report duplicates, and quote the text the user actually wrote
when YAML read it as something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class Origin:
    line: int  # 1-based
    text: str | None  # the scalar exactly as written; None for mappings and lists
    quoted: bool = False


@dataclass
class Source:
    """Parsed data plus, for each field path, where it was written."""

    data: Any
    origins: dict[str, Origin] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (path, line)

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


# libyaml's parser is ten times faster than PyYAML's own, and gives the same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Source:
    """Parse one YAML document; raise YamlError for text that is not YAML."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        source = Source(None)
        source.data = _convert(loader, node, "", source) if node is not None else None
        return source
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        raise YamlError(f"not valid YAML: {error.problem or error}", line) from None
    except yaml.YAMLError as error:
        raise YamlError(f"not valid YAML: {error}", None) from None
    finally:
        loader.dispose()


class _Duplicate(Exception):
    """A mapping gives a key twice: only `load` can say where."""


class _PlainLoader(_LOADER):  # type: ignore[misc,valid-type]
    """libyaml's safe loader, refusing a mapping that gives a key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # merges (<<) flattened first
        if len(mapping) != len(node.value):
            raise _Duplicate
        return mapping


def load_plain(text: str) -> Source | None:
    """The data alone, without where each value was written; None when the text has a duplicate key
    or is not YAML.

    A valid config never needs the origins: only errors quote lines and written text.  Loading
    without them is a third of the time of `load` (no node walk in Python, no origin per value), so
    a config is first loaded plainly and validated, and loaded again with `load` only to report
    errors (the agent validates every change it is sent: this is most of that work)."""
    try:
        return Source(yaml.load(text, Loader=_PlainLoader))
    except (_Duplicate, yaml.YAMLError, TypeError):  # TypeError: an unhashable key
        return None


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: Source) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        source.origins[path] = Origin(line, node.value, node.style in ("'", '"'))
        return loader.construct_object(node, deep=True)
    source.origins[path] = Origin(line, None)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, join(path, index), source)
                for index, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise YamlError("a mapping key must be a plain value", key_node.start_mark.line + 1)
            child = f"{path}.{key}" if path else str(key)
            if key in result:
                source.duplicates.append((child, key_node.start_mark.line + 1))
            key_text = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            source.origins[child + "#key"] = Origin(key_node.start_mark.line + 1, key_text)
            result[key] = _convert(loader, value_node, child, source)
        return result
    raise YamlError(f"unsupported YAML node {node.tag}", line)
