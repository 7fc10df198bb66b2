"""Group fairness of the model (Fairlearn), with the uncertainty a 61-row test split deserves.

The held-out split has about 20 women, so a single gap on it is mostly noise. We therefore
also score out-of-fold predictions over every row (a fresh Pipeline with the card's
hyperparameters, cross_val_predict) and attach bootstrap 95% intervals to every group gap:
an interval that straddles 0 means "no evidence of a gap", not "fair".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score, precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from ..decision import DEFAULT_THRESHOLD, decide
from ..model import predict_proba
from ..progress import SILENT, Stage, Stages
from ..schema import BY_NAME

AGE_BIN_YEARS = 20
N_BOOT = 1000
CV_FOLDS = 5


@dataclass
class GapInterval:
    """One metric's signed gap between two groups, with its bootstrap percentile interval."""

    gap: float
    ci95: list[float]
    boot_samples: int
    excludes_zero: bool


@dataclass
class GroupReport:
    """Metrics by group on one set of predictions. Metric names stay dict keys (the scripts
    iterate over them); gaps are keyed "<group> - <reference group>", then by metric."""

    n: int
    groups: list[str]
    overall: dict[str, float]
    by_group: dict[str, dict[str, float]]  # group -> metric -> value, plus "count" and "positives"
    difference: dict[str, float]
    ratio: dict[str, float]
    gaps: dict[str, dict[str, GapInterval]]
    demographic_parity_difference: float
    equalized_odds_difference: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Disparities:
    accuracy: float
    selection_rate: float
    demographic_parity_difference: float
    equalized_odds_difference: float


@dataclass
class BeforeAfter:
    before: Disparities
    after: Disparities


@dataclass
class Mitigation:
    """ThresholdOptimizer before/after, or why it was skipped (then only `skipped` is set)."""

    method: str = ""
    train_out_of_fold: BeforeAfter | None = None
    held_out: BeforeAfter | None = None
    skipped: str = ""

    def to_dict(self) -> dict:
        if self.skipped:
            return {"skipped": self.skipped}
        return {
            "method": self.method,
            "train_out_of_fold": asdict(self.train_out_of_fold),
            "held_out": asdict(self.held_out),
        }


@dataclass
class Bootstrap:
    resamples: int
    seed: int
    interval: str = "percentile 95%"


@dataclass
class FairnessReport:
    """Everything fairness_check.py reports; to_dict() is its JSON."""

    sensitive_feature: str
    grouping: str
    threshold: float
    bootstrap: Bootstrap
    held_out: GroupReport
    out_of_fold: GroupReport
    mitigation: Mitigation

    def to_dict(self) -> dict:
        return {
            "sensitive_feature": self.sensitive_feature,
            "grouping": self.grouping,
            "threshold": self.threshold,
            "bootstrap": asdict(self.bootstrap),
            "held_out": self.held_out.to_dict(),
            "out_of_fold": self.out_of_fold.to_dict(),
            "mitigation": self.mitigation.to_dict(),
        }


def _precision(y, p):
    return precision_score(y, p, zero_division=0)


# For MetricFrame; _group_metrics computes the same numbers vectorised for the bootstrap.
METRICS = {
    "accuracy": accuracy_score,
    "selection_rate": selection_rate,
    "true_positive_rate": true_positive_rate,
    "false_negative_rate": false_negative_rate,
    "false_positive_rate": false_positive_rate,
    "precision": _precision,
}


def sensitive_groups(X: pd.DataFrame, name: str) -> pd.Series:
    """Group label per row, from the schema: codes by their meaning, age in 20-year bins,
    other continuous features in thirds (tertiles of the data); missing values form a group."""
    if name not in BY_NAME:
        raise ValueError(f"unknown sensitive feature '{name}': choose one of {', '.join(BY_NAME)}")
    f = BY_NAME[name]
    values = X[name].to_numpy(dtype=float)
    labels = np.full(len(values), "missing", dtype=object)
    present = ~np.isnan(values)
    if f.discrete:
        labels[present] = [f.codes.get(int(v), str(v)) for v in values[present]]
    elif name == "age":
        low = (values[present] // AGE_BIN_YEARS * AGE_BIN_YEARS).astype(int)
        labels[present] = [f"{a}-{a + AGE_BIN_YEARS - 1}" for a in low]
    else:
        cuts = np.unique(np.quantile(values[present], [1 / 3, 2 / 3]))
        bins = np.digitize(values[present], cuts, right=True)
        edges = [values[present].min(), *cuts, values[present].max()]
        names = [
            f"{i + 1}: {edges[i]:.4g}-{edges[i + 1]:.4g} {f.unit}".strip()  # numbered: sorts in order
            for i in range(len(edges) - 1)
        ]
        labels[present] = [names[b] for b in bins]
    return pd.Series(labels, index=X.index, name=name)


def _group_metrics(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, order: list) -> dict[str, np.ndarray]:
    """Same metrics as METRICS, vectorised by group: the bootstrap's fast path."""
    out = {m: np.full(len(order), np.nan) for m in METRICS}
    for i, g in enumerate(order):
        mask = groups == g
        yt, yp = y[mask], pred[mask]
        if not mask.any():
            continue
        pos, neg, sel = yt == 1, yt == 0, yp == 1
        out["accuracy"][i] = np.mean(yt == yp)
        out["selection_rate"][i] = np.mean(sel)
        if pos.any():
            out["true_positive_rate"][i] = np.mean(sel[pos])
            out["false_negative_rate"][i] = 1 - out["true_positive_rate"][i]
        if neg.any():
            out["false_positive_rate"][i] = np.mean(sel[neg])
        out["precision"][i] = np.mean(yt[sel] == 1) if sel.any() else 0.0
    return out


def comparisons(order: list[str], counts: dict[str, int]) -> list[tuple[int, int]]:
    """Which group gaps get an interval: two groups, second minus first; more, each group
    minus the largest one. (A max - min gap is >= 0 by construction and biased upwards on
    resamples, so its interval cannot tell a real gap from noise.)"""
    if len(order) == 2:
        return [(1, 0)]
    ref = max(range(len(order)), key=lambda i: counts[order[i]])
    return [(i, ref) for i in range(len(order)) if i != ref]


def group_report(
    y: np.ndarray,
    pred: np.ndarray,
    groups: pd.Series,
    seed: int = 0,
    n_boot: int = N_BOOT,
    progress: Stage | None = None,
) -> GroupReport:
    """MetricFrame by group plus bootstrap 95% CIs for each metric's signed gap between groups.
    `progress` is told of each resample."""
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    g = groups.to_numpy(dtype=object)
    frame = MetricFrame(metrics={**METRICS, "count": count}, y_true=y, y_pred=pred, sensitive_features=g)
    order = [str(k) for k in frame.by_group.index]
    by_group = {str(k): {m: float(v) for m, v in row.items()} for k, row in frame.by_group.iterrows()}
    for k in by_group:
        by_group[k]["count"] = int(by_group[k]["count"])
        by_group[k]["positives"] = int(((g == k) & (y == 1)).sum())
    pairs = comparisons(order, {k: v["count"] for k, v in by_group.items()}) if len(order) > 1 else []
    point = _group_metrics(y, pred, g, order)
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, len(pairs), len(METRICS)), np.nan)
    n = len(y)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        gm = _group_metrics(y[idx], pred[idx], g[idx], order)
        for j, (a, r) in enumerate(pairs):
            boot[b, j] = [gm[m][a] - gm[m][r] for m in METRICS]
        if progress is not None:
            progress.update()
    gaps = {}
    for j, (a, r) in enumerate(pairs):
        entry = {}
        for k, m in enumerate(METRICS):
            v = boot[:, j, k]
            v = v[~np.isnan(v)]
            lo, hi = np.percentile(v, [2.5, 97.5]) if v.size else (np.nan, np.nan)
            entry[m] = GapInterval(
                gap=float(point[m][a] - point[m][r]),
                ci95=[float(lo), float(hi)],
                boot_samples=int(v.size),
                excludes_zero=bool(v.size and (lo > 0 or hi < 0)),
            )
        gaps[f"{order[a]} - {order[r]}"] = entry
    return GroupReport(
        n=int(n),
        groups=order,
        overall={m: float(v) for m, v in frame.overall.items() if m != "count"},
        by_group=by_group,
        difference={m: float(v) for m, v in frame.difference().items() if m != "count"},
        ratio={m: float(v) for m, v in frame.ratio().items() if m != "count"},
        gaps=gaps,
        demographic_parity_difference=float(demographic_parity_difference(y, pred, sensitive_features=g)),
        equalized_odds_difference=float(equalized_odds_difference(y, pred, sensitive_features=g)),
    )


class _GivenScores(ClassifierMixin, BaseEstimator):
    """A 'prefit' estimator whose input is already the score: lets ThresholdOptimizer learn
    group thresholds from out-of-fold scores instead of in-sample ones."""

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        s = np.asarray(X, dtype=float).reshape(len(X), -1)[:, 0]
        return np.column_stack([1 - s, s])

    def predict(self, X):
        return decide(self.predict_proba(X)[:, 1])


def _disparities(y, pred, g) -> Disparities:
    return Disparities(
        accuracy=float(accuracy_score(y, pred)),
        selection_rate=float(np.mean(pred)),
        demographic_parity_difference=float(demographic_parity_difference(y, pred, sensitive_features=g)),
        equalized_odds_difference=float(equalized_odds_difference(y, pred, sensitive_features=g)),
    )


def mitigate(
    oof_scores: np.ndarray,
    y_fit: np.ndarray,
    g_fit: pd.Series,
    test_scores: np.ndarray,
    y_test: np.ndarray,
    g_test: pd.Series,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
) -> Mitigation:
    """ThresholdOptimizer(equalized_odds) fitted on out-of-fold training scores; before/after
    on those rows (where thresholds were fitted) and on the untouched held-out rows."""
    for where, y_, g_ in (("training", y_fit, g_fit), ("held-out", y_test, g_test)):
        for grp in np.unique(g_):
            if len(np.unique(y_[g_.to_numpy() == grp])) < 2:
                return Mitigation(
                    skipped=f"group '{grp}' has only one class in the {where} rows: "
                    "equalized odds thresholds cannot be fitted or checked"
                )
    opt = ThresholdOptimizer(
        estimator=_GivenScores().fit(None),
        constraints="equalized_odds",
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict_proba",
    )
    opt.fit(oof_scores.reshape(-1, 1), y_fit, sensitive_features=g_fit.to_numpy())
    views = {}
    for name, s, y_, g_ in (("train_out_of_fold", oof_scores, y_fit, g_fit), ("held_out", test_scores, y_test, g_test)):
        before = decide(s, threshold)
        after = opt.predict(s.reshape(-1, 1), sensitive_features=g_.to_numpy(), random_state=seed)
        views[name] = BeforeAfter(
            before=_disparities(y_, before, g_.to_numpy()),
            after=_disparities(y_, np.asarray(after).astype(int), g_.to_numpy()),
        )
    return Mitigation(
        method="fairlearn ThresholdOptimizer(constraints='equalized_odds', "
        "objective='balanced_accuracy_score'), randomised thresholds per group, "
        "fitted on out-of-fold scores of the training rows",
        **views,
    )


def out_of_fold_scores(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, seed: int, n_jobs: int = 2) -> np.ndarray:
    """P(disease) for each row from a model that never saw that row (stratified 5-fold)."""
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    return cross_val_predict(pipeline, X, y, cv=cv, method="predict_proba", n_jobs=n_jobs)[:, 1]


def analyze(
    fitted: Pipeline,
    fresh: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    sensitive: str = "gender",
    seed: int = 0,
    n_boot: int = N_BOOT,
    threshold: float = DEFAULT_THRESHOLD,
    n_jobs: int = 2,
    stages: Stages = SILENT,
) -> FairnessReport:
    """Everything fairness_check.py reports.

    `fitted` is the saved model (trained on train_idx); `fresh` an unfitted copy of its Pipeline.
    """
    groups = sensitive_groups(X, sensitive)
    proba = predict_proba(fitted, X)
    test_pred = decide(proba[test_idx], threshold)
    with stages.stage(f"out-of-fold predictions: all rows, training rows ({CV_FOLDS} folds each)", 2, "CVs") as bar:
        oof_all = out_of_fold_scores(fresh, X, y, seed, n_jobs)
        bar.update()
        oof_train = out_of_fold_scores(fresh, X.iloc[train_idx], y[train_idx], seed, n_jobs)
        bar.update()
    with stages.stage("bootstrap: held-out split", n_boot, "resamples") as bar:
        held_out = group_report(y[test_idx], test_pred, groups.iloc[test_idx], seed, n_boot, bar)
    with stages.stage("bootstrap: out-of-fold predictions", n_boot, "resamples") as bar:
        out_of_fold = group_report(y, decide(oof_all, threshold), groups, seed, n_boot, bar)
    return FairnessReport(
        sensitive_feature=sensitive,
        grouping=(
            "20-year bins" if sensitive == "age" else "schema codes" if BY_NAME[sensitive].discrete else "tertiles"
        ),
        threshold=threshold,
        bootstrap=Bootstrap(resamples=n_boot, seed=seed),
        held_out=held_out,
        out_of_fold=out_of_fold,
        mitigation=mitigate(
            oof_train,
            y[train_idx],
            groups.iloc[train_idx],
            proba[test_idx],
            y[test_idx],
            groups.iloc[test_idx],
            seed,
            threshold,
        ),
    )
