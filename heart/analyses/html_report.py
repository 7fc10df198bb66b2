"""One self-contained HTML page of every analysis: python -m heart.analyses.html_report [--section NAME]

Reads what the scripts already wrote: the model card (model.card.json) and, in the reports
directory, the files each section of heart.analyses.sections names (fairness_<feature>.json,
explainability.json, drift.json, poisoning.json, performance.json and their PNGs). The PNGs
are embedded as data URIs and the page has no script, stylesheet or font from anywhere else,
so it opens offline and can be mailed as one file. Each section gives a
plain-English summary and the command that reproduces it. `--section fairness` (repeatable)
writes that section alone, to <reports>/fairness.html unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jinja2 import UndefinedError
from markupsafe import Markup

from ..cli import output_file
from ..files import atomic_write
from ..templates import templates
from .report import ReportError, mean_sd, num, read_json
from .sections import BY_KEY, SECTIONS, Section

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def build_section(key: str, reports: Path, card_path: Path) -> dict:
    """One section's template context: {"present": False, ...} when its analysis has not run."""
    meta = BY_KEY[key]
    ctx: dict[str, Any] = {"key": key, "title": meta.title, "make_target": meta.make_target, "files": meta.files}
    docs = [(path, read_json(path)) for path in meta.sources(reports, card_path)]
    parts = [_part(meta, path, doc, reports) for path, doc in docs if doc is not None]
    ctx.update(present=bool(parts), parts=parts)
    return ctx


def _part(section: Section, path: Path, doc: dict, reports: Path) -> dict:
    """Build one part; a file missing a field the section needs is named, not a traceback."""
    try:
        return {**section.build(doc, reports, path), "source": str(path)}
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise _malformed(path, e) from None


def _malformed(source: str | Path, e: Exception) -> ReportError:
    return ReportError(
        f"{source}: missing or malformed field ({type(e).__name__}: {e}); re-run the analysis that writes it"
    )


def build_sections(reports: str | Path, card_path: str | Path, sections: tuple[str, ...] = tuple(BY_KEY)) -> list[dict]:
    """The chosen sections' contexts, in the canonical order."""
    unknown = [s for s in sections if s not in BY_KEY]
    if unknown:
        raise ReportError(f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(BY_KEY)}")
    return [build_section(s.key, Path(reports), Path(card_path)) for s in SECTIONS if s.key in sections]


def render(contexts: list[dict], reports: str | Path) -> str:
    """The HTML page of the given section contexts. Each part is rendered on its own, so a
    report missing a field the template needs is named in the error."""
    env = templates()
    env.filters.update(num=num, ms=mean_sd)
    for ctx in contexts:
        template = env.get_template(f"report/{ctx['key']}.html.j2")
        for part in ctx["parts"]:
            try:
                part["body"] = Markup(template.render(part=part))
            except (UndefinedError, KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
                raise _malformed(part["source"], e) from None
    title = "Heart-disease model: analyses" if len(contexts) > 1 else f"Heart-disease model: {contexts[0]['title']}"
    return env.get_template("report.html.j2").render(title=title, sections=contexts, reports=str(reports))


def write(out: str | Path, html: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, html.encode("utf-8"))
    return out


def refresh(reports: Path, card: str | Path) -> str:
    """<reports>/index.html again, after an analysis wrote its files; a broken report of another
    analysis leaves the page as it was and is named on stderr, without failing that analysis."""
    try:
        return str(write(reports / "index.html", render(build_sections(reports, card), reports)))
    except (ReportError, OSError) as e:
        print(f"note: {reports / 'index.html'} not updated: {e}", file=sys.stderr)
        return ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", default="reports", help="directory the analysis scripts wrote into (default reports)")
    p.add_argument("--card", default="model.card.json", help="the model card (default model.card.json)")
    p.add_argument(
        "--section",
        action="append",
        choices=list(BY_KEY),
        help="write only this section (repeatable); default: every section",
    )
    p.add_argument(
        "--out", type=output_file, help="output file (default <reports>/index.html, or <reports>/<section>.html)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = tuple(args.section or BY_KEY)
    default = "index.html" if not args.section else "-".join(sections) + ".html"
    try:
        contexts = build_sections(args.reports, args.card, sections)
        out = write(args.out or Path(args.reports) / default, render(contexts, args.reports))
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    missing = [c["key"] for c in contexts if not c["present"]]
    print(f"wrote {out}" + (f"; not run yet: {', '.join(missing)}" if missing else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
