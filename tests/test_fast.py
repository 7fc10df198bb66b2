"""The ONNX fast path matches the sklearn Pipeline, and anything that does not is never served."""

import numpy as np
import pandas as pd
import pytest

from heart import fast
from heart.decision import decide
from heart.fast import OnnxPredictor, SklearnPredictor, build_predictor, check_parity, parity_rows
from heart.schema import FEATURES


@pytest.fixture(scope="module")
def onnx(loaded):
    return OnnxPredictor(loaded.pipeline)


def test_parity_on_every_data_row(loaded, dataset, onnx):
    X = dataset.X.to_numpy(dtype=float)
    assert np.isnan(X).any(), "the data's own missing values (ca, thal) are part of the check"
    parity = check_parity(SklearnPredictor(loaded.pipeline), onnx, X)
    assert parity.rows == 303
    assert parity.class_mismatches == 0
    assert parity.max_abs_diff <= fast.PARITY_TOLERANCE


def test_parity_on_10000_schema_samples_with_missing_values(loaded, onnx):
    X = parity_rows(10_000, seed=7, missing_rate=0.3)
    optional = [i for i, f in enumerate(FEATURES) if not f.required]
    assert np.isnan(X[:, optional]).mean() > 0.2 and not np.isnan(X[:, [0, 1]]).any()
    ref_class, ref_p = SklearnPredictor(loaded.pipeline).predict(X)
    got_class, got_p = onnx.predict(X)
    assert (ref_class == got_class).all()
    assert np.abs(ref_p - got_p).max() <= fast.PARITY_TOLERANCE
    assert (
        ref_class
        == decide(
            loaded.pipeline.predict_proba(__import__("pandas").DataFrame(X, columns=[f.name for f in FEATURES]))[:, 1]
        )
    ).all(), "SklearnPredictor decides the Pipeline's probability"


def test_build_predictor_chooses_onnx_when_parity_holds(loaded):
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(500))
    assert predictor.engine == "onnxruntime" and parity.ok and not parity.fallback


def test_parity_failure_falls_back_to_sklearn_and_says_why(loaded, monkeypatch, caplog):
    real = OnnxPredictor.predict

    def drifted(self, X):
        classes, p = real(self, X)
        return classes, p + 1e-4  # a converter bug we must never serve (10x the tolerance)

    monkeypatch.setattr(OnnxPredictor, "predict", drifted)
    with caplog.at_level("WARNING", logger="heart.fast"):
        predictor, parity = build_predictor(loaded.pipeline, parity_rows(200))
    assert predictor.engine == "sklearn" and parity.fallback and not parity.ok
    assert "parity check failed" in parity.reason and f"{fast.PARITY_TOLERANCE:.0e}" in parity.reason
    assert any(r.getMessage() == "fast_path_fallback" for r in caplog.records)


def test_conversion_failure_falls_back_to_sklearn(loaded, monkeypatch):
    def broken(self, pipeline):
        raise RuntimeError("unsupported step")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(50))
    assert predictor.engine == "sklearn" and "conversion failed" in parity.reason


def test_sklearn_engine_by_configuration_and_unknown_engine(loaded):
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(10), engine="sklearn")
    assert isinstance(predictor, SklearnPredictor) and "configuration" in parity.reason
    with pytest.raises(ValueError, match="unknown inference engine"):
        build_predictor(loaded.pipeline, parity_rows(10), engine="gpu")


def test_the_converted_graph_does_not_change_the_pipeline(loaded):
    before = list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2])
    fast._positional(loaded.pipeline)
    assert list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2]) == before
    assert list(loaded.pipeline.feature_names_in_)[0] == "age"


# --- value tests on a tiny forest (5 trees, no calibration: trains in milliseconds) --------


@pytest.fixture(scope="module")
def tiny(dataset):
    from heart.model import build_forest

    return build_forest(calibration=None, n_estimators=5).fit(dataset.X, dataset.y)


class Fixed:
    """A predictor that answers given classes and probabilities, whatever the rows."""

    def __init__(self, classes, proba, engine="onnxruntime"):
        self.classes, self.proba, self.engine = np.asarray(classes), np.asarray(proba, dtype=float), engine

    def predict(self, X):
        return self.classes, self.proba


def test_check_parity_counts_mismatches_and_the_largest_difference():
    reference = Fixed([1, 0, 1, 0], [0.75, 0.25, 0.5, 0.0], engine="sklearn")
    candidate = Fixed([1, 1, 0, 0], [0.75, 0.5, 0.375, 0.0625])  # differences 0, 0.25, 0.125, 0.0625
    parity = check_parity(reference, candidate, np.zeros((4, 13)))
    assert (parity.engine, parity.rows, parity.class_mismatches, parity.max_abs_diff) == ("onnxruntime", 4, 2, 0.25)
    assert parity.reason == "" and parity.fallback is False and parity.tolerance == fast.PARITY_TOLERANCE
    assert not parity.ok


def test_parity_holds_at_the_tolerance_and_fails_just_above_it():
    zeros = np.zeros((1, 13))
    t = fast.PARITY_TOLERANCE
    for delta, ok in [(t / 2, True), (t, True), (np.nextafter(t, 1), False), (2 * t, False)]:
        # |0 - delta| is delta exactly, so the comparison meets the tolerance itself
        parity = check_parity(Fixed([0], [0.0], "sklearn"), Fixed([0], [delta]), zeros)
        assert parity.max_abs_diff == delta and parity.ok is ok, (delta, parity)
    # a class mismatch fails even with identical probabilities
    assert not check_parity(Fixed([0], [0.5], "sklearn"), Fixed([1], [0.5]), zeros).ok


def test_check_parity_on_no_rows_reports_zero_difference():
    empty = Fixed(np.zeros(0, dtype=int), np.zeros(0))
    parity = check_parity(empty, empty, np.zeros((0, 13)))
    assert (parity.rows, parity.class_mismatches, parity.max_abs_diff) == (0, 0, 0.0)


def test_check_parity_times_both_predictions_to_four_places(monkeypatch):
    clock = iter([100.0, 100.123456])
    monkeypatch.setattr(fast, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(clock))}))
    parity = check_parity(Fixed([0], [0.1], "sklearn"), Fixed([0], [0.1]), np.zeros((1, 13)))
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
        "reason": "",
        "fallback": False,
        "ok": True,
    }
    assert fast.Parity("x", 1, 0, 0.0, reason="disabled").as_dict()["ok"] is False


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


def test_predictors_read_rows_given_as_lists_with_none_for_missing(tiny, dataset):
    rows = dataset.X.to_numpy(dtype=float)[:5].copy()
    as_lists = [[None if np.isnan(v) else int(v) if float(v).is_integer() else v for v in row] for row in rows]
    as_lists[0][12] = None  # thal missing: imputed, like NaN
    rows[0, 12] = np.nan
    onnx_tiny = OnnxPredictor(tiny)
    for predictor in (SklearnPredictor(tiny), onnx_tiny):
        np.testing.assert_allclose(predictor.predict_proba(as_lists), predictor.predict_proba(rows), atol=0)


def test_onnx_predictor_matches_the_tiny_pipeline(tiny, dataset):
    X = np.vstack([dataset.X.to_numpy(dtype=float), parity_rows(300, seed=1)])
    onnx_tiny = OnnxPredictor(tiny, threshold=0.3)
    assert onnx_tiny.threshold == 0.3 and onnx_tiny.positive == 1 and onnx_tiny.outputs == ["probabilities"]
    classes, proba = onnx_tiny.predict(X)
    ref = SklearnPredictor(tiny).predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (len(X),)
    assert np.abs(proba - ref).max() <= fast.PARITY_TOLERANCE
    np.testing.assert_array_equal(classes, (proba >= 0.3).astype(int))
    assert OnnxPredictor(tiny).threshold == 0.5


def test_onnx_session_runs_one_thread_sequentially_on_the_cpu(tiny):
    import onnxruntime as ort

    predictor = OnnxPredictor(tiny)
    options = predictor.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL and options.log_severity_level == 3
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]


def test_onnx_predictor_uses_the_given_graph_without_converting(tiny, monkeypatch):
    graph = fast.to_onnx(tiny)

    def no_conversion(pipeline):
        raise AssertionError("converted again")

    monkeypatch.setattr(fast, "to_onnx", no_conversion)
    predictor = OnnxPredictor(tiny, onnx_bytes=graph)
    assert predictor.onnx_bytes == len(graph) > 1000


def test_to_onnx_has_one_float_input_of_13_columns_and_a_probability_tensor(tiny):
    import onnx

    model = onnx.load_from_string(fast.to_onnx(tiny))
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

    graph = fast._positional(tiny)
    step = next(s for _, s in graph.steps if isinstance(s, ColumnTransformer))
    original = next(s for _, s in tiny.steps if isinstance(s, ColumnTransformer))
    names = list(fast.FEATURE_NAMES)
    for (n, _, cols), (n0, _, cols0) in zip(step.transformers_, original.transformers_):
        assert n == n0
        if n != "remainder":
            assert cols == [names.index(c) for c in cols0]
    for (_, _, cols), (_, _, cols0) in zip(step.transformers, original.transformers):
        assert cols == [names.index(c) for c in cols0]
    assert not hasattr(step, "feature_names_in_") and hasattr(original, "feature_names_in_")
    rows = parity_rows(5)  # the positional copy takes a plain array and gives the Pipeline's answer
    np.testing.assert_array_equal(graph.predict_proba(rows), tiny.predict_proba(pd.DataFrame(rows, columns=names)))


# --- build_predictor: which engine serves, the evidence and the log, on the tiny forest -----


def test_sklearn_by_configuration_keeps_the_threshold_and_says_so(tiny):
    predictor, parity = build_predictor(tiny, parity_rows(10), engine="sklearn", threshold=0.3)
    assert type(predictor) is SklearnPredictor and predictor.threshold == 0.3
    assert parity.as_dict() == {
        "engine": "sklearn",
        "rows": 0,
        "class_mismatches": 0,
        "max_abs_diff": 0.0,
        "tolerance": fast.PARITY_TOLERANCE,
        "seconds": 0.0,
        "reason": "fast path disabled by configuration",
        "fallback": True,
        "ok": False,
    }


@pytest.mark.parametrize("engine", ["gpu", "ONNX", "Sklearn", ""])
def test_an_engine_spelled_otherwise_is_refused_by_name(tiny, engine):
    with pytest.raises(ValueError) as e:
        build_predictor(tiny, parity_rows(10), engine=engine)
    assert str(e.value) == f"unknown inference engine {engine!r}: choose onnx or sklearn"


def test_onnx_serves_when_parity_holds_and_logs_the_evidence(tiny, caplog):
    rows = parity_rows(40)
    with caplog.at_level("INFO", logger="heart.fast"):
        predictor, parity = build_predictor(tiny, rows, threshold=0.3)
    assert type(predictor) is OnnxPredictor and predictor.threshold == 0.3
    assert parity.ok and parity.rows == 40 and parity.reason == "" and parity.fallback is False
    (record,) = [r for r in caplog.records if r.name == "heart.fast"]
    assert record.levelname == "INFO" and record.getMessage() == "fast_path_ready"
    assert (record.engine, record.parity_rows, record.max_abs_diff, record.seconds) == (
        "onnxruntime",
        40,
        parity.max_abs_diff,
        parity.seconds,
    )


def test_build_predictor_uses_the_graph_it_is_given(tiny, monkeypatch):
    graph = fast.to_onnx(tiny)
    monkeypatch.setattr(fast, "to_onnx", lambda pipeline: b"not a graph")  # converting now would fail
    predictor, parity = build_predictor(tiny, parity_rows(20), onnx_bytes=graph)
    assert type(predictor) is OnnxPredictor and parity.ok and predictor.onnx_bytes == len(graph)


class Shifted:
    """An ONNX stand-in: the Pipeline's own answer with P(disease) moved by `delta` (a converter bug)."""

    delta = 0.0
    flip_first = False

    def __init__(self, pipeline, threshold, onnx_bytes):
        self.reference = SklearnPredictor(pipeline, threshold)
        self.engine = "onnxruntime"

    def predict(self, X):
        classes, p = self.reference.predict(X)
        if self.flip_first:
            classes = classes.copy()
            classes[0] = 1 - classes[0]
        return classes, p + self.delta


@pytest.mark.parametrize(
    "delta, served",
    [(0.9e-5, "onnxruntime"), (-0.9e-5, "onnxruntime"), (1.1e-5, "sklearn"), (-1.1e-5, "sklearn")],
)
def test_a_difference_just_under_the_tolerance_serves_onnx_and_just_over_falls_back(tiny, monkeypatch, delta, served):
    monkeypatch.setattr(Shifted, "delta", delta)
    monkeypatch.setattr(fast, "OnnxPredictor", Shifted)
    predictor, parity = build_predictor(tiny, parity_rows(30), threshold=0.0)  # every row class 1 both ways
    assert predictor.engine == served
    assert abs(delta) * 0.999 < parity.max_abs_diff < abs(delta) * 1.001 and parity.class_mismatches == 0
    assert parity.fallback is (served == "sklearn")


def test_parity_failure_reason_gives_rows_mismatches_difference_and_tolerance(tiny, monkeypatch, caplog):
    monkeypatch.setattr(Shifted, "delta", 0.25)
    monkeypatch.setattr(Shifted, "flip_first", True)
    monkeypatch.setattr(fast, "OnnxPredictor", Shifted)
    with caplog.at_level("INFO", logger="heart.fast"):
        predictor, parity = build_predictor(tiny, parity_rows(30), threshold=0.4)
    assert type(predictor) is SklearnPredictor and predictor.threshold == 0.4
    assert parity.fallback is True and parity.ok is False
    assert parity.reason == ("parity check failed on 30 rows: 1 class mismatches, max |dp| 2.50e-01 (tolerance 1e-05)")
    (record,) = [r for r in caplog.records if r.name == "heart.fast"]
    assert record.levelname == "WARNING" and record.getMessage() == "fast_path_fallback"
    assert (record.reason, record.engine) == (parity.reason, "sklearn")


def test_a_class_mismatch_alone_falls_back(tiny, monkeypatch):
    monkeypatch.setattr(Shifted, "flip_first", True)
    monkeypatch.setattr(fast, "OnnxPredictor", Shifted)
    predictor, parity = build_predictor(tiny, parity_rows(30))
    assert predictor.engine == "sklearn" and parity.max_abs_diff == 0.0
    assert parity.reason.startswith("parity check failed on 30 rows: 1 class mismatches, max |dp| 0.00e+00")


def test_conversion_failure_reason_and_log(tiny, monkeypatch, caplog):
    def broken(self, pipeline, threshold, onnx_bytes):
        raise RuntimeError("unsupported step")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    with caplog.at_level("INFO", logger="heart.fast"):
        predictor, parity = build_predictor(tiny, parity_rows(10), threshold=0.2)
    assert type(predictor) is SklearnPredictor and predictor.threshold == 0.2
    assert (parity.engine, parity.rows, parity.class_mismatches) == ("onnxruntime", 0, 0)
    assert np.isnan(parity.max_abs_diff) and parity.fallback is True
    assert parity.reason == "conversion failed: RuntimeError: unsupported step"
    (record,) = [r for r in caplog.records if r.name == "heart.fast"]
    assert record.levelname == "WARNING" and record.getMessage() == "fast_path_fallback"
    assert (record.reason, record.engine) == (parity.reason, "sklearn")


def test_a_failing_parity_check_is_a_conversion_failure_too(tiny, monkeypatch):
    def broken(reference, candidate, X):
        raise ValueError("bad rows")

    monkeypatch.setattr(fast, "check_parity", broken)
    predictor, parity = build_predictor(tiny, parity_rows(10))
    assert predictor.engine == "sklearn" and parity.reason == "conversion failed: ValueError: bad rows"


# --- parity_rows: the rows the check runs on ----------------------------------------------


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


def test_onnx_session_is_created_without_a_provider_fallback(tiny, capfd):
    # ONNX Runtime prints "EP Error ... Falling back to ['CPUExecutionProvider']" when asked for a
    # provider it does not know: the fast path names one that exists, so nothing is printed.
    graph = fast.to_onnx(tiny)
    capfd.readouterr()
    OnnxPredictor(tiny, onnx_bytes=graph)
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "Falling back" not in out + err, out + err


def test_predictors_read_rows_spelled_as_text(tiny, dataset):
    # Rows parsed from a CSV arrive as text: "3.0" must be the code 3 for the one-hot step, not
    # an unknown category (which would silently zero the column and change the probability).
    rows = dataset.X.to_numpy(dtype=float)[:20]
    as_text = [[repr(float(v)) for v in row] for row in rows]
    for predictor in (SklearnPredictor(tiny), OnnxPredictor(tiny)):
        np.testing.assert_array_equal(predictor.predict_proba(as_text), predictor.predict_proba(rows))


def test_parity_rows_default_seed_is_0_and_data_as_text_reads_as_numbers(dataset):
    np.testing.assert_array_equal(parity_rows(30), parity_rows(30, seed=0))
    rows = parity_rows(0, data=dataset.X.astype(str))  # "63.0", "nan": read as 63.0 and NaN
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, dataset.X.to_numpy(dtype=float))
