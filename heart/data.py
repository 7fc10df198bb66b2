"""Read a heart-disease CSV in every variant users bring, or fail with a clear reason.

Variants accepted: target as yes/no or 1/0; gender as male/female in any case or 1/0;
`sno` present or absent; `sex` for `gender`; columns in any order; blank cells in any
feature; the legacy sentinels ca = 4 and thal = 0 for "unknown". Labels are taken as given:
a copy with an inverted target (see readme.md) trains an inverted model.

Every problem names the file, the line, the column and the rule (DataError), and is found
before anything is written. No pandas traceback reaches a user.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifact import sha256_file
from .schema import ALIASES, FEATURE_NAMES, FEATURES, ID_COLUMN, TARGET, Feature

MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})
MAX_LISTED = 10
# Files are read whole, so a size cap keeps `--data /dev/zero` (or a wrong 10 GB file) from
# eating the machine: 64 MB is ~1.7 million rows of this schema, thousands of times the data set.
MAX_DATA_BYTES = 64 * 10**6


@dataclass(frozen=True)
class Problem:
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return (", ".join(where) + ": " if where else "") + self.message


class DataError(ValueError):
    """A data file that cannot be used; str() is the whole user-facing message."""

    def __init__(self, source: str, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(None, None, problems)]
        self.source = source
        self.problems = problems
        shown = [f"{source}: {p}" for p in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            shown.append(f"... and {len(problems) - MAX_LISTED} more problems")
        super().__init__("\n".join(shown))


@dataclass
class Dataset:
    """Validated features (schema order, float, NaN = missing) and the 0/1 target."""

    X: pd.DataFrame
    y: np.ndarray | None
    source: str
    sha256: str
    missing: dict[str, int] = field(default_factory=dict)
    sentinels: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.X)

    def class_balance(self) -> dict[str, int]:
        if self.y is None:
            return {}
        return {TARGET.labels[k]: int((self.y == k).sum()) for k in (1, 0)}


def load_dataset(path: str | Path, require_target: bool = True, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """Load and validate a CSV file; raise DataError naming every problem found."""
    source = str(path)
    raw = _read_csv(source, max_bytes)
    frame, ignored = _normalise_columns(raw, source, require_target)
    lines = frame.index.to_numpy()
    X, missing, sentinels, problems = parse_features(frame)
    y = None
    if TARGET.name in frame.columns and (require_target or frame[TARGET.name].str.strip().ne("").any()):
        y, target_problems = parse_target(frame[TARGET.name], lines)
        problems += target_problems
    if problems:
        raise DataError(source, problems)
    if require_target:
        classes = np.unique(y)
        if len(classes) < 2:
            only = TARGET.labels[int(classes[0])]
            raise DataError(
                source,
                f"column '{TARGET.name}' has a single class (every row is "
                f"'{only}'): a classifier needs examples of both classes",
            )
    return Dataset(
        X=X,
        y=y,
        source=source,
        sha256=sha256_file(source),
        missing=missing,
        sentinels=sentinels,
        ignored_columns=ignored,
    )


def parse_features(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int], dict[str, int], list[Problem]]:
    """The 13 feature columns of strings (indexed by file line) -> floats, with every problem found."""
    lines = frame.index.to_numpy()
    columns, missing, sentinels, problems = {}, {}, {}, []
    for feature in FEATURES:
        values, col_problems, n_sentinel = parse_column(feature, frame[feature.name], lines)
        problems += col_problems
        columns[feature.name] = values
        missing[feature.name] = int(np.isnan(values).sum())
        if n_sentinel:
            sentinels[feature.name] = n_sentinel
    return pd.DataFrame(columns, columns=list(FEATURE_NAMES)), missing, sentinels, problems


@contextmanager
def opened(source: str, kind: str, **open_args):
    """open() whose failures, reading included, are DataErrors naming the file and what it should be."""
    try:
        with open(source, **open_args) as fh:
            yield fh
    except FileNotFoundError:
        raise DataError(source, "file not found") from None
    except IsADirectoryError:
        raise DataError(source, f"is a directory, not {kind}") from None
    except UnicodeDecodeError:
        raise DataError(source, f"not UTF-8 text: expected {kind}") from None


def read_text(source: str, kind: str, max_bytes: int = MAX_DATA_BYTES, encoding: str = "utf-8") -> str:
    """The whole file as text, refused past max_bytes (devices and pipes included: it reads at
    most max_bytes + 1 bytes) or when it is not UTF-8, naming the line of the first bad byte."""
    with opened(source, kind, mode="rb") as fh:
        blob = fh.read(max_bytes + 1)
    if len(blob) > max_bytes:
        raise DataError(source, f"larger than the {max_bytes / 1e6:g} MB limit for {kind} (train.py: --max-data-mb)")
    try:
        return blob.decode(encoding)
    except UnicodeDecodeError as e:
        line = blob.count(b"\n", 0, e.start) + 1
        raise DataError(
            source, [Problem(line, None, f"not UTF-8 text (byte 0x{blob[e.start]:02x}): expected {kind}")]
        ) from None


def json_lines(text: str, problems: list[Problem]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a JSON-lines text; a line that is not
    JSON is a Problem appended to `problems`, so a reader can report every bad line at once."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            problems.append(Problem(number, None, f"not valid JSON ({e.msg})"))
            continue
        yield number, value


def _read_csv(source: str, max_bytes: int = MAX_DATA_BYTES) -> pd.DataFrame:
    """Strings by column, indexed by file line number, so every later error can name its line.

    A row is named by the line it starts on: a quote left open swallows the lines after it
    into one field, and the line to fix is where it opened, not where the file ends.
    """
    reader = csv.reader(io.StringIO(read_text(source, "a CSV file", max_bytes, "utf-8-sig"), newline=""))
    rows, lines, ragged = [], [], []
    try:
        header = next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            first, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                spans = (
                    f" (a quoted field runs from here to line {reader.line_num}: is a quote left open?)"
                    if reader.line_num > first
                    else ""
                )
                ragged.append(Problem(first, None, f"has {len(row)} fields, the header has {len(header)}{spans}"))
                continue
            rows.append(row)
            lines.append(first)
    except csv.Error as e:
        raise DataError(source, [Problem(start, None, f"not a well-formed CSV row: {e}")]) from None
    if header is None or not any(h.strip() for h in header):
        raise DataError(source, "the file is empty (expected a CSV header and data rows)")
    if ragged:
        raise DataError(source, ragged)
    if not rows:
        raise DataError(source, "no data rows below the header")
    return pd.DataFrame(rows, columns=header, index=lines, dtype=str)


def check_class_sizes(data: Dataset, test_size: float, folds: int) -> None:
    """Enough rows of each class for a stratified test split and `folds` CV folds on the rest,
    or a DataError giving the minimum (instead of scikit-learn's traceback)."""
    minimum = next(n for n in range(2, 10**6) if n - max(1, round(n * test_size)) >= folds)
    short = {label: n for label, n in data.class_balance().items() if n < minimum}
    if short:
        have = ", ".join(f"{n} rows of '{label}'" for label, n in short.items())
        raise DataError(
            data.source,
            f"too few rows to train on: {have}; each class needs at least {minimum} "
            f"(1 held out for testing, {folds} for the cross-validation folds)",
        )


def _normalise_columns(raw: pd.DataFrame, source: str, require_target: bool) -> tuple[pd.DataFrame, list[str]]:
    renamed, ignored, seen = {}, [], {}
    known = set(FEATURE_NAMES) | {TARGET.name, ID_COLUMN}
    for col in raw.columns:
        name = ALIASES.get(str(col).strip().lower(), str(col).strip().lower())
        if name in seen:
            raise DataError(source, [Problem(1, str(col), f"duplicate column (also given as '{seen[name]}')")])
        seen[name] = col
        if name in known:
            renamed[col] = name
        else:
            ignored.append(str(col))
    frame = raw[list(renamed)].rename(columns=renamed)
    needed = list(FEATURE_NAMES) + ([TARGET.name] if require_target else [])
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(source, [Problem(1, c, "required column is missing from the header") for c in absent])
    return frame, ignored


def parse_column(feature: Feature, text: pd.Series, lines: np.ndarray) -> tuple[np.ndarray, list[Problem], int]:
    """Turn one column of strings into floats (NaN = missing), checking the schema's rule."""
    clean = text.str.strip()
    lowered = clean.str.lower()
    is_missing = lowered.isin(MISSING_TOKENS).to_numpy()
    values = pd.to_numeric(clean.where(~is_missing), errors="coerce").to_numpy(dtype=float, copy=True)
    if feature.text_codes:
        coded = lowered.map(feature.text_codes).to_numpy(dtype=float)
        values = np.where(np.isnan(coded), values, coded)
    problems = []
    not_number = ~is_missing & np.isnan(values)
    for i in np.flatnonzero(not_number):
        problems.append(
            Problem(int(lines[i]), feature.name, f"'{clean.iloc[i]}' is not valid: must be {feature.rule()}")
        )
    n_sentinel = 0
    if feature.missing_codes:
        sentinel = np.isin(values, feature.missing_codes)
        n_sentinel = int(sentinel.sum())
        values[sentinel] = np.nan
    present = ~np.isnan(values)
    for i in np.flatnonzero(present):
        why = feature.check(values[i])
        if why:
            problems.append(Problem(int(lines[i]), feature.name, why))
    return values, problems, n_sentinel


def parse_target(text: pd.Series, lines: np.ndarray, column: str = TARGET.name) -> tuple[np.ndarray, list[Problem]]:
    """Labels as text (yes/no, 1/0, any case) -> 0/1 codes (-1 where invalid) and the problems,
    by line and `column` (the file's name for it): the training data's rule, also for labels that
    come back later (feedback, files)."""
    clean = text.str.strip()
    codes = clean.str.lower().map(TARGET.text_codes)
    problems = [
        Problem(
            int(lines[i]),
            column,
            f"'{clean.iloc[i]}' is not a known label: must be yes/no or 1/0"
            if clean.iloc[i]
            else "blank label: every training row needs yes/no or 1/0",
        )
        for i in np.flatnonzero(codes.isna().to_numpy())
    ]
    return codes.fillna(-1).to_numpy(dtype=int), problems
