"""The docs derive from the code and hold together: the feature table is the schema's own, the
readme stays a front door, and every relative link in readme.md and docs/ resolves."""

import json
import re
import shlex
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from bench import docgen, smoke

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


@pytest.fixture(scope="module")
def generate_from(tmp_path_factory):
    """bench.docgen on the model `python train.py --no-cv` writes in a process of its own (the same
    seeds give the same Pipeline and model_version in seconds; the smoke stage checks these passages
    again with the real train.py's model). Not the session's model, nor one trained in this process:
    model_version hashes the Pipeline's pickle, whose bytes depend on what the process ran before
    (a full suite run once gave another version, in a pytest-xdist worker that had run other tests)."""
    docgen.use(docgen.trained_model(tmp_path_factory.mktemp("docgen")))
    yield
    docgen.use(None)


def test_the_generated_passages_match_the_code_and_the_model(generate_from, capsys):
    """Every cog block of readme.md and docs/ (example replies, model_version, parity, the schema's
    table, the smoke budgets; the run's figures by the model_version they name): `make docs` if not."""
    code = docgen.run_cog(docgen.DOCS, check=True)
    assert code == 0, capsys.readouterr().out[-4000:]


def test_a_stale_reply_or_figure_fails_the_check(generate_from, tmp_path, capsys):
    """The check is not vacuous: an edited probability, and figures from another model, fail it."""
    serving = (ROOT / "docs" / "serving.md").read_text()
    probability = re.search(r'"probability":(0\.\d+)', serving).group(1)
    (tmp_path / "serving.md").write_text(serving.replace(probability, "0.2548121213912964", 1))
    assert docgen.run_cog([tmp_path / "serving.md"], check=True) == 5
    assert "0.2548121213912964" in capsys.readouterr().out
    version = docgen.facts().version
    analyses = (ROOT / "docs" / "analyses.md").read_text()
    assert f"`{version}`" in analyses
    (tmp_path / "analyses.md").write_text(analyses.replace(version, "1.0.0-f6bff39d592a"))
    assert docgen.run_cog([tmp_path / "analyses.md"], check=True) != 0
    assert f"not from the model the code trains ({version})" in capsys.readouterr().err


def test_runnable_commands_are_found_with_their_documented_replies():
    commands = smoke.runnable_commands(docgen.DOCS)
    files = {name for name, _, _ in commands}
    assert {"readme.md", "serving.md"} <= files
    readme = [(c, r) for name, c, r in commands if name == "readme.md"]
    assert len(readme) == 1 and readme[0][0].startswith("curl -s localhost:8000/predict ")
    assert json.loads(readme[0][1])["model_version"]  # the reply the docs show, whole
    assert all(shlex.split(c, comments=True)[0] == "curl" for _, c, _ in commands)


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
