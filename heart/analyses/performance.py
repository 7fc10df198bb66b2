"""Performance in production: realized from the labels, estimated without them (CBPE).

Labels (angiography results) come back days after a prediction, so every time window gets two
views, at the model card's decision threshold:

realized   over the labelled predictions: ROC AUC, Brier, recall, specificity and accuracy, each
           with a bootstrap percentile 95% interval (seeded).
estimated  from the served probabilities alone, for every window, labelled or not: if the model
           is calibrated, a patient served p has the disease with probability p, so the expected
           confusion matrix, hence accuracy, recall, specificity, Brier and ROC AUC, follow
           (confidence-based performance estimation, CBPE, as in NannyML). Its 95% interval is
           where the realized figure falls in 95% of label draws Bernoulli(p): the spread the
           labels add, under the same assumption.

CBPE assumes that calibration holds on the new patients (so covariate shift is fine) and that
the disease given the features has not changed (no concept shift): docs/monitoring.md shows both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..decision import decide

if TYPE_CHECKING:  # pandas only where frames are read: the server's live estimate uses numpy alone
    import pandas as pd

METRICS = ("roc_auc", "accuracy", "recall", "specificity", "brier")
HIGHER_IS_BETTER = ("roc_auc", "accuracy", "recall", "specificity")
KINDS = ("estimated", "realized")
COLUMNS = ("prediction_id", "timestamp", "model_version", "probability", "predicted_class", "label")
DEFAULT_WINDOW = "1D"
N_BOOT = 1000
MIN_ROWS = 100  # windows with fewer rows (labelled rows, for realized) are shown but not judged
CHUNK_CELLS = 2_000_000  # draws x rows per step of the resampling: bounds the memory, not the result


@dataclass
class Figure:
    """One metric in one window: its value and 95% interval (NaN where undefined)."""

    value: float
    ci95: list[float]


@dataclass
class WindowPerformance:
    start: str
    end: str
    n: int
    n_labelled: int
    label_coverage: float
    positive_rate: float  # share predicted positive at the threshold
    model_versions: list[str]
    estimated: dict[str, Figure]
    realized: dict[str, Figure]


@dataclass(frozen=True)
class Minimum:
    """A floor for one estimated or realized metric: the degradation check's setting."""

    kind: str
    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}.{self.metric}={self.value:g}"


# About 1.5 fold-sds below the model's 5x5 cross-validated accuracy (0.82 +- 0.05) and ROC AUC
# (0.90 +- 0.04): a drop well past the noise of 60-row folds. The alert rules use the same figures.
DEFAULT_MINIMUMS = (
    Minimum("estimated", "accuracy", 0.75),
    Minimum("estimated", "roc_auc", 0.80),
    Minimum("realized", "accuracy", 0.75),
    Minimum("realized", "roc_auc", 0.80),
)


@dataclass
class Breach:
    window: str
    kind: str
    metric: str
    value: float
    minimum: float
    ci95: list[float]


@dataclass
class PerformanceReport:
    """Everything monitor_performance.py reports; to_dict() is its JSON."""

    threshold: float
    window: str
    bootstrap: int  # resamples (realized) and label draws (estimated) per window
    seed: int
    intervals: dict[str, str]
    overall: WindowPerformance
    windows: list[WindowPerformance]
    minimums: list[Minimum] = field(default_factory=list)
    min_rows: int = MIN_ROWS
    breaches: list[Breach] = field(default_factory=list)
    class_mismatches: int = 0  # served classes the threshold would not give: is it the serving model's card?

    @property
    def degraded(self) -> bool:
        return bool(self.breaches)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["minimums"] = [str(m) for m in self.minimums]
        out["degraded"] = self.degraded
        return out


# ------------------------------------------------------------------------------ settings


def parse_window(text: str) -> pd.Timedelta:
    """A window width such as 1D, 6h or 30min; ValueError saying what is accepted."""
    import pandas as pd

    try:
        width = pd.Timedelta(str(text).strip())
    except (ValueError, TypeError):
        width = pd.NaT
    if pd.isna(width) or width < pd.Timedelta(seconds=1):
        raise ValueError(f"window '{text}' is not a duration of at least a second: use e.g. 1D, 6h or 30min")
    return width


def parse_minimum(text: str) -> Minimum:
    """'estimated.accuracy=0.8' -> Minimum; ValueError naming the rule broken."""
    name, sep, number = str(text).partition("=")
    kind, dot, metric = name.strip().partition(".")
    if not sep or not dot or kind not in KINDS or metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"'{text}' is not KIND.METRIC=VALUE with KIND {' or '.join(KINDS)} and METRIC one of "
            f"{', '.join(HIGHER_IS_BETTER)} (Brier is lower-better: no minimum)"
        )
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ValueError(f"'{text}': the minimum must be a number between 0 and 1")
    return Minimum(kind, metric, value)


# ------------------------------------------------------------------------------ the metrics


def _ties(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts p, and where each run of equal probabilities starts in it."""
    order = np.argsort(p, kind="stable")
    sp = p[order]
    return order, np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])


def expected(p: np.ndarray, threshold: float) -> dict[str, float]:
    """CBPE: each metric's expected value if every label is Bernoulli(p), from p alone.

    Accuracy and Brier are exact expectations; recall, specificity and ROC AUC are ratios of
    exact expectations: E[TP] / E[positives], and E[concordant pairs] / E[positive-negative
    pairs], where a pair is two different patients (ties count a half).
    """
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return dict.fromkeys(METRICS, float("nan"))
    pred = decide(p, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "roc_auc": expected_auc(p),
            "accuracy": float(np.mean(np.where(pred == 1, p, 1 - p))),
            "recall": float(np.sum(p * pred) / np.sum(p)),
            "specificity": float(np.sum((1 - p) * (1 - pred)) / np.sum(1 - p)),
            "brier": float(np.mean(p * (1 - p))),
        }


def expected_auc(p: np.ndarray) -> float:
    """E[concordant pairs] / E[positive-negative pairs] over pairs i != j, labels Bernoulli(p)."""
    p = np.asarray(p, dtype=float)
    order, starts = _ties(p)
    sp = p[order]
    pos, neg, own = (np.add.reduceat(v, starts) for v in (sp, 1 - sp, sp * (1 - sp)))
    below = np.cumsum(neg) - neg  # negatives' weight strictly below each run of equal p
    concordant = np.sum(pos * below) + 0.5 * np.sum(pos * neg - own)
    pairs = np.sum(sp) * np.sum(1 - sp) - np.sum(own)
    return float(concordant / pairs) if pairs > 0 else float("nan")


def _metrics(pos: np.ndarray, neg: np.ndarray, sp: np.ndarray, threshold: float, starts: np.ndarray) -> dict:
    """Every metric for B weightings at once: pos and neg are (n, B) weights of each row as a
    positive and as a negative, rows in the order of the probabilities sp (runs start at starts).
    Sums are einsum and slices, not BLAS: a threaded gemv is 40x slower on a busy 2-core machine."""
    if starts.size < sp.size:  # ties: one row per run of equal probabilities (a pair within it counts a half)
        pos, neg, sp = np.add.reduceat(pos, starts, axis=0), np.add.reduceat(neg, starts, axis=0), sp[starts]
    first_positive = int(np.searchsorted(sp, threshold, side="left"))  # decide(): p >= threshold, sorted
    with np.errstate(invalid="ignore", divide="ignore"):
        n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
        total = n_pos + n_neg
        tp, tn = pos[first_positive:].sum(axis=0), neg[:first_positive].sum(axis=0)
        at_or_below = np.cumsum(neg, axis=0)
        at_or_below -= 0.5 * neg  # negatives below each row, and half those tied with it
        concordant = np.einsum("ij,ij->j", pos, at_or_below)
        squared = np.einsum("i,ij->j", (1 - sp) ** 2, pos) + np.einsum("i,ij->j", sp**2, neg)
        return {
            "roc_auc": np.where((n_pos > 0) & (n_neg > 0), concordant / (n_pos * n_neg), np.nan),
            "accuracy": (tp + tn) / total,
            "recall": np.where(n_pos > 0, tp / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, tn / n_neg, np.nan),
            "brier": squared / total,
        }


def realized(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics on labelled predictions (NaN where undefined: AUC needs both classes)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if p.size == 0:
        return dict.fromkeys(METRICS, float("nan"))
    order, starts = _ties(p)
    got = _metrics(y[order, None], 1 - y[order, None], p[order], threshold, starts)
    return {m: float(v[0]) for m, v in got.items()}


def _chunks(n_draws: int, n: int) -> Iterator[int]:
    step = max(1, CHUNK_CELLS // max(n, 1))
    for first in range(0, n_draws, step):
        yield min(step, n_draws - first)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The resamples, chunk by chunk: rows of default_rng(seed).integers(0, n, (n_boot, n))."""
    rng = np.random.default_rng(seed)
    for size in _chunks(n_boot, n):
        yield rng.integers(0, n, (size, n))


def _percentiles(samples: dict[str, list[np.ndarray]]) -> dict[str, list[float]]:
    out = {}
    for m, parts in samples.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        out[m] = [float(x) for x in np.percentile(v, [2.5, 97.5])] if v.size else [float("nan")] * 2
    return out


def realized_intervals(p: np.ndarray, y: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict:
    """Bootstrap percentile 95% intervals of the realized metrics (resamples without a class drop out)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    n = p.size
    if n < 2:
        return {m: [float("nan")] * 2 for m in METRICS}
    order, starts = _ties(p)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n)
    sp, sy = p[order], y[order, None]
    samples: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for idx in bootstrap_indices(n, n_boot, seed):
        b = len(idx)  # counts[r, j]: how often the row of rank r is in resample j
        counts = np.bincount((rank[idx] * b + np.arange(b)[:, None]).ravel(), minlength=n * b).reshape(n, b)
        pos = counts * sy
        for m, v in _metrics(pos, counts - pos, sp, threshold, starts).items():
            samples[m].append(v)
    return _percentiles(samples)


def label_draws(p: np.ndarray, n_draws: int, seed: int) -> Iterator[np.ndarray]:
    """Labels drawn Bernoulli(p), chunk by chunk: (n, draws) columns of default_rng(seed).random < p."""
    rng = np.random.default_rng(seed)
    for size in _chunks(n_draws, p.size):
        yield (rng.random((p.size, size)) < p[:, None]).astype(float)


def estimated_intervals(p: np.ndarray, threshold: float, n_draws: int, seed: int) -> dict:
    """Where each realized metric falls in 95% of label draws Bernoulli(p): calibration assumed."""
    p = np.asarray(p, dtype=float)
    if p.size < 2:
        return {m: [float("nan")] * 2 for m in METRICS}
    order, starts = _ties(p)
    sp = p[order]
    samples: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for draws in label_draws(sp, n_draws, seed):
        for m, v in _metrics(draws, 1 - draws, sp, threshold, starts).items():
            samples[m].append(v)
    return _percentiles(samples)


# ------------------------------------------------------------------------------ windows


def check_frame(frame: pd.DataFrame) -> None:
    """The prediction frame's contract (COLUMNS); ValueError naming the column that breaks it."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the predictions lack the column(s) {', '.join(missing)}")
    if not isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype):
        raise ValueError("column 'timestamp' must be datetime64 with a time zone (UTC)")
    p = frame["probability"].to_numpy(dtype=float)
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("column 'probability' must be numbers between 0 and 1")
    labels = frame["label"].dropna()
    if not labels.isin([0, 1]).all():
        raise ValueError("column 'label' must be 0, 1 or missing (no label yet)")


def window_performance(
    part: pd.DataFrame, threshold: float, start, end, n_boot: int = N_BOOT, seed: int = 0
) -> WindowPerformance:
    """Both views of one window's predictions."""
    import pandas as pd

    p = part["probability"].to_numpy(dtype=float)
    labelled = part["label"].notna().to_numpy()
    y = part["label"].to_numpy(dtype=float, na_value=np.nan)[labelled]
    est, est_ci = expected(p, threshold), estimated_intervals(p, threshold, n_boot, seed)
    real, real_ci = realized(p[labelled], y, threshold), realized_intervals(p[labelled], y, threshold, n_boot, seed)
    return WindowPerformance(
        start=pd.Timestamp(start).isoformat(),
        end=pd.Timestamp(end).isoformat(),
        n=int(p.size),
        n_labelled=int(labelled.sum()),
        label_coverage=float(labelled.mean()) if p.size else float("nan"),
        positive_rate=float(decide(p, threshold).mean()) if p.size else float("nan"),
        model_versions=sorted(part["model_version"].astype(str).unique()),
        estimated={m: Figure(est[m], est_ci[m]) for m in METRICS},
        realized={m: Figure(real[m], real_ci[m]) for m in METRICS},
    )


def degradation(windows: Sequence[WindowPerformance], minimums: Sequence[Minimum], min_rows: int) -> list[Breach]:
    """Every window and setting whose figure is below its minimum; windows with fewer than
    min_rows rows (labelled rows, for a realized minimum) and undefined figures are not judged."""
    breaches = []
    for w in windows:
        for m in minimums:
            rows = w.n if m.kind == "estimated" else w.n_labelled
            figure = getattr(w, m.kind)[m.metric]
            if rows >= min_rows and figure.value < m.value:  # NaN compares False: not judged
                breaches.append(Breach(w.start, m.kind, m.metric, figure.value, m.value, figure.ci95))
    return breaches


def analyze(
    frame: pd.DataFrame,
    threshold: float,
    window: str = DEFAULT_WINDOW,
    n_boot: int = N_BOOT,
    seed: int = 0,
    minimums: Sequence[Minimum] = (),
    min_rows: int = MIN_ROWS,
) -> PerformanceReport:
    """Per window of `window` (UTC, from the epoch) and over the whole period: both views and the check."""

    check_frame(frame)
    if frame.empty:
        raise ValueError("no predictions to analyse")
    width = parse_window(window)
    frame = frame.sort_values("timestamp", kind="stable")
    starts = frame["timestamp"].dt.floor(width)
    windows = [
        window_performance(part, threshold, start, start + width, n_boot, seed)
        for start, part in frame.groupby(starts, sort=True)
    ]
    overall = window_performance(frame, threshold, starts.iloc[0], starts.iloc[-1] + width, n_boot, seed)
    return PerformanceReport(
        threshold=float(threshold),
        window=str(window),
        bootstrap=n_boot,
        seed=seed,
        intervals={
            "realized": f"bootstrap percentile 95% over the labelled rows ({n_boot} resamples, seed {seed})",
            "estimated": f"2.5-97.5 percentiles of the realized metric over {n_boot} label draws "
            f"Bernoulli(probability), seed {seed}: where it falls if the model is calibrated",
        },
        overall=overall,
        windows=windows,
        minimums=list(minimums),
        min_rows=min_rows,
        breaches=degradation(windows, minimums, min_rows),
        class_mismatches=int((frame["predicted_class"].to_numpy() != decide(frame["probability"], threshold)).sum()),
    )
