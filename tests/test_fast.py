"""The ONNX graph serves only once it reproduces the Pipeline's stored probabilities; anything else is refused."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from heart import export, fast
from heart.artifact import ModelArtifact, ModelError, Reference
from heart.decision import decide
from heart.export import parity_rows, to_onnx
from heart.fast import OnnxPredictor, SklearnPredictor, build_predictor, check_parity
from heart.schema import FEATURE_NAMES, FEATURES


@pytest.fixture(scope="module")
def onnx(artifact):
    return OnnxPredictor(artifact.onnx, artifact.reference.positive)


def test_parity_on_every_data_row(loaded, dataset, onnx):
    X = dataset.X.to_numpy(dtype=float)
    assert np.isnan(X).any(), "the data's own missing values (ca, thal) are part of the check"
    parity = check_parity(onnx, X, SklearnPredictor(loaded.pipeline).predict_proba(X))
    assert (parity.engine, parity.rows, parity.class_mismatches) == ("onnxruntime", 303, 0)
    assert parity.max_abs_diff <= fast.PARITY_TOLERANCE


def test_parity_on_10000_schema_samples_with_missing_values(loaded, onnx):
    X = parity_rows(10_000, seed=7, missing_rate=0.3)
    optional = [i for i, f in enumerate(FEATURES) if not f.required]
    assert np.isnan(X[:, optional]).mean() > 0.2 and not np.isnan(X[:, [0, 1]]).any()
    ref_class, ref_p = SklearnPredictor(loaded.pipeline).predict(X)
    got_class, got_p = onnx.predict(X)
    assert (ref_class == got_class).all()
    assert np.abs(ref_p - got_p).max() <= fast.PARITY_TOLERANCE
    frame = pd.DataFrame(X, columns=list(FEATURE_NAMES))
    assert (ref_class == decide(loaded.pipeline.predict_proba(frame)[:, 1])).all(), "the Pipeline's probability"


# --- build_predictor on the session's model --------------------------------------------------


def no_pipeline():
    raise AssertionError("the Pipeline was unpickled to serve ONNX")


def test_onnx_serves_after_checking_every_reference_row_without_the_pipeline(artifact, caplog):
    with caplog.at_level("INFO", logger="heart.fast"):
        predictor, parity = build_predictor(artifact, "onnx", no_pipeline)
    assert type(predictor) is OnnxPredictor and parity.ok and parity.rows == 303 + export.REFERENCE_SAMPLES
    assert predictor.threshold == artifact.card["threshold"] and predictor.positive == 1
    (record,) = [r for r in caplog.records if r.name == "heart.fast"]
    assert (record.getMessage(), record.engine, record.parity_rows) == ("predictor_ready", "onnxruntime", 2303)


def test_sklearn_by_configuration_loads_the_pipeline_and_checks_it_too(artifact, loaded):
    calls = []
    predictor, parity = build_predictor(artifact, "sklearn", lambda: calls.append(1) or loaded.pipeline)
    assert type(predictor) is SklearnPredictor and calls == [1]
    assert parity.engine == "sklearn" and parity.rows == 2303 and parity.max_abs_diff == 0.0 and parity.ok


def test_a_graph_that_drifts_from_the_stored_probabilities_is_refused(artifact, monkeypatch):
    real = OnnxPredictor.predict

    def drifted(self, X):
        classes, p = real(self, X)
        return classes, p + 1e-4  # a converter bug we must never serve (10x the tolerance)

    monkeypatch.setattr(OnnxPredictor, "predict", drifted)
    with pytest.raises(ModelError) as e:
        build_predictor(artifact)
    # 1e-4 on top of the graph's own float32 difference (~1e-6)
    assert re.fullmatch(
        re.escape(f"{artifact.path}: onnxruntime does not reproduce the reference probabilities stored with the ")
        + r"model: 0 class mismatches, max \|dp\| 1\.0[01]e-04 on 2303 rows \(tolerance 1e-05\); refusing to serve it",
        str(e.value),
    ), str(e.value)


def test_stored_probabilities_that_do_not_match_the_graph_are_refused(artifact, loaded):
    ref = artifact.reference
    proba = ref.proba.copy()
    proba[5] = 1 - proba[5]  # one row's stored probability flipped: a class mismatch
    model = dataclasses.replace(artifact, reference=dataclasses.replace(ref, proba=proba))
    with pytest.raises(ModelError, match=r"1 class mismatches, max \|dp\| .* on 2303 rows"):
        build_predictor(model, "onnx", no_pipeline)
    with pytest.raises(ModelError, match="^.*: sklearn does not reproduce the reference probabilities"):
        build_predictor(model, "sklearn", lambda: loaded.pipeline)  # the Pipeline is checked the same way


def test_a_graph_onnx_runtime_cannot_load_is_refused(artifact):
    for graph in (b"not a graph", b""):
        with pytest.raises(ModelError, match=r"model.onnx cannot be loaded by ONNX Runtime \("):
            build_predictor(dataclasses.replace(artifact, onnx=graph))


@pytest.mark.parametrize("engine", ["gpu", "ONNX", "Sklearn", ""])
def test_an_engine_spelled_otherwise_is_refused_by_name(artifact, engine):
    with pytest.raises(ValueError) as e:
        build_predictor(artifact, engine)
    assert str(e.value) == f"unknown inference engine {engine!r}: choose onnx or sklearn"


def test_the_converted_graph_does_not_change_the_pipeline(loaded):
    before = list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2])
    export._positional(loaded.pipeline)
    assert list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2]) == before
    assert list(loaded.pipeline.feature_names_in_)[0] == "age"


# --- value tests on a tiny forest (5 trees, no calibration: trains in milliseconds) --------


@pytest.fixture(scope="module")
def tiny(dataset):
    from heart.model import build_forest

    return build_forest(calibration=None, n_estimators=5).fit(dataset.X, dataset.y)


@pytest.fixture(scope="module")
def tiny_graph(tiny):
    return to_onnx(tiny)


def tiny_model(tiny, graph, rows=30, threshold=0.5, delta=0.0) -> ModelArtifact:
    """An artifact of the tiny forest, its stored probabilities moved by `delta`."""
    X = parity_rows(rows)
    proba = SklearnPredictor(tiny).predict_proba(X) + delta
    card = {"model_version": "t", "threshold": threshold, "artifact": {"sha256": "0" * 64}}
    return ModelArtifact(path="tiny.zip", card=card, onnx=graph, reference=Reference(X, proba, (0, 1), 0))


class Fixed:
    """A predictor that answers given classes and probabilities, whatever the rows."""

    def __init__(self, classes, proba, engine="onnxruntime"):
        self.classes, self.proba, self.engine = np.asarray(classes), np.asarray(proba, dtype=float), engine

    def predict(self, X):
        return self.classes, self.proba


def test_check_parity_counts_mismatches_and_the_largest_difference():
    candidate = Fixed([1, 1, 0, 0], [0.75, 0.5, 0.375, 0.0625])
    # stored 0.75, 0.25, 0.5, 0.0 decide 1, 0, 1, 0 at 0.5: two mismatches; differences 0, 0.25, 0.125, 0.0625
    parity = check_parity(candidate, np.zeros((4, 13)), np.array([0.75, 0.25, 0.5, 0.0]))
    assert (parity.engine, parity.rows, parity.class_mismatches, parity.max_abs_diff) == ("onnxruntime", 4, 2, 0.25)
    assert parity.tolerance == fast.PARITY_TOLERANCE and not parity.ok
    # the stored probabilities are decided at the given threshold
    assert check_parity(Fixed([1], [0.3]), np.zeros((1, 13)), np.array([0.3]), threshold=0.3).class_mismatches == 0
    assert check_parity(Fixed([1], [0.3]), np.zeros((1, 13)), np.array([0.3]), threshold=0.31).class_mismatches == 1


def test_parity_holds_at_the_tolerance_and_fails_just_above_it():
    zeros = np.zeros((1, 13))
    t = fast.PARITY_TOLERANCE
    for delta, ok in [(t / 2, True), (t, True), (np.nextafter(t, 1), False), (2 * t, False)]:
        # |0 - delta| is delta exactly, so the comparison meets the tolerance itself
        parity = check_parity(Fixed([0], [delta]), zeros, np.array([0.0]))
        assert parity.max_abs_diff == delta and parity.ok is ok, (delta, parity)
    # a class mismatch fails even with identical probabilities
    assert not check_parity(Fixed([1], [0.5]), zeros, np.array([0.5]), threshold=0.6).ok


def test_check_parity_on_no_rows_reports_zero_difference():
    empty = Fixed(np.zeros(0, dtype=int), np.zeros(0))
    parity = check_parity(empty, np.zeros((0, 13)), np.zeros(0))
    assert (parity.rows, parity.class_mismatches, parity.max_abs_diff) == (0, 0, 0.0)


def test_check_parity_times_the_prediction_to_four_places(monkeypatch):
    clock = iter([100.0, 100.123456])
    monkeypatch.setattr(fast, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(clock))}))
    parity = check_parity(Fixed([0], [0.1]), np.zeros((1, 13)), np.array([0.1]))
    assert parity.seconds == 0.1235  # 0.123456 s rounded to 4 places, by hand


def test_parity_as_dict_has_every_field_and_ok():
    parity = fast.Parity("onnxruntime", 7, 0, 2.5e-6, seconds=0.25)
    assert parity.as_dict() == {
        "engine": "onnxruntime",
        "rows": 7,
        "class_mismatches": 0,
        "max_abs_diff": 2.5e-6,
        "tolerance": 1e-5,
        "seconds": 0.25,
        "ok": True,
    }
    assert fast.Parity("x", 1, 1, 0.0).as_dict()["ok"] is False


def test_sklearn_predictor_gives_the_pipelines_p_disease_and_decides_at_its_threshold(tiny, dataset):
    X = dataset.X.to_numpy(dtype=float)[:40]
    expected = tiny.predict_proba(dataset.X.iloc[:40])[:, list(tiny.classes_).index(1)]
    predictor = SklearnPredictor(tiny)
    assert predictor.threshold == 0.5 and predictor.positive == 1
    classes, proba = predictor.predict(X)
    np.testing.assert_array_equal(proba, expected)
    assert proba.dtype == np.float64
    np.testing.assert_array_equal(classes, (expected >= 0.5).astype(int))
    t = float(np.median(expected))
    np.testing.assert_array_equal(SklearnPredictor(tiny, t).predict(X)[0], (expected >= t).astype(int))


def test_predictors_read_rows_given_as_lists_with_none_for_missing(tiny, tiny_graph, dataset):
    rows = dataset.X.to_numpy(dtype=float)[:5].copy()
    as_lists = [[None if np.isnan(v) else int(v) if float(v).is_integer() else v for v in row] for row in rows]
    as_lists[0][12] = None  # thal missing: imputed, like NaN
    rows[0, 12] = np.nan
    for predictor in (SklearnPredictor(tiny), OnnxPredictor(tiny_graph)):
        np.testing.assert_allclose(predictor.predict_proba(as_lists), predictor.predict_proba(rows), atol=0)


def test_onnx_predictor_matches_the_tiny_pipeline(tiny, tiny_graph, dataset):
    X = np.vstack([dataset.X.to_numpy(dtype=float), parity_rows(300, seed=1)])
    onnx_tiny = OnnxPredictor(tiny_graph, threshold=0.3)
    assert onnx_tiny.threshold == 0.3 and onnx_tiny.positive == 1 and onnx_tiny.outputs == ["probabilities"]
    classes, proba = onnx_tiny.predict(X)
    ref = SklearnPredictor(tiny).predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (len(X),)
    assert np.abs(proba - ref).max() <= fast.PARITY_TOLERANCE
    np.testing.assert_array_equal(classes, (proba >= 0.3).astype(int))
    assert OnnxPredictor(tiny_graph).threshold == 0.5 and onnx_tiny.onnx_bytes == len(tiny_graph)
    # the positive column is the one asked for: column 0 is P(no disease)
    np.testing.assert_allclose(OnnxPredictor(tiny_graph, positive=0).predict_proba(X), 1 - proba, atol=1e-6)


def test_onnx_session_runs_one_thread_sequentially_on_the_cpu(tiny_graph):
    import onnxruntime as ort

    predictor = OnnxPredictor(tiny_graph)
    options = predictor.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL and options.log_severity_level == 3
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]


def test_a_graph_without_one_13_column_input_x_is_refused():
    from onnx import TensorProto, helper

    def graph(name, columns):
        x = helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, columns])
        y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, columns])
        node = helper.make_node("Identity", [name], ["probabilities"])
        model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
        return model.SerializeToString()

    for name, columns in (("X", 12), ("input", 13)):
        with pytest.raises(ValueError, match=r"the graph must take one input X of \(n, 13\) floats"):
            OnnxPredictor(graph(name, columns))
    assert OnnxPredictor(graph("X", 13)).outputs == ["probabilities"]


def test_to_onnx_has_one_float_input_of_13_columns_and_a_probability_tensor(tiny_graph):
    import onnx

    model = onnx.load_from_string(tiny_graph)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "X" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(dims) == 2 and not dims[0].HasField("dim_value") and dims[1].dim_value == 13
    outputs = {o.name: o for o in model.graph.output}
    # zipmap off: probabilities are an (n, 2) float tensor, not a sequence of {class: p} maps
    assert outputs["probabilities"].type.HasField("tensor_type")


# the positional copy is fed plain arrays on purpose, which sklearn remarks on
@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
def test_positional_selects_columns_by_their_schema_index(tiny):
    from sklearn.compose import ColumnTransformer

    graph = export._positional(tiny)
    step = next(s for _, s in graph.steps if isinstance(s, ColumnTransformer))
    original = next(s for _, s in tiny.steps if isinstance(s, ColumnTransformer))
    names = list(FEATURE_NAMES)
    for (n, _, cols), (n0, _, cols0) in zip(step.transformers_, original.transformers_):
        assert n == n0
        if n != "remainder":
            assert cols == [names.index(c) for c in cols0]
    for (_, _, cols), (_, _, cols0) in zip(step.transformers, original.transformers):
        assert cols == [names.index(c) for c in cols0]
    assert not hasattr(step, "feature_names_in_") and hasattr(original, "feature_names_in_")
    rows = parity_rows(5)  # the positional copy takes a plain array and gives the Pipeline's answer
    np.testing.assert_array_equal(graph.predict_proba(rows), tiny.predict_proba(pd.DataFrame(rows, columns=names)))


# --- build_predictor's verdict at the tolerance, on the tiny forest -------------------------


@pytest.mark.parametrize("delta, served", [(0.9e-5, True), (-0.9e-5, True), (1.1e-5, False), (-1.1e-5, False)])
def test_stored_probabilities_just_within_the_tolerance_serve_and_just_beyond_are_refused(
    tiny, tiny_graph, delta, served
):
    model = tiny_model(tiny, tiny_graph, threshold=0.0, delta=delta)  # every row class 1 both ways
    if served:
        predictor, parity = build_predictor(model)
        assert predictor.engine == "onnxruntime" and parity.class_mismatches == 0
        assert abs(delta) * 0.9 < parity.max_abs_diff < abs(delta) * 1.1
    else:
        with pytest.raises(ModelError, match="0 class mismatches"):
            build_predictor(model)


def test_the_card_threshold_decides_and_the_stored_classes_must_agree(tiny, tiny_graph):
    model = tiny_model(tiny, tiny_graph, threshold=0.4)
    predictor, parity = build_predictor(model)
    assert predictor.threshold == 0.4 and parity.ok
    np.testing.assert_array_equal(predictor.predict(model.reference.X)[0], (model.reference.proba >= 0.4).astype(int))


# --- parity_rows: the rows the reference holds ------------------------------------------------


def test_parity_rows_put_the_data_first_then_seeded_uniform_samples(dataset):
    from heart.samples import sample

    names = [f.name for f in FEATURES]
    samples = sample(50, seed=3, mode="uniform")[names].to_numpy(dtype=float)
    np.testing.assert_array_equal(parity_rows(50, seed=3, missing_rate=0.0), samples)
    # the data's columns in another order are put back in schema order, and come first
    shuffled = dataset.X[names[::-1]]
    rows = parity_rows(50, seed=3, missing_rate=0.0, data=shuffled)
    assert rows.shape == (303 + 50, 13)
    np.testing.assert_array_equal(rows[:303], dataset.X.to_numpy(dtype=float))  # NaN where the data has NaN
    np.testing.assert_array_equal(rows[303:], samples)


def test_parity_rows_leave_out_optional_features_at_the_missing_rate():
    optional = [i for i, f in enumerate(FEATURES) if not f.required]
    required = [i for i, f in enumerate(FEATURES) if f.required]
    X = parity_rows(4000, seed=5)  # default rate 0.2: 4000 draws per feature, sd 0.0063
    share = np.isnan(X[:, optional]).mean(axis=0)
    assert ((share > 0.17) & (share < 0.23)).all(), share
    assert not np.isnan(X[:, required]).any()
    assert not np.isnan(parity_rows(300, missing_rate=0.0)).any()
    all_missing = parity_rows(300, missing_rate=1.0)
    assert np.isnan(all_missing[:, optional]).all() and not np.isnan(all_missing[:, required]).any()
    assert 0.45 < np.isnan(parity_rows(2000, seed=2, missing_rate=0.5)[:, optional]).mean() < 0.55


def test_parity_rows_are_reproducible_by_seed():
    np.testing.assert_array_equal(parity_rows(100, seed=4), parity_rows(100, seed=4))
    a, b = parity_rows(100, seed=4), parity_rows(100, seed=5)
    assert not np.array_equal(np.isnan(a), np.isnan(b))
    # The missing cells come from their own stream, default_rng(seed + 1), one draw of n per
    # optional feature in schema order (so the values match sample(seed) whatever the rate).
    rng = np.random.default_rng(4 + 1)
    for i, f in enumerate(FEATURES):
        if not f.required:
            np.testing.assert_array_equal(np.isnan(a[:, i]), rng.random(100) < 0.2)


def test_onnx_session_is_created_without_a_provider_fallback(tiny_graph, capfd):
    # ONNX Runtime prints "EP Error ... Falling back to ['CPUExecutionProvider']" when asked for a
    # provider it does not know: the fast path names one that exists, so nothing is printed.
    capfd.readouterr()
    OnnxPredictor(tiny_graph)
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "Falling back" not in out + err, out + err


def test_predictors_read_rows_spelled_as_text(tiny, tiny_graph, dataset):
    # Rows parsed from a CSV arrive as text: "3.0" must be the code 3 for the one-hot step, not
    # an unknown category (which would silently zero the column and change the probability).
    rows = dataset.X.to_numpy(dtype=float)[:20]
    as_text = [[repr(float(v)) for v in row] for row in rows]
    for predictor in (SklearnPredictor(tiny), OnnxPredictor(tiny_graph)):
        np.testing.assert_array_equal(predictor.predict_proba(as_text), predictor.predict_proba(rows))


def test_parity_rows_default_seed_is_0_and_data_as_text_reads_as_numbers(dataset):
    np.testing.assert_array_equal(parity_rows(30), parity_rows(30, seed=0))
    rows = parity_rows(0, data=dataset.X.astype(str))  # "63.0", "nan": read as 63.0 and NaN
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, dataset.X.to_numpy(dtype=float))
