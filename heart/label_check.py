"""Catch an inverted target before anything learns from it.

A widely shared copy of this data codes 1 as "no disease". Such a file trains without a
word and yields a model that predicts the absence of disease. The schema declares the
direction of risk of eight findings the literature leaves no doubt about
(schema.RISK_DIRECTIONS); here each is compared with the labels.

Statistic: per declared feature, the ROC AUC of the feature (or its indicator) as a score
for the label, signed by the declared direction: d = direction * (AUC - 0.5), from -0.5
(points the other way) to +0.5. Honest Cleveland labels give d = +0.14 to +0.26 on all
eight, mean +0.22; the inverted copy is the exact mirror, mean -0.22.

Verdict: "inverted" only when BOTH the mean d is at most REFUSE_BELOW and a majority of the
features point the other way by more than MARGIN. A mean within +-INCONCLUSIVE_WITHIN is
"inconclusive" (no signal: synthetic or scrambled labels), which warns but does not refuse.
`python -m bench.label_check_sweep` shows these cut-offs on bootstrap resamples, 0-20%
label noise, 60-row subsets and the inverted copy (docs/model.md, "Label-direction check").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .data import DataError, Dataset
from .schema import RISK_DIRECTIONS

MARGIN = 0.05  # |d| at most this: that feature shows no clear direction
REFUSE_BELOW = -0.05  # the mean d at or below which (with a majority against) labels look inverted
INCONCLUSIVE_WITHIN = 0.05  # |mean d| below this: the labels carry too little signal to judge


@dataclass(frozen=True)
class Evidence:
    """One declared feature: its AUC for the label and the signed deviation d."""

    label: str
    auc: float
    signed: float
    rows: int


@dataclass(frozen=True)
class LabelCheck:
    evidence: tuple[Evidence, ...]

    @property
    def score(self) -> float:
        """Mean signed AUC deviation over the declared features (+: labels agree)."""
        return float(np.mean([e.signed for e in self.evidence]))

    @property
    def against(self) -> int:
        return sum(e.signed < -MARGIN for e in self.evidence)

    @property
    def agree(self) -> int:
        return sum(e.signed > MARGIN for e in self.evidence)

    @property
    def verdict(self) -> str:
        n = len(self.evidence)
        if self.score <= REFUSE_BELOW and self.against > n / 2:
            return "inverted"
        if abs(self.score) < INCONCLUSIVE_WITHIN:
            return "inconclusive"
        return "consistent"

    def summary(self) -> str:
        n = len(self.evidence)
        if self.verdict == "inverted":
            head = f"{self.against} of {n} known risk factors point the other way"
        else:
            head = f"{self.agree} of {n} known risk factors point the expected way"
        return f"{head} (mean signed AUC deviation {self.score:+.3f})"

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "score": round(self.score, 4),
            "features_against": self.against,
            "features_agreeing": self.agree,
            "features": len(self.evidence),
            "margin": MARGIN,
            "refuse_below": REFUSE_BELOW,
            "statistic": "direction * (ROC AUC of the feature for the label - 0.5)",
            "per_feature": {
                e.label: {"auc": round(e.auc, 4), "signed": round(e.signed, 4), "rows": e.rows} for e in self.evidence
            },
        }


def risk_matrix(X: pd.DataFrame) -> np.ndarray:
    """(rows, declared features): each feature's value, or its 0/1 indicator; NaN = missing."""
    cols = []
    for r in RISK_DIRECTIONS:
        v = X[r.feature].to_numpy(dtype=float)
        cols.append(v if r.code is None else np.where(np.isnan(v), np.nan, (v == r.code).astype(float)))
    return np.column_stack(cols)


def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U over n1 * n0 (ties count half); 0.5 when a class is absent.

    Same value as sklearn's roc_auc_score, without its input validation, which costs a
    hundred times more than the arithmetic in the bench's 10,000 checks.
    """
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def check_matrix(V: np.ndarray, y: np.ndarray) -> LabelCheck:
    """check_labels on a risk_matrix (the bench resamples this instead of the frame)."""
    y = np.asarray(y).astype(int)
    evidence = []
    for j, r in enumerate(RISK_DIRECTIONS):
        present = ~np.isnan(V[:, j])
        auc = rank_auc(y[present], V[present, j])
        evidence.append(Evidence(r.label, auc, r.direction * (auc - 0.5), int(present.sum())))
    return LabelCheck(tuple(evidence))


def check_labels(X: pd.DataFrame, y: np.ndarray) -> LabelCheck:
    """Compare every declared direction with the labels (rows missing that feature skipped)."""
    return check_matrix(risk_matrix(X), y)


class InvertedTargetError(DataError):
    """The labels contradict the declared risk directions; exit 2, nothing written."""


def flipped(data: Dataset) -> Dataset:
    return dataclasses.replace(data, y=1 - np.asarray(data.y).astype(int))


def apply(data: Dataset, flip: bool = False, check: bool = True) -> tuple[Dataset, dict]:
    """Flip the labels if asked, then check them; the record goes into the card or report.

    Raises InvertedTargetError (one message: the evidence and the fix) when they look inverted.
    """
    if flip:
        data = flipped(data)
    record = {"flipped": bool(flip), "check": "on" if check else "off (--no-label-check)"}
    if not check:
        return data, record
    result = check_labels(data.X, data.y)
    record.update(result.as_dict())
    if result.verdict == "inverted":
        fix = (
            "this file's labels were flipped by --flip-target and now point the wrong way: drop --flip-target"
            if flip
            else "if this file marks 1 as 'no disease' (the widely shared copy of this data does), "
            "rerun with --flip-target"
        )
        raise InvertedTargetError(
            data.source,
            f"the target looks inverted: {result.summary()}; {fix} "
            "(--no-label-check skips this check, for synthetic data)",
        )
    return data, record


def warning(record: dict) -> str | None:
    """A one-line warning for labels too weak to judge, else None."""
    if record.get("verdict") == "inconclusive":
        return (
            f"warning: label-direction check inconclusive: {record['summary']}; the labels carry "
            "little of the known risk signal (synthetic or scrambled data?)"
        )
    return None
