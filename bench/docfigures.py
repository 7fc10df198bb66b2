"""The docs' blocks that quote a full default run (bench.docgen explains the mechanism): train.py's
CV table and the analyses' figures, read from the run's model card and reports/*.json.

Each block names the model_version its figures come from. Without a run (the check in `make
test`), a block is kept as it stands but must name the model_version the code trains now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench import docgen


def from_run(render: Callable[[Path, str], str]) -> None:
    """The block rendered from the run (its directory, its model_version); or, with no run, the block
    as it stands, which must name the version of the model the code trains."""
    import cog

    f = docgen.facts()
    if f.run is None:
        if f"`{f.version}`" not in cog.previous:
            cog.error(f"these figures are not from the model the code trains ({f.version}): {docgen.FAIL_MSG}")
        docgen.out(cog.previous)
        return
    version = json.loads((f.run / "model.card.json").read_text())["model_version"]
    text = render(f.run, version)
    assert f"`{version}`" in text, "a block from the run must name its model_version"
    docgen.out(text)


def report(run: Path, name: str) -> dict:
    return json.loads((run / "reports" / name).read_text())


def _pm(s: dict, digits: int = 3) -> str:
    return "n/a" if s["mean"] is None else f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _ci(g: dict) -> str:
    return f"{g['gap']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]"


# --------------------------------------------------------------------------------------- blocks


def training() -> None:
    def render(run: Path, version: str) -> str:
        from train import metrics_table

        card = json.loads((run / "model.card.json").read_text())
        return f"`python train.py` (model `{version}`):\n\n```\n{metrics_table(card['metrics'])}\n```"

    from_run(render)


def fairness() -> None:
    def render(run: Path, version: str) -> str:
        doc = report(run, "fairness_gender.json")
        rows = []
        for key, view in (("held_out", "held-out"), ("out_of_fold", "out-of-fold")):
            part = doc[key]
            gaps = part["gaps"]["male - female"]
            cells = [_ci(gaps[m]) for m in ("true_positive_rate", "false_positive_rate", "selection_rate")]
            dp, eo = part["demographic_parity_difference"], part["equalized_odds_difference"]
            rows.append(f"| {view} (n={part['n']}) | {' | '.join(cells)} | {dp:.3f} | {eo:.3f} |")
        oof = doc["out_of_fold"]
        tpr = oof["gaps"]["male - female"]["true_positive_rate"]
        men, women = oof["by_group"]["male"], oof["by_group"]["female"]
        mit = doc["mitigation"]
        fitted, held = mit["train_out_of_fold"], mit["held_out"]
        moved = round(abs(held["after"]["accuracy"] - held["before"]["accuracy"]) * doc["held_out"]["n"])
        return "\n".join(
            [
                f"Real run (`python fairness_check.py`, model `{version}`), gaps male - female:",
                "",
                "| view | TPR gap [95% CI] | FPR gap [95% CI] | selection-rate gap [95% CI] | DP diff | EO diff |",
                "| --- | --- | --- | --- | --- | --- |",
                *rows,
                "",
                docgen.para(
                    "Out of fold, the model catches disease in men and women at rates that "
                    + (
                        "cannot be told apart (the TPR interval contains 0)"
                        if tpr["ci95"][0] <= 0 <= tpr["ci95"][1]
                        else f"differ (TPR gap {tpr['gap']:+.2f})"
                    )
                    + f"; its false-alarm rate is {men['false_positive_rate']:.2f} for men and "
                    f"{women['false_positive_rate']:.2f} for women. Part of the selection-rate gap is the base rate: "
                    f"{men['positives'] / men['count']:.0%} of the men and {women['positives'] / women['count']:.0%} of "
                    "the women in the data have heart disease, so demographic parity is not a goal here; equalized odds is. "
                    "ThresholdOptimizer lowered the equalized-odds difference from "
                    f"{fitted['before']['equalized_odds_difference']:.3f} to {fitted['after']['equalized_odds_difference']:.3f} "
                    f"on the training rows where it was fitted (accuracy {fitted['before']['accuracy']:.3f} -> "
                    f"{fitted['after']['accuracy']:.3f}) and from {held['before']['equalized_odds_difference']:.3f} to "
                    f"{held['after']['equalized_odds_difference']:.3f} on the held-out split (accuracy "
                    f"{held['before']['accuracy']:.3f} -> {held['after']['accuracy']:.3f}: {moved} patients of "
                    f"{doc['held_out']['n']}, within noise)."
                ),
            ]
        )

    from_run(render)


def explainability() -> None:
    def render(run: Path, version: str) -> str:
        doc = report(run, "explainability.json")
        ranking = ", ".join(f"{r['feature']} {r['mean_abs_shap']:.3f}" for r in doc["importance"])
        fn, tp = doc["summaries"]["false_negatives"], doc["summaries"]["true_positives"]
        diseased = fn["rows"] + tp["rows"]
        head = (
            f"Real run (`python explainability.py`, model `{version}`, {doc['scope']}): base value "
            f"{doc['base_value']:.3f}; ranking by mean |SHAP|: {ranking}; additivity error "
            f"{doc['additivity']['max_abs_error']:.0e}. The summary, worded from the schema's codes and units:"
        )
        items = [
            f"- **False negatives** ({fn['rows']} of {diseased} diseased patients explained): *{fn['text']}*",
            f"- **True positives** ({tp['rows']}): *{tp['text']}*",
        ]
        return docgen.para(head) + "\n\n" + "\n".join(docgen.para(i, "  ") for i in items)

    from_run(render)


def drift() -> None:
    def render(run: Path, version: str) -> str:
        doc = report(run, "drift.json")
        least = max(doc["features"], key=lambda f: f["p_adjusted"])
        verdict = "data-set drift" if doc["dataset_drift"] else "no data-set drift"
        return docgen.para(
            f"Real run (`python drift_analysis_ks.py`: {doc['n_current']} {doc['current']['kind']}, seed "
            f"{doc['current']['seed']}, against the training data of model `{version}`'s card): "
            f"{len(doc['drifted_features'])} of {len(doc['features'])} features drifted (the least, "
            f"{least['feature']}: p_adj {least['p_adjusted']:.2g}): {verdict}."
        )

    from_run(render)


def poisoning() -> None:
    def render(run: Path, version: str) -> str:
        doc = report(run, "poisoning.json")
        rnd, tgt = (doc["attacks"][k]["summary"] for k in ("random", "targeted_positive_to_negative"))
        metrics = ("accuracy", "roc_auc", "recall")
        pct, clean = f"{doc['rate']:.0%}", doc["clean"]
        action = doc["defense_on_clean_labels"]["action"]

        def row(name, s):
            return f"| {name} | " + " | ".join(_pm(s[m]) for m in metrics) + " |"

        sweep = [
            f"| {r['rate']:.0%} | {_pm(r['accuracy'])} | {_pm(r['roc_auc'])} | {_pm(t['recall'])} | {_pm(t['roc_auc'])} |"
            for r, t in zip(doc["sweep"]["random"], doc["sweep"]["targeted_positive_to_negative"])
        ]
        return "\n".join(
            [
                f"Real run (`python data_poisoning.py`: {len(doc['seeds'])} seeds, model `{version}`), "
                f"{doc['budget_rows']} of {doc['train_rows']} training labels flipped:",
                "",
                "| training labels | accuracy | ROC AUC | recall |",
                "| --- | --- | --- | --- |",
                "| clean | " + " | ".join(f"{clean[m]:.3f}" for m in metrics) + " |",
                row(f"{pct} random flips", rnd),
                row(f"+ defense ({action})", rnd["defense"]["metrics_after"]),
                row(f"{pct} targeted (disease -> none)", tgt),
                row(f"+ defense ({action})", tgt["defense"]["metrics_after"]),
                "",
                docgen.para(
                    f"Detection precision / recall: random {_pm(rnd['defense']['precision'], 2)} / "
                    f"{_pm(rnd['defense']['recall'], 2)}, targeted {_pm(tgt['defense']['precision'], 2)} / "
                    f"{_pm(tgt['defense']['recall'], 2)}, against a chance precision of "
                    f"{rnd['defense']['chance_precision']['mean']:.2f} (on the clean labels it flags "
                    f"{doc['defense_on_clean_labels']['flagged']} rows). The sweep:"
                ),
                "",
                "| labels flipped | random: accuracy | random: ROC AUC | targeted: recall | targeted: ROC AUC |",
                "| --- | --- | --- | --- | --- |",
                *sweep,
            ]
        )

    from_run(render)


def copy_figures(run: Path) -> list[Path]:
    """The run's PNGs over docs/figures/ (those the docs show), and the card's reliability diagram:
    pictures are rewritten by `make docs`, not compared (their bytes depend on matplotlib's build)."""
    import shutil

    from heart.analyses.card_report import plot_reliability

    figures = docgen.ROOT / "docs" / "figures"
    written = []
    for old in sorted(figures.glob("*.png")):
        if (run / "reports" / old.name).exists():
            written.append(Path(shutil.copyfile(run / "reports" / old.name, old)))
    card = json.loads((run / "model.card.json").read_text())
    written.append(plot_reliability(card["calibration"]["reliability"], figures / "reliability.png"))
    return written
