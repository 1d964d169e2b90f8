"""Every document the code, tests, README and configs cite is in the repository, down to the section."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import PROJECT

DOC = re.compile(r"(?<![\w./-])(?:docs/)?([A-Z][A-Z_]*\.md)\b")  # docs/PIPELINE.md, or PIPELINE.md alone
SECTION = re.compile(r"(?<![\w./-])(?:docs/)?([A-Z][A-Z_]*\.md),?\s+\"([^\"]+)\"")  # PIPELINE.md, "Stale learned flows"
OUTSIDE = ("../" + "shared", "shared/" + "design")  # design notes outside the repository
PLACEHOLDERS = {"NAME.md"}  # bench/results/NAME.md: a results file's name pattern, not a document


def _files() -> dict[str, str]:
    """The repository's text files (tracked, or new and not ignored) by path."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT,
                            capture_output=True, text=True, check=True).stdout.split()
    texts = {}
    for name in listed:
        path = PROJECT / name
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # deleted in the work tree, or not text
            continue
    return texts


FILES = _files()


def _resolves(name: str) -> bool:
    return name in PLACEHOLDERS or (PROJECT / "docs" / name).is_file() or (PROJECT / name).is_file()


def test_the_design_notes_are_in_docs() -> None:
    for name in ("PIPELINE.md", "TESTBED.md"):
        assert (PROJECT / "docs" / name).is_file(), name


def test_every_cited_document_exists() -> None:
    missing = [f"{path}: {match.group(0)}" for path, text in FILES.items() for match in DOC.finditer(text)
               if not _resolves(match.group(1))]
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(missing)


def test_every_cited_section_exists() -> None:
    missing = []
    for path, text in FILES.items():
        for match in SECTION.finditer(text):
            name, section = match.groups()
            document = PROJECT / "docs" / name if (PROJECT / "docs" / name).is_file() else PROJECT / name
            headings = [line.lstrip("#").strip() for line in document.read_text().splitlines()
                        if line.startswith("#")] if document.is_file() else []
            if section not in headings:
                missing.append(f"{path}: {name}, \"{section}\"")
    assert not missing, "sections cited but not in their document:\n" + "\n".join(missing)


def test_no_file_points_at_design_notes_outside_the_repository() -> None:
    outside = [f"{path}: {needle}" for path, text in FILES.items() for needle in OUTSIDE if needle in text]
    assert not outside, "\n".join(outside)
