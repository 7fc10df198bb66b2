"""The sections of reports/index.html, each declared once, here: its key, title, make target, the
files it reads and the builder of its template context. The page (heart.analyses.html_report), its
--section choices and the smoke check (bench.smoke) all read this registry.

A new analysis brings a module, a script, a <name>_report module with section(doc, reports, path),
the template heart/templates/report/<key>.html.j2 and one entry here (tests/test_html_report.py
checks that the templates and the entries match).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import card_report, drift_report, explainability_report, fairness_report, performance_report, poisoning_report

CARD = "model.card.json"  # read from --card (it sits beside the model), not from the reports folder


@dataclass(frozen=True)
class Section:
    key: str  # the page's anchor, --section KEY and the template report/<key>.html.j2
    title: str
    make_target: str  # what writes its files, named while they are not there
    files: tuple[str, ...]  # what it reads, its JSON first; "<feature>": one part per file found
    build: Callable[[dict, Path, Path], dict]  # (JSON, reports folder, JSON's path) -> the template's context

    def sources(self, reports: Path, card: Path) -> list[Path]:
        """The JSON files of this section that are there, in the order their parts are shown."""
        if self.files[0] == CARD:
            return [card] if card.exists() else []
        return sorted(reports.glob(re.sub(r"<\w+>", "*", self.files[0])))


SECTIONS = (
    Section("card", "Model card and calibration", "make train", (CARD,), card_report.section),
    Section(
        "fairness",
        "Fairness across groups",
        "make fairness",
        ("fairness_<feature>.json", "fairness_<feature>.png"),
        fairness_report.section,
    ),
    Section(
        "explain",
        "What drives the predictions (SHAP)",
        "make explain",
        ("explainability.json", "shap_bar.png", "shap_beeswarm.png", "shap_waterfall.png"),
        explainability_report.section,
    ),
    Section("drift", "Data drift", "make drift", ("drift.json", "drift.png"), drift_report.section),
    Section(
        "poisoning",
        "Label-flip poisoning and a defence",
        "make poisoning",
        ("poisoning.json", "poisoning.png"),
        poisoning_report.section,
    ),
    Section(
        "performance",
        "Performance in production",
        "make performance",
        ("performance.json", "performance.png"),
        performance_report.section,
    ),
)
BY_KEY = {s.key: s for s in SECTIONS}
