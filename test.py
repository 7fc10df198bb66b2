"""The original course project's sanity tests, made real: they train and load an actual model.

pytest collects this file (see pytest.ini); the rest of the suite lives in tests/.
"""
import numpy as np
import pytest

from heart.model import predict_proba, split_by_labels
from heart.samples import sample
from heart.schema import FEATURE_NAMES


def test_model_loads(loaded):
    assert loaded.pipeline is not None
    assert loaded.version.startswith("1.0.0-")
    assert list(loaded.pipeline.feature_names_in_) == list(FEATURE_NAMES)


def test_prediction_shape_matches_input(loaded, dataset):
    X = dataset.X.iloc[:37]
    assert loaded.pipeline.predict(X).shape == (37,)
    assert loaded.pipeline.predict_proba(X).shape == (37, 2)


def test_accuracy_on_held_out_split_above_threshold(loaded, dataset):
    _, test_idx = split_by_labels(dataset.y, loaded.card["split"]["test_size"], loaded.card["split"]["seed"])
    pred = loaded.pipeline.predict(dataset.X.iloc[test_idx])
    accuracy = float(np.mean(pred == dataset.y[test_idx]))
    assert len(test_idx) == 61
    assert accuracy >= 0.80, accuracy


def test_single_row_predicts_class_and_probability(loaded):
    row = sample(1, seed=3)
    pred = loaded.pipeline.predict(row)
    proba = predict_proba(loaded.pipeline, row)
    assert pred.shape == (1,) and pred[0] in (0, 1)
    assert 0.0 <= proba[0] <= 1.0
    assert pred[0] == int(proba[0] >= 0.5)


@pytest.mark.parametrize("column", FEATURE_NAMES)
def test_missing_value_in_any_feature_is_imputed_by_the_pipeline(loaded, dataset, column):
    X = dataset.X.iloc[:20].copy()
    X[column] = np.nan
    proba = predict_proba(loaded.pipeline, X)
    assert np.all(np.isfinite(proba)) and np.all((proba >= 0) & (proba <= 1))


def test_several_missing_values_at_once_use_the_training_medians(loaded, dataset):
    X = dataset.X.iloc[:5].copy()
    blanked = ["chol", "thal", "ca", "trestbps", "thalach"]
    X[blanked] = np.nan
    # The pipeline's own imputer fills them: equal to filling by hand with what it learned.
    prep = loaded.pipeline.named_steps["preprocess"]
    filled = X.copy()
    for name, transformer, cols in prep.transformers_:
        if name == "remainder":
            continue
        imputer = transformer.steps[0][1] if hasattr(transformer, "steps") else transformer
        for col, stat in zip(cols, imputer.statistics_):
            filled[col] = filled[col].fillna(stat)
    assert not filled.isna().any().any()
    np.testing.assert_allclose(predict_proba(loaded.pipeline, X), predict_proba(loaded.pipeline, filled))
