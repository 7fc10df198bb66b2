"""The loader: every variant users bring loads the same; every bad file fails clearly."""

from __future__ import annotations

import contextlib
import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from heart import data as data_module
from heart.data import DataError, Dataset, check_class_sizes, load_dataset, read_text
from heart.predlog import load_prediction_log
from heart.schema import FEATURE_NAMES

from conftest import DATA


@pytest.fixture
def frame():
    return pd.read_csv(DATA, dtype=str, keep_default_na=False)


def write(tmp_path, frame: pd.DataFrame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_bundled_file_matches_its_data_card(dataset):
    assert dataset.n_rows == 303
    assert dataset.class_balance() == {"heart disease": 139, "no heart disease": 164}
    assert {k: v for k, v in dataset.missing.items() if v} == {"ca": 4, "thal": 2}
    assert list(dataset.X.columns) == list(FEATURE_NAMES)
    assert set(np.unique(dataset.X["gender"])) == {0.0, 1.0}


def test_target_as_numbers_gender_as_codes_no_sno_any_order_any_case(tmp_path, frame, dataset):
    variant = frame.drop(columns="sno")
    variant["target"] = variant["target"].map({"yes": "1", "no": "0"})
    variant["gender"] = variant["gender"].map({"male": "1", "female": "0"})
    variant = variant[list(reversed(variant.columns))]
    got = load_dataset(write(tmp_path, variant))
    pd.testing.assert_frame_equal(got.X, dataset.X)
    np.testing.assert_array_equal(got.y, dataset.y)


def test_gender_in_any_case_and_sex_alias(tmp_path, frame, dataset):
    variant = frame.rename(columns={"gender": "Sex"})
    variant["Sex"] = variant["Sex"].str.upper()
    variant.loc[::2, "Sex"] = variant.loc[::2, "Sex"].str.title()
    got = load_dataset(write(tmp_path, variant))
    np.testing.assert_array_equal(got.X["gender"], dataset.X["gender"])


def test_blank_cells_in_any_feature_are_missing(tmp_path, frame):
    for i, col in enumerate(FEATURE_NAMES):
        frame.loc[i, col] = ""
    frame.loc[20, "chol"] = "NA"
    got = load_dataset(write(tmp_path, frame))
    for i, col in enumerate(FEATURE_NAMES):
        assert np.isnan(got.X.loc[i, col]), col
    assert np.isnan(got.X.loc[20, "chol"])


def test_legacy_sentinels_are_missing_not_categories(tmp_path, frame):
    frame.loc[0, "ca"] = "4"
    frame.loc[1, "thal"] = "0"
    got = load_dataset(write(tmp_path, frame))
    assert np.isnan(got.X.loc[0, "ca"]) and np.isnan(got.X.loc[1, "thal"])
    assert got.sentinels == {"ca": 1, "thal": 1}


def test_extra_columns_are_ignored_and_reported(tmp_path, frame):
    frame["hospital"] = "cleveland"
    got = load_dataset(write(tmp_path, frame))
    assert got.ignored_columns == ["hospital"]


def test_features_only_file_loads_without_target_when_not_required(tmp_path, frame):
    got = load_dataset(write(tmp_path, frame.drop(columns="target")), require_target=False)
    assert got.y is None and got.n_rows == 303


def error_for(tmp_path, content: str | pd.DataFrame, **kw) -> str:
    if isinstance(content, pd.DataFrame):
        path = write(tmp_path, content)
    else:
        path = tmp_path / "data.csv"
        path.write_text(content)
    with pytest.raises(DataError) as info:
        load_dataset(path, **kw)
    message = str(info.value)
    assert str(path) in message, "the error names the file"
    assert "Traceback" not in message
    return message


def test_missing_required_column(tmp_path, frame):
    msg = error_for(tmp_path, frame.drop(columns="chol"))
    assert "column 'chol'" in msg and "missing" in msg


def test_unknown_gender_value_names_line_and_column(tmp_path, frame):
    frame.loc[6, "gender"] = "unknown"
    msg = error_for(tmp_path, frame)
    assert "line 8, column 'gender'" in msg and "'unknown'" in msg and "male" in msg


def test_text_in_a_numeric_column(tmp_path, frame):
    frame.loc[0, "chol"] = "high"
    msg = error_for(tmp_path, frame)
    assert "line 2, column 'chol'" in msg and "'high' is not valid" in msg and "50 to 800" in msg


@pytest.mark.parametrize(
    "column,value,rule",
    [
        ("age", "250", "1 to 120"),
        ("trestbps", "20", "50 to 250"),
        ("cp", "7", "one of 0, 1, 2, 3"),
        ("oldpeak", "inf", "finite"),
        ("age", "50.5", "an integer"),
        ("ca", "1.5", "one of"),
    ],
)
def test_value_outside_the_schema_rule(tmp_path, frame, column, value, rule):
    frame.loc[9, column] = value
    msg = error_for(tmp_path, frame)
    assert f"line 11, column '{column}'" in msg and rule in msg


def test_every_problem_is_listed_not_just_the_first(tmp_path, frame):
    frame.loc[0, "age"] = "old"
    frame.loc[5, "thal"] = "9"
    msg = error_for(tmp_path, frame)
    assert "line 2, column 'age'" in msg and "line 7, column 'thal'" in msg


def test_empty_file(tmp_path):
    assert "empty" in error_for(tmp_path, "")


def test_header_only(tmp_path, frame):
    assert "no data rows" in error_for(tmp_path, ",".join(frame.columns) + "\n")


def test_target_with_a_single_class(tmp_path, frame):
    frame["target"] = "yes"
    assert "single class" in error_for(tmp_path, frame)


def test_unknown_target_value(tmp_path, frame):
    frame.loc[2, "target"] = "maybe"
    msg = error_for(tmp_path, frame)
    assert "line 4, column 'target'" in msg and "'maybe'" in msg


def test_blank_target(tmp_path, frame):
    frame.loc[2, "target"] = ""
    assert "line 4, column 'target': blank label" in error_for(tmp_path, frame)


def test_missing_file_and_ragged_csv(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(tmp_path / "nope.csv")
    assert "line 3: has 3 fields, the header has 2" in error_for(tmp_path, "age,gender\n1,2\n1,2,3\n")
    assert "line 2: has 1 fields" in error_for(tmp_path, "age,gender\n1\n")


def test_duplicate_column(tmp_path, frame):
    text = DATA.read_text().splitlines()
    text[0] = text[0].replace("chol", "age")
    assert "duplicate column" in error_for(tmp_path, "\n".join(text) + "\n")


@pytest.mark.parametrize("loader, kind", [(load_dataset, "a CSV file"), (load_prediction_log, "a JSON-lines log")])
def test_unreadable_files_are_named_with_what_they_should_be(tmp_path, loader, kind):
    binary = tmp_path / "binary"
    binary.write_bytes(b"age,gender\n\xff\xfe\x00,1\n")
    for path, reason in (
        (tmp_path / "absent", "file not found"),
        (tmp_path, f"is a directory, not {kind}"),
        (binary, f"line 2: not UTF-8 text (byte 0xff): expected {kind}"),
    ):
        with pytest.raises(DataError) as e:
            loader(path)
        assert str(e.value) == f"{path}: {reason}"


def test_labels_and_missing_values_in_every_spelling_the_loader_documents(tmp_path, frame, dataset):
    """Not only the canonical 'yes'/'no' and '': each spelling on its own row, with spaces and any case."""
    spellings = {0: " YES ", 1: "No", 2: "1.0", 3: "0.0", 4: "1", 5: "0"}
    truth = {0: 1, 1: 0, 2: 1, 3: 0, 4: 1, 5: 0}
    for i, text in spellings.items():
        frame.loc[i, "target"] = text
    for i, token in enumerate(["NA", "n/a", "NULL", "None", "?", " nan ", "  "], start=10):
        frame.loc[i, "chol"] = token
    frame.loc[30, "gender"] = " fEmAlE "
    got = load_dataset(write(tmp_path, frame))
    assert [int(got.y[i]) for i in spellings] == [truth[i] for i in spellings]
    assert got.y.dtype.kind == "i"
    assert np.isnan(got.X.loc[10:16, "chol"]).all() and got.missing["chol"] == 7
    assert got.X.loc[30, "gender"] == 0.0
    np.testing.assert_array_equal(got.y[6:], dataset.y[6:])


def test_target_column_is_required_by_default(tmp_path, frame):
    msg = error_for(tmp_path, frame.drop(columns="target"))
    assert msg.endswith("data.csv: line 1, column 'target': required column is missing from the header")


def test_missing_columns_are_each_named_with_the_rule(tmp_path, frame):
    msg = error_for(tmp_path, frame.drop(columns=["chol", "ca"]))
    path = tmp_path / "data.csv"
    assert msg == (
        f"{path}: line 1, column 'chol': required column is missing from the header\n"
        f"{path}: line 1, column 'ca': required column is missing from the header"
    )


def test_labels_are_kept_when_present_even_if_not_required(tmp_path, frame, dataset):
    got = load_dataset(write(tmp_path, frame), require_target=False)
    np.testing.assert_array_equal(got.y, dataset.y)
    frame["target"] = ""
    blank = load_dataset(write(tmp_path, frame, "blank.csv"), require_target=False)
    assert blank.y is None and blank.n_rows == 303


def test_duplicate_column_names_both_spellings(tmp_path, frame):
    both = frame.assign(sex=frame["gender"])
    msg = error_for(tmp_path, both)
    assert msg == f"{tmp_path / 'data.csv'}: line 1, column 'sex': duplicate column (also given as 'gender')"


@pytest.mark.parametrize("n_bad, tail", [(10, None), (11, "... and 1 more problems"), (13, "... and 3 more problems")])
def test_at_most_ten_problems_are_listed_then_a_count(tmp_path, frame, n_bad, tail):
    for i in range(n_bad):
        frame.loc[i, "age"] = "old"
    with pytest.raises(DataError) as info:
        load_dataset(write(tmp_path, frame))
    err = info.value
    lines = str(err).split("\n")
    assert err.source == str(tmp_path / "data.csv") and len(err.problems) == n_bad
    assert lines[0] == f"{err.source}: line 2, column 'age': 'old' is not valid: must be an integer from 1 to 120 years"
    assert len(lines) == (10 if tail is None else 11)
    assert lines[-1] == (
        tail or f"{err.source}: line 11, column 'age': 'old' is not valid: must be an integer from 1 to 120 years"
    )


def test_a_byte_order_mark_before_a_feature_column_is_not_part_of_its_name(tmp_path, frame, dataset):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.drop(columns="sno").to_csv(index=False).encode())
    got = load_dataset(path)
    pd.testing.assert_frame_equal(got.X, dataset.X)
    assert got.ignored_columns == []


def test_blank_lines_are_skipped_and_later_lines_keep_their_numbers(tmp_path, frame):
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(3, "")
    lines.insert(5, ", ,")
    bad = lines[8].split(",")
    bad[1] = "200"  # the age of the row on file line 9
    lines[8] = ",".join(bad)
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    assert error_for(tmp_path, "\n".join(lines) + "\n").endswith(
        "line 9, column 'age': must be an integer from 1 to 120 years, got 200"
    )
    lines[8] = lines[7]
    path.write_text("\n".join(lines) + "\n")
    assert load_dataset(path).n_rows == 303


def test_every_ragged_row_is_listed(tmp_path):
    msg = error_for(tmp_path, "age,gender\n1\n40,male\n1,2,3\n")
    path = tmp_path / "data.csv"
    assert msg == f"{path}: line 2: has 1 fields, the header has 2\n{path}: line 4: has 3 fields, the header has 2"


def test_malformed_csv_empty_and_header_only_messages(tmp_path, frame):
    path = tmp_path / "data.csv"
    assert error_for(tmp_path, "age,gender\n1," + "x" * 200_000 + "\n") == (
        f"{path}: line 2: not a well-formed CSV row: field larger than field limit (131072)"
    )
    assert error_for(tmp_path, "") == f"{path}: the file is empty (expected a CSV header and data rows)"
    assert error_for(tmp_path, " , \n") == f"{path}: the file is empty (expected a CSV header and data rows)"
    assert error_for(tmp_path, ",".join(frame.columns) + "\n\n") == f"{path}: no data rows below the header"


def test_dataset_records_its_source_and_the_file_hash(tmp_path, frame):
    path = write(tmp_path, frame)
    got = load_dataset(path)
    assert got.source == str(path) and got.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_class_message_names_the_class(tmp_path, frame):
    frame["target"] = "no"
    assert error_for(tmp_path, frame) == (
        f"{tmp_path / 'data.csv'}: column 'target' has a single class (every row is 'no heart disease'): "
        "a classifier needs examples of both classes"
    )


@pytest.mark.parametrize("loader", [load_dataset, load_prediction_log])
def test_a_file_past_the_size_cap_is_refused_after_reading_no_more_than_the_cap(loader, tmp_path):
    """/dev/zero has no size to stat: the reader stops at the cap, whatever the file is."""
    with pytest.raises(DataError, match="larger than the .* MB limit"):
        loader("/dev/zero")
    big = tmp_path / "big.csv"
    big.write_text(DATA.read_text())
    assert load_dataset(big, max_bytes=big.stat().st_size).n_rows == 303
    with pytest.raises(DataError, match="larger than the 0.001 MB limit for a CSV file"):
        load_dataset(big, max_bytes=1000)


def test_train_py_refuses_dev_zero_quickly_with_one_line(tmp_path):
    import subprocess
    import sys
    import time

    from conftest import ROOT

    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "train.py", "--data", "/dev/zero", "--max-data-mb", "5", "--out", str(tmp_path / "m.zip")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip()
        == "error: /dev/zero: larger than the 5 MB limit for a CSV file (train.py: --max-data-mb)"
    )
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "m.zip").exists()


def test_a_utf8_error_names_its_line(tmp_path):
    lines = DATA.read_bytes().split(b"\n")
    lines[41] = lines[41].replace(b"male", b"m\xe4le", 1)  # Latin-1, line 42 of the file
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as e:
        load_dataset(bad)
    assert str(e.value) == f"{bad}: line 42: not UTF-8 text (byte 0xe4): expected a CSV file"


def test_an_unterminated_quote_is_reported_where_it_opens(tmp_path):
    lines = DATA.read_text().splitlines()
    lines[50] = lines[50].replace(",", ',"', 1)  # line 51 opens a quote that never closes
    message = error_for(tmp_path, "\n".join(lines) + "\n")
    assert message.startswith(f"{tmp_path / 'data.csv'}: line 51: has 2 fields, the header has 15")
    assert "runs from here to line 304: is a quote left open?" in message
    lines = DATA.read_text().splitlines()
    lines[60] = lines[60] + ',"x"y'  # a closed quote then more text: an extra field, on its own line
    assert "line 61: has 16 fields, the header has 15" in error_for(tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("test_size, folds, minimum", [(0.2, 5, 6), (0.2, 1, 2), (0.3, 5, 7)])
def test_too_few_rows_of_a_class_names_the_minimum(tmp_path, frame, test_size, folds, minimum):
    few = pd.concat([frame[frame.target == "yes"].head(minimum - 1), frame[frame.target == "no"]])
    with pytest.raises(DataError) as e:
        check_class_sizes(load_dataset(write(tmp_path, few)), test_size, folds)
    assert f"{minimum - 1} rows of 'heart disease'; each class needs at least {minimum}" in str(e.value)
    enough = pd.concat([frame[frame.target == "yes"].head(minimum), frame[frame.target == "no"]])
    check_class_sizes(load_dataset(write(tmp_path, enough)), test_size, folds)


def children_of(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_cross_validation_runs_no_worker_processes_that_a_kill_could_orphan(tmp_path):
    """CV folds run on threads: killing train.py mid-CV leaves nothing behind (loky's workers outlived it)."""
    import subprocess
    import sys
    import time

    from conftest import ROOT

    proc = subprocess.Popen(
        [sys.executable, "train.py", "--out", str(tmp_path / "m.zip")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("data: ")  # printed just before cross-validation starts
        seen = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(children_of(proc.pid))
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before the check: it no longer exercises CV"
        assert seen == set(), f"train.py started worker processes {sorted(seen)} during CV"
    finally:
        proc.kill()
        proc.wait(30)


def labelled(positives: int, negatives: int, source="few.csv"):
    """A Dataset with only labels: check_class_sizes reads nothing else."""
    y = np.array([1] * positives + [0] * negatives)
    return Dataset(X=pd.DataFrame(index=range(y.size)), y=y, source=source, sha256="0" * 64)


def test_both_short_classes_are_named_in_one_message_with_the_file():
    with pytest.raises(DataError) as e:
        check_class_sizes(labelled(3, 4), test_size=0.2, folds=5)
    assert e.value.source == "few.csv"
    # smallest n with n - max(1, round(0.2 n)) >= 5 is 6 (6 - 1 = 5), by hand
    assert str(e.value) == (
        "few.csv: too few rows to train on: 3 rows of 'heart disease', 4 rows of 'no heart disease'; "
        "each class needs at least 6 (1 held out for testing, 5 for the cross-validation folds)"
    )


def test_the_minimum_is_found_for_many_folds_too():
    # 100 folds, a fifth held out: 125 - round(25.0) = 100, while 124 - round(24.8) = 99, by hand
    with pytest.raises(DataError, match="each class needs at least 125 "):
        check_class_sizes(labelled(124, 500), test_size=0.2, folds=100)
    check_class_sizes(labelled(125, 125), test_size=0.2, folds=100)


class CountingFile(io.BytesIO):
    """A file that records how much each read asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked = []

    def read(self, size=-1):
        self.asked.append(size)
        return super().read(size)


def test_read_text_asks_for_one_byte_past_the_limit_and_no_more(monkeypatch):
    # a device or pipe never ends: reading must be bounded, not a read of the whole file
    fake = CountingFile(b"x" * 1000)
    monkeypatch.setattr(data_module, "opened", lambda *a, **k: contextlib.nullcontext(fake))
    with pytest.raises(DataError) as e:
        read_text("big.csv", "a CSV file", max_bytes=10)
    assert fake.asked == [11]
    assert e.value.source == "big.csv"
    assert str(e.value) == "big.csv: larger than the 1e-05 MB limit for a CSV file (train.py: --max-data-mb)"


@pytest.mark.parametrize("size, refused", [(10, False), (11, True)])
def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_not(tmp_path, size, refused):
    path = tmp_path / "edge.csv"
    path.write_bytes(b"y" * size)
    if refused:
        with pytest.raises(DataError, match="larger than the 1e-05 MB limit"):
            read_text(str(path), "a CSV file", max_bytes=10)
    else:
        assert read_text(str(path), "a CSV file", max_bytes=10) == "y" * 10


@pytest.mark.parametrize(
    "blob, line, byte",
    [(b"\xff", 1, "0xff"), (b"\n\xff", 2, "0xff"), (b"a,b\n\n1,\xff", 3, "0xff"), (b"\n\n\n\xfe\n", 4, "0xfe")],
)
def test_the_line_of_the_first_bad_byte_counts_a_newline_at_the_very_start(tmp_path, blob, line, byte):
    path = tmp_path / "bad.csv"
    path.write_bytes(blob)
    with pytest.raises(DataError) as e:
        read_text(str(path), "a CSV file")
    assert [p.line for p in e.value.problems] == [line]
    assert f"not UTF-8 text (byte {byte}): expected a CSV file" in str(e.value)
