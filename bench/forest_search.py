"""Can honest tuning lift the forest's CV ROC AUC to the 0.905 bar? (docs/model.md)

A wider grid than `train.py --tune` (which searches max_features, min_samples_leaf and
max_depth): also bootstrap sample size and class weights, 108 settings, each scored by the
same 5x5 CV on the seed-42 training part (never the test split). About 8 minutes on 2 cores.
Usage: .venv/bin/python -m bench.forest_search [--top 10]
"""

import argparse

from heart.analyses.report import format_table
from heart.data import load_dataset
from heart.model import split_by_labels, tune

GRID = dict(
    max_samples=[None, 0.5, 0.7],
    class_weight=[None, "balanced_subsample"],
    max_features=[1, 2],
    min_samples_leaf=[3, 5, 8],
    max_depth=[4, 5, None],
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/data.csv")
    p.add_argument("--top", type=int, default=10, help="settings shown, best first")
    args = p.parse_args()
    d = load_dataset(args.data)
    train_idx, _ = split_by_labels(d.y)
    _, results = tune(d.X.iloc[train_idx], d.y[train_idx], grid=GRID)
    keys = list(GRID)
    print(
        format_table(
            [*keys, "CV ROC AUC", "sd"],
            [[str(r[k]) for k in keys] + [r["cv_roc_auc"], r["cv_roc_auc_sd"]] for r in results[: args.top]],
            4,
        )
    )
    print(f"{len(results)} settings; range {results[-1]['cv_roc_auc']:.4f} to {results[0]['cv_roc_auc']:.4f}")


if __name__ == "__main__":
    main()
