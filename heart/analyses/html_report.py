"""One self-contained HTML page of every analysis: python -m heart.analyses.html_report [--section NAME]

Reads what the scripts already wrote: the model card (model.card.json) and, in the reports
directory, fairness_<feature>.json, explainability.json, drift.json, poisoning.json,
performance.json and their PNGs. The PNGs are embedded as data URIs and the page has no script, stylesheet or font from
anywhere else, so it opens offline and can be mailed as one file. Each section gives a
plain-English summary and the command that reproduces it. `--section fairness` (repeatable)
writes that section alone, to <reports>/fairness.html unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import UndefinedError
from markupsafe import Markup

from ..artifact import atomic_write
from ..schema import BY_NAME
from ..templates import templates
from .performance_report import performance_section
from .report import FAIRNESS_SHOWN, fit_notes

EXIT_OK, EXIT_BAD_INPUT = 0, 2


class ReportError(ValueError):
    """A report file that cannot be read: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    make_target: str
    files: tuple[str, ...]  # what it reads, for the "not run yet" notice


SECTIONS = (
    Section("card", "Model card and calibration", "make train", ("model.card.json",)),
    Section(
        "fairness", "Fairness across groups", "make fairness", ("fairness_<feature>.json", "fairness_<feature>.png")
    ),
    Section(
        "explain",
        "What drives the predictions (SHAP)",
        "make explain",
        ("explainability.json", "shap_bar.png", "shap_beeswarm.png", "shap_waterfall.png"),
    ),
    Section("drift", "Data drift", "make drift", ("drift.json", "drift.png")),
    Section("poisoning", "Label-flip poisoning and a defence", "make poisoning", ("poisoning.json", "poisoning.png")),
    Section("performance", "Performance in production", "make performance", ("performance.json", "performance.png")),
)
BY_KEY = {s.key: s for s in SECTIONS}
PERF_CAPTION = "Estimated (line, 95% band) and realized (points, 95% CI) performance by window; label coverage"


# ------------------------------------------------------------------------------ reading


def read_json(path: Path) -> dict | None:
    """A report's JSON, or None if the analysis has not been run; a broken file is an error."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def data_uri(path: Path) -> str | None:
    """A PNG as a data: URI (so the page makes no request), or None if it was not written."""
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def plots(reports: Path, names_and_captions: list[tuple[str, str]]) -> list[dict]:
    return [
        {"src": data_uri(reports / name), "file": name, "caption": caption}
        for name, caption in names_and_captions
        if (reports / name).exists()
    ]


# ------------------------------------------------------------------------------ sections


def card_section(card: dict, reports: Path) -> dict:
    """Model card summary; calibration as far as the card records it (`calibration`, Brier)."""
    metrics = card.get("metrics", {})
    forest = metrics.get("random_forest", {})
    test = forest.get("test", {})
    split = card.get("split", {})
    threshold = card.get("model", {}).get("threshold", card.get("threshold", 0.5))
    rows = [
        {"model": name.replace("_", " "), "test": m.get("test", {}), "cv": m.get("cv", {})}
        for name, m in metrics.items()
    ]
    names = sorted({k for r in rows for k in r["test"]})
    calibration = card.get("calibration")
    summary = (
        f"The random forest scores accuracy {_f(test.get('accuracy'))}, ROC AUC {_f(test.get('roc_auc'))} "
        f"and recall {_f(test.get('recall'))} on {split.get('test_rows', '?')} held-out patients, "
        f"at the decision threshold {threshold}. Its Brier score (mean squared error of the probability: "
        f"lower is better calibrated) is {_f(test.get('brier'))}."
    )
    if calibration is None:
        summary += " The card has no reliability table yet; the Brier scores are the calibration it records."
    return {
        "summary": summary,
        "card": card,
        "rows": rows,
        "metric_names": names,
        "threshold": threshold,
        "calibration": _calibration(calibration),
        "command": "python train.py --data data/data.csv --out model.zip",
    }


def _calibration(cal: Any) -> dict | None:
    """Whatever the card says about calibration: scalar facts, and every list of rows (also one
    level down, e.g. reliability.test) as a table."""
    if not isinstance(cal, dict):
        return None if cal is None else {"facts": {"calibration": cal}, "tables": []}
    flat: dict[str, Any] = {}
    for k, v in cal.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    facts = {k: v for k, v in flat.items() if not isinstance(v, (list, dict))}
    tables = [
        {"name": k, "columns": list(dict.fromkeys(c for row in v for c in row)), "rows": v}
        for k, v in flat.items()
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
    ]
    return {"facts": facts, "tables": tables}


def fairness_section(doc: dict, reports: Path, path: Path) -> dict:
    """One sensitive feature: groups, gaps with bootstrap CIs, and the mitigation before/after."""
    feature = doc["sensitive_feature"]
    oof = doc["out_of_fold"]
    clear = [
        f"{m.replace('_', ' ')} ({pair}: {g[m]['gap']:+.2f}, 95% CI {g[m]['ci95'][0]:+.2f} to {g[m]['ci95'][1]:+.2f})"
        for pair, g in oof["gaps"].items()
        for m in FAIRNESS_SHOWN
        if g[m].get("excludes_zero")
    ]
    summary = f"Across all {oof['n']} patients (out-of-fold predictions), " + (
        f"the gaps whose 95% interval excludes 0 are: {'; '.join(clear)}."
        if clear
        else "no gap between groups has a 95% interval that excludes 0: no evidence of a difference, "
        "though with this few patients the intervals are wide."
    )
    mit = doc.get("mitigation", {})
    if "held_out" in mit:
        b, a = mit["held_out"]["before"], mit["held_out"]["after"]
        summary += (
            f" The mitigation (equalized-odds thresholds per group) moves the held-out equalized-odds "
            f"difference from {b['equalized_odds_difference']:.3f} to {a['equalized_odds_difference']:.3f} "
            f"and accuracy from {b['accuracy']:.3f} to {a['accuracy']:.3f}."
        )
    boot = doc.get("bootstrap", {})
    command = (
        f"python fairness_check.py --sensitive {feature} --bootstrap {boot.get('resamples', 1000)} "
        f"--seed {boot.get('seed', 42)} --out-dir {reports}"
    )
    return {
        "doc": doc,
        "feature": feature,
        "label": BY_NAME[feature].description if feature in BY_NAME else feature,
        "metrics": FAIRNESS_SHOWN,
        "summary": summary,
        "command": command,
        "file": path.name,
        "plots": plots(reports, [(f"fairness_{feature}.png", f"Metrics by {feature}: held-out and out-of-fold")]),
    }


def explain_section(doc: dict, reports: Path) -> dict:
    top = [r["feature"] for r in doc["importance"][:3]]
    add = doc["additivity"]
    summary = (
        f"Over the {len(doc['rows'])} rows explained ({doc['scope']}), the features that move the "
        f"predicted risk most are {', '.join(top)} (mean |SHAP|). The contributions add back up to the "
        f"model's probability within {add['max_abs_error']:.1e} "
        f"({'holds' if add['holds'] else 'FAILS'}). Missed disease: "
        f"{doc['summaries']['false_negatives']['text']} Caught disease: "
        f"{doc['summaries']['true_positives']['text']}"
    )
    command = f"python explainability.py {'--all-rows ' if 'all rows' in doc['scope'] else ''}--out-dir {reports}"
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "labels": {n: f.description for n, f in BY_NAME.items()},
        "plots": plots(
            reports,
            [
                ("shap_bar.png", "Mean |SHAP| per feature"),
                ("shap_beeswarm.png", "Every row's SHAP value per feature"),
                ("shap_waterfall.png", f"One patient (row {doc['waterfall_patient']['row']})"),
            ],
        ),
    }


def drift_section(doc: dict, reports: Path) -> dict:
    cur = doc["current"]
    method = "Benjamini-Hochberg" if doc["correction"] == "bh" else "Bonferroni"
    summary = (
        f"{len(doc['drifted_features'])} of {len(doc['features'])} features differ from the training data "
        f"({method}-adjusted p < {doc['alpha']}); the share {doc['share_drifted']:.2f} against the threshold "
        f"{doc['share_threshold']} means "
        f"{'the data set has drifted' if doc['dataset_drift'] else 'no data-set drift'}. "
        f"Current data: {cur.get('file', cur['kind'])} ({doc['n_current']} rows)."
    )
    if cur["kind"] == "csv":
        source = f"--current {cur['file']}"
    elif cur["kind"] == "prediction_log":
        source = f"--from-log {cur['file']}"
    else:
        mode = cur["kind"].split("(")[-1].rstrip(")") if "(" in cur["kind"] else "uniform"
        source = f"--samples {cur.get('n', 100)} --seed {cur.get('seed', 42)} --mode {mode}"
    command = (
        f"python drift_analysis_ks.py {source} --alpha {doc['alpha']} --correction {doc['correction']} "
        f"--share-threshold {doc['share_threshold']} --out-dir {reports}"
    )
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "plots": plots(reports, [("drift.png", "Training data vs current data, per feature")]),
    }


def poisoning_section(doc: dict, reports: Path) -> dict:
    rnd, tgt = (doc["attacks"][k]["summary"] for k in ("random", "targeted_positive_to_negative"))
    clean = doc["clean"]
    rate = doc["rate"]
    summary = (
        f"Flipping {rate:.0%} of the training labels ({doc['budget_rows']} rows) at random moves held-out "
        f"ROC AUC from {clean['roc_auc']:.3f} to {_ms(rnd['roc_auc'])}; flipping the same number from "
        f"disease to no disease cuts recall from {clean['recall']:.3f} to {_ms(tgt['recall'])}. The defence "
        f"(confident learning) flags {_ms(tgt['defense']['flagged'], 0)} rows of the targeted attack with "
        f"precision {_ms(tgt['defense']['precision'])} (chance: {tgt['defense']['chance_precision']['mean']:.3f}); "
        f"after it, recall is {_ms(tgt['defense']['metrics_after']['recall'])}. On clean labels it flags "
        f"{doc['defense_on_clean_labels']['flagged']} rows."
    )
    rates = [r["rate"] for r in doc["sweep"]["random"]]
    step = round(rates[1] - rates[0], 4) if len(rates) > 1 else 0.05
    seeds = doc["seeds"]
    action = doc["defense_on_clean_labels"].get("action", "drop")
    command = (
        f"python data_poisoning.py --rate {rate} --seeds {len(seeds)} --seed {seeds[0] if seeds else 0} "
        f"--step {step} --defense {action} --out-dir {reports}"
    )
    metrics = [k for k in clean]
    sweep = list(zip(doc["sweep"]["random"], doc["sweep"]["targeted_positive_to_negative"]))
    main_notes, sweep_notes = fit_notes(doc, defense="defence")
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "metrics": metrics,
        "rnd": rnd,
        "tgt": tgt,
        "sweep": [(r, t, note or "as clean") for (r, t), note in zip(sweep, sweep_notes)],
        "main_notes": main_notes,
        "plots": plots(reports, [("poisoning.png", "Held-out metrics against the share of flipped labels")]),
    }


def _f(x: Any, digits: int = 3) -> str:
    """Figures with `digits` decimals; counts (ints) as they are."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def _ms(s: dict, digits: int = 3) -> str:
    """Mean ± sd; n/a for the JSON's null (no value defined: e.g. no seed's set was trainable)."""
    return "n/a" if s["mean"] is None else f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


# ------------------------------------------------------------------------------ assembly


def build_section(key: str, reports: Path, card_path: Path) -> dict:
    """One section's template context: {"present": False, ...} when its analysis has not run."""
    meta = BY_KEY[key]
    ctx: dict[str, Any] = {"key": key, "title": meta.title, "make_target": meta.make_target, "files": meta.files}
    builders: dict[str, Callable[[], list[dict]]] = {
        "card": lambda: _one(card_path, lambda d: card_section(d, reports)),
        "fairness": lambda: [
            _guard(p, lambda d, p=p: fairness_section(d, reports, p), read_json(p))
            for p in sorted(reports.glob("fairness_*.json"))
        ],
        "explain": lambda: _one(reports / "explainability.json", lambda d: explain_section(d, reports)),
        "drift": lambda: _one(reports / "drift.json", lambda d: drift_section(d, reports)),
        "poisoning": lambda: _one(reports / "poisoning.json", lambda d: poisoning_section(d, reports)),
        "performance": lambda: _one(
            reports / "performance.json",
            lambda d: {**performance_section(d, reports), "plots": plots(reports, [("performance.png", PERF_CAPTION)])},
        ),
    }
    parts = builders[key]()
    ctx.update(present=bool(parts), parts=parts)
    return ctx


def _one(path: Path, build: Callable[[dict], dict]) -> list[dict]:
    doc = read_json(path)
    return [] if doc is None else [_guard(path, build, doc)]


def _guard(path: Path, build: Callable[[dict], dict], doc: dict) -> dict:
    """Build one part; a file missing a field the section needs is named, not a traceback."""
    try:
        return {**build(doc), "source": str(path)}
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise ReportError(
            f"{path}: missing or malformed field ({type(e).__name__}: {e}); re-run the analysis that writes it"
        ) from None


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
    env.filters.update(num=_f, ms=_ms)
    for ctx in contexts:
        template = env.get_template(f"report/{ctx['key']}.html.j2")
        for part in ctx["parts"]:
            try:
                part["body"] = Markup(template.render(part=part))
            except (UndefinedError, KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
                raise ReportError(
                    f"{part['source']}: missing or malformed field ({type(e).__name__}: {e}); "
                    f"re-run the analysis that writes it"
                ) from None
    title = "Heart-disease model: analyses" if len(contexts) > 1 else f"Heart-disease model: {contexts[0]['title']}"
    return env.get_template("report.html.j2").render(title=title, sections=contexts, reports=str(reports))


def write(out: str | Path, html: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, html.encode("utf-8"))
    return out


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
    p.add_argument("--out", help="output file (default <reports>/index.html, or <reports>/<section>.html)")
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
