"""Fairness of the model across groups: python fairness_check.py [--sensitive gender]

Fairlearn MetricFrame by group (accuracy, selection rate, TPR, FNR, FPR, precision, counts)
on the held-out split and on out-of-fold predictions over all rows, with bootstrap 95%
intervals for each gap between groups; demographic parity and equalized odds differences;
and a ThresholdOptimizer (equalized odds) fitted on out-of-fold scores, before and after.
Writes <out-dir>/fairness_<feature>.json and .png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from heart import cli
from heart.analyses import fairness
from heart.analyses.report import FAIRNESS_SHOWN, format_table, plot_fairness, write_json
from heart.decision import threshold_of
from heart.model import DEFAULT_SEED, card_split, forest_from_card
from heart.schema import FEATURE_NAMES


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_analysis_args(p, "fairness.json and fairness.png")
    p.add_argument(
        "--sensitive",
        default="gender",
        choices=FEATURE_NAMES,
        help="feature defining the groups: codes for discrete features, 20-year bins for age, "
        "tertiles for other continuous features",
    )
    p.add_argument(
        "--bootstrap", type=cli.integer(10), default=fairness.N_BOOT, help="bootstrap resamples for the 95%% intervals"
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed for CV folds, bootstrap and randomised thresholds"
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel CV fits")
    cli.add_quiet_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, data, labels = cli.load_analysis_inputs(args)
    train_idx, test_idx = card_split(model.card, data.y)
    result = fairness.analyze(
        model.pipeline,
        forest_from_card(model.card),
        data.X,
        data.y,
        train_idx,
        test_idx,
        sensitive=args.sensitive,
        seed=args.seed,
        n_boot=args.bootstrap,
        threshold=threshold_of(model.card),
        n_jobs=args.jobs,
        stages=cli.stages(args),
    )
    for part, title in ((result.held_out, "held-out split"), (result.out_of_fold, "out-of-fold predictions, all rows")):
        print(f"\n{title} (n={part.n}), by {args.sensitive}:")
        rows = [
            [
                g,
                part.by_group[g]["count"],
                part.by_group[g]["positives"],
                *(part.by_group[g][m] for m in FAIRNESS_SHOWN),
            ]
            for g in part.groups
        ]
        rows.append(
            [
                "overall",
                part.n,
                sum(part.by_group[g]["positives"] for g in part.groups),
                *(part.overall[m] for m in FAIRNESS_SHOWN),
            ]
        )
        print(format_table(["group", "n", "disease", "accuracy", "selection", "TPR", "FNR", "FPR", "precision"], rows))
        print("\ngaps between groups with bootstrap 95% CI (an interval containing 0: no evidence of a gap):")
        print(
            format_table(
                ["groups", "metric", "gap", "CI low", "CI high", "CI excludes 0"],
                [
                    [pair, m, gap[m].gap, gap[m].ci95[0], gap[m].ci95[1], "yes" if gap[m].excludes_zero else "no"]
                    for pair, gap in part.gaps.items()
                    for m in FAIRNESS_SHOWN
                ],
            )
        )
        print("\nFairlearn between-groups difference (max - min) and ratio (min / max):")
        print(
            format_table(
                ["metric", "difference", "ratio"], [[m, part.difference[m], part.ratio[m]] for m in FAIRNESS_SHOWN]
            )
        )
        print(
            f"demographic parity difference {part.demographic_parity_difference:.3f}, "
            f"equalized odds difference {part.equalized_odds_difference:.3f}"
        )
    mit = result.mitigation
    print("\nmitigation: ThresholdOptimizer(equalized odds) fitted on out-of-fold training scores")
    if mit.skipped:
        print(f"skipped: {mit.skipped}")
    else:
        rows = [
            [where, when, d.accuracy, d.selection_rate, d.demographic_parity_difference, d.equalized_odds_difference]
            for where, view in (("train_out_of_fold", mit.train_out_of_fold), ("held_out", mit.held_out))
            for when, d in (("before", view.before), ("after", view.after))
        ]
        print(format_table(["rows", "", "accuracy", "selection", "DP difference", "EO difference"], rows))
    out = Path(args.out_dir)
    report = {
        "model_version": model.version,
        "data": {"file": data.source, "sha256": data.sha256},
        "labels": labels,
        **result.to_dict(),
    }
    json_path = write_json(out / f"fairness_{args.sensitive}.json", report)
    png = plot_fairness(result, out / f"fairness_{args.sensitive}.png")
    print(f"\nwrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
