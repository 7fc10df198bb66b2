"""reports/index.html: built from what the analysis scripts and monitor_performance.py really write (run on a
10-tree model with small settings), checked against those JSON files, and opened in Chromium
with the network closed."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import data_poisoning
import drift_analysis_ks
import explainability
import fairness_check
import monitor_performance
import train as train_script
from bench import smoke
from heart.analyses import html_report
from heart.analyses.html_report import BY_KEY, ReportError, build_sections, render
from tests.browser import browser, guarded_page

ROOT = Path(__file__).resolve().parent.parent
SECTION_IDS = tuple(BY_KEY)


def quiet(main, argv):
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A reports/ directory from a quick real run: small forest, 10 bootstraps, 1 seed, 2 flip rates."""
    base = tmp_path_factory.mktemp("analyses")
    model = base / "model.zip"
    out = base / "reports"
    quiet(train_script.main, ["--no-cv", "--n-estimators", "10", "--out", str(model)])
    quiet(fairness_check.main, ["--model", str(model), "--bootstrap", "10", "--jobs", "1", "--out-dir", str(out)])
    quiet(explainability.main, ["--model", str(model), "--out-dir", str(out)])
    quiet(drift_analysis_ks.main, ["--samples", "60", "--out-dir", str(out)])
    quiet(
        data_poisoning.main,
        ["--model", str(model), "--seeds", "1", "--step", "0.5", "--jobs", "1", "--out-dir", str(out)],
    )
    log, labels = served_log(base, json.loads((base / "model.card.json").read_text())["model_version"])
    card = str(base / "model.card.json")
    argv = ["--log", str(log), "--labels", str(labels), "--card", card, "--bootstrap", "100", "--out-dir", str(out)]
    quiet(monitor_performance.main, argv)
    return out, base / "model.card.json"


def served_log(base: Path, version: str) -> tuple[Path, Path]:
    """Two days of 150 predictions in the API's record format, labels for most of the first."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.7, 0.7, 300)
    ids = [f"{i:032x}" for i in range(300)]
    lines = [
        json.dumps(
            {"event": "prediction", "prediction_id": ids[i], "timestamp": f"2026-05-0{1 + i // 150}T{i % 150 // 10:02d}:00:00+00:00",
             "model_version": version, "predicted_class": int(p[i] >= 0.5), "probability": float(p[i])}
        )
        for i in range(300)
    ]  # fmt: skip
    (base / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    y = rng.random(120) < p[:120]
    (base / "labels.csv").write_text("prediction_id,label\n" + "".join(f"{ids[i]},{int(y[i])}\n" for i in range(120)))
    return base / "predictions.jsonl", base / "labels.csv"


def load(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


class Page(HTMLParser):
    """Section ids and their data-present flag, image sources and every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.urls = {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections[a["id"]] = a["data-present"]
        if tag == "img":
            self.images.append(a["src"])
        self.urls += [a[k] for k in ("src", "href", "action") if k in a]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_main_writes_every_section_from_the_json(reports, capsys):
    out, card = reports
    assert html_report.main(["--reports", str(out), "--card", str(card)]) == 0
    assert "not run yet" not in capsys.readouterr().out
    html = (out / "index.html").read_text()
    page = parse(html)
    assert page.sections == {k: "true" for k in SECTION_IDS}
    # self-contained: every URL is an in-page anchor or inline data; 7 PNGs embedded byte for byte
    assert all(u.startswith(("#", "data:")) for u in page.urls), [
        u for u in page.urls if not u.startswith(("#", "data:"))
    ]
    assert not re.search(r"url\(|@import|<script|<link", html)  # no CSS fetch, no script, no stylesheet
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 7 and len(page.images) == 7
    embedded = {base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in page.images}
    assert embedded == {(out / name).read_bytes() for name in pngs}


def test_summaries_and_tables_carry_the_reports_numbers(reports):
    out, card_path = reports
    html = render(build_sections(out, card_path), out)
    drift = load(out, "drift.json")
    assert f"{len(drift['drifted_features'])} of 13 features differ from the training data" in html
    assert ("the data set has drifted" in html) is drift["dataset_drift"]
    poison = load(out, "poisoning.json")
    assert f"ROC AUC from {poison['clean']['roc_auc']:.3f}" in html
    assert "python data_poisoning.py --rate 0.2 --seeds 1 --seed 0 --step 0.5 --defense drop" in html
    fair = load(out, "fairness_gender.json")
    female = fair["out_of_fold"]["by_group"]["female"]
    assert f"<td>{female['count']}</td><td>{female['positives']}</td><td>{female['accuracy']:.3f}</td>" in html
    assert "--sensitive gender --bootstrap 10 --seed 42" in html
    gap = fair["held_out"]["gaps"]["male - female"]["true_positive_rate"]
    assert f"[{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]" in html
    explain = load(out, "explainability.json")
    top = [r["feature"] for r in explain["importance"][:3]]
    assert f"most are {', '.join(top)} (mean |SHAP|)" in html
    assert explain["summaries"]["true_positives"]["text"] in html.replace("&#34;", '"')
    card = json.loads(card_path.read_text())
    assert card["model_version"] in html
    assert f"accuracy {card['metrics']['random_forest']['test']['accuracy']:.3f}" in html
    perf = load(out, "performance.json")
    real = perf["overall"]["realized"]["roc_auc"]
    assert f"Realized on the labelled ones: accuracy {perf['overall']['realized']['accuracy']['value']:.3f}" in html
    assert f"ROC AUC {real['value']:.3f} [{real['ci95'][0]:.3f}, {real['ci95'][1]:.3f}]" in html
    assert "--window 1D" in html and "--bootstrap 100 --seed 0" in html
    targets = ("make train", "make fairness", "make explain", "make drift", "make poisoning", "make performance")
    for make_target in targets:
        assert f"<code>{make_target}</code>" in html


def test_one_section_alone(reports):
    out, card = reports
    with contextlib.redirect_stdout(io.StringIO()):
        assert html_report.main(["--reports", str(out), "--card", str(card), "--section", "drift"]) == 0
    page = parse((out / "drift.html").read_text())
    assert page.sections == {"drift": "true"} and len(page.images) == 1


def test_analyses_not_run_are_named_with_their_command(reports, tmp_path, capsys):
    _, card = reports
    assert html_report.main(["--reports", str(tmp_path), "--card", str(card)]) == 0
    assert "not run yet: fairness, explain, drift, poisoning, performance" in capsys.readouterr().out
    html = (tmp_path / "index.html").read_text()
    assert parse(html).sections == {"card": "true", **{k: "false" for k in SECTION_IDS[1:]}}
    assert "Not run yet: run <code>make poisoning</code>" in html
    assert "Not run yet: run <code>make performance</code>" in html


def test_a_broken_report_is_a_one_line_error_and_nothing_is_written(reports, tmp_path, capsys):
    out, card = reports
    broken = tmp_path / "reports"
    shutil.copytree(out, broken)
    (broken / "index.html").write_text("previous")
    (broken / "drift.json").write_text('{"features": [')
    assert html_report.main(["--reports", str(broken), "--card", str(card)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "drift.json: not valid JSON" in err and "\n" not in err
    (broken / "drift.json").write_text(json.dumps({**load(out, "drift.json"), "features": "none"}))
    assert html_report.main(["--reports", str(broken), "--card", str(card)]) == 2
    assert "drift.json: missing or malformed field" in capsys.readouterr().err
    assert (broken / "index.html").read_text() == "previous"
    with pytest.raises(ReportError, match="unknown section"):
        build_sections(out, card, ("fairness", "calibration"))


def test_calibration_is_shown_when_the_card_has_it(reports, tmp_path):
    out, card_path = reports
    card = json.loads(card_path.read_text())
    cal = card["calibration"]
    html = render(build_sections(out, card_path, ("card",)), out)
    assert "no <code>calibration</code> entry" not in html
    assert f"<td>{cal['method']}</td>" in html and f"<td>{cal['brier']['test']:.3f}</td>" in html
    assert '<caption class="muted">reliability.test</caption>' in html
    assert '<th scope="col">mean predicted</th>' in html
    filled = [b for b in cal["reliability"]["test"] if b["count"]]
    assert all(f"<td>{b['count']}</td>" in html for b in filled)
    (tmp_path / "card.json").write_text(json.dumps({k: v for k, v in card.items() if k != "calibration"}))
    without = render(build_sections(out, tmp_path / "card.json", ("card",)), out)
    assert "no <code>calibration</code> entry" in without and "reliability.test" not in without


def test_the_report_opens_in_a_browser_with_no_request_elsewhere(reports):
    out, card = reports
    with contextlib.redirect_stdout(io.StringIO()):
        assert html_report.main(["--reports", str(out), "--card", str(card)]) == 0
    with browser() as chromium, guarded_page(chromium) as (page, net):
        page.goto((out / "index.html").as_uri())
        for key, section in BY_KEY.items():
            heading = page.locator(f"#{key}-title")
            assert heading.inner_text() == section.title
            assert page.locator(f"#{key} .summary").first.is_visible()
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 7 and all(w > 100 for w in widths)  # every plot decoded
        net.assert_clean()
        assert net.served == [f"{(out / 'index.html').as_uri()}: 200"]  # the page itself, nothing else


def test_a_poisoning_point_not_trainable_is_na_and_named(reports, tmp_path):
    out, card = reports
    doc = load(out, "poisoning.json")
    assert doc["clean_fit"] == "5-fold calibration"
    point = doc["sweep"]["targeted_positive_to_negative"][-1]
    point.update(recall={"mean": None, "sd": None}, fits={"not trainable": 1})
    doc["attacks"]["targeted_positive_to_negative"]["summary"]["fits"] = {"2-fold calibration": 1}
    (tmp_path / "poisoning.json").write_text(json.dumps(doc))
    html = render(build_sections(tmp_path, card, ("poisoning",)), tmp_path)
    assert '<td>n/a</td><td class="text">targeted: not trainable</td></tr>' in html
    assert "Modelled otherwise than the clean set: targeted: 2-fold calibration." in html
    assert html.count('<td class="text">as clean</td>') == len(doc["sweep"]["random"]) - 1


def test_a_poisoning_report_from_before_fits_were_recorded_still_renders(reports, tmp_path):
    out, card = reports
    doc = load(out, "poisoning.json")
    del doc["clean_fit"]
    for curve in doc["sweep"].values():
        for point in curve:
            del point["fits"]
    (tmp_path / "poisoning.json").write_text(json.dumps(doc))
    html = render(build_sections(tmp_path, card, ("poisoning",)), tmp_path)
    assert '<td class="text">as clean</td>' in html and "<td>n/a</td>" not in html


def test_the_smoke_check_passes_a_full_page_and_names_each_empty_section(reports, tmp_path):
    out, card = reports
    assert smoke.report_problems(render(build_sections(out, card), out)) == []
    partial = render(build_sections(tmp_path, card), tmp_path)  # only the model card: no analysis has run here
    assert smoke.report_problems(partial) == [
        f"section {key!r} says not run yet (make {target})"
        for key, target in (
            ("fairness", "fairness"),
            ("explain", "explain"),
            ("drift", "drift"),
            ("poisoning", "poisoning"),
            ("performance", "performance"),
        )
    ]
    no_drift = render([c for c in build_sections(out, card) if c["key"] != "drift"], out)
    assert smoke.report_problems(no_drift) == ["section 'drift' is missing"]
    page = render(build_sections(out, card), out)
    unsummarised = page.replace('<p class="summary">', '<p class="other">', 1)
    assert smoke.report_problems(unsummarised) == ["section 'card' has no summary"]
    drift = page.index('<section id="drift"')
    bare = (
        page[:drift]
        + re.sub(r"<(table|img)\b", r"<\1-gone", page[drift : page.index("</section>", drift)])
        + (page[page.index("</section>", drift) :])
    )
    assert smoke.report_problems(bare) == ["section 'drift' has no table or figure"]
