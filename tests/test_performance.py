"""Performance in production (issue 23): every metric by hand and against scikit-learn, the
intervals against an independent resampling and against exact enumeration, windows, the
readers' errors, the script's exit codes, the live gauges; then the evidence that the estimate
works (calibrated labels), follows a covariate shift and cannot see a concept shift."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import uuid

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, brier_score_loss, recall_score, roc_auc_score

import monitor_performance
from heart.analyses import outcomes
from heart.analyses import performance as perf
from heart.artifact import card_path_for
from heart.data import DataError
from heart.model import predict_proba
from heart.samples import sample
from heart.serving.live_drift import DriftWindow, LiveDrift, record_labelled_window
from heart.serving.metrics import Metrics, metrics_payload

# p, y of six patients, two of them tied at 0.4 (a positive and a negative)
P6 = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.4])
Y6 = np.array([1, 0, 1, 0, 0, 0])


# ------------------------------------------------------------------------------ realized, by hand


def test_realized_metrics_by_hand():
    # at 0.5: predicted [1, 1, 0, 0, 1, 0]: TP 1 (0.9), FN 1 (0.4), FP 2 (0.8, 0.6), TN 2 (0.3, 0.4)
    got = perf.realized(P6, Y6, 0.5)
    # positives 0.9 and 0.4 against negatives 0.8, 0.3, 0.6, 0.4: 4 + (1 + a half for the tie) of 8 pairs
    assert got["roc_auc"] == pytest.approx(5.5 / 8, abs=1e-15)
    assert got["accuracy"] == pytest.approx(3 / 6) and got["recall"] == 0.5 and got["specificity"] == 0.5
    assert got["brier"] == pytest.approx((0.01 + 0.64 + 0.36 + 0.09 + 0.36 + 0.16) / 6, abs=1e-15)
    high = perf.realized(P6, Y6, 0.85)  # only 0.9 predicted positive: TP 1, FN 1, FP 0, TN 4
    assert (high["accuracy"], high["recall"], high["specificity"]) == (pytest.approx(5 / 6), 0.5, 1.0)
    assert high["roc_auc"] == got["roc_auc"]  # the ranking does not depend on the threshold
    at = perf.realized(np.array([0.5, 0.2]), np.array([1, 0]), 0.5)  # exactly at the threshold: class 1
    assert at["recall"] == 1.0 and at["accuracy"] == 1.0


def test_realized_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(7)
    for n, threshold in ((40, 0.5), (300, 0.35)):
        p = np.round(rng.random(n), 1)  # many ties
        y = (rng.random(n) < p).astype(int)
        pred = (p >= threshold).astype(int)
        got = perf.realized(p, y, threshold)
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert got["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
        assert got["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0), abs=1e-12)
        assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_undefined_metrics_are_nan_not_a_guess():
    only_negatives = perf.realized(np.array([0.2, 0.7]), np.array([0, 0]), 0.5)
    assert np.isnan(only_negatives["roc_auc"]) and np.isnan(only_negatives["recall"])
    assert only_negatives["specificity"] == 0.5 and only_negatives["accuracy"] == 0.5
    assert all(np.isnan(v) for v in perf.realized(np.array([]), np.array([]), 0.5).values())
    assert all(np.isnan(v) for v in perf.expected(np.array([]), 0.5).values())
    assert np.isnan(perf.expected_auc(np.array([0.3]))), "one patient makes no pair"


# ------------------------------------------------------------------------------ CBPE


def test_expected_metrics_by_hand():
    p = np.array([0.9, 0.2, 0.6])  # predicted [1, 0, 1] at 0.5
    got = perf.expected(p, 0.5)
    assert got["accuracy"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert got["recall"] == pytest.approx((0.9 + 0.6) / 1.7)  # E[TP] / E[positives]
    assert got["specificity"] == pytest.approx(0.8 / 1.3)  # E[TN] / E[negatives]
    assert got["brier"] == pytest.approx((0.09 + 0.16 + 0.24) / 3)
    # pairs of two different patients, the higher one positive and the lower one negative:
    # 0.6 over 0.2: 0.6 * 0.8; 0.9 over 0.2: 0.9 * 0.8; 0.9 over 0.6: 0.9 * 0.4; all pairs: 1.7 * 1.3 - 0.49
    assert got["roc_auc"] == pytest.approx((0.48 + 0.72 + 0.36) / (1.7 * 1.3 - 0.49))


def enumerate_labels(p: np.ndarray):
    """Every label vector of len(p) patients with its probability under Bernoulli(p)."""
    for bits in itertools.product((0, 1), repeat=len(p)):
        y = np.array(bits, dtype=float)
        yield y, float(np.prod(np.where(y == 1, p, 1 - p)))


@pytest.mark.parametrize("p", [[0.9, 0.2, 0.6], [0.7, 0.7, 0.1, 0.55, 0.3, 0.95, 0.3, 0.5], [0.5] * 6 + [0.99, 0.01]])
def test_cbpe_matches_brute_force_expectations(p):
    """Accuracy and Brier are exact expectations over all 2^n label vectors; recall, specificity
    and ROC AUC the ratios of exact expectations (E[TP] / E[positives], E[concordant pairs] /
    E[positive-negative pairs])."""
    p = np.array(p)
    pred = (p >= 0.5).astype(float)
    e = dict.fromkeys(("acc", "brier", "tp", "pos", "tn", "neg", "conc", "pairs"), 0.0)
    for y, w in enumerate_labels(p):
        e["acc"] += w * np.mean(y == pred)
        e["brier"] += w * np.mean((p - y) ** 2)
        e["tp"] += w * np.sum(y * pred)
        e["pos"] += w * y.sum()
        e["tn"] += w * np.sum((1 - y) * (1 - pred))
        e["neg"] += w * (1 - y).sum()
        pos, neg = p[y == 1], p[y == 0]
        e["conc"] += w * (np.sum(pos[:, None] > neg[None]) + 0.5 * np.sum(pos[:, None] == neg[None]))
        e["pairs"] += w * len(pos) * len(neg)
    got = perf.expected(p, 0.5)
    assert got["accuracy"] == pytest.approx(e["acc"], abs=1e-12)
    assert got["brier"] == pytest.approx(e["brier"], abs=1e-12)
    assert got["recall"] == pytest.approx(e["tp"] / e["pos"], abs=1e-12)
    assert got["specificity"] == pytest.approx(e["tn"] / e["neg"], abs=1e-12)
    assert got["roc_auc"] == pytest.approx(e["conc"] / e["pairs"], abs=1e-12)


def test_the_estimated_band_holds_95_percent_of_the_exact_label_distribution():
    """The band from label draws against the exact distribution of each realized metric over all
    2^10 label vectors: at least 95% of the mass inside, at most 2.5% (+ draw noise) each side."""
    p = np.array([0.92, 0.85, 0.7, 0.64, 0.55, 0.45, 0.4, 0.3, 0.15, 0.05])
    band = perf.estimated_intervals(p, 0.5, 20_000, seed=3)
    mass = {m: [] for m in perf.METRICS}
    for y, w in enumerate_labels(p):
        for m, v in perf.realized(p, y, 0.5).items():
            if not np.isnan(v):
                mass[m].append((v, w))
    for m, pairs in mass.items():
        values, weights = np.array(pairs).T
        weights = weights / weights.sum()  # given the metric is defined (both classes, for AUC)
        lo, hi = band[m]
        inside = weights[(values >= lo - 1e-12) & (values <= hi + 1e-12)].sum()
        assert inside >= 0.95 - 0.005, (m, inside)
        assert weights[values < lo - 1e-12].sum() <= 0.025 + 0.005, m
        assert weights[values > hi + 1e-12].sum() <= 0.025 + 0.005, m


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_intervals_equal_an_independent_resampling(monkeypatch):
    """The same resamples through scikit-learn, one by one: the same percentile bounds. A small
    CHUNK_CELLS splits the resampling into chunks without changing a figure."""
    rng = np.random.default_rng(11)
    p = np.round(rng.random(60), 2)
    y = (rng.random(60) < p).astype(int)
    samples = {m: [] for m in perf.METRICS}
    for idx in np.random.default_rng(5).integers(0, 60, (300, 60)):
        ps, ys = p[idx], y[idx]
        pred = (ps >= 0.5).astype(int)
        samples["accuracy"].append(accuracy_score(ys, pred))
        samples["brier"].append(brier_score_loss(ys, ps))
        if 0 < ys.sum() < len(ys):
            samples["roc_auc"].append(roc_auc_score(ys, ps))
        if ys.sum():
            samples["recall"].append(recall_score(ys, pred))
        if (ys == 0).sum():
            samples["specificity"].append(recall_score(ys, pred, pos_label=0))
    expected = {m: list(np.percentile(v, [2.5, 97.5])) for m, v in samples.items()}
    got = perf.realized_intervals(p, y, 0.5, 300, seed=5)
    monkeypatch.setattr(perf, "CHUNK_CELLS", 60 * 7)  # chunks of 7 resamples
    chunked = perf.realized_intervals(p, y, 0.5, 300, seed=5)
    for m in perf.METRICS:
        assert got[m] == pytest.approx(expected[m], abs=1e-12), m
        assert chunked[m] == pytest.approx(expected[m], abs=1e-12), m


def test_intervals_need_two_rows():
    one = perf.realized_intervals(np.array([0.4]), np.array([1]), 0.5, 100, 0)
    assert all(np.isnan(v).all() for v in one.values())


# ------------------------------------------------------------------------------ windows


def frame_of(times, p, labels, ids=None) -> pd.DataFrame:
    n = len(p)
    return pd.DataFrame(
        {
            "prediction_id": ids if ids is not None else [uuid.uuid4().hex for _ in range(n)],
            "timestamp": pd.to_datetime(times, utc=True),
            "model_version": "m1",
            "probability": np.asarray(p, dtype=float),
            "predicted_class": (np.asarray(p) >= 0.5).astype(int),
            "label": pd.array(labels, dtype="Int64"),
        }
    )


def test_windows_counts_coverage_and_figures():
    rng = np.random.default_rng(2)
    n = 120
    times = pd.Timestamp("2026-05-01T00:00:00+00:00") + pd.to_timedelta(rng.uniform(0, 30, n), unit="h")
    p = rng.random(n)
    y = (rng.random(n) < p).astype(int)
    labels = [int(v) if i % 3 else None for i, v in enumerate(y)]  # two thirds labelled
    frame = frame_of(times, p, labels)
    frame.loc[(times >= pd.Timestamp("2026-05-01T06:00Z")) & (times < pd.Timestamp("2026-05-01T12:00Z")), "label"] = (
        pd.NA
    )
    frame = frame[(times < pd.Timestamp("2026-05-01T18:00Z")) | (times >= pd.Timestamp("2026-05-02T00:00Z"))]
    report = perf.analyze(frame, 0.5, window="6h", n_boot=200, seed=1)
    starts = [w.start for w in report.windows]
    assert starts == [f"2026-05-01T{h:02d}:00:00+00:00" for h in (0, 6, 12)] + ["2026-05-02T00:00:00+00:00"]
    assert report.windows[0].end == "2026-05-01T06:00:00+00:00"  # 18:00-24:00 had no prediction: no window
    assert sum(w.n for w in report.windows) == len(frame) == report.overall.n
    for w in report.windows:
        rows = frame[(frame.timestamp >= w.start) & (frame.timestamp < w.end)]
        labelled = rows[rows.label.notna()]
        assert (w.n, w.n_labelled) == (len(rows), len(labelled))
        assert w.label_coverage == pytest.approx(len(labelled) / len(rows))
        assert w.estimated["accuracy"].value == perf.expected(rows.probability.to_numpy(), 0.5)["accuracy"]
        real = perf.realized(labelled.probability.to_numpy(), labelled.label.to_numpy(dtype=float), 0.5)
        assert w.realized["roc_auc"].value == pytest.approx(real["roc_auc"], nan_ok=True)
    unlabelled = report.windows[1]
    assert unlabelled.n_labelled == 0 and np.isnan(unlabelled.realized["accuracy"].value)
    assert not np.isnan(unlabelled.estimated["accuracy"].value), "estimated for every window, labelled or not"


def test_windows_are_utc_whatever_the_offset_written():
    times = ["2026-05-01T23:30:00+02:00", "2026-05-01T21:45:00+00:00", "2026-05-02T01:30:00+02:00"]
    report = perf.analyze(frame_of(times, [0.2, 0.7, 0.9], [None] * 3), 0.5, n_boot=100)
    assert [(w.start, w.n) for w in report.windows] == [("2026-05-01T00:00:00+00:00", 3)]


def test_window_and_minimum_settings():
    assert perf.parse_window("6h") == pd.Timedelta(hours=6) and perf.parse_window(" 1D ") == pd.Timedelta(days=1)
    for bad in ("daily", "0h", "-1D", "", "5ms"):
        with pytest.raises(ValueError, match="is not a duration of at least a second"):
            perf.parse_window(bad)
    assert perf.parse_minimum("realized.recall=0.7") == perf.Minimum("realized", "recall", 0.7)
    for bad in ("recall=0.7", "observed.recall=0.7", "realized.f1=0.7", "realized.brier=0.2", "estimated.recall"):
        with pytest.raises(ValueError, match="is not KIND.METRIC=VALUE"):
            perf.parse_minimum(bad)
    for bad in ("realized.recall=high", "realized.recall=1.5"):
        with pytest.raises(ValueError, match="between 0 and 1"):
            perf.parse_minimum(bad)


def test_the_degradation_check_judges_full_windows_only():
    rng = np.random.default_rng(4)
    times = ["2026-05-01T10:00Z"] * 80 + ["2026-05-02T10:00Z"] * 30
    p = np.r_[rng.uniform(0.3, 0.7, 80), rng.uniform(0.3, 0.7, 30)]  # uncertain: estimated accuracy ~0.6
    labels = [int(v) for v in (rng.random(110) < p)]
    minimum = perf.Minimum("estimated", "accuracy", 0.7)
    report = perf.analyze(frame_of(times, p, labels), 0.5, n_boot=100, minimums=[minimum], min_rows=50)
    assert [(b.window, b.kind, b.metric) for b in report.breaches] == [
        ("2026-05-01T00:00:00+00:00", "estimated", "accuracy")
    ]  # the 30-row window is as bad but too small to judge
    assert report.breaches[0].value == report.windows[0].estimated["accuracy"].value < 0.7
    assert report.class_mismatches == 0
    other = perf.analyze(frame_of(times, p, labels), 0.45, n_boot=100)  # not the threshold that served them
    assert other.class_mismatches == int(((p >= 0.45) & (p < 0.5)).sum()) > 0
    assert report.degraded and report.to_dict()["degraded"] is True
    fine = perf.analyze(
        frame_of(times, p, labels), 0.5, n_boot=100, minimums=[perf.Minimum("estimated", "accuracy", 0.5)]
    )
    assert not fine.degraded
    no_labels = frame_of(times, p, [None] * 110)
    unjudged = perf.analyze(no_labels, 0.5, n_boot=100, minimums=[perf.Minimum("realized", "accuracy", 0.99)])
    assert not unjudged.breaches, "no labels: nothing realized to judge"


def test_the_frame_contract_is_checked():
    good = frame_of(["2026-05-01T10:00Z"], [0.4], [1])
    with pytest.raises(ValueError, match="lack the column"):
        perf.analyze(good.drop(columns="label"), 0.5)
    with pytest.raises(ValueError, match="'probability' must be numbers between 0 and 1"):
        perf.analyze(good.assign(probability=1.5), 0.5)
    with pytest.raises(ValueError, match="'label' must be 0, 1 or missing"):
        perf.analyze(good.assign(label=pd.array([2], dtype="Int64")), 0.5)
    with pytest.raises(ValueError, match="time zone"):
        perf.analyze(good.assign(timestamp=pd.to_datetime(["2026-05-01"])), 0.5)
    with pytest.raises(ValueError, match="no predictions"):
        perf.analyze(good.iloc[:0], 0.5)


# ------------------------------------------------------------------------------ reading


def log_line(pid: str | None, when: str, p: float, version: str = "m1", **extra) -> str:
    """A record as the API writes it (heart.predlog), with the serving half's prediction_id."""
    record = {"event": "prediction", "timestamp": when, "trace_id": "0" * 32, "span_id": "0" * 16}
    record |= {"model_version": version, "inputs": {"age": 63}, "imputed": []}
    record |= {"predicted_class": int(p >= 0.5), "probability": p, "latency_ms": 0.1}
    if pid is not None:
        record = {"prediction_id": pid, **record}
    return json.dumps({**record, **extra})


def write_log(path, ps, times=None, ids=None, version: str = "m1") -> list[str]:
    """A prediction log of these probabilities; returns the prediction ids."""
    ids = ids or [uuid.uuid4().hex for _ in ps]
    times = times or [f"2026-05-01T{10 + i % 10:02d}:00:00.000+00:00" for i in range(len(ps))]
    path.write_text("".join(log_line(i, t, float(p), version) + "\n" for i, t, p in zip(ids, times, ps)))
    return ids


def error_of(call) -> str:
    with pytest.raises(DataError) as e:
        call()
    return str(e.value)


def test_the_log_reader_takes_what_the_api_writes(tmp_path):
    log = tmp_path / "predictions.jsonl"
    ids = [uuid.uuid4().hex for _ in range(3)]
    lines = [
        log_line(ids[0], "2026-05-01T10:00:00.000+00:00", 0.8),
        json.dumps({"event": "startup", "timestamp": "x"}),  # another event: skipped
        "",
        log_line(ids[1], "2026-05-01T12:00:00.000+02:00", 0.3),
        log_line(None, "2026-05-02T09:00:00.000+00:00", 0.55),  # before prediction ids: estimated only
    ]
    log.write_text("\n".join(lines) + "\n")
    frame = outcomes.read_prediction_log(log)
    assert frame["prediction_id"].iloc[:2].tolist() == ids[:2] and pd.isna(frame["prediction_id"].iloc[2])
    assert frame["line"].tolist() == [1, 4, 5] and set(frame["source"]) == {str(log)}
    assert frame["timestamp"].dt.tz is not None and frame["timestamp"].iloc[1] == pd.Timestamp("2026-05-01T10:00Z")
    assert frame["probability"].tolist() == [0.8, 0.3, 0.55] and frame["label"].isna().all()
    assert str(frame["label"].dtype) == "Int64"
    perf.check_frame(frame)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: not valid JSON"),
        (
            log_line("a" * 32, "2026-05-01T10:00:00", 0.5),
            "line 2, column 'timestamp': '2026-05-01T10:00:00' is not an ISO",
        ),
        (log_line("a" * 32, "yesterday", 0.5), "line 2, column 'timestamp'"),
        (log_line("a" * 32, "2026-05-01T10:00:00Z", 0.5, probability=1.2), "column 'probability': 1.2 is not a number"),
        (log_line("a" * 32, "2026-05-01T10:00:00Z", 0.5, probability="0.5"), "column 'probability'"),
        (log_line("a" * 32, "2026-05-01T10:00:00Z", 0.5, predicted_class=True), "column 'predicted_class': True"),
        (log_line("a" * 32, "2026-05-01T10:00:00Z", 0.5, model_version=""), "column 'model_version'"),
        (log_line("A" * 32, "2026-05-01T10:00:00Z", 0.5), "column 'prediction_id': 'AAAA"),
        (log_line("a" * 31, "2026-05-01T10:00:00Z", 0.5), "is not 32 lowercase hexadecimal digits"),
    ],
)
def test_a_bad_log_line_is_named_by_file_line_and_field(tmp_path, line, message):
    log = tmp_path / "p.jsonl"
    log.write_text(log_line("b" * 32, "2026-05-01T10:00:00Z", 0.5) + "\n" + line + "\n")
    err = error_of(lambda: outcomes.read_prediction_log(log))
    assert err.startswith(f"{log}: ") and message in err


def test_logs_without_records_or_given_twice_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"event": "startup"}) + "\n")
    assert "no prediction records" in error_of(lambda: outcomes.read_prediction_log(empty))
    assert "file not found" in error_of(lambda: outcomes.read_prediction_log(tmp_path / "missing.jsonl"))
    log = tmp_path / "p.jsonl"
    ids = write_log(log, [0.2, 0.9])
    frame = outcomes.read_prediction_log(log)
    err = error_of(lambda: outcomes.combine([frame, frame]))
    assert f"{log}: line 1, column 'prediction_id': {ids[0]} is also at {log} line 1" in err
    assert len(outcomes.combine([frame])) == 2 and outcomes.combine([]).empty


def test_labels_in_every_spelling_the_loader_accepts(tmp_path):
    ids = [uuid.uuid4().hex for _ in range(6)]
    csv_file = tmp_path / "labels.csv"
    rows = [(ids[0], "yes"), (ids[1], "No"), (ids[2], "1"), (ids[3], " 0 "), (ids[4], "1.0"), (ids[0], "YES")]
    csv_file.write_text("\ufeffPrediction_ID,note,Label\n" + "".join(f"{i},x,{v}\n" for i, v in rows))
    labels = outcomes.read_labels(csv_file)
    assert labels.frame["label"].tolist() == [1, 0, 1, 0, 1] and labels.rows == 6  # ids[0] repeated, same label
    assert labels.frame["line"].tolist() == [2, 3, 4, 5, 6]
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"prediction_id": i, "target": v}) + "\n" for i, v in zip(ids, [1, 0, "no", 1.0, "Yes", 0]))
    )
    assert outcomes.read_labels(jsonl).frame["label"].tolist() == [1, 0, 0, 1, 1, 0]
    sniffed = tmp_path / "labels.txt"  # no suffix to go by: JSON lines start with {
    sniffed.write_text(jsonl.read_text())
    assert outcomes.read_labels(sniffed).frame["label"].tolist() == [1, 0, 0, 1, 1, 0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("prediction_id,label\n{a},maybe\n", "line 2, column 'label': 'maybe' is not a known label"),
        ("prediction_id,label\n{a},\n", "line 2, column 'label': no label"),
        ("prediction_id,label\n{a},1\nxyz,0\n", "line 3, column 'prediction_id': 'xyz' is not 32"),
        (
            "prediction_id,label\n{a},1\n{b},0\n{a},no\n",
            "line 4, column 'label': {a} is labelled 0 here and 1 at line 2",
        ),
        ("id,label\n{a},1\n", "line 1, column 'prediction_id': required column is missing"),
        ("prediction_id\n{a}\n", "line 1, column 'label': required column is missing"),
        ("prediction_id,label\n", "no labels"),
        ('{{"prediction_id": "{a}", "label": true}}\n', "line 1, column 'label': 'true' is not a known label"),
        ('{{"prediction_id": "{a}", "label": 1}}\n[1]\n', "line 2: must be a JSON object"),
        ('{{"prediction_id": "{a}"}}\n', "line 1, column 'label': no label"),
    ],
)
def test_a_bad_labels_file_is_named_by_line_and_field(tmp_path, text, message):
    a, b = "a" * 32, "b" * 32
    path = tmp_path / "labels.csv"
    path.write_text(text.format(a=a, b=b))
    err = error_of(lambda: outcomes.read_labels(path))
    assert err.startswith(f"{path}: ") and message.format(a=a, b=b) in err


def test_labels_join_by_prediction_id(tmp_path):
    log = tmp_path / "p.jsonl"
    ids = write_log(log, [0.2, 0.9, 0.6])
    labels_file = tmp_path / "labels.csv"
    stranger = uuid.uuid4().hex
    labels_file.write_text(f"prediction_id,label\n{ids[2]},yes\n{stranger},no\n{ids[0]},no\n{ids[0]},0\n")
    labels = outcomes.read_labels(labels_file)
    frame, counts = outcomes.attach_labels(outcomes.read_prediction_log(log), labels)
    assert frame["label"].tolist() == [0, pd.NA, 1]
    assert (counts.given, counts.matched, counts.repeated, counts.unknown) == (4, 2, 1, [stranger])
    again, _ = outcomes.attach_labels(frame, labels)  # the same labels twice: nothing changes
    assert again["label"].tolist() == frame["label"].tolist()
    flipped = frame.assign(label=pd.array([1, pd.NA, 1], dtype="Int64"))  # the table says otherwise
    err = error_of(lambda: outcomes.attach_labels(flipped, labels))
    assert f"{labels_file}: line 4, column 'label': {ids[0]} already has the label 1" in err


# ------------------------------------------------------------------------------ the script


def run_script(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = monitor_performance.cli.run_main(monitor_performance.main, list(argv))
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def served(tmp_path, model_path):
    """Two days of 200 predictions each, labels for the first day, and the session model's card."""
    card = tmp_path / "model.card.json"
    card.write_text(card_path_for(model_path).read_text())
    version = json.loads(card.read_text())["model_version"]
    rng = np.random.default_rng(8)
    p = np.clip(rng.beta(0.6, 0.6, 400), 0.001, 0.999)  # confident: accuracy about 0.85
    times = [f"2026-05-0{1 + i // 200}T{(i % 200) // 10:02d}:{i % 10 * 6:02d}:00.000+00:00" for i in range(400)]
    log = tmp_path / "predictions.jsonl"
    ids = write_log(log, p, times, version=version)
    y = (rng.random(400) < p).astype(int)
    labels = tmp_path / "labels.csv"
    labels.write_text("prediction_id,label\n" + "".join(f"{i},{'yes' if v else 'no'}\n" for i, v in zip(ids[:200], y)))
    return {"log": log, "labels": labels, "card": card, "out": tmp_path / "reports", "p": p, "y": y}


def test_the_script_prints_and_writes_both_views(served):
    s = served
    code, out, err = run_script(
        "--log", str(s["log"]), "--labels", str(s["labels"]), "--card", str(s["card"]), "--bootstrap", "200",
        "--out-dir", str(s["out"]),
    )  # fmt: skip
    assert code == 0, err
    assert "200 rows, 200 matched a prediction, 0 repeated, 0 for predictions not in these logs" in out
    assert "Estimated without labels (CBPE), per 1D window" in out and "Realized over the labelled" in out
    doc = json.loads((s["out"] / "performance.json").read_text())
    assert [w["n"] for w in doc["windows"]] == [200, 200] and [w["n_labelled"] for w in doc["windows"]] == [200, 0]
    assert doc["source"]["label_counts"]["matched"] == 200 and doc["threshold"] == 0.5
    first = perf.realized(s["p"][:200], s["y"], 0.5)
    assert doc["windows"][0]["realized"]["roc_auc"]["value"] == pytest.approx(first["roc_auc"], abs=1e-12)
    assert doc["windows"][1]["realized"]["roc_auc"]["value"] is None  # NaN: null in JSON
    assert doc["windows"][1]["estimated"]["accuracy"]["value"] == pytest.approx(
        perf.expected(s["p"][200:], 0.5)["accuracy"], abs=1e-12
    )
    assert f"{first['roc_auc']:.3f}" in out
    assert doc["minimums"] == [str(m) for m in perf.DEFAULT_MINIMUMS] and doc["degraded"] is False
    assert (s["out"] / "performance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (s["out"] / "index.html").read_text()
    assert '<section id="performance" data-present="true"' in page and f"{first['roc_auc']:.3f}" in page
    assert f"wrote {s['out'] / 'performance.json'}, {s['out'] / 'performance.png'} and {s['out'] / 'index.html'}" in out


def test_fail_on_degradation_exits_1_only_when_a_minimum_is_broken(served):
    s = served
    base = ["--log", str(s["log"]), "--card", str(s["card"]), "--bootstrap", "100", "--out-dir", str(s["out"])]
    high = ["--minimum", "estimated.accuracy=0.99"]
    assert run_script(*base, "--fail-on-degradation")[0] == 0
    code, out, _ = run_script(*base, *high, "--fail-on-degradation")
    assert code == 1 and "DEGRADED: 2 figure(s) below a minimum" in out
    assert run_script(*base, *high)[0] == 0, "without the flag the verdict is reported, not an exit code"
    labelled = [*base, "--labels", str(s["labels"]), "--minimum", "realized.recall=0.99", "--fail-on-degradation"]
    code, out, _ = run_script(*labelled)
    assert code == 1 and "2026-05-01: realized recall" in out and "2026-05-02" not in out.split("DEGRADED")[1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--window", "daily"], "argument --window: window 'daily' is not a duration"),
        (["--minimum", "realized.brier=0.2"], "argument --minimum: 'realized.brier=0.2' is not KIND.METRIC=VALUE"),
        (["--bootstrap", "10"], "argument --bootstrap: must be at least 100"),
        (["--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
        (["--out-dir", "data/data.csv"], "argument --out-dir: data/data.csv is a regular file, not a directory"),
    ],
)
def test_bad_flags_are_usage_errors(served, argv, message):
    code, _, err = run_script("--log", str(served["log"]), "--card", str(served["card"]), *argv)
    assert code == 2 and message in err


def test_bad_input_is_one_line_naming_file_line_and_field(served, tmp_path, monkeypatch):
    s = served
    monkeypatch.delenv("PREDICTION_LOG", raising=False)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(s["log"].read_text() + log_line("c" * 32, "2026-05-03T10:00:00Z", 0.5, probability=-1) + "\n")
    bad_labels = tmp_path / "bad.csv"
    bad_labels.write_text("prediction_id,label\n" + "d" * 32 + ",perhaps\n")
    cases = [
        (["--log", str(broken)], f"error: {broken}: line 401, column 'probability': -1 is not a number"),
        (
            ["--log", str(s["log"]), "--labels", str(bad_labels)],
            f"error: {bad_labels}: line 2, column 'label': 'perhaps'",
        ),
        (
            [],
            f"error: {s['card'].parent / 'inference.db'}: file not found: the server writes the inference table there",
        ),
        (["--log", str(tmp_path / "nope.jsonl")], f"error: {tmp_path / 'nope.jsonl'}: file not found"),
    ]
    for argv, message in cases:
        code, _, err = run_script(*argv, "--card", str(s["card"]), "--out-dir", str(s["out"]))
        assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    code, _, err = run_script("--log", str(s["log"]), "--card", str(tmp_path / "none.json"))
    assert code == 2 and "none.json: file not found: the decision threshold is the model card's" in err
    card = json.loads(s["card"].read_text())
    (tmp_path / "card.json").write_text(json.dumps({**card, "model_version": "other"}))
    s["out"].mkdir()
    (s["out"] / "drift.json").write_text("{broken")  # another analysis' report: the page is left alone
    code, out, err = run_script(
        "--log", str(s["log"]), "--card", str(tmp_path / "card.json"), "--bootstrap", "100", "--out-dir", str(s["out"])
    )
    assert code == 0 and "card.json is model other: is it the model that served these?" in err
    assert f"note: {s['out'] / 'index.html'} not updated: {s['out'] / 'drift.json'}: not valid JSON" in err
    assert (s["out"] / "performance.json").exists() and not (s["out"] / "index.html").exists()


@pytest.mark.parametrize(
    "card, rule",
    [
        ({}, "not a model card: no model_version and no threshold (train.py writes both)"),
        ({"model_version": "m"}, "not a model card: no threshold (train.py writes both)"),
        ({"threshold": 0.5}, "not a model card: no model_version (train.py writes both)"),
        ({"model_version": "m", "threshold": "x"}, "'threshold' must be a number between 0 and 1, got 'x'"),
        ({"model_version": "m", "threshold": True}, "'threshold' must be a number between 0 and 1, got True"),
        ({"model_version": "m", "threshold": 5}, "'threshold' must be a number between 0 and 1, got 5"),
        ([0.5], "not a model card: expected a JSON object (train.py writes one)"),
    ],
)
def test_a_card_without_a_version_or_a_threshold_is_refused(served, tmp_path, card, rule):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    code, out, err = run_script("--log", str(served["log"]), "--card", str(path), "--out-dir", str(served["out"]))
    assert (code, out, err) == (2, "", f"error: {path}: {rule}\n")
    assert not served["out"].exists()


def test_a_directory_given_as_the_table_is_named_so(served, tmp_path):
    code, _, err = run_script("--table", str(tmp_path), "--card", str(served["card"]), "--out-dir", str(served["out"]))
    assert (code, err) == (
        2,
        f"error: {tmp_path}: is a directory, not a SQLite file: give the inference table's file\n",
    )


def test_a_report_path_that_is_a_directory_is_refused_before_reading(served):
    (served["out"] / "performance.png").mkdir(parents=True)
    code, out, err = run_script(
        "--log", str(served["log"]), "--card", str(served["card"]), "--out-dir", str(served["out"])
    )
    assert (
        code == 2
        and out == ""
        and err.splitlines()[-1].endswith(
            f"error: argument --out-dir: {served['out'] / 'performance.png'} is a directory, not a regular file: "
            "give a new path or a regular file to replace"
        )
    )


# ------------------------------------------------------------------------------ the live view


def exported(metrics: Metrics) -> dict:
    """{(name, metric label or None): value} of the performance gauges."""
    return {
        (s.name, s.labels.get("metric")): s.value
        for family in text_string_to_metric_families(metrics_payload(metrics).decode())
        for s in family.samples
        if s.name.startswith("heart_performance")
    }


def test_the_live_estimate_is_cbpe_of_the_windows_served_probabilities(trained, dataset, tmp_path):
    """The drift thread scores the window's rows with the served predictor and exports CBPE; a
    model without training rows to compare with turns drift off, not the estimate."""
    metrics, window = Metrics(), DriftWindow(300)
    model = {"ready": False}

    def score(rows):
        return (
            (predict_proba(trained.pipeline, pd.DataFrame(rows, columns=dataset.X.columns)), 0.4)
            if model["ready"]
            else None
        )

    def no_training_rows():
        return np.empty((0, dataset.X.shape[1])) if model["ready"] else None

    live = LiveDrift(window, metrics, 60, no_training_rows, score)
    rows = sample(300, seed=5, mode="marginal", reference=dataset.X)
    rows.loc[::9, "chol"] = np.nan  # imputed in the model, as served
    window.append(rows.to_numpy(), np.zeros(300, dtype=int))
    assert not live.compute(), "no model loaded yet: nothing, and try again later"
    assert exported(metrics) == {
        ("heart_performance_estimated_rows", None): 0,
        ("heart_performance_labelled_rows", None): 0,
    }
    model["ready"] = True
    assert live.compute() and not live.compute(), "computed once, then only when new rows arrive"
    assert "no training rows" in live.disabled, "drift is off without a reference; the estimate is not"
    want = perf.expected(predict_proba(trained.pipeline, rows), 0.4)
    got = exported(metrics)
    assert {m: got["heart_performance_estimated", m] for m in perf.METRICS} == pytest.approx(want, abs=1e-12)
    assert got["heart_performance_estimated_rows", None] == 300
    assert not any(name == "heart_performance_realized" for name, _ in got), "no labels: no realized figures"


def test_the_realized_hook_exports_the_labelled_windows_figures():
    metrics = Metrics()
    figures = record_labelled_window(metrics, P6, Y6, 0.5)
    assert figures == perf.realized(P6, Y6, 0.5)
    got = exported(metrics)
    assert {m: got["heart_performance_realized", m] for m in perf.METRICS} == pytest.approx(figures, abs=1e-15)
    assert got["heart_performance_labelled_rows", None] == 6
    for probability, label in ((P6, Y6[:5]), (P6, np.where(Y6 == 1, 2, 0)), (P6[:, None], Y6[:, None])):
        with pytest.raises(ValueError, match="one 0/1 label per probability"):
            record_labelled_window(metrics, probability, label, 0.5)


# ------------------------------------------------------------------------------ the evidence (docs/monitoring.md)

RUNS = 100


@pytest.fixture(scope="module")
def patients(trained, dataset):
    """2,000 patients drawn from the training marginals and the model's probabilities, computed once."""
    X = sample(2000, seed=0, mode="marginal", reference=dataset.X)
    return X, predict_proba(trained.pipeline, X)


def draw(p: np.ndarray, seed: int) -> np.ndarray:
    """Labels as a calibrated model's world would have them: Bernoulli(p)."""
    return (np.random.default_rng(seed).random(p.size) < p).astype(float)


def test_calibrated_the_estimate_is_within_the_realized_ci_in_95_of_100_runs(patients):
    """Labels drawn Bernoulli(served probability) 100 times (seeds 0-99): the CBPE accuracy and
    ROC AUC fall inside the realized figures' bootstrap 95% CI (1,000 resamples) in >= 95 runs."""
    _, p = patients
    est = perf.expected(p, 0.5)
    inside = dict.fromkeys(perf.METRICS, 0)
    for run in range(RUNS):
        ci = perf.realized_intervals(p, draw(p, run), 0.5, perf.N_BOOT, seed=run)
        for m in perf.METRICS:
            inside[m] += ci[m][0] <= est[m] <= ci[m][1]
    print(f"\ncalibrated: estimate inside the realized 95% CI in {inside} of {RUNS} runs")
    assert inside["accuracy"] >= 95 and inside["roc_auc"] >= 95, inside


def mean_realized(p: np.ndarray, labels, metric: str) -> float:
    return float(np.mean([perf.realized(p, y, 0.5)[metric] for y in labels]))


def test_covariate_shift_the_estimate_follows_the_realized_drop(patients, trained, dataset):
    """A window where 90% of the patients have a normal thallium test (thal = 2), where the model
    ranks less well and misses more disease. Labels still Bernoulli(p): P(disease | features) has
    not changed, only who comes in. The estimate moves with the realized figures."""
    X, p = patients
    pool = sample(20_000, seed=1, mode="marginal", reference=dataset.X)
    rng = np.random.default_rng(1)
    normal = np.flatnonzero(pool["thal"] == 2)
    rows = np.r_[rng.choice(normal, 1800, replace=False), rng.choice(np.flatnonzero(pool["thal"] != 2), 200)]
    shifted = predict_proba(trained.pipeline, pool.iloc[rows])
    before, after = perf.expected(p, 0.5), perf.expected(shifted, 0.5)
    labels_before = [draw(p, s) for s in range(20)]
    labels_after = [draw(shifted, s) for s in range(20)]
    for metric, least_drop in (("roc_auc", 0.03), ("recall", 0.15)):
        realized_drop = mean_realized(p, labels_before, metric) - mean_realized(shifted, labels_after, metric)
        estimated_drop = before[metric] - after[metric]
        print(f"\ncovariate shift, {metric}: estimated drop {estimated_drop:.3f}, realized {realized_drop:.3f}")
        assert estimated_drop >= least_drop and abs(estimated_drop - realized_drop) <= 0.01 + 0.1 * least_drop
        ci = perf.realized_intervals(shifted, labels_after[0], 0.5, perf.N_BOOT, seed=0)[metric]
        assert ci[0] <= after[metric] <= ci[1]


def test_concept_shift_the_estimate_does_not_see_it_and_the_labels_do(patients):
    """The label flipped for every woman (the disease given the features changed for them): the
    probabilities, hence the estimate, are those of the calibrated case, and the realized figures
    fall far outside it. Only labels catch this."""
    X, p = patients
    women = (X["gender"] == 0).to_numpy()
    y = draw(p, 0)
    y[women] = 1 - y[women]
    est, real = perf.expected(p, 0.5), perf.realized(p, y, 0.5)
    ci = perf.realized_intervals(p, y, 0.5, perf.N_BOOT, seed=0)
    for metric in ("accuracy", "roc_auc"):
        print(f"\nconcept shift, {metric}: estimated {est[metric]:.3f}, realized {real[metric]:.3f} {ci[metric]}")
        assert est[metric] - ci[metric][1] > 0.1, "the realized CI is far below the estimate"
    frame = frame_of(["2026-05-01T10:00Z"] * p.size, p, y.astype(int))
    report = perf.analyze(frame, 0.5, n_boot=200, minimums=perf.DEFAULT_MINIMUMS)
    assert {(b.kind, b.metric) for b in report.breaches} >= {("realized", "accuracy"), ("realized", "roc_auc")}
    assert not [b for b in report.breaches if b.kind == "estimated" and b.metric == "roc_auc"]


def test_the_script_runs_as_a_command(served, tmp_path):
    """As cron or CI would run it: a process, its exit code, one line on stderr for bad input."""
    import subprocess
    import sys

    from conftest import ROOT

    def run(*argv):
        cmd = [sys.executable, str(ROOT / "monitor_performance.py"), *map(str, argv)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    s = served
    base = ["--log", s["log"], "--card", s["card"], "--bootstrap", 100, "--out-dir", s["out"], "--fail-on-degradation"]
    done = run(*base, "--minimum", "estimated.accuracy=0.99")
    assert done.returncode == 1 and "DEGRADED: 2 figure(s) below a minimum" in done.stdout, done.stderr
    bad = run("--log", s["labels"], "--card", s["card"])  # a CSV given as a log
    assert bad.returncode == 2 and bad.stderr.startswith(f"error: {s['labels']}: line 1: not valid JSON")
    assert "Traceback" not in bad.stderr
