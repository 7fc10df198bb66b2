"""SHAP explanations of the served probability, in terms of the 13 original features.

One explainer serves both the API's /explain (one patient) and explainability.py (a data
set). The forest sees one-hot columns; their SHAP values are added back up to the feature
they came from.

The served probability is a calibration map g (sigmoid, fitted on out-of-fold forest
scores) of the forest's score s: p = g(s). Tree SHAP splits s exactly: s = e + sum(phi_i),
with e the forest's expected score. Each phi_i is scaled by the secant slope of g between e
and this patient's s, (g(s) - g(e)) / (s - e), so that

    base value g(e) + sum of contributions = g(s) = the served P(heart disease), exactly.

The scale is one positive number per patient (g is increasing), so each contribution keeps
its sign and the ranking of the forest's own Tree SHAP values; the base value is the
calibrated probability of the average forest score (not the mean served probability). With
an uncalibrated forest, g is the identity and this is plain Tree SHAP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline

from .schema import BY_NAME, FEATURE_NAMES, lower_first


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
        self.parts = [
            (shap.TreeExplainer(forest), link) for forest, link in _forests_and_maps(pipeline.named_steps["model"])
        ]
        self.forest_base = [float(np.ravel(tree.expected_value)[1]) for tree, _ in self.parts]
        self.base_value = float(np.mean([link(np.array([e]))[0] for (_, link), e in zip(self.parts, self.forest_base)]))
        self.fold = _fold_matrix(self.preprocess)

    def shap_values(self, X: pd.DataFrame) -> np.ndarray:
        """(rows, 13) contributions to the served P(class 1), in schema order (module docstring)."""
        transformed = self.preprocess.transform(X[list(FEATURE_NAMES)])
        total = 0.0
        for (tree, link), e in zip(self.parts, self.forest_base):
            phi = tree.shap_values(transformed, check_additivity=True)
            phi = np.asarray(phi[..., 1] if np.ndim(phi) == 3 else phi[1])
            total = total + phi * _secant(link, e, e + phi.sum(axis=1))[:, None]
        return (total / len(self.parts)) @ self.fold

    def explain(self, row: pd.DataFrame) -> Explanation:
        """One patient (a one-row frame in schema order)."""
        contrib = self.shap_values(row)[0]
        probability = self.base_value + float(contrib.sum())
        ranked = sorted(zip(FEATURE_NAMES, map(float, contrib)), key=lambda kv: -abs(kv[1]))
        return Explanation(probability=probability, base_value=self.base_value, contributions=ranked)


def _forests_and_maps(model) -> list[tuple]:
    """(fitted forest, map from its P(class 1) to the served one) for each forest in the model."""
    if not isinstance(model, CalibratedClassifierCV):
        return [(model, lambda s: np.asarray(s, dtype=float))]
    if list(model.classes_) != [0, 1]:
        raise ValueError(f"expected classes [0, 1], got {list(model.classes_)}")
    return [(c.estimator, c.calibrators[0].predict) for c in model.calibrated_classifiers_]


def _secant(link, e: float, s: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """(link(s) - link(e)) / (s - e) per row; the derivative at e where s is (nearly) e."""
    s = np.asarray(s, dtype=float)
    near = np.abs(s - e) < 1e-9
    slope = np.empty_like(s)
    slope[~near] = (link(s[~near]) - link(np.full((~near).sum(), e))) / (s[~near] - e)
    if near.any():
        slope[near] = (link(np.array([e + h]))[0] - link(np.array([e - h]))[0]) / (2 * h)
    return slope


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


# --- data-set level: what explainability.py reports -------------------------------------


@dataclass
class DatasetExplanation:
    """SHAP for a set of rows: values (rows, 13) in schema order, their inputs and predictions."""

    X: pd.DataFrame
    values: np.ndarray
    base_value: float
    probability: np.ndarray  # the model's own P(disease) per row

    def additivity_error(self) -> float:
        """max |base value + sum of contributions - model probability| over the rows."""
        return float(np.max(np.abs(self.base_value + self.values.sum(axis=1) - self.probability)))


def explain_dataset(explainer: PipelineExplainer, pipeline: Pipeline, X: pd.DataFrame) -> DatasetExplanation:
    X = X[list(FEATURE_NAMES)]
    return DatasetExplanation(
        X=X.reset_index(drop=True),
        values=explainer.shap_values(X),
        base_value=explainer.base_value,
        probability=pipeline.predict_proba(X)[:, 1],
    )


def global_importance(values: np.ndarray) -> list[dict]:
    """Mean |SHAP| per original feature, largest first (all 13, one-hot columns summed back)."""
    mean_abs = np.abs(values).mean(axis=0)
    mean = values.mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    return [
        {"feature": FEATURE_NAMES[i], "mean_abs_shap": float(mean_abs[i]), "mean_shap": float(mean[i])} for i in order
    ]


def describe_value(name: str, values: np.ndarray, reference: np.ndarray | None = None) -> tuple[str, int]:
    """Plain words for what a group of patients had on one feature, from the schema.

    Discrete: the most common code's meaning ("no exercise-induced angina", "thallium stress
    test: normal"). Continuous: higher/lower than the reference median, with the unit.
    Returns (phrase, number of rows the phrase is true for).
    """
    f = BY_NAME[name]
    present = values[~np.isnan(values)]
    if present.size == 0:
        return f"a missing {lower_first(f.description)}", int(values.size)
    if f.discrete:
        codes, counts = np.unique(present, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        chosen, covered = [], 0
        for k in order[:3]:  # the commonest codes until they cover 60% of the rows
            chosen.append(int(codes[k]))
            covered += int(counts[k])
            if covered >= 0.6 * present.size:
                break
        meanings = [f.codes.get(c, str(c)) for c in chosen]
        if set(f.codes.values()) == {"no", "yes"} and len(chosen) == 1:
            phrase = lower_first(f.description)
            phrase = phrase if meanings[0] == "yes" else "no " + phrase
        else:
            phrase = lower_first(f.description) + " " + " or ".join(f'"{m}"' for m in meanings)
        return phrase, covered
    median = float(np.median(present))
    unit = f" {f.unit}" if f.unit else ""
    if reference is None or reference[~np.isnan(reference)].size == 0:
        return f"{lower_first(f.description)} around {median:g}{unit}", int(present.size)
    ref = float(np.nanmedian(reference))
    direction = "higher" if median > ref else "lower" if median < ref else "typical"
    n = int(
        np.sum(present > ref)
        if direction == "higher"
        else np.sum(present < ref)
        if direction == "lower"
        else present.size
    )
    return (f"a {direction} {lower_first(f.description)} (median {median:g}{unit} vs {ref:g}{unit} overall)"), n


def describe_rows(
    values: np.ndarray,
    X: pd.DataFrame,
    rows: np.ndarray,
    direction: str,
    reference: pd.DataFrame | None = None,
    top: int = 3,
) -> dict:
    """Which features pushed these rows' predicted risk down (or up), how much, and what values.

    For each feature the rows where it pushed in `direction` are described (e.g. the
    false negatives whose thal lowered their risk mostly had a normal thal result).
    """
    if direction not in ("down", "up"):
        raise ValueError("direction must be 'down' or 'up'")
    sign = -1 if direction == "down" else 1
    rows = np.asarray(rows)
    if rows.size == 0:
        return {"rows": 0, "drivers": [], "text": "no patients in this group"}
    sub = values[rows]
    push = (sub * sign).clip(min=0).mean(axis=0)  # average push in the asked direction
    drivers = []
    for i in np.argsort(-push, kind="stable")[:top]:
        if push[i] <= 0:
            break
        name = FEATURE_NAMES[i]
        pushing = rows[sub[:, i] * sign > 0]
        ref = reference[name].to_numpy(dtype=float) if reference is not None else None
        phrase, n = describe_value(name, X[name].to_numpy(dtype=float)[pushing], ref)
        drivers.append(
            {
                "feature": name,
                "mean_push": float(sign * push[i]),
                "rows_pushed": int(len(pushing)),
                "phrase": phrase,
                "rows_with_that_value": n,
            }
        )
    verb = "lowered" if direction == "down" else "raised"
    parts = [f"{d['phrase']} ({d['rows_with_that_value']} of {rows.size})" for d in drivers]
    said = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "nothing"
    return {
        "rows": int(rows.size),
        "drivers": drivers,
        "text": f"{said[0].upper() + said[1:]} {verb} the predicted risk.",
    }
