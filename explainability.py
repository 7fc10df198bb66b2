"""Explain the model with SHAP: python explainability.py [--all-rows] [--patient N]

TreeExplainer SHAP values for the held-out split (or every row), added back up to the 13
original features: the global mean |SHAP| ranking, an additivity check (base value +
contributions = the model's probability), and a plain-English summary of what lowered the
risk of the patients with heart disease the model missed (false negatives) and what raised
it for those it caught (true positives). Writes <out-dir>/explainability.json and
shap_bar.png, shap_beeswarm.png, shap_waterfall.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from heart import cli
from heart.analyses.report import format_table, plot_beeswarm, plot_importance, plot_waterfall, write_json
from heart.attribution import PipelineExplainer, describe_rows, explain_dataset, global_importance
from heart.data import DataError
from heart.decision import decide, threshold_of
from heart.model import card_split
from heart.schema import TARGET

ADDITIVITY_TOLERANCE = 1e-6


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_analysis_args(p, "explainability.json and the SHAP plots")
    p.add_argument(
        "--all-rows",
        action="store_true",
        help="explain every row, not only the held-out split (training rows are in-sample)",
    )
    p.add_argument(
        "--patient",
        type=int,
        default=None,
        help="row number in the data file (0-based, excluding the header) for the waterfall; "
        "default: the first false negative, else the first explained row",
    )
    p.add_argument("--top", type=cli.integer(1), default=3, help="features named in each plain-English summary")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, data, labels = cli.load_analysis_inputs(args)
    _, test_idx = card_split(model.card, data.y)
    rows = np.arange(data.n_rows) if args.all_rows else test_idx
    scope = "all rows (training rows in-sample)" if args.all_rows else "held-out split"
    position = np.flatnonzero(rows == args.patient) if args.patient is not None else np.array([], dtype=int)
    if args.patient is not None and position.size == 0:
        raise DataError(
            data.source,
            f"--patient {args.patient} is not among the explained rows "
            f"({scope}); use --all-rows or pick a held-out row",
        )
    explainer = PipelineExplainer(model.pipeline)
    ex = explain_dataset(explainer, model.pipeline, data.X.iloc[rows])
    error = ex.additivity_error()
    y = data.y[rows]
    predicted = decide(ex.probability, threshold_of(model.card))
    fn = np.flatnonzero((y == 1) & (predicted == 0))
    tp = np.flatnonzero((y == 1) & (predicted == 1))
    importance = global_importance(ex.values)
    summaries = {
        "false_negatives": describe_rows(ex.values, ex.X, fn, "down", data.X, args.top),
        "true_positives": describe_rows(ex.values, ex.X, tp, "up", data.X, args.top),
    }
    print(
        f"SHAP for {len(rows)} rows ({scope}); base value (the calibrated P(disease) of the forest's mean score) "
        f"{ex.base_value:.3f}; contributions add up to the served P(disease)"
    )
    print(
        format_table(
            ["rank", "feature", "mean |SHAP|", "mean SHAP"],
            [[i + 1, r["feature"], r["mean_abs_shap"], r["mean_shap"]] for i, r in enumerate(importance)],
            4,
        )
    )
    ok = error <= ADDITIVITY_TOLERANCE
    print(
        f"\nadditivity: max |base + sum(SHAP) - P(disease)| = {error:.2e} "
        f"({'holds' if ok else 'FAILS'} within {ADDITIVITY_TOLERANCE:g})"
    )
    for key, title in (
        ("false_negatives", "Missed disease (false negatives)"),
        ("true_positives", "Caught disease (true positives)"),
    ):
        s = summaries[key]
        print(f"\n{title}: {s['rows']} patients")
        if s["drivers"]:
            print(
                format_table(
                    ["feature", "mean push", "patients pushed", "what they had"],
                    [[d["feature"], d["mean_push"], d["rows_pushed"], d["phrase"]] for d in s["drivers"]],
                )
            )
        print(s["text"])
    chosen = int(position[0]) if args.patient is not None else int(fn[0]) if fn.size else 0
    patient_row = int(rows[chosen])
    out = Path(args.out_dir)
    report = {
        "model_version": model.version,
        "data": {"file": data.source, "sha256": data.sha256},
        "labels": labels,
        "scope": scope,
        "rows": [int(r) for r in rows],
        "base_value": ex.base_value,
        "additivity": {"max_abs_error": error, "tolerance": ADDITIVITY_TOLERANCE, "holds": ok},
        "importance": importance,
        "summaries": summaries,
        "confusion": {
            "true_positives": int(tp.size),
            "false_negatives": int(fn.size),
            "false_positives": int(((y == 0) & (predicted == 1)).sum()),
            "true_negatives": int(((y == 0) & (predicted == 0)).sum()),
        },
        "waterfall_patient": {
            "row": patient_row,
            "label": TARGET.labels[int(data.y[patient_row])],
            "probability": float(ex.probability[chosen]),
            "contributions": dict(zip(ex.X.columns, map(float, ex.values[chosen]))),
        },
    }
    paths = [
        write_json(out / "explainability.json", report),
        plot_importance(importance, out / "shap_bar.png", f"Mean |SHAP| per feature ({scope}, n={len(rows)})"),
        plot_beeswarm(ex.values, ex.base_value, ex.X, out / "shap_beeswarm.png", f"SHAP values ({scope})"),
        plot_waterfall(
            ex.values[chosen],
            ex.base_value,
            ex.X.iloc[[chosen]],
            out / "shap_waterfall.png",
            f"Patient row {patient_row} ({TARGET.labels[int(data.y[patient_row])]}): "
            f"P(disease) = {ex.probability[chosen]:.2f}",
        ),
    ]
    print("\nwrote " + ", ".join(map(str, paths)))
    return 0 if ok else cli.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
