"""The Jinja2 templates of the page at / (heart.serving.pages) and of reports/index.html (heart.analyses.html_report)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATE_DIR = Path(__file__).resolve().parent


def templates() -> Environment:
    """The Jinja2 environment for these templates (HTML autoescaped)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
