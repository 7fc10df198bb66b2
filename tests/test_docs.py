"""The docs derive from the code and hold together: the feature table is the schema's own, the
readme stays a front door, and every relative link in readme.md and docs/ resolves."""

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from heart.schema import markdown_table

from conftest import ROOT

DOCS = [ROOT / "readme.md", *sorted((ROOT / "docs").glob("*.md"))]
MD = MarkdownIt("commonmark").enable("table")


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def heading_text(inline) -> str:
    """A heading's text as rendered: code spans keep their content, markup goes."""
    return "".join(c.content for c in inline.children if c.type in ("text", "code_inline"))


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    tokens = MD.parse(path.read_text())
    slugs, counts = set(), {}
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open":
            slug = github_slug(heading_text(inline))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            slugs.add(f"{slug}-{n}" if n else slug)
    return slugs


def relative_links(path: Path) -> list[str]:
    """Targets of links and images outside code, minus URLs with a scheme (http:, mailto:, ...)."""
    targets = []
    for token in MD.parse(path.read_text()):
        for child in token.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if target and not re.match(r"^[a-z][a-z0-9+.-]*:", str(target), re.I):
                targets.append(str(target))
    return targets


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.name}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.name}: {target}: no heading with that anchor in {dest.name}")
    return problems


def test_feature_table_is_generated_from_the_schema():
    text = (ROOT / "docs" / "data.md").read_text()
    block = text.split("<!-- schema-table:start -->\n")[1].split("<!-- schema-table:end -->")[0]
    assert block.strip() == markdown_table().strip(), "regenerate the table: see docs/data.md, 'Features'"


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "readme.md").read_text()
    head = readme[: readme.index("## Layout")]
    assert "make run" in head and "make test" in head


def test_readme_is_a_front_door():
    lines = (ROOT / "readme.md").read_text().splitlines()
    assert len(lines) <= 200, f"readme.md has {len(lines)} lines: move details into docs/"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_readme_links_into_every_doc():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "readme.md")}
    assert {p.resolve() for p in DOCS[1:]} <= linked


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Fairness: `fairness_check.py`", "fairness-fairness_checkpy"),
        ("Deploy: container, CI and Kubernetes", "deploy-container-ci-and-kubernetes"),
        ("Why `/predict` is fast", "why-predict-is-fast"),
        (
            "What a client timeout meets at rising concurrency: `make timeouts`",
            "what-a-client-timeout-meets-at-rising-concurrency-make-timeouts",
        ),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading_text(MD.parseInline(heading)[0])) == slug


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#same-1) [ok](#page) [ok](https://example.org/x) `[code](nowhere.md)`\n\n"
        "[gone](missing.md) [bad anchor](other.md#nope) ![img](figures/none.png) [self](#nope)\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md: no such file",
        "page.md: other.md#nope: no heading with that anchor in other.md",
        "page.md: figures/none.png: no such file",
        "page.md: #nope: no heading with that anchor in page.md",
    ]
