"""Can the label-direction check misfire? python -m bench.label_check_sweep [--runs 1000]

Runs heart.label_check on data/data.csv and on perturbed copies of it: bootstrap resamples,
5-20% random label flips, stratified 60-row subsets, both at once, and on the widely shared
copy (target inverted, ca 4 / thal 0 for unknowns, gender as text) read through the loader.
Prints, per scenario, the spread of the statistic (mean signed AUC deviation, +0.5 = every
risk factor agrees with the labels) and how often the check refused ("inverted") or could
not judge ("inconclusive"). Honest data must never be refused; inverted data always.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from heart.analyses.report import format_table
from heart.data import load_dataset
from heart.label_check import INCONCLUSIVE_WITHIN, MARGIN, REFUSE_BELOW, check_matrix, risk_matrix

DATA = Path(__file__).resolve().parent.parent / "data" / "data.csv"
NOISE_RATES = (0.05, 0.10, 0.15, 0.20)
SUBSET_ROWS = 60


def write_legacy_copy(src: str | Path, dst: str | Path) -> Path:
    """The widely shared copy: target 1 = *no* disease, ca 4 / thal 0 for unknown, gender as text, no sno."""
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    frame["target"] = frame["target"].map({"yes": "0", "no": "1"})
    frame["ca"] = frame["ca"].replace("", "4")
    frame["thal"] = frame["thal"].replace("", "0")
    frame["gender"] = frame["gender"].replace({"1": "male", "0": "female"}).str.lower()
    frame = frame.drop(columns=["sno"])
    frame.to_csv(dst, index=False)
    return Path(dst)


def resample(
    y: np.ndarray, rng: np.random.Generator, bootstrap: bool = False, rows: int | None = None, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and (possibly noisy) labels for one perturbed copy.

    bootstrap: n rows with replacement; rows: a stratified subset of that many rows without
    replacement (class shares kept); noise: that share of the chosen rows' labels flipped.
    """
    n = len(y)
    if bootstrap:
        idx = rng.integers(0, n, n)
    elif rows is not None:
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        k = round(rows * len(pos) / n)
        idx = np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, rows - k, replace=False)])
    else:
        idx = np.arange(n)
    labels = y[idx].copy()
    flip = rng.choice(len(idx), round(noise * len(idx)), replace=False)
    labels[flip] = 1 - labels[flip]
    return idx, labels


def scenario(V: np.ndarray, y: np.ndarray, runs: int, seed: int, **how) -> tuple[np.ndarray, list[str]]:
    """Scores and verdicts of `runs` seeded perturbed copies (see resample for `how`)."""
    rng = np.random.default_rng(seed)
    scores, verdicts = np.empty(runs), []
    for i in range(runs):
        idx, labels = resample(y, rng, **how)
        result = check_matrix(V[idx], labels)
        scores[i] = result.score
        verdicts.append(result.verdict)
    return scores, verdicts


def scenarios(runs: int) -> list[tuple[str, str, int, dict]]:
    """(name, which labels, runs, how) for every line of the table."""
    rows = [("bootstrap resamples", "honest", runs, dict(bootstrap=True))]
    rows += [(f"{r:.0%} labels flipped", "honest", runs, dict(noise=r)) for r in NOISE_RATES]
    rows += [
        (f"stratified {SUBSET_ROWS}-row subsets", "honest", runs, dict(rows=SUBSET_ROWS)),
        (f"{SUBSET_ROWS}-row subsets, 20% flipped", "honest", runs, dict(rows=SUBSET_ROWS, noise=0.2)),
        ("bootstrap resamples", "inverted", runs, dict(bootstrap=True)),
        ("20% labels flipped", "inverted", runs, dict(noise=0.2)),
        (f"stratified {SUBSET_ROWS}-row subsets", "inverted", runs, dict(rows=SUBSET_ROWS)),
    ]
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--runs", type=int, default=1000, help="perturbed copies per scenario")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    honest = load_dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        legacy = load_dataset(write_legacy_copy(args.data, Path(tmp) / "heart.csv"))
    V = risk_matrix(honest.X)
    table = []
    for name, y in (("data/data.csv as shipped", honest.y), ("widely shared copy (inverted target)", legacy.y)):
        r = check_matrix(risk_matrix(legacy.X) if y is legacy.y else V, y)
        table.append(
            [
                name,
                "-",
                1,
                r.score,
                r.score,
                r.score,
                r.score,
                int(r.verdict == "inverted"),
                int(r.verdict == "inconclusive"),
            ]
        )
        print(f"{name}: {r.verdict}: {r.summary()}")
        for e in r.evidence:
            print(f"  {e.label:70s} AUC {e.auc:.3f}  d {e.signed:+.3f}")
    for i, (name, which, n, how) in enumerate(scenarios(args.runs)):
        y = honest.y if which == "honest" else 1 - honest.y
        s, v = scenario(V, y, n, args.seed + i, **how)
        table.append(
            [
                name,
                which,
                n,
                s.min(),
                float(np.percentile(s, 1)),
                float(np.median(s)),
                s.max(),
                v.count("inverted"),
                v.count("inconclusive"),
            ]
        )
    print(
        f"\nrefused ('inverted') when mean d <= {REFUSE_BELOW} and more than half the features have d < -{MARGIN}; "
        f"'inconclusive' (warn, go on) when |mean d| < {INCONCLUSIVE_WITHIN}\n"
    )
    print(
        format_table(
            ["scenario", "labels", "runs", "min", "1st pct", "median", "max", "refused", "inconclusive"], table, 3
        )
    )


if __name__ == "__main__":
    main()
