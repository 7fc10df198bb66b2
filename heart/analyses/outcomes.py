"""The served predictions and their labels as one frame: what the performance analysis reads.

The frame has heart.analyses.performance.COLUMNS (prediction_id, timestamp UTC, model_version,
probability, predicted_class, label as nullable Int64: NA = no label yet), plus `source` and
`line`, where each row came from, for error messages. Sources:

prediction logs  the API's PREDICTION_LOG (JSON lines, event "prediction"); only the fields the
                 analysis needs are read, each checked. Records written before prediction ids
                 existed have none: they are estimated, never labelled.
inference table  the server's table of predictions (heart.inference_table: SQLite or PostgreSQL),
                 with the labels it holds (read_table); a labels file can be stored into it
                 (label_table), with the rules POST /feedback applies.
labels file      CSV or JSON lines of prediction_id and label (or target), the label in any
                 spelling the training data loader accepts (heart.data.parse_target).

A bad line is a DataError naming the file, the line and the field, like a bad CSV cell.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import MISSING_TOKENS, DataError, Problem, json_lines, parse_target, read_text
from ..predlog import EVENT, MAX_LOG_BYTES

PREDICTION_ID = re.compile(r"[0-9a-f]{32}")
LABEL_COLUMNS = ("label", "target")  # the label's column in a labels file: either name
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def empty() -> pd.DataFrame:
    """A frame of no predictions, with the columns and dtypes every source gives."""
    return pd.DataFrame(
        {
            "prediction_id": pd.Series([], dtype="str"),
            "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
            "model_version": pd.Series([], dtype="str"),
            "probability": pd.Series([], dtype=float),
            "predicted_class": pd.Series([], dtype=int),
            "label": pd.Series([], dtype="Int64"),
            "source": pd.Series([], dtype="str"),
            "line": pd.Series([], dtype=int),
        }
    )


# ---------------------------------------------------------------------------------- logs


def _field_problem(record: dict, number: int) -> tuple[dict | None, Problem | None]:
    """The fields of one prediction record, or the first one that breaks its rule."""
    stamp = record.get("timestamp")
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        return None, Problem(number, "timestamp", f"{stamp!r} is not an ISO 8601 time with its UTC offset")
    p = record.get("probability")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 <= p <= 1):
        return None, Problem(number, "probability", f"{p!r} is not a number between 0 and 1")
    cls = record.get("predicted_class")
    if isinstance(cls, bool) or cls not in (0, 1):
        return None, Problem(number, "predicted_class", f"{cls!r} is not 0 or 1")
    version = record.get("model_version")
    if not isinstance(version, str) or not version:
        return None, Problem(number, "model_version", f"{version!r} is not a model version (a non-empty string)")
    pid = record.get("prediction_id")
    if pid is not None and not (isinstance(pid, str) and PREDICTION_ID.fullmatch(pid)):
        return None, Problem(number, "prediction_id", f"{pid!r} is not 32 lowercase hexadecimal digits")
    row = dict(prediction_id=pid, timestamp=when, model_version=version, probability=float(p), predicted_class=cls)
    return row, None


def read_prediction_log(path: str | Path) -> pd.DataFrame:
    """One PREDICTION_LOG file's prediction records (other events skipped)."""
    source = str(path)
    rows, problems = [], []
    for number, record in json_lines(read_text(source, "a JSON-lines log", MAX_LOG_BYTES), problems):
        if not isinstance(record, dict) or record.get("event", EVENT) != EVENT:
            continue
        row, problem = _field_problem(record, number)
        if problem:
            problems.append(problem)
        else:
            rows.append({**row, "line": number})
    if problems:
        raise DataError(source, problems)
    if not rows:
        raise DataError(source, 'no prediction records (expected JSON lines with "event": "prediction")')
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["label"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    frame["source"] = source
    return frame[list(empty().columns)]


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Predictions from several sources as one frame; the same prediction id twice is an error."""
    frame = pd.concat([empty(), *frames], ignore_index=True) if frames else empty()
    with_id = frame[frame["prediction_id"].notna()]
    twice = with_id[with_id["prediction_id"].duplicated(keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        other = twice[twice["prediction_id"] == first["prediction_id"]].iloc[1]
        raise DataError(
            str(other["source"]),
            [
                Problem(
                    int(other["line"]),
                    "prediction_id",
                    f"{first['prediction_id']} is also at {first['source']} line {first['line']} "
                    "(the same log given twice?)",
                )
            ],
        )
    return frame


# ---------------------------------------------------------------------------------- labels


@dataclass
class Labels:
    """A labels file: one row per prediction id (its first line), and how many rows it had."""

    source: str
    frame: pd.DataFrame  # prediction_id, label (0/1), line
    rows: int


@dataclass
class LabelCounts:
    """What joining a labels file did: rows read, rows that labelled a prediction here, rows
    repeating an earlier row's label, and the ids with no prediction in these sources."""

    given: int = 0
    matched: int = 0
    repeated: int = 0
    unknown: list[str] = field(default_factory=list)


def _label_rows(source: str, text: str) -> list[tuple[int, object, object]]:
    """(line, prediction_id, label) for each row of a CSV or JSON-lines labels file."""
    first = text.lstrip()[:1]
    if Path(source).suffix.lower() in JSON_SUFFIXES or first == "{":
        return _json_label_rows(source, text)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    label = next((c for c in LABEL_COLUMNS if c in header), None)
    absent = [c for c, present in (("prediction_id", "prediction_id" in header), ("label", label)) if not present]
    if absent:
        raise DataError(source, [Problem(1, c, "required column is missing from the header") for c in absent])
    i, j = header.index("prediction_id"), header.index(label)
    rows = []
    for row in reader:
        if any(cell.strip() for cell in row):
            cells = row + [""] * (len(header) - len(row))
            rows.append((reader.line_num, cells[i].strip(), cells[j]))
    return rows


def _json_label_rows(source: str, text: str) -> list[tuple[int, object, object]]:
    rows, problems = [], []
    for number, record in json_lines(text, problems):
        if not isinstance(record, dict):
            problems.append(Problem(number, None, 'must be a JSON object {"prediction_id": ..., "label": ...}'))
            continue
        label = next((record[c] for c in LABEL_COLUMNS if c in record), None)
        rows.append((number, record.get("prediction_id"), label))
    if problems:
        raise DataError(source, problems)
    return rows


def _label_text(value: object) -> str:
    """A JSON or CSV label as the text the loader parses; JSON true/false stays unparseable."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def read_labels(path: str | Path) -> Labels:
    """prediction_id -> label (0/1) of a labels file, with each id's first line; a repeated id
    with the same label is fine (idempotent), with another label an error naming both lines."""
    source = str(path)
    rows = _label_rows(source, read_text(source, "a labels file (CSV or JSON lines)"))
    if not rows:
        raise DataError(source, "no labels (expected rows of prediction_id and label)")
    problems = [
        Problem(n, "prediction_id", f"{pid!r} is not 32 lowercase hexadecimal digits")
        for n, pid, _ in rows
        if not (isinstance(pid, str) and PREDICTION_ID.fullmatch(pid))
    ]
    texts = pd.Series([_label_text(v) for _, _, v in rows], dtype=str)
    lines = np.array([n for n, _, _ in rows])
    blank = texts.str.strip().str.lower().isin(MISSING_TOKENS).to_numpy()
    problems += [Problem(int(n), "label", "no label: give yes/no or 1/0, or leave the row out") for n in lines[blank]]
    codes, bad = parse_target(texts.where(~blank, "0"), lines, "label")
    problems += bad
    if problems:
        raise DataError(source, sorted(problems, key=lambda p: p.line))
    frame = pd.DataFrame({"prediction_id": [pid for _, pid, _ in rows], "label": codes, "line": lines})
    firsts = frame.drop_duplicates("prediction_id")
    clash = frame.merge(firsts, on="prediction_id", suffixes=("", "_first")).query("label != label_first")
    if not clash.empty:
        c = clash.iloc[0]
        raise DataError(
            source,
            [
                Problem(
                    int(c["line"]),
                    "label",
                    f"{c['prediction_id']} is labelled {c['label']} here and {c['label_first']} at line "
                    f"{c['line_first']}: one of them is wrong",
                )
            ],
        )
    return Labels(source, firsts.reset_index(drop=True), len(frame))


def attach_labels(predictions: pd.DataFrame, labels: Labels) -> tuple[pd.DataFrame, LabelCounts]:
    """The predictions with the file's labels joined by prediction id; a label that contradicts
    one the predictions already carry (from the inference table) is an error naming its line."""
    by_id = labels.frame.set_index("prediction_id")
    ids = predictions["prediction_id"]
    given = ids.map(by_id["label"]).astype("Int64")
    had = predictions["label"]
    clash = (had.notna() & given.notna() & (had != given)).fillna(False)
    if clash.any():
        pid = ids[clash].iloc[0]
        line = int(by_id.loc[pid, "line"])
        raise DataError(labels.source, [Problem(line, "label", f"{pid} already has the label {had[clash].iloc[0]}")])
    known = set(ids.dropna())
    counts = LabelCounts(
        given=labels.rows,
        matched=int(given.notna().sum()),
        repeated=labels.rows - len(labels.frame),
        unknown=[pid for pid in labels.frame["prediction_id"] if pid not in known],
    )
    return predictions.assign(label=had.fillna(given)), counts


# ---------------------------------------------------------------------------------- the inference table


def _table(url: str):
    """An engine on an existing inference table (never created here: the server does that), or a
    DataError naming the database (its password hidden) and why it cannot be read."""
    import sqlalchemy as sa

    from .. import inference_table

    try:
        source = inference_table.display(inference_table.normalised_url(url))
    except ValueError as e:
        raise DataError("--table", f"the database URL {e}") from None
    if source.startswith("sqlite:///") and not Path(source.removeprefix("sqlite:///")).is_file():
        path = Path(source.removeprefix("sqlite:///"))
        raise DataError(
            str(path),
            "is a directory, not a SQLite file: give the inference table's file"
            if path.is_dir()
            else "file not found: the server writes the inference table there",
        )
    engine = inference_table.engine_for(url)
    try:
        if not sa.inspect(engine).has_table(inference_table.predictions.name):
            raise DataError(source, "no inference table in this database (the server creates it when it starts)")
    except sa.exc.SQLAlchemyError as e:
        engine.dispose()
        raise DataError(source, f"cannot be read: {_db_error(e)}") from None
    return engine, source


def _db_error(e: Exception) -> str:
    orig = getattr(e, "orig", None) or e
    return f"{type(orig).__name__}: {str(orig).strip().splitlines()[0] if str(orig).strip() else ''}"[:300]


def read_table(url: str) -> pd.DataFrame:
    """The inference table's predictions, with the labels it holds, as this module's frame (`line`
    is the row's place in prediction_id order)."""
    import sqlalchemy as sa

    from .. import inference_table

    engine, source = _table(url)
    try:
        rows = [row for part in inference_table.read_predictions(engine) for row in part]
    except sa.exc.SQLAlchemyError as e:
        raise DataError(source, f"cannot be read: {_db_error(e)}") from None
    finally:
        engine.dispose()
    if not rows:
        raise DataError(source, "no predictions in the inference table yet")
    frame = pd.DataFrame(
        rows, columns=["prediction_id", "timestamp", "model_version", "probability", "predicted_class", "label"]
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["label"] = pd.array(frame["label"].tolist(), dtype="Int64")
    frame["source"] = source
    frame["line"] = np.arange(1, len(frame) + 1)
    return frame[list(empty().columns)]


def label_table(url: str, labels: Labels) -> dict[str, int]:
    """Store a labels file's labels in the inference table, as POST /feedback does, in one
    transaction: a label that contradicts a stored one is a DataError naming its line, and then
    nothing is stored. The counts of accepted, duplicate (already stored) and unknown ids."""
    import sqlalchemy as sa

    from .. import inference_table

    engine, source = _table(url)
    items = [(pid, int(label)) for pid, label in zip(labels.frame["prediction_id"], labels.frame["label"])]
    try:
        outcomes = inference_table.store_labels(engine, items, all_or_nothing=True)
    except inference_table.LabelConflict as e:
        lines = dict(zip(labels.frame["prediction_id"], labels.frame["line"]))
        problems = [
            Problem(
                int(lines[o.prediction_id]),
                "label",
                f"{o.prediction_id} is labelled {o.label} here and {o.stored_label} in the inference table "
                "(a label is never overwritten)",
            )
            for o in e.outcomes
            if o.status == "conflict"
        ]
        raise DataError(labels.source, problems + [Problem(None, None, "nothing was stored")]) from None
    except sa.exc.SQLAlchemyError as e:
        raise DataError(source, f"cannot be written: {_db_error(e)}") from None
    finally:
        engine.dispose()
    return inference_table.count_statuses(outcomes)
