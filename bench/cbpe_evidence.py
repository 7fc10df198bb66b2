"""Does the label-free estimate (CBPE) work? python -m bench.cbpe_evidence [--runs 100] [--nannyml-python PY]

The figures of docs/monitoring.md, on the trained model (model.joblib) and 2,000 patients drawn
from the training marginals (heart.samples, seed 0), probabilities computed once:

calibrated      labels Bernoulli(probability), --runs seeded draws: how often the estimated
                figure falls inside the realized one's bootstrap 95% CI (1,000 resamples);
covariate shift the same patients ten years older, and a window where 90% have a normal
                thallium test: estimated vs realized (mean of 20 label draws);
concept shift   the label flipped for every woman: the probabilities, hence the estimate, do
                not move, the realized figures do;
real labels     out-of-fold probabilities of the served Pipeline on the 303 real patients
                (5-fold): does calibration hold on real labels, overall and by sex?

--nannyml-python runs NannyML's CBPE (nannyml.CBPE, no calibrator) on the same windows in
another interpreter, where NannyML is installed, and prints the differences. --write-example DIR
writes instead the example of docs/monitoring.md: a prediction log and a labels file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from heart.analyses.fairness import out_of_fold_scores
from heart.analyses.performance import METRICS, N_BOOT, expected, realized, realized_intervals
from heart.analyses.report import format_table
from heart.artifact import load_model
from heart.data import load_dataset
from heart.model import build_forest, predict_proba
from heart.samples import sample

from .label_check_sweep import DATA

SHOWN = ("accuracy", "roc_auc", "recall", "specificity")


def draw(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(p.size) < p).astype(float)


def calibrated(p: np.ndarray, runs: int) -> dict[str, int]:
    """Per metric, the runs whose realized 95% CI holds the estimate."""
    est = expected(p, 0.5)
    inside = dict.fromkeys(METRICS, 0)
    for run in range(runs):
        ci = realized_intervals(p, draw(p, run), 0.5, N_BOOT, seed=run)
        for m in METRICS:
            inside[m] += ci[m][0] <= est[m] <= ci[m][1]
    return inside


def windows(model, data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probabilities, labels) of each scenario's window of 2,000 patients."""
    X = sample(2000, seed=0, mode="marginal", reference=data.X)
    p = predict_proba(model.pipeline, X)
    older = predict_proba(model.pipeline, X.assign(age=X["age"] + 10))
    pool = sample(20_000, seed=1, mode="marginal", reference=data.X)
    rng = np.random.default_rng(1)
    normal = np.flatnonzero(pool["thal"] == 2)
    rows = np.r_[rng.choice(normal, 1800, replace=False), rng.choice(np.flatnonzero(pool["thal"] != 2), 200)]
    thal = predict_proba(model.pipeline, pool.iloc[rows])
    flipped = draw(p, 0)
    women = (X["gender"] == 0).to_numpy()
    flipped[women] = 1 - flipped[women]
    return {
        "calibrated (reference)": (p, draw(p, 0)),
        "covariate: age + 10": (older, draw(older, 0)),
        "covariate: 90% thal normal": (thal, draw(thal, 0)),
        "concept: label flipped for women": (p, flipped),
    }


def real_labels(data, seed: int = 42) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold probabilities of the served Pipeline with the real labels, overall and by sex."""
    oof = out_of_fold_scores(build_forest(), data.X, data.y, seed, n_jobs=2)
    women = (data.X["gender"] == 0).to_numpy()
    y = data.y.astype(float)
    return {
        f"real, all {len(y)} (out-of-fold)": (oof, y),
        f"real, women ({women.sum()})": (oof[women], y[women]),
        f"real, men ({(~women).sum()})": (oof[~women], y[~women]),
    }


def table(scenarios: dict, draws: int = 1) -> str:
    """Estimated vs realized [95% CI] per scenario; draws > 1 also gives the mean realized figure
    over that many label draws (synthetic scenarios only)."""
    rows = []
    for name, (p, y) in scenarios.items():
        est, real = expected(p, 0.5), realized(p, y, 0.5)
        ci = realized_intervals(p, y, 0.5, N_BOOT, seed=0)
        cells = [f"{est[m]:.3f} | {real[m]:.3f} [{ci[m][0]:.3f}, {ci[m][1]:.3f}]" for m in SHOWN]
        rows.append([name, len(p), *cells])
    return format_table(["window", "n", *(f"{m}: estimated | realized [95% CI]" for m in SHOWN)], rows)


def follow(scenarios: dict, n_draws: int = 20) -> str:
    """Estimated vs mean realized over n_draws label draws Bernoulli(p), against the reference."""
    (p0, _), rows = scenarios["calibrated (reference)"], []
    base_est = expected(p0, 0.5)
    base_real = {m: np.mean([realized(p0, draw(p0, s), 0.5)[m] for s in range(n_draws)]) for m in SHOWN}
    for name in ("covariate: age + 10", "covariate: 90% thal normal"):
        p, _ = scenarios[name]
        est = expected(p, 0.5)
        real = {m: np.mean([realized(p, draw(p, s), 0.5)[m] for s in range(n_draws)]) for m in SHOWN}
        rows.append([name, *(f"{est[m] - base_est[m]:+.3f} | {real[m] - base_real[m]:+.3f}" for m in SHOWN)])
    return format_table(["window", *(f"{m}: change estimated | realized" for m in SHOWN)], rows)


def with_self_pairs(p: np.ndarray) -> float:
    """Our expected ROC AUC if each patient were also paired with itself, as a tie (NannyML's curve)."""
    own, pairs = np.sum(p * (1 - p)), np.sum(p) * np.sum(1 - p)
    return float((expected(p, 0.5)["roc_auc"] * (pairs - own) + 0.5 * own) / pairs)


NANNYML = """
import json, sys, warnings
import pandas as pd, nannyml as nml
from nannyml.calibration import NoopCalibrator
warnings.simplefilter("ignore")
frame = pd.read_csv(sys.argv[1])
ref = frame[frame.scenario == frame.scenario.iloc[0]]
metrics = ["roc_auc", "accuracy", "recall", "specificity"]
out = {"version": nml.__version__}
for name, part in frame.groupby("scenario", sort=False):
    cbpe = nml.CBPE(problem_type="classification_binary", y_pred_proba="p", y_pred="pred", y_true="y",
                    metrics=metrics, chunk_size=len(part), calibrator=NoopCalibrator())
    cbpe.fit(ref)
    res = cbpe.estimate(part).filter(period="analysis").to_df()
    out[name] = {m: {k: float(res[(m, k)].iloc[0]) for k in ("value", "realized", "sampling_error")} for m in metrics}
print(json.dumps(out))
"""


def nannyml(python: str, scenarios: dict) -> str:
    """NannyML's CBPE on the same windows, run by `python`; the differences from ours."""
    frame = pd.concat(
        pd.DataFrame({"scenario": name, "p": p, "pred": (p >= 0.5).astype(int), "y": y.astype(int)})
        for name, (p, y) in scenarios.items()
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "windows.csv"
        frame.to_csv(path, index=False)
        env = {"NML_DISABLE_USAGE_LOGGING": "1", "PATH": "/usr/bin:/bin"}
        done = subprocess.run([python, "-c", NANNYML, str(path)], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode:
        return f"NannyML failed: {done.stderr.strip().splitlines()[-1]}"
    theirs = json.loads(done.stdout)
    rows = []
    for name, (p, y) in scenarios.items():
        est, real = expected(p, 0.5), realized(p, y, 0.5)
        t = theirs[name]
        rows.append([name, *(f"{t[m]['value']:.4f} ({t[m]['value'] - est[m]:+.1e})" for m in SHOWN)])
        assert all(abs(t[m]["realized"] - real[m]) < 1e-9 for m in SHOWN), (name, t)
    selfish = max(abs(theirs[name]["roc_auc"]["value"] - with_self_pairs(p)) for name, (p, _) in scenarios.items())
    rows.append(["ROC AUC: NannyML minus ours counting each patient paired with itself", f"{selfish:.1e}", "", "", ""])
    head = ["window", *(f"{m}: NannyML (minus ours)" for m in SHOWN)]
    return f"NannyML {theirs['version']} CBPE, no calibrator (its realized figures equal ours):\n" + format_table(
        head, rows, digits=4
    )


def write_example(model, data, out: Path, per_day: int = 240) -> None:
    """Five days of patients resampled from the training data, served by the model (records as the
    API writes them, with prediction ids); labels Bernoulli(p) for 90% of the first three days,
    flipped for the women of day 3 (a concept shift the estimate cannot see)."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, data.n_rows, 5 * per_day)
    X = data.X.iloc[rows].reset_index(drop=True)
    p = predict_proba(model.pipeline, X)
    y = draw(p, 1).astype(int)
    day = np.arange(p.size) // per_day
    flip = (day == 2) & (X["gender"] == 0).to_numpy()
    y[flip] = 1 - y[flip]
    start = pd.Timestamp("2026-05-01T07:00:00+00:00")
    times = start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.uniform(0, 12 * 3600, p.size), unit="s")
    out.mkdir(parents=True, exist_ok=True)
    ids = [uuid.UUID(int=int(rng.integers(2**62)) << 64 | int(rng.integers(2**62))).hex for _ in p]
    with open(out / "predictions.jsonl", "w") as log, open(out / "labels.csv", "w") as labels:
        labels.write("prediction_id,label\n")
        for i in np.argsort(times.to_numpy(), kind="stable"):
            record = {
                "event": "prediction",
                "prediction_id": ids[i],
                "timestamp": times[i].isoformat(timespec="milliseconds"),
            }
            record |= {"model_version": model.version, "predicted_class": int(p[i] >= 0.5), "probability": float(p[i])}
            log.write(json.dumps(record) + "\n")
            if day[i] < 3 and rng.random() < 0.9:
                labels.write(f"{ids[i]},{'yes' if y[i] else 'no'}\n")
    print(f"wrote {out / 'predictions.jsonl'} ({p.size} predictions) and {out / 'labels.csv'}")


def live_cost(model, data, calls: int = 20) -> str:
    """What the drift thread adds per run: scoring a 1,000-row window again with the served
    predictor (both engines) and CBPE on it; the request path does nothing new."""
    from heart.decision import threshold_of
    from heart.fast import build_predictor, parity_rows

    rows = sample(1000, seed=0, mode="marginal", reference=data.X).to_numpy()
    out = []
    for engine in ("onnx", "sklearn"):
        predictor, _ = build_predictor(model.pipeline, parity_rows(200), engine, threshold_of(model.card))
        predictor.predict(rows)
        t0 = time.perf_counter()
        for _ in range(calls):
            expected(predictor.predict(rows)[1], predictor.threshold)
        out.append(f"{predictor.engine} {(time.perf_counter() - t0) / calls * 1000:.1f} ms")
    p = predictor.predict(rows)[1]
    t0 = time.perf_counter()
    for _ in range(calls * 10):
        expected(p, 0.5)
    cbpe = (time.perf_counter() - t0) / (calls * 10) * 1000
    return f"live estimate per 1,000-row window (score again + CBPE): {', '.join(out)}; CBPE alone {cbpe:.2f} ms"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="model.joblib")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--runs", type=int, default=100, help="label draws in the calibrated case")
    p.add_argument("--nannyml-python", help="an interpreter with nannyml installed (a throwaway venv)")
    p.add_argument("--write-example", type=Path, help="write the docs' example log and labels here, and stop")
    args = p.parse_args(argv)
    model, data = load_model(args.model), load_dataset(args.data)
    if args.write_example:
        return write_example(model, data, args.write_example)
    scenarios = windows(model, data)
    t0 = time.perf_counter()
    inside = calibrated(scenarios["calibrated (reference)"][0], args.runs)
    print(f"calibrated, {args.runs} label draws: estimate inside the realized 95% CI in", end=" ")
    print(", ".join(f"{m} {inside[m]}" for m in METRICS) + f" runs ({time.perf_counter() - t0:.1f} s)\n")
    print(table(scenarios) + "\n\nchange from the reference window (realized: mean of 20 label draws):")
    print(follow(scenarios) + "\n")
    print(table(real_labels(data)) + "\n")
    print(live_cost(model, data) + "\n")
    if args.nannyml_python:
        print(nannyml(args.nannyml_python, scenarios))


if __name__ == "__main__":
    sys.exit(main())
