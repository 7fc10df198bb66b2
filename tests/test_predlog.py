"""The prediction record: written once per request to the file and stdout, read back for drift."""

import json
import logging
import re
import time
import uuid

import numpy as np
import orjson
import pytest

from heart import predlog
from heart.predlog import FIELDS, PredictionRecords, PredictionWriter, load_prediction_log
from heart.schema import FEATURE_NAMES
from heart.serving.logs import STDOUT_HANDLER, setup_logging
from tests.support import disk_full

CODED = {
    "age": 63,
    "gender": 1,
    "cp": 3,
    "trestbps": 145.0,
    "chol": 233.0,
    "fbs": 1,
    "restecg": 0,
    "thalach": 150.0,
    "exang": 0,
    "oldpeak": 2.3,
    "slope": 0,
    "ca": 0,
    "thal": 1,
}  # EXAMPLE as the server logs it
INPUTS = [CODED, {**{n: None for n in FEATURE_NAMES}, "age": 50, "gender": 0}]


def records(inputs=INPUTS):
    return PredictionRecords(
        timestamp="2026-01-01T00:00:00.000+00:00",
        trace_id="a" * 32,
        span_id="b" * 16,
        model_version="v1",
        latency_ms=0.5,
        inputs=inputs,
        imputed=[[], [n for n in FEATURE_NAMES if n not in ("age", "gender")]],
        predicted_class=[1, 0],
        probability=[0.75, 0.25],
        prediction_id=["0" * 31 + "1", "0" * 31 + "2"],
    )


def test_lines_hold_every_field_in_order_and_leave_inputs_out_when_told():
    lines = [json.loads(line) for line in records().lines()]
    assert [list(line) for line in lines] == [list(FIELDS)] * 2
    assert lines[1]["inputs"]["chol"] is None and lines[1]["predicted_class"] == 0 and lines[1]["probability"] == 0.25
    private = [json.loads(line) for line in records(inputs=None).lines()]
    assert [list(line) for line in private] == [[f for f in FIELDS if f != "inputs"]] * 2


@pytest.mark.parametrize("n", [1, 2, 1000])
def test_prediction_ids_are_uuid7_hex_time_first_and_distinct(n):
    before = time.time_ns() // 1_000_000
    ids = predlog.new_prediction_ids(n)
    after = time.time_ns() // 1_000_000
    assert len(ids) == len(set(ids)) == n
    for pid in ids:
        assert re.fullmatch("[0-9a-f]{32}", pid)
        u = uuid.UUID(hex=pid)
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= int(pid[:12], 16) <= after  # the Unix time in ms comes first
    assert predlog.id_floor(before) <= min(ids) and max(ids) < predlog.id_floor(after + 1)
    assert len({pid[12:] for pid in ids}) == n  # the random part differs, not only the clock


def test_the_random_bits_are_random():
    """74 random bits per id: each of them is 1 in about half of 2,000 ids (no bit stuck)."""
    bits = np.array([[b == "1" for b in f"{int(pid, 16):0128b}"] for pid in predlog.new_prediction_ids(2000)])
    share = bits.mean(axis=0)
    fixed = [*range(48), 48, 49, 50, 51, 64, 65]  # time, version 0111, variant 10
    random_bits = [i for i in range(128) if i not in fixed]
    assert len(random_bits) == 74 and ((share[random_bits] > 0.4) & (share[random_bits] < 0.6)).all()
    assert share[48:52].tolist() == [0, 1, 1, 1] and share[64:66].tolist() == [1, 0]


def test_file_and_stdout_get_the_same_record(tmp_path, capsys):
    setup_logging("info")
    writer = PredictionWriter(tmp_path / "p.jsonl", None, STDOUT_HANDLER)
    capsys.readouterr()
    writer.write(records())
    writer.close()
    in_file = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    on_stdout = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(in_file) == 2 and [{**r, "level": "INFO", "logger": "heart.predictions"} for r in in_file] == on_stdout
    assert list(on_stdout[0])[:3] == ["level", "logger", "event"]


def test_quiet_logs_and_no_file_write_nothing(tmp_path, capsys):
    setup_logging("warning")
    try:
        writer = PredictionWriter(None, None, STDOUT_HANDLER)
        assert not writer.enabled()
        with_file = PredictionWriter(tmp_path / "p.jsonl", None, STDOUT_HANDLER)
        assert with_file.enabled()
        capsys.readouterr()
        with_file.write(records())
        assert capsys.readouterr().out == "" and len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    finally:
        setup_logging("info")


def test_without_the_json_handler_records_go_through_logging(caplog):
    with caplog.at_level("INFO", logger="heart.predictions"):
        predlog.PredictionLines(logging.Handler()).write(records().lines(), records())  # not installed
    got = [r for r in caplog.records if r.name == "heart.predictions"]
    assert len(got) == 2 and got[0].getMessage() == "prediction" and got[1].probability == 0.25


def test_what_is_written_reads_back_through_the_schema(tmp_path):
    path = tmp_path / "p.jsonl"
    writer = PredictionWriter(path)
    writer.file.write([orjson.dumps({"event": "startup"})])
    writer.write(records())
    writer.close()
    with path.open("ab") as f:  # a line written before prediction ids existed reads as before
        f.write(orjson.dumps({k: v for k, v in records().records()[0].items() if k != "prediction_id"}) + b"\n")
    data = load_prediction_log(path)
    assert data.n_rows == 3 and data.y is None
    assert data.X.iloc[0].tolist() == [float(CODED[n]) for n in FEATURE_NAMES]
    assert data.X.iloc[1]["age"] == 50 and data.X.iloc[1].isna().sum() == 11


def test_a_full_disk_loses_records_counted_not_the_prediction(caplog, monkeypatch, tmp_path):
    """A full disk refuses every write: each record is counted as lost, the warning comes once a minute."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    writer = PredictionWriter(tmp_path / "p.jsonl", registry)
    disk_full(monkeypatch, writer.file.fd)
    clock = iter([1000.0, 1001.0, 1061.0])
    monkeypatch.setattr(predlog.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.ERROR, logger="heart.predlog"):
        for _ in range(3):
            writer.write(records())  # two patients each; raises nothing
    assert registry.get_sample_value("heart_prediction_log_lost_total") == 6
    warnings = [r for r in caplog.records if r.getMessage() == "prediction_log_write_failed"]
    assert [w.records_lost for w in warnings] == [2, 4], "one at the first loss, the next a minute later with the count"
    assert "No space left on device" in warnings[0].error


def test_a_write_cut_short_never_glues_the_next_record_to_half_a_line(tmp_path, monkeypatch):
    path = tmp_path / "p.jsonl"
    log_file = predlog.PredictionLog(path)
    real_write, calls = predlog.os.write, []

    def short_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predlog.os, "write", short_then_full)
    with pytest.raises(OSError):
        log_file.write(records().lines())
    monkeypatch.undo()
    log_file.write(records().lines())
    lines = path.read_bytes().split(b"\n")
    assert len(lines[0]) == 10 and [orjson.loads(line)["predicted_class"] for line in lines[1:3]] == [1, 0]


@pytest.mark.parametrize("make_bad", ["parent_is_a_file", "directory", "sys", "missing_directory"])
def test_a_log_that_cannot_be_opened_names_the_path_and_why(tmp_path, make_bad):
    (tmp_path / "afile").write_text("")
    path = {
        "parent_is_a_file": tmp_path / "afile" / "p.jsonl",
        "directory": tmp_path,
        "sys": "/sys/p.jsonl",
        "missing_directory": tmp_path / "missing" / "p.jsonl",
    }[make_bad]
    why = {
        "parent_is_a_file": "a parent is not a directory",
        "directory": "Is a directory",
        "sys": "Permission denied",
        "missing_directory": f"its directory {tmp_path / 'missing'} does not exist",  # main: made it
    }[make_bad]
    with pytest.raises(predlog.PredictionLogError) as e:
        predlog.PredictionLog(path)
    assert e.value.strerror == f"{path}: cannot be opened for appending ({why})"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("t", [0.0, 1.0005, 1764900000.999, 1764900001.0, 1764900001.123456, 1764986399.9999])
def test_the_timestamp_is_isoformat_to_the_millisecond_in_utc(monkeypatch, t):
    from datetime import UTC, datetime

    monkeypatch.setattr(predlog.time, "time", lambda: t)
    assert predlog.now_iso() == datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
