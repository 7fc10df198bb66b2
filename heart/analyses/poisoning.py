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

A poisoned training set can be too lopsided for the Pipeline's inner CV: the calibration
(CalibratedClassifierCV, 5-fold) needs 5 rows of each class. Such a set is modelled with as
many calibration folds as its smaller class has rows (down to 2); with one row of a class it
is "not trainable" (no metrics); with one class left the only possible model predicts that
class ("constant"). Every run records which of these it was (`fit`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from ..model import compute_metrics, predict_proba
from ..progress import SILENT, Stages

REPORTED = ("accuracy", "roc_auc", "recall")
DEFAULT_RATE = 0.2
SWEEP_RATES = tuple(round(0.05 * i, 2) for i in range(11))
CV_FOLDS = 5
CONSTANT = "constant (one class left)"
NOT_TRAINABLE = "not trainable"
# How a training set was modelled (a run's `fit`): "<k>-fold calibration" (k below the Pipeline's own
# when a class is short of rows), "fitted" (a Pipeline without calibration), CONSTANT or NOT_TRAINABLE.


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
    fit_after: str = ""  # how the cleaned set was modelled


@dataclass
class AttackRun:
    rate: float
    seed: int
    targeted: bool
    flipped: int
    metrics: dict[str, float]
    defense: Defense | None = None
    fit: str = ""  # how the poisoned set was modelled; NOT_TRAINABLE leaves the metrics NaN

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
    fits_after: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """Mean ± sd over attack seeds (the trainable ones for metrics). In to_dict() the metrics sit
    beside "flipped", as REPORTED names; `fits` counts the seeds by how their set was modelled."""

    flipped: MeanSd
    metrics: dict[str, MeanSd]
    defense: DefenseSummary | None = None
    fits: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"flipped": asdict(self.flipped), **{m: asdict(v) for m, v in self.metrics.items()}}
        if self.defense is not None:
            out["defense"] = asdict(self.defense)
        out["fits"] = dict(self.fits)
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
    clean_fit: str = ""  # how the clean training set was modelled (the reference for every run's `fit`)

    def to_dict(self) -> dict:
        return {
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "train_positives": self.train_positives,
            "rate": self.rate,
            "budget_rows": self.budget_rows,
            "seeds": list(self.seeds),
            "clean": self.clean,
            "clean_fit": self.clean_fit,
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


def fit_plan(pipeline, smallest_class: int) -> tuple[object | None, str]:
    """What can be fitted on training labels whose smaller class has `smallest_class` rows, and its name.

    The Pipeline as it is when it can; its calibration's inner CV cut to that many folds when
    the class is short (CalibratedClassifierCV needs k rows of each class for k folds); None
    and CONSTANT with one class left, None and NOT_TRAINABLE with one row of a class (no split
    into 2 folds can put it on both sides). A pipeline without calibration fits on anything
    that has two classes.
    """
    if smallest_class == 0:
        return None, CONSTANT
    step_name, step = pipeline.steps[-1] if isinstance(pipeline, Pipeline) else ("", pipeline)
    if not isinstance(step, CalibratedClassifierCV) or not isinstance(step.cv, (int, type(None))):
        return clone(pipeline), "fitted"
    own = 5 if step.cv is None else step.cv  # cv=None is sklearn's 5-fold
    folds = min(own, smallest_class)
    if folds < 2:
        return None, NOT_TRAINABLE
    model = clone(pipeline)
    if folds < own:
        model.set_params(**{f"{step_name}__cv" if step_name else "cv": folds})
    return model, f"{folds}-fold calibration"


def _score(pipeline: Pipeline, X_tr, y_tr, X_te, y_te) -> tuple[dict, str]:
    """Held-out REPORTED metrics of the model these training labels allow (fit_plan), and its fit."""
    y_tr = np.asarray(y_tr).astype(int)
    model, fit = fit_plan(pipeline, int(np.bincount(y_tr, minlength=2).min()))
    if fit == NOT_TRAINABLE or y_tr.size == 0:  # (a defense can drop every row)
        return {k: float("nan") for k in REPORTED}, NOT_TRAINABLE
    # model None: every positive flipped (or every negative), and the only possible model predicts that one class
    proba = np.full(len(X_te), float(y_tr[0])) if model is None else predict_proba(model.fit(X_tr, y_tr), X_te)
    m = compute_metrics(y_te, proba)
    return {k: m[k] for k in REPORTED}, fit


def find_label_issues(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions whose given label disagrees confidently with out-of-fold predictions;
    also returns the out-of-fold P(class 1)."""
    y = np.asarray(y).astype(int)
    if np.bincount(y, minlength=2).min() < CV_FOLDS:  # too few of a class left to cross-validate
        return np.array([], dtype=int), np.full(len(y), np.nan)
    folds = list(StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(X, y))
    # each fold's training part has >= 4 of each class here: fit_plan always gives a model
    model, _ = fit_plan(pipeline, min(int(np.bincount(y[tr], minlength=2).min()) for tr, _ in folds))
    proba = cross_val_predict(model, X, y, cv=folds, method="predict_proba", n_jobs=1)
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
        cleaned, fit = _score(pipeline, X_tr.iloc[keep], y_poisoned[keep], X_te, y_te)
    elif action == "relabel":
        y_fixed = y_poisoned.copy()
        y_fixed[found] = 1 - y_fixed[found]
        cleaned, fit = _score(pipeline, X_tr, y_fixed, X_te, y_te)
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
        fit_after=fit,
    )


def _attack(pipeline, X_tr, y_tr, X_te, y_te, rate, seed, targeted, with_defense, action) -> AttackRun:
    rng = np.random.default_rng(seed)
    poisoned, flipped = flip_labels(y_tr, rate, rng, targeted)
    metrics, fit = _score(pipeline, X_tr, poisoned, X_te, y_te)
    out = AttackRun(rate=rate, seed=seed, targeted=targeted, flipped=int(len(flipped)), metrics=metrics, fit=fit)
    if with_defense:
        out.defense = defend(pipeline, X_tr, poisoned, flipped, X_te, y_te, seed, action)
    return out


def _mean_sd(runs: list[AttackRun], key: Callable[[AttackRun], float]) -> MeanSd:
    """Over the defined values (NaN: an undefined precision, a set not trainable): sample sd, 0 for one
    value, NaN for none."""
    v = np.array([key(r) for r in runs], dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return MeanSd(mean=float("nan"), sd=float("nan"))
    return MeanSd(mean=float(v.mean()), sd=float(v.std(ddof=1)) if v.size > 1 else 0.0)


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
            fits_after=_count([r.defense.fit_after for r in runs]),
        )
    return Summary(
        flipped=_mean_sd(runs, lambda r: r.flipped),
        metrics=metrics,
        defense=defense,
        fits=_count([r.fit for r in runs]),
    )


def _count(fits: list[str]) -> dict[str, int]:
    return {f: fits.count(f) for f in dict.fromkeys(fits)}


def _task(kind: str, pipeline, X_tr, y_tr, X_te, y_te, rate: float, seed: int, targeted: bool, action: str):
    """One unit of run_poisoning's parallel work: the clean model, its defense, or one attack run."""
    if kind == "clean":
        return _score(pipeline, X_tr, y_tr, X_te, y_te)
    if kind == "clean defense":
        return defend(pipeline, X_tr, y_tr, np.array([], dtype=int), X_te, y_te, seed, action)
    return _attack(pipeline, X_tr, y_tr, X_te, y_te, rate, seed, targeted, kind == "attack", action)


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
    stages: Stages = SILENT,
) -> PoisoningReport:
    """Clean model, the `rate` attacks (random and targeted, with defense) and the sweep.

    `pipeline` is an unfitted Pipeline (the card's hyperparameters, its seed fixed); `seeds` seed
    the flips. Sweep points that repeat a model already fitted are not refitted: 0% is the clean
    model for every seed, and the sweep at `rate` is the main attack's runs without their defense.
    """
    X_tr, y_tr = X.iloc[train_idx], np.asarray(y)[train_idx].astype(int)
    X_te, y_te = X.iloc[test_idx], np.asarray(y)[test_idx].astype(int)
    jobs = [("clean", 0.0, seeds[0], False), ("clean defense", 0.0, seeds[0], False)]
    jobs += [("attack", rate, s, t) for t in (False, True) for s in seeds]
    jobs += [("sweep", r, s, t) for t in (False, True) for r in sweep_rates if r not in (0, rate) for s in seeds]
    with stages.stage("poisoning: clean model, attacks with defense, sweep", total=len(jobs), unit="runs") as bar:
        results = []
        for out in joblib.Parallel(n_jobs=n_jobs, return_as="generator")(
            joblib.delayed(_task)(k, pipeline, X_tr, y_tr, X_te, y_te, r, s, t, action) for k, r, s, t in jobs
        ):
            results.append(out)
            bar.update()
    (clean, clean_fit), clean_defense = results[:2]
    done = dict(zip(jobs[2:], results[2:]))
    attacks, curves = {}, {}
    for name, targeted in (("random", False), ("targeted_positive_to_negative", True)):
        runs = [done["attack", rate, s, targeted] for s in seeds]
        attacks[name] = Attack(summary=summarize_runs(runs), runs=runs)
        curves[name] = [
            SweepPoint(
                rate=r, summary=summarize_runs([_sweep_run(done, clean, clean_fit, r, s, targeted) for s in seeds])
            )
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
        clean_fit=clean_fit,
    )


def _sweep_run(done: dict, clean: dict, clean_fit: str, rate: float, seed: int, targeted: bool) -> AttackRun:
    if rate == 0:  # no flips: the clean model, whatever the seed
        return AttackRun(rate=rate, seed=seed, targeted=targeted, flipped=0, metrics=dict(clean), fit=clean_fit)
    if ("attack", rate, seed, targeted) in done:
        return replace(done["attack", rate, seed, targeted], defense=None)
    return done["sweep", rate, seed, targeted]
