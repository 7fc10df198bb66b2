"""SHAP explanations keep additivity after one-hot columns are added back up."""
import numpy as np

from heart.attribution import PipelineExplainer
from heart.model import predict_proba
from heart.schema import FEATURE_NAMES


def test_contributions_add_up_to_the_probability(loaded, dataset):
    explainer = PipelineExplainer(loaded.pipeline)
    X = dataset.X.iloc[:40]
    values = explainer.shap_values(X)
    assert values.shape == (40, 13)
    np.testing.assert_allclose(explainer.base_value + values.sum(axis=1), predict_proba(loaded.pipeline, X), atol=1e-6)


def test_one_patient_sorted_by_size_with_missing_values(loaded, dataset):
    explainer = PipelineExplainer(loaded.pipeline)
    row = dataset.X.iloc[[3]].copy()
    row["chol"] = np.nan
    e = explainer.explain(row)
    assert sorted(name for name, _ in e.contributions) == sorted(FEATURE_NAMES)
    sizes = [abs(v) for _, v in e.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert abs(e.probability - predict_proba(loaded.pipeline, row)[0]) < 1e-6
    assert abs(e.base_value + sum(v for _, v in e.contributions) - e.probability) < 1e-9
