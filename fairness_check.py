"""Fairness of the model across groups: python fairness_check.py [--sensitive gender]

Fairlearn MetricFrame by group (accuracy, selection rate, TPR, FNR, FPR, precision, counts)
on the held-out split and on out-of-fold predictions over all rows, with bootstrap 95%
intervals for each gap between groups; demographic parity and equalized odds differences;
and a ThresholdOptimizer (equalized odds) fitted on out-of-fold scores, before and after.
Writes <out-dir>/fairness_<feature>.json and .png.
"""

from __future__ import annotations

import sys

from heart import cli
from heart.analyses import fairness, fairness_report, report
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
        "--seed",
        type=cli.seed,
        default=DEFAULT_SEED,
        help=f"seed for CV folds, bootstrap and randomised thresholds (0 to {cli.SEED_MAX})",
    )
    cli.add_jobs_arg(p, "parallel CV fits")
    cli.add_quiet_arg(p)
    args = p.parse_args(argv)
    cli.check_report_files(p, args, f"fairness_{args.sensitive}.json", f"fairness_{args.sensitive}.png")
    return args


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
    print(fairness_report.text(result))
    json_path, png = fairness_report.write(result, args.out_dir, report.provenance(model, data, labels))
    print(f"\nwrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
