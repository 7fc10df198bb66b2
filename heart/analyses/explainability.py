"""SHAP over a data set, as explainability.py reports it: the rows explained, the ranking of the 13
features, the additivity check, plain words for what lowered the risk of the patients with heart
disease the model missed and raised it for those it caught, and one patient's contributions.

heart.attribution computes the values (the API's /explain uses the same explainer); this module
picks the rows and puts the result together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..artifact import LoadedModel
from ..attribution import DatasetExplanation, PipelineExplainer, describe_rows, explain_dataset, global_importance
from ..data import DataError, Dataset
from ..decision import decide, threshold_of
from ..model import card_split
from ..schema import TARGET

ADDITIVITY_TOLERANCE = 1e-6


@dataclass
class ExplainabilityReport:
    """Everything explainability.py reports; to_dict() is its JSON after the model and data it names."""

    scope: str  # "held-out split" or every row
    rows: np.ndarray  # the explained rows, as row numbers of the data file
    explanation: DatasetExplanation  # their SHAP values, in the same order
    additivity_error: float  # max |base value + sum of contributions - probability|
    importance: list[dict]
    summaries: dict[str, dict]  # false_negatives, true_positives: attribution.describe_rows
    confusion: dict[str, int]
    patient: int  # the waterfall's patient, as a position in `rows`
    patient_label: str
    tolerance: float = ADDITIVITY_TOLERANCE  # the additivity check's

    @property
    def holds(self) -> bool:
        return self.additivity_error <= self.tolerance

    @property
    def patient_row(self) -> int:
        return int(self.rows[self.patient])

    def to_dict(self) -> dict:
        ex, chosen = self.explanation, self.patient
        return {
            "scope": self.scope,
            "rows": [int(r) for r in self.rows],
            "base_value": ex.base_value,
            "additivity": {
                "max_abs_error": self.additivity_error,
                "tolerance": self.tolerance,
                "holds": self.holds,
            },
            "importance": self.importance,
            "summaries": self.summaries,
            "confusion": self.confusion,
            "waterfall_patient": {
                "row": self.patient_row,
                "label": self.patient_label,
                "probability": float(ex.probability[chosen]),
                "contributions": dict(zip(ex.X.columns, map(float, ex.values[chosen]))),
            },
        }


def analyze(
    model: LoadedModel, data: Dataset, all_rows: bool = False, patient: int | None = None, top: int = 3
) -> ExplainabilityReport:
    """SHAP for the held-out split of the data the model was trained on, or for every row.

    `patient`, a row number of the data file, is the waterfall's; it must be among the rows
    explained. By default the first false negative, else the first row. `top`: the features
    named in each plain-English summary.
    """
    _, test_idx = card_split(model.card, data.y)
    rows = np.arange(data.n_rows) if all_rows else test_idx
    scope = "all rows (training rows in-sample)" if all_rows else "held-out split"
    position = np.flatnonzero(rows == patient) if patient is not None else np.array([], dtype=int)
    if patient is not None and position.size == 0:
        raise DataError(
            data.source,
            f"--patient {patient} is not among the explained rows ({scope}); use --all-rows or pick a held-out row",
        )
    ex = explain_dataset(PipelineExplainer(model.pipeline), model.pipeline, data.X.iloc[rows])
    y = data.y[rows]
    predicted = decide(ex.probability, threshold_of(model.card))
    fn = np.flatnonzero((y == 1) & (predicted == 0))
    tp = np.flatnonzero((y == 1) & (predicted == 1))
    chosen = int(position[0]) if patient is not None else int(fn[0]) if fn.size else 0
    return ExplainabilityReport(
        scope=scope,
        rows=rows,
        explanation=ex,
        additivity_error=ex.additivity_error(),
        importance=global_importance(ex.values),
        summaries={
            "false_negatives": describe_rows(ex.values, ex.X, fn, "down", data.X, top),
            "true_positives": describe_rows(ex.values, ex.X, tp, "up", data.X, top),
        },
        confusion={
            "true_positives": int(tp.size),
            "false_negatives": int(fn.size),
            "false_positives": int(((y == 0) & (predicted == 1)).sum()),
            "true_negatives": int(((y == 0) & (predicted == 0)).sum()),
        },
        patient=chosen,
        patient_label=TARGET.labels[int(data.y[rows[chosen]])],
    )
