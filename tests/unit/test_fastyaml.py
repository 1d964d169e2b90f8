"""flows.fastyaml gives exactly what PyYAML's safe_load gives, or declines (Unsupported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import bigconfig
from flows import fastyaml, yamlsource
from flows.config import parse_config
from tests.conftest import PROJECT

FILES = sorted([*PROJECT.glob("examples/*.yaml"), *PROJECT.glob("tests/data/configs/*.yaml"),
                *PROJECT.glob("tests/replay/*.yaml")])


def same_or_declined(text: str) -> bool:
    """True when the fast reader read the text as PyYAML does; False when it declined."""
    try:
        fast = fastyaml.load(text)
    except fastyaml.Unsupported:
        return False
    exact = yaml.safe_load(text)
    assert fast == exact and _types(fast) == _types(exact), text
    return True


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(Path(path).relative_to(PROJECT)))
def test_every_file_of_the_repository_reads_as_pyyaml_reads_it(path: Path) -> None:
    same_or_declined(path.read_text())


def test_the_configs_take_the_fast_way() -> None:
    for path in [*PROJECT.glob("examples/*.yaml"), *PROJECT.glob("tests/data/configs/*.yaml")]:
        assert same_or_declined(path.read_text()), path
    assert same_or_declined(yaml.safe_dump(bigconfig.generate(2000), default_flow_style=None, sort_keys=False,
                                           width=200))


@pytest.mark.parametrize("text", [
    "a: no\nb: yes\nc: On\nd: ~\ne: null\nf:\ng: 'no'\n",
    "mac: 52:54:00:12:34:56\n",  # a base-60 integer to YAML 1.1
    "a: 0x1000\nb: -0x10\nc: 012\nd: 1_000\ne: 1.5\nf: +7\ng: -0\n",
    "a: 2001-12-14\nb: .inf\nc: =\n",
    "a: x # comment\n# full line\nb: 'x # not a comment'\nc: \"y\"  # comment\n",
    "a: x#y\n",
    "a:\n- 1\n- [2, 'b', c]\n- {k: v, 'q': 1}\nb: {}\nc: []\n",
    "a:\n  - k: v\n    l: w\n  - - nested\n",
    "a: 1\na: 2\n", "{a: 1, a: 2}\n", "a: {x: 1, x: 2}\n",
    "a: &anchor 1\nb: *anchor\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  text\n",
    "a: multi\n  line\n", "a: 'it''s'\n", 'a: "tab\\t"\n', "? complex\n: key\n", "--- \na: 1\n",
    "a: {b: {c: 1}}\n", "a: [1, [2]]\n", "a: {b:1}\n", "a: {b: }\n", "a: b: c\n", "a : 1\n",
    "a:\n  b: 1\n c: 2\n", "a: 1\n  b: 2\n", "- a\n- b\n", "plain\n", "", "# only a comment\n",
    "a: http://x.example/y\nb: a,b\nc: '#'\n", "a: {x: 'p, q', y: \"r: s\"}\n", "1: one\ntrue: t\n",
    "\ufeffa: 1\n", "a: b\x07c\n", "a: b\u2028c\n", "a: b\x85c\n", "a: \u00e9t\u00e9\n", "a: [x, ]\n", "a: {x: 1, }\n", "a: [x,, y]\n", "a: -\n", "a: - b\n", "- - a\n",
])
def test_tricky_documents_read_as_pyyaml_reads_them_or_are_declined(text: str) -> None:
    same_or_declined(text)


scalars = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.none(),
                    st.text(alphabet="abcyesnoNOtrue0123456789:._-#', {}[]x", max_size=12))
keys = st.text(alphabet="abnoy01_-.:", min_size=1, max_size=6)
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, documents, min_size=1, max_size=4), st.sampled_from([None, False, True]))
def test_any_dumped_document_reads_as_pyyaml_reads_it(data: dict[str, Any], flow: bool | None) -> None:
    same_or_declined(yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, width=200))


def test_an_invalid_fast_read_config_still_reports_the_line_and_the_written_text() -> None:
    text = (PROJECT / "examples" / "seed.yaml").read_text()
    assert isinstance(yamlsource.load(text), yamlsource.Source)
    bad = text.replace("segmentation_id: 1}", "segmentation_id: no}", 1)
    assert bad != text
    with pytest.raises(Exception) as raised:
        parse_config(bad)
    message = "\n".join(str(error) for error in raised.value.errors)  # type: ignore[attr-defined]
    assert "(line " in message
