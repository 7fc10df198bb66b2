"""Label-flip poisoning of the training rows, and a confident-learning defense.

Only training labels are attacked; every model is scored on the untouched held-out split,
so the numbers say what a poisoned training set would cost in production. The forest's own
seed stays fixed: with a 0% flip the 'poisoned' model *is* the clean model, and differences
come from the flips alone. Flip choice is seeded (one generator per attack seed).

Defense (confident learning, as cleanlab's find_label_issues, without the dependency):
out-of-fold P(class) for every training row from cross_val_predict; per-class thresholds
t_j = mean P(j) over rows labelled j; a row labelled i is suspicious when P(j) >= t_j for
the other class j and that class is the more confident one. Suspicious rows are dropped
(or relabelled) and the model refitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from ..model import compute_metrics, predict_proba

REPORTED = ("accuracy", "roc_auc", "recall")
DEFAULT_RATE = 0.2
SWEEP_RATES = tuple(round(0.05 * i, 2) for i in range(11))
CV_FOLDS = 5


@dataclass
class Defense:
    """One cleaning of one training set, detection scored against the rows known to be flipped."""

    action: str
    flagged: int
    flipped: int
    true_positives: int
    precision: float
    recall: float
    chance_precision: float
    metrics_after: dict[str, float]  # REPORTED metric -> held-out value after cleaning and refitting


@dataclass
class AttackRun:
    rate: float
    seed: int
    targeted: bool
    flipped: int
    metrics: dict[str, float]
    defense: Defense | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.defense is None:
            del out["defense"]
        return out


@dataclass
class MeanSd:
    mean: float
    sd: float


@dataclass
class DefenseSummary:
    flagged: MeanSd
    true_positives: MeanSd
    precision: MeanSd
    recall: MeanSd
    chance_precision: MeanSd
    metrics_after: dict[str, MeanSd]


@dataclass
class Summary:
    """Mean ± sd over attack seeds. In to_dict() the metrics sit beside "flipped", as REPORTED names."""

    flipped: MeanSd
    metrics: dict[str, MeanSd]
    defense: DefenseSummary | None = None

    def to_dict(self) -> dict:
        out = {"flipped": asdict(self.flipped), **{m: asdict(v) for m, v in self.metrics.items()}}
        if self.defense is not None:
            out["defense"] = asdict(self.defense)
        return out


@dataclass
class SweepPoint:
    rate: float
    summary: Summary

    def to_dict(self) -> dict:
        return {"rate": self.rate, **self.summary.to_dict()}


@dataclass
class Attack:
    summary: Summary
    runs: list[AttackRun]

    def to_dict(self) -> dict:
        return {"summary": self.summary.to_dict(), "runs": [r.to_dict() for r in self.runs]}


@dataclass
class PoisoningReport:
    """Everything data_poisoning.py reports; attacks and sweep curves are keyed by attack name."""

    train_rows: int
    test_rows: int
    train_positives: int
    rate: float
    budget_rows: int
    seeds: list[int]
    clean: dict[str, float]
    defense_on_clean_labels: Defense
    attacks: dict[str, Attack]
    sweep: dict[str, list[SweepPoint]]

    def to_dict(self) -> dict:
        return {
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "train_positives": self.train_positives,
            "rate": self.rate,
            "budget_rows": self.budget_rows,
            "seeds": list(self.seeds),
            "clean": self.clean,
            "defense_on_clean_labels": asdict(self.defense_on_clean_labels),
            "attacks": {k: a.to_dict() for k, a in self.attacks.items()},
            "sweep": {k: [p.to_dict() for p in curve] for k, curve in self.sweep.items()},
        }


def flip_labels(
    y: np.ndarray, rate: float, rng: np.random.Generator, targeted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Flip round(rate * n) labels: any rows (random), or positives only (targeted: hide disease).

    Returns the poisoned labels and the flipped row positions. A targeted budget larger than
    the number of positives flips all of them.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"flip rate must be between 0 and 1, got {rate}")
    y = np.asarray(y).astype(int)
    budget = int(round(rate * len(y)))
    pool = np.flatnonzero(y == 1) if targeted else np.arange(len(y))
    flipped = np.sort(rng.choice(pool, size=min(budget, len(pool)), replace=False))
    poisoned = y.copy()
    poisoned[flipped] = 1 - poisoned[flipped]
    return poisoned, flipped


def _score(pipeline: Pipeline, X_tr, y_tr, X_te, y_te) -> dict:
    classes = np.unique(y_tr)
    if len(classes) < 2:  # every positive flipped: the only possible model predicts that one class
        proba = np.full(len(X_te), float(classes[0]))
    else:
        proba = predict_proba(clone(pipeline).fit(X_tr, y_tr), X_te)
    m = compute_metrics(y_te, proba)
    return {k: m[k] for k in REPORTED}


def find_label_issues(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions whose given label disagrees confidently with out-of-fold predictions;
    also returns the out-of-fold P(class 1)."""
    y = np.asarray(y).astype(int)
    if np.bincount(y, minlength=2).min() < CV_FOLDS:  # too few of a class left to cross-validate
        return np.array([], dtype=int), np.full(len(y), np.nan)
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    proba = cross_val_predict(clone(pipeline), X, y, cv=cv, method="predict_proba", n_jobs=1)
    thresholds = np.array([proba[y == j, j].mean() for j in (0, 1)])
    margin = proba - thresholds  # how far above its class's threshold each class is
    confident = margin >= 0
    other = 1 - y
    rows = np.arange(len(y))
    suspicious = confident[rows, other] & (~confident[rows, y] | (margin[rows, other] > margin[rows, y]))
    return np.flatnonzero(suspicious), proba[:, 1]


def defend(
    pipeline: Pipeline,
    X_tr: pd.DataFrame,
    y_poisoned: np.ndarray,
    flipped: np.ndarray,
    X_te: pd.DataFrame,
    y_te: np.ndarray,
    seed: int,
    action: str = "drop",
) -> Defense:
    """Detect, clean (drop or relabel), refit; detection scored against the known flips."""
    found, _ = find_label_issues(pipeline, X_tr, y_poisoned, seed)
    true = np.intersect1d(found, flipped)
    if action == "drop":
        keep = np.setdiff1d(np.arange(len(y_poisoned)), found)
        cleaned = _score(pipeline, X_tr.iloc[keep], y_poisoned[keep], X_te, y_te)
    elif action == "relabel":
        y_fixed = y_poisoned.copy()
        y_fixed[found] = 1 - y_fixed[found]
        cleaned = _score(pipeline, X_tr, y_fixed, X_te, y_te)
    else:
        raise ValueError(f"unknown defense action {action!r}: choose drop or relabel")
    return Defense(
        action=action,
        flagged=int(len(found)),
        flipped=int(len(flipped)),
        true_positives=int(len(true)),
        precision=float(len(true) / len(found)) if len(found) else float("nan"),
        recall=float(len(true) / len(flipped)) if len(flipped) else float("nan"),
        chance_precision=float(len(flipped) / len(y_poisoned)),
        metrics_after=cleaned,
    )


def _attack(pipeline, X_tr, y_tr, X_te, y_te, rate, seed, targeted, with_defense, action) -> AttackRun:
    rng = np.random.default_rng(seed)
    poisoned, flipped = flip_labels(y_tr, rate, rng, targeted)
    out = AttackRun(
        rate=rate,
        seed=seed,
        targeted=targeted,
        flipped=int(len(flipped)),
        metrics=_score(pipeline, X_tr, poisoned, X_te, y_te),
    )
    if with_defense:
        out.defense = defend(pipeline, X_tr, poisoned, flipped, X_te, y_te, seed, action)
    return out


def _mean_sd(runs: list[AttackRun], key: Callable[[AttackRun], float]) -> MeanSd:
    v = np.array([key(r) for r in runs], dtype=float)
    return MeanSd(mean=float(np.nanmean(v)), sd=float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0)


def summarize_runs(runs: list[AttackRun]) -> Summary:
    """Mean ± sd over the attack seeds of one setting (and of its defense, when it ran)."""
    metrics = {m: _mean_sd(runs, lambda r, m=m: r.metrics[m]) for m in REPORTED}
    defense = None
    if runs[0].defense is not None:
        defense = DefenseSummary(
            **{
                k: _mean_sd(runs, lambda r, k=k: getattr(r.defense, k))
                for k in ("flagged", "true_positives", "precision", "recall", "chance_precision")
            },
            metrics_after={m: _mean_sd(runs, lambda r, m=m: r.defense.metrics_after[m]) for m in REPORTED},
        )
    return Summary(flipped=_mean_sd(runs, lambda r: r.flipped), metrics=metrics, defense=defense)


def run_poisoning(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    rate: float = DEFAULT_RATE,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    sweep_rates: tuple[float, ...] = SWEEP_RATES,
    action: str = "drop",
    n_jobs: int = 2,
) -> PoisoningReport:
    """Clean model, the `rate` attacks (random and targeted, with defense) and the sweep.

    `pipeline` is an unfitted Pipeline (the card's hyperparameters); `seeds` seed the flips.
    """
    X_tr, y_tr = X.iloc[train_idx], np.asarray(y)[train_idx].astype(int)
    X_te, y_te = X.iloc[test_idx], np.asarray(y)[test_idx].astype(int)
    clean = _score(pipeline, X_tr, y_tr, X_te, y_te)
    clean_defense = defend(pipeline, X_tr, y_tr, np.array([], dtype=int), X_te, y_te, seeds[0], action)
    jobs = [(rate, s, t, True) for t in (False, True) for s in seeds]
    jobs += [(r, s, t, False) for t in (False, True) for r in sweep_rates for s in seeds]
    results = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(_attack)(pipeline, X_tr, y_tr, X_te, y_te, r, s, t, d, action) for r, s, t, d in jobs
    )
    main = [r for r, j in zip(results, jobs) if j[3]]
    sweep = [r for r, j in zip(results, jobs) if not j[3]]
    attacks, curves = {}, {}
    for name, targeted in (("random", False), ("targeted_positive_to_negative", True)):
        runs = [r for r in main if r.targeted == targeted]
        attacks[name] = Attack(summary=summarize_runs(runs), runs=runs)
        curves[name] = [
            SweepPoint(rate=r, summary=summarize_runs([x for x in sweep if x.targeted == targeted and x.rate == r]))
            for r in sweep_rates
        ]
    return PoisoningReport(
        train_rows=int(len(train_idx)),
        test_rows=int(len(test_idx)),
        train_positives=int(y_tr.sum()),
        rate=rate,
        budget_rows=int(round(rate * len(train_idx))),
        seeds=list(seeds),
        clean=clean,
        defense_on_clean_labels=clean_defense,
        attacks=attacks,
        sweep=curves,
    )
