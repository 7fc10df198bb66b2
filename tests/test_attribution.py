"""SHAP explanations add up to the *served* (calibrated) probability, one-hot columns added back up.

What is checked: base value + the 13 contributions = the Pipeline's predict_proba (the
calibrated P(disease) the API serves), to 1e-9. Each contribution is the forest's own Tree
SHAP value times one positive per-patient factor (the calibration map's secant slope), so
signs and ranking are the forest's; the base value is the map applied to the forest's
expected score. With an uncalibrated forest the factor is 1 (plain Tree SHAP).
"""

import numpy as np
import shap

from heart.attribution import PipelineExplainer, describe_value
from heart.model import build_forest, predict_proba
from heart.schema import FEATURE_NAMES


def test_contributions_add_up_to_the_served_probability(loaded, dataset):
    explainer = PipelineExplainer(loaded.pipeline)
    X = dataset.X.iloc[:40]
    values = explainer.shap_values(X)
    assert values.shape == (40, 13)
    np.testing.assert_allclose(explainer.base_value + values.sum(axis=1), predict_proba(loaded.pipeline, X), atol=1e-9)


def test_contributions_are_the_forests_tree_shap_scaled_per_patient(loaded, dataset):
    calibrated = loaded.pipeline.named_steps["model"].calibrated_classifiers_[0]
    forest, link = calibrated.estimator, calibrated.calibrators[0].predict
    X = dataset.X.iloc[:40]
    transformed = loaded.pipeline.named_steps["preprocess"].transform(X)
    tree = shap.TreeExplainer(forest)
    raw = np.asarray(tree.shap_values(transformed))[..., 1] @ PipelineExplainer(loaded.pipeline).fold
    ours = PipelineExplainer(loaded.pipeline).shap_values(X)
    ratio = ours / np.where(raw == 0, np.nan, raw)
    factor = np.nanmedian(ratio, axis=1)
    steepest = abs(calibrated.calibrators[0].a_) / 4  # the sigmoid's largest slope
    assert (factor > 0).all() and (factor <= steepest + 1e-9).all()
    np.testing.assert_allclose(ours, raw * factor[:, None], atol=1e-12)
    e = float(np.ravel(tree.expected_value)[1])
    assert abs(PipelineExplainer(loaded.pipeline).base_value - link(np.array([e]))[0]) < 1e-12
    assert not np.allclose(factor, 1.0), "the calibration map is not the identity"


def test_uncalibrated_forest_is_plain_tree_shap(dataset):
    pipe = build_forest(calibration=None, n_estimators=30).fit(dataset.X, dataset.y)
    explainer = PipelineExplainer(pipe)
    values = explainer.shap_values(dataset.X.iloc[:20])
    np.testing.assert_allclose(
        explainer.base_value + values.sum(axis=1), predict_proba(pipe, dataset.X.iloc[:20]), atol=1e-9
    )
    assert explainer.base_value == float(np.ravel(explainer.parts[0][0].expected_value)[1])


def test_one_patient_sorted_by_size_with_missing_values(loaded, dataset):
    explainer = PipelineExplainer(loaded.pipeline)
    row = dataset.X.iloc[[3]].copy()
    row["chol"] = np.nan
    e = explainer.explain(row)
    assert sorted(name for name, _ in e.contributions) == sorted(FEATURE_NAMES)
    sizes = [abs(v) for _, v in e.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert abs(e.probability - predict_proba(loaded.pipeline, row)[0]) < 1e-9
    assert abs(e.base_value + sum(v for _, v in e.contributions) - e.probability) < 1e-9


def test_a_description_starting_with_an_acronym_keeps_it_inside_the_phrase():
    # 'ST depression ...' read 'sT depression ...' when the first letter was lowered blindly
    phrase, n = describe_value("oldpeak", np.array([np.nan, np.nan]))
    assert (phrase, n) == ("a missing ST depression induced by exercise relative to rest", 2)
    phrase, n = describe_value("oldpeak", np.array([2.0, 3.0, 0.5]), reference=np.array([1.0, 1.0, 1.0]))
    assert (phrase, n) == (
        "a higher ST depression induced by exercise relative to rest (median 2 mm vs 1 mm overall)",
        2,
    )
