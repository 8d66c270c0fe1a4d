"""The repository stands on its own: what code and docs cite is in the repository.

- No tracked file cites the product brief or notes that lived outside the repository, nor a
  folder on a developer's machine: a clone has neither.
- Every ``docs/<page>.md#<anchor>`` citation in any tracked file names an existing page and
  one of its headings (GitHub's heading slugs), and every relative Markdown link of the
  README and of ``docs/`` resolves the same way.
- The source files ``docs/`` names exist, and every page is listed in ``docs/README.md``.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Folders of the tree a clone has; used when git cannot list the tracked files.
_TOP = ("core", "schema", "plugins", "tests", "bench", "scripts", "docs", ".ci")

# Written in pieces so that this file does not cite what it forbids.
_OUTSIDE = {
    "the product brief outside the repository": re.compile(r"\b" + "SP" + r"EC\b"),
    "the notes file outside the repository": re.compile(r"\b" + "NO" + r"TES\b"),
    "the architecture notes file": re.compile("ARCHI" + r"TECTURE\.md"),
    "the shared folder outside the repository": re.compile(r"\.\./" + "shared" + r"\b"),
    "a developer's folder": re.compile(
        r"(?<![\w.~-])/(?:" + "ho" + "me|Us" + "ers|ro" + "ot|wo" + r"rk)/[\w.-]"
        r"|\b[A-Z]:\\" + "Us" + r"ers\\"
    ),
}
# "docs/sync.md#incremental-passes", "docs/sharing.md": a citation of a page (and heading).
_CITATION = re.compile(r"(?<![\w/.-])docs/([A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*\.md)(?:#([\w-]+))?")
# A Markdown link's target: [text](target) or [text](target "title").
_LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_SOURCE_PATH = re.compile(r"`((?:core|schema|plugins|tests|bench|scripts)/[\w./-]*[\w/])`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@cache
def tracked_files() -> tuple[Path, ...]:
    """The files of the repository: those git tracks, or (outside a git checkout) the files
    of the top-level folders and the top-level files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode().split("\0")
        paths = [ROOT / name for name in listed if name]
    except (OSError, subprocess.SubprocessError):
        paths = [p for top in _TOP for p in (ROOT / top).rglob("*")]
        paths += [p for p in ROOT.iterdir() if p.is_file()]
        paths = [p for p in paths if ".venv" not in p.parts and "__pycache__" not in p.parts]
    return tuple(sorted(p for p in paths if p.is_file()))


@cache
def text_of(path: Path) -> str | None:
    """The file's text, or ``None`` for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text in lower case, without punctuation
    other than ``-`` and ``_``, spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = re.sub(r"[^\w\- ]", "", text.lower())  # \w keeps letters, digits, "_"
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The heading anchors of a Markdown file, as GitHub makes them (repeats get -1, -2…)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return frozenset(found)


def problem_with(target: Path, anchor: str | None) -> str | None:
    """Why ``target#anchor`` does not resolve, or ``None`` when it does."""
    if not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        known = ", ".join(sorted(anchors(target)))
        return f"no heading with anchor #{anchor} (the page has: {known})"
    return None


def test_nothing_cites_what_lives_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for what, pattern in _OUTSIDE.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:120]}")
    assert not found, "Cite docs/ instead:\n" + "\n".join(found)


def test_docs_citations_resolve() -> None:
    cited, broken = 0, []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _CITATION.finditer(line):
                cited += 1
                problem = problem_with(DOCS / match.group(1), match.group(2))
                if problem:
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}: {problem}")
    assert not broken, "\n".join(broken)
    assert cited >= 20  # the code does cite the docs: a regex that matched nothing would pass


def test_markdown_links_of_readme_and_docs_resolve() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    checked, broken = 0, []
    for page in pages:
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if _FENCE.match(line):
                fenced = not fenced
            if fenced:
                continue
            for match in _LINK.finditer(line):
                target = match.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                checked += 1
                problem = problem_with((page.parent / file_part).resolve() if file_part else page,
                                       anchor or None)
                if problem:
                    broken.append(f"{page.relative_to(ROOT)}:{number}: ({target}): {problem}")
    assert not broken, "\n".join(broken)
    assert checked >= 20


def test_source_files_named_by_docs_exist() -> None:
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for match in _SOURCE_PATH.finditer(line):
                if not (ROOT / match.group(1)).exists():
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {match.group(1)}")
    assert not missing, "docs/ names files that are not in the repository:\n" + "\n".join(missing)


def test_every_docs_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= listed, f"not listed in docs/README.md: {sorted(pages - listed)}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("OAuth sign-in (Google, Microsoft)", "oauth-sign-in-google-microsoft"),
        ("Sync states and errors", "sync-states-and-errors"),
        ("`ProviderSpec` in short", "providerspec-in-short"),
        ("New mail: IDLE and polling", "new-mail-idle-and-polling"),
        ("The [Sent](x.md) copy", "the-sent-copy"),
        ("snake_case — and dashes", "snake_case--and-dashes"),
    ],
)
def test_slugs_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Same\n\n## Same\n\n```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"title", "same", "same-1"}
    assert problem_with(page, "same-1") is None
    assert "no heading" in (problem_with(page, "not-a-heading") or "")
    assert problem_with(tmp_path / "missing.md", None) == "no such file"
    forbidden = [
        "see " + "SP" + "EC §5", "(" + "NO" + "TES.md)", "../" + "shared/x", "/" + "home/alice/x",
        "/" + "work/main/core", "C:\\" + "Users\\bob",
    ]
    for line in forbidden:
        assert any(p.search(line) for p in _OUTSIDE.values()), line
    allowed = ["ProviderSpec", "SPECIAL-USE", "SPECS = {}", "~/.local/share/salesinbox", "/var/tmp/x",
               "sqlite:///tmp/x.sqlite3", "notes"]
    for line in allowed:
        assert not any(p.search(line) for p in _OUTSIDE.values()), line
    cited = [m.group(1, 2) for m in _CITATION.finditer("see docs/sync.md#folders and docs/views.md.")]
    assert cited == [("sync.md", "folders"), ("views.md", None)]
