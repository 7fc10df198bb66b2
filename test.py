"""The original course project's sanity tests, made real: they train and load an actual model.

`python test.py` runs them (pytest options pass through: `python test.py -x -q`) and exits with
pytest's status, non-zero on any failure; pytest also collects this file (see pytest.ini) with
the rest of the suite in tests/.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heart.artifact import load_model
from heart.decision import decide, threshold_of
from heart.model import predict_proba, split_by_labels
from heart.samples import sample
from heart.schema import BY_NAME, FEATURE_NAMES


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
    assert pred[0] == decide(proba, threshold_of(loaded.card))[0]


@pytest.mark.parametrize("column", FEATURE_NAMES)
def test_missing_value_in_any_feature_is_imputed_by_the_pipeline(loaded, dataset, column):
    X = dataset.X.iloc[:20].copy()
    X[column] = np.nan
    proba = predict_proba(loaded.pipeline, X)
    assert np.all(np.isfinite(proba)) and np.all((proba >= 0) & (proba <= 1))


def test_several_missing_values_at_once_use_the_training_medians(loaded, dataset):
    """Blanks are filled with the training rows' medians (ordered features) and modes (nominal
    ones), computed here from the data, not read back from the pipeline's imputers."""
    train_idx, _ = split_by_labels(dataset.y, loaded.card["split"]["test_size"], loaded.card["split"]["seed"])
    training = dataset.X.iloc[train_idx]
    X = dataset.X.iloc[:5].copy()
    blanked = ["chol", "thal", "ca", "trestbps", "thalach", "cp"]
    X[blanked] = np.nan
    filled = X.copy()
    for name in blanked:
        column = training[name].dropna()
        # the most frequent code, the smallest on a tie; the median of the observed values
        fill = column.value_counts().sort_index().idxmax() if BY_NAME[name].nominal else column.median()
        filled[name] = fill
    assert filled["thal"].iloc[0] == 2 and filled["cp"].iloc[0] == 0  # 'normal' and 'asymptomatic' are the modes
    assert 240 <= filled["chol"].iloc[0] <= 245 and 150 <= filled["thalach"].iloc[0] <= 156
    prep = loaded.pipeline.named_steps["preprocess"]
    np.testing.assert_array_equal(prep.transform(X), prep.transform(filled))  # what the forest sees, exactly
    np.testing.assert_allclose(predict_proba(loaded.pipeline, X), predict_proba(loaded.pipeline, filled), atol=1e-12)
    other = filled.assign(chol=filled["chol"] + 150, thalach=filled["thalach"] - 40)
    assert not np.allclose(predict_proba(loaded.pipeline, X), predict_proba(loaded.pipeline, other)), (
        "the comparison can tell a different fill apart"
    )


def test_the_documented_path_train_load_verified_predict(tmp_path, dataset, loaded):
    """readme.md: `python train.py`, then load with heart.model.load_model (sha256-verified), predict.
    --no-cv only to keep the suite fast; the fit is the same."""
    out = tmp_path / "model.zip"
    proc = subprocess.run(
        [sys.executable, "train.py", "--out", str(out), "--no-cv"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "direction check consistent" in proc.stdout
    model = load_model(out)
    assert model.card["artifact"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert model.card["labels"]["verdict"] == "consistent" and model.card["threshold"] == 0.5
    proba = predict_proba(model.pipeline, dataset.X)
    np.testing.assert_allclose(proba, predict_proba(loaded.pipeline, dataset.X), atol=1e-12)  # seeded: same model
    _, test_idx = split_by_labels(dataset.y, model.card["split"]["test_size"], model.card["split"]["seed"])
    accuracy = float(np.mean(decide(proba[test_idx], threshold_of(model.card)) == dataset.y[test_idx]))
    assert accuracy == pytest.approx(model.card["metrics"]["random_forest"]["test"]["accuracy"])
    assert 0.8 <= accuracy <= 0.95


if __name__ == "__main__":
    sys.exit(int(pytest.main([__file__, *sys.argv[1:]])))
