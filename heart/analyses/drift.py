"""Has the input distribution moved away from the training data? One test per feature, chosen
from the schema's Feature.kind, and one verdict for the data set.

- continuous features: two-sample Kolmogorov-Smirnov test; effect size = Wasserstein
  distance (in the feature's unit) and PSI over the reference's deciles;
- binary / categorical features: chi-squared test of the code counts (KS on a handful of
  discrete values has the wrong null distribution and is far too conservative); effect size = PSI.
- 13 tests at once would raise a false alarm on ~half of all identical data sets at
  alpha = 0.05 each, so p-values are Benjamini-Hochberg adjusted (false discovery rate);
  Bonferroni is available as the stricter option.
- Data-set verdict: drift when the share of drifted features reaches 0.5 (Evidently's default).

The statistics are heart.analyses.twosample's (NumPy alone, scipy.stats' numbers), so the
server's live drift runs this very code without importing SciPy or pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from ..schema import FEATURE_NAMES, FEATURES, Feature
from . import twosample

ALPHA = 0.05
SHARE_THRESHOLD = 0.5
CORRECTIONS = ("bh", "bonferroni")
PSI_EPS = 1e-4
PSI_BINS = 10


@dataclass
class FeatureDrift:
    feature: str
    kind: str
    test: str  # "ks" | "chi2" | "skipped"
    statistic: float
    p_value: float
    p_adjusted: float
    drifted: bool
    psi: float
    wasserstein: float | None
    n_reference: int
    n_current: int
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_share: dict[str, float] = field(default_factory=dict)
    current_share: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class DriftReport:
    alpha: float
    correction: str
    share_threshold: float
    n_reference: int
    n_current: int
    features: list[FeatureDrift]

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        tested = [f for f in self.features if f.test != "skipped"]
        return len(self.drifted_features) / len(tested) if tested else 0.0

    @property
    def dataset_drift(self) -> bool:
        return self.share_drifted >= self.share_threshold

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "share_threshold": self.share_threshold,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drifted_features": self.drifted_features,
            "share_drifted": self.share_drifted,
            "dataset_drift": self.dataset_drift,
            "features": [asdict(f) for f in self.features],
        }


def adjust(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """Benjamini-Hochberg (step-up, monotone; scipy's) or Bonferroni adjusted p-values, capped at 1."""
    p = np.asarray(p, dtype=float)
    if method == "bonferroni":
        return np.minimum(p * len(p), 1.0)
    if method != "bh":
        raise ValueError(f"unknown correction {method!r}: choose one of {', '.join(CORRECTIONS)}")
    return twosample.false_discovery_control(p)


def psi(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray | None = None, codes=None) -> float:
    """Population stability index: sum (cur - ref) * ln(cur / ref) over bins or codes."""
    if codes is not None:
        r = np.array([np.mean(ref == c) for c in codes])
        c = np.array([np.mean(cur == k) for k in codes])
    else:
        r = np.histogram(ref, edges)[0] / len(ref)
        c = np.histogram(cur, edges)[0] / len(cur)
    r, c = np.clip(r, PSI_EPS, None), np.clip(c, PSI_EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _decile_edges(ref: np.ndarray) -> np.ndarray:
    """The reference's deciles, open at both ends. A reference with one or two distinct deciles
    (a constant column, or one that is mostly a single value, like 95% zeros) would be left with
    one bin [-inf, inf] once its ends are opened: it gets three bins instead (below, at and above
    its lowest decile), or any shift would score 0."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)))
    if edges.size < 3:  # histogram bins are [low, high): the middle one holds exactly the value
        return np.array([-np.inf, edges[0], np.nextafter(edges[0], np.inf), np.inf])
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def feature_drift(f: Feature, ref: np.ndarray, cur: np.ndarray) -> FeatureDrift:
    """The test the schema's kind calls for, on the non-missing values of both samples."""
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    base = dict(
        feature=f.name,
        kind=f.kind,
        p_adjusted=float("nan"),
        drifted=False,
        n_reference=int(ref.size),
        n_current=int(cur.size),
    )
    if ref.size < 2 or cur.size < 2:
        return FeatureDrift(
            test="skipped",
            statistic=float("nan"),
            p_value=float("nan"),
            psi=float("nan"),
            wasserstein=None,
            note="fewer than 2 non-missing values",
            **base,
        )
    if f.kind == "continuous":
        statistic, p_value = twosample.ks_2samp(ref, cur)
        return FeatureDrift(
            test="ks",
            statistic=statistic,
            p_value=p_value,
            psi=psi(ref, cur, _decile_edges(ref)),
            wasserstein=twosample.wasserstein_distance(ref, cur),
            reference_mean=float(ref.mean()),
            current_mean=float(cur.mean()),
            **base,
        )
    codes = sorted(set(f.codes) | set(np.unique(np.concatenate([ref, cur])).astype(int)))
    table = np.array([[np.sum(ref == c) for c in codes], [np.sum(cur == c) for c in codes]])
    table = table[:, table.sum(axis=0) > 0]
    shares = dict(
        reference_share={f.codes.get(c, str(c)): float(np.mean(ref == c)) for c in codes},
        current_share={f.codes.get(c, str(c)): float(np.mean(cur == c)) for c in codes},
    )
    if table.shape[1] < 2:  # both samples hold one and the same code: identical distributions
        stat, p = 0.0, 1.0
    else:
        stat, p = twosample.chi2_contingency(table)
    return FeatureDrift(
        test="chi2", statistic=stat, p_value=p, psi=psi(ref, cur, codes=codes), wasserstein=None, **shares, **base
    )


def drift_report(
    reference,
    current,
    alpha: float = ALPHA,
    correction: str = "bh",
    share_threshold: float = SHARE_THRESHOLD,
) -> DriftReport:
    """Test every schema feature of `current` against `reference` (DataFrames with the schema's
    columns, or (n, 13) arrays in schema order); adjust; give the verdict."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}: choose one of {', '.join(CORRECTIONS)}")
    ref, cur = _columns(reference), _columns(current)
    results = [feature_drift(f, ref[f.name], cur[f.name]) for f in FEATURES]
    tested = [r for r in results if r.test != "skipped"]
    if tested:
        for r, p in zip(tested, adjust(np.array([r.p_value for r in tested]), correction)):
            r.p_adjusted = float(p)
            r.drifted = bool(p < alpha)
    return DriftReport(
        alpha=alpha,
        correction=correction,
        share_threshold=share_threshold,
        n_reference=len(reference),
        n_current=len(current),
        features=results,
    )


def _columns(data) -> Mapping[str, np.ndarray]:
    """{feature: float values} of a DataFrame (by column name) or an (n, 13) array (schema order)."""
    if isinstance(data, np.ndarray):
        return {name: data[:, i].astype(float) for i, name in enumerate(FEATURE_NAMES)}
    return {name: data[name].to_numpy(dtype=float) for name in FEATURE_NAMES}
