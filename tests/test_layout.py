"""The package reads top-down in four wings: scripts -> {serving, analyses, clients} -> core -> schema.

Walks every import of heart/ (module level and inside functions) from the source, so a new
module that imports upward, or closes a circle, fails here rather than in a reader's head.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "heart"
SCRIPTS = {p.stem for p in ROOT.glob("*.py")} - {"conftest"}
WINGS = ("serving", "analyses", "clients")
# A wing may use another wing's public module, named here: the clients check replies against the
# contract, and live drift runs the drift analysis' tests and the performance estimate (CBPE).
ACROSS = {
    ("clients", "heart.serving.contract"),
    ("serving", "heart.analyses.drift"),
    ("serving", "heart.analyses.performance"),
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def wing(module: str) -> str:
    """serving, analyses or clients; "core" for heart.* outside them."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else "core"


def imports_of(module: str) -> set[str]:
    """The modules of ours (and the scripts) that `module` imports, resolved to module names."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] in SCRIPTS:
                found.add(name.split(".")[0])
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name != "heart":
                found.add(name)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_walk_sees_the_imports_it_is_meant_to_judge():
    """The walk is not vacuous: known edges of each kind are found."""
    assert "heart.schema" in GRAPH["heart.data"]
    assert "heart.serving.contract" in GRAPH["heart.clients.client"]
    assert "heart.analyses.drift" in GRAPH["heart.serving.live_drift"]  # an import inside a function
    assert "heart.serving.settings" in GRAPH["heart.serving.run"]  # a relative import
    assert wing("heart.serving.app") == "serving" and wing("heart.model") == "core"


def test_schema_imports_nothing_of_ours():
    assert GRAPH["heart.schema"] == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_goes_up_or_across(module):
    mine = wing(module)
    for target in GRAPH[module]:
        assert target not in SCRIPTS, f"{module} imports the script {target}.py"
        theirs = wing(target)
        if mine == "core":
            assert theirs == "core", f"the core module {module} imports the wing module {target}"
        elif theirs not in ("core", mine):
            assert (mine, target) in ACROSS, f"{module} ({mine}) imports {target} ({theirs}), not a public module"


def test_no_circles():
    done, on_path = set(), []

    def visit(node):
        if node in on_path:
            raise AssertionError("import circle: " + " -> ".join([*on_path[on_path.index(node) :], node]))
        if node in done:
            return
        on_path.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt in GRAPH:
                visit(nxt)
        on_path.pop()
        done.add(node)

    for module in sorted(GRAPH):
        visit(module)


def test_a_planted_circle_is_found():
    """The circle check itself: two modules importing each other are caught."""
    saved = dict(GRAPH)
    GRAPH["heart.decision"] = {*GRAPH["heart.decision"], "heart.schema"}
    GRAPH["heart.schema"] = {"heart.decision"}
    try:
        with pytest.raises(AssertionError, match="import circle"):
            test_no_circles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


SOURCES = sorted([*MODULES.values(), *(ROOT / f"{s}.py" for s in SCRIPTS)])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_fit_on_a_screen(path):
    lines = path.read_text().splitlines()
    if path.is_relative_to(PACKAGE):
        assert len(lines) <= MAX_MODULE_LINES, f"{len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{node.name} (line {node.lineno}) has {length} lines"


# ---------------------------------------------------------------- the docs' layouts follow the tree

WING_MODULES = {w: {p.stem for p in (PACKAGE / w).glob("*.py")} - {"__init__"} for w in WINGS}
CORE_MODULES = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}


def readme_layout() -> dict[str, str]:
    """readme.md's Layout block, by entry: its first word (a script, `heart/`, a core module, a wing
    as `serving/`) -> the entry's text, its continuation lines included."""
    from markdown_it import MarkdownIt

    text = (ROOT / "readme.md").read_text()
    section = text[text.index("## Layout") :]
    fence = next(t for t in MarkdownIt("commonmark").parse(section) if t.type == "fence")
    entries: dict[str, str] = {}
    key = ""
    for line in fence.content.splitlines():
        if line[:1] != " " or (line[:2] == "  " and line[2:3] != " "):
            key = line.split()[0]
            entries[key] = line
        else:
            entries[key] += " " + line.strip()
    return entries


def named(text: str) -> set[str]:
    """The module stems an entry names: `name.py`, a bare name, and `<name>_report` for each name."""
    words = set(re.findall(r"\b(\w+)(?:\.py)?\b", text))
    return words | ({f"{w}_report" for w in words} if "<name>_report" in text else set())


def test_the_readme_layout_names_every_script_and_module():
    entries = readme_layout()
    assert {k.removesuffix(".py") for k in entries if k.endswith(".py") and "/" not in k} >= SCRIPTS
    assert {k.removesuffix(".py") for k in entries if k.endswith(".py")} - SCRIPTS == CORE_MODULES
    for w in WINGS:
        entry = entries[f"{w}/"]
        assert WING_MODULES[w] <= named(entry), f"readme.md's {w}/ misses {sorted(WING_MODULES[w] - named(entry))}"
        files = set(re.findall(r"(?<![>\w])(\w+)\.py\b", entry))  # not <name>_report.py
        assert files <= WING_MODULES[w], f"readme.md's {w}/ names {sorted(files - WING_MODULES[w])}, not in the tree"


def test_the_wings_own_lists_follow_the_tree():
    """serving/ and analyses/ list their modules in their __init__ docstring; docs/serving.md tables serving/."""
    for w in ("serving", "analyses"):
        listed = named(ast.get_docstring(ast.parse((PACKAGE / w / "__init__.py").read_text())))
        assert WING_MODULES[w] <= listed, f"heart/{w}/__init__.py misses {sorted(WING_MODULES[w] - listed)}"
    table = (ROOT / "docs" / "serving.md").read_text().split("## Layout of `heart/serving/`")[1].split("\n## ")[0]
    cells = " ".join(line.split("|")[1] for line in table.splitlines() if line.startswith("| `"))
    assert set(re.findall(r"`(\w+)\.py`", cells)) == WING_MODULES["serving"]


def test_every_module_path_in_the_docs_exists():
    """heart/explain.py, heart/telemetry.py: a file the docs or a comment name must be there."""
    texts = {p: p.read_text() for p in [ROOT / "readme.md", *(ROOT / "docs").glob("*.md"), *PACKAGE.rglob("*.py")]}
    missing = {
        f"{p.relative_to(ROOT)}: {m}"
        for p, text in texts.items()
        for m in re.findall(r"\b((?:heart|bench|tests)/[\w/]+\.py)\b", text)
        if not (ROOT / m).exists()
    }
    assert missing == set()
