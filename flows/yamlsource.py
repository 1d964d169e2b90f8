"""Read YAML into plain data while remembering where each value came from.

PyYAML silently keeps the last of two equal keys and silently turns some
unquoted text into numbers or booleans (`52:54:00:12:34:56` is a base-60
integer in YAML 1.1, `no` is False).  Walking the node tree ourselves lets
validation report duplicates, and quote the text the user actually wrote
when YAML read it as something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from flows import fastyaml


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


# libyaml's parser is ten times faster than PyYAML's own, and gives the same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Source:
    """Parse one YAML document; raise YamlError for text that is not YAML."""
    try:
        # Duplicate keys and whatever else the fast reader does not handle go the exact way.
        return Source(fastyaml.load(text), duplicates=[], text=text)
    except fastyaml.Unsupported:
        return _exact(text)


def _exact(text: str) -> Source:
    """libyaml's node tree, walked for every value's origin."""
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
