"""SHAP explanations of the Pipeline's forest, in terms of the 13 original features.

One explainer serves both the API's /explain (one patient) and explainability.py (a data
set). The forest sees one-hot columns; their SHAP values are added back up to the feature
they came from, which keeps additivity: base value + contributions = P(heart disease).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap
from sklearn.pipeline import Pipeline

from .schema import FEATURE_NAMES


@dataclass
class Explanation:
    """One patient: contributions sorted by absolute size, largest first."""

    probability: float
    base_value: float
    contributions: list[tuple[str, float]]


class PipelineExplainer:
    """Build once per model (TreeExplainer setup is the slow part), then explain many times."""

    def __init__(self, pipeline: Pipeline):
        self.preprocess = pipeline.named_steps["preprocess"]
        self.forest = pipeline.named_steps["model"]
        self.tree = shap.TreeExplainer(self.forest)
        self.base_value = float(np.ravel(self.tree.expected_value)[1])
        self.fold = _fold_matrix(self.preprocess)

    def shap_values(self, X: pd.DataFrame) -> np.ndarray:
        """(rows, 13) SHAP values for class 1, in schema order."""
        transformed = self.preprocess.transform(X[list(FEATURE_NAMES)])
        values = self.tree.shap_values(transformed, check_additivity=True)
        values = values[..., 1] if np.ndim(values) == 3 else values[1]
        return np.asarray(values) @ self.fold

    def explain(self, row: pd.DataFrame) -> Explanation:
        """One patient (a one-row frame in schema order)."""
        contrib = self.shap_values(row)[0]
        probability = self.base_value + float(contrib.sum())
        ranked = sorted(zip(FEATURE_NAMES, map(float, contrib)), key=lambda kv: -abs(kv[1]))
        return Explanation(probability=probability, base_value=self.base_value, contributions=ranked)


def _fold_matrix(preprocess) -> np.ndarray:
    """(model columns, 13) 0/1 matrix: which schema feature each model column came from."""
    sources = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            continue
        last = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
        categories = getattr(last, "categories_", None)  # a one-hot encoder expands each column
        for j, col in enumerate(columns):
            sources += [col] * (len(categories[j]) if categories is not None else 1)
    if len(sources) != len(preprocess.get_feature_names_out()):
        raise ValueError("could not map every model column back to one schema feature")
    fold = np.zeros((len(sources), len(FEATURE_NAMES)))
    fold[np.arange(len(sources)), [FEATURE_NAMES.index(s) for s in sources]] = 1
    return fold
