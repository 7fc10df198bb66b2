"""Data-set SHAP: ranking of the 13 features, additivity, and plain words from the schema."""

import numpy as np
import pandas as pd

from heart.attribution import PipelineExplainer, describe_rows, describe_value, explain_dataset, global_importance
from heart.model import card_split
from heart.schema import FEATURE_NAMES


def test_dataset_additivity_and_ranking(loaded, dataset):
    _, test_idx = card_split(loaded.card, dataset.y)
    ex = explain_dataset(PipelineExplainer(loaded.pipeline), loaded.pipeline, dataset.X.iloc[test_idx])
    assert ex.values.shape == (61, 13)
    assert ex.additivity_error() < 1e-6
    ranking = global_importance(ex.values)
    assert sorted(r["feature"] for r in ranking) == sorted(FEATURE_NAMES)
    sizes = [r["mean_abs_shap"] for r in ranking]
    assert sizes == sorted(sizes, reverse=True)
    by_name = {r["feature"]: r["mean_abs_shap"] for r in ranking}
    np.testing.assert_allclose([by_name[n] for n in FEATURE_NAMES], np.abs(ex.values).mean(axis=0))


def test_plain_words_come_from_the_schema_codes_and_units():
    assert describe_value("thal", np.array([2.0, 2.0, 3.0]))[0] == 'thallium stress test "normal"'
    assert describe_value("exang", np.array([0.0, 0.0]))[0] == "no exercise-induced angina"
    assert describe_value("exang", np.array([1.0]))[0] == "exercise-induced angina"
    phrase, n = describe_value("chol", np.array([300.0, 310.0]), np.array([200.0, 250.0]))
    assert phrase == "a higher serum cholesterol (median 305 mg/dl vs 225 mg/dl overall)" and n == 2


def test_summary_names_the_features_that_pushed_down():
    X = pd.DataFrame(np.nan, index=range(4), columns=list(FEATURE_NAMES))
    X["thal"], X["exang"] = 2.0, 0.0
    values = np.zeros((4, 13))
    values[:, FEATURE_NAMES.index("thal")] = -0.10
    values[:, FEATURE_NAMES.index("exang")] = -0.05
    values[:, FEATURE_NAMES.index("age")] = 0.2  # pushes up: not a reason the risk went down
    s = describe_rows(values, X, np.arange(4), "down")
    assert [d["feature"] for d in s["drivers"]] == ["thal", "exang"]
    assert s["drivers"][0]["mean_push"] == -0.10
    assert s["text"] == (
        'Thallium stress test "normal" (4 of 4) and no exercise-induced angina (4 of 4) lowered the predicted risk.'
    )
    up = describe_rows(values, X, np.arange(4), "up")
    assert [d["feature"] for d in up["drivers"]] == ["age"]
