"""V2 tensors -> one list of Python values per feature, with every rule checked before any work.

The order is the point: a tensor's shape is checked first (at most 2 dimensions, none
negative, no more elements than MAX_BATCH rows hold), so nothing is ever sized, allocated or
formatted from an unchecked shape; then its data must have exactly that structure (flat
row-major, or nested exactly as the shape says); then each element its datatype. Numbers
from headers are ASCII digits with a bounded count. Every name or value quoted back is cut
(errors.cut), and header values are never quoted: see heart/serving/errors.py.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ..schema import BY_NAME, FEATURE_NAMES, FEATURES
from .contract import MAX_BATCH
from .errors import MAX_ECHO_CHARS, cut, repr_int

MATRIX_INPUT = "input"  # the [N, 13] alternative to one tensor per feature
WIDTH = len(FEATURE_NAMES)
MAX_ELEMENTS = MAX_BATCH * WIDTH  # the most any tensor may hold: MAX_BATCH rows of the matrix
MAX_LENGTH_DIGITS = 10  # Inference-Header-Content-Length: up to 9,999,999,999 bytes, never parsed further
NUMERIC = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}
TEXT_FEATURES = frozenset(f.name for f in FEATURES if f.text_codes)
INT64 = (-(2**63), 2**63 - 1)
SCALARS = {"FP64": (int, float), "FP32": (int, float), "INT64": (int,), "BYTES": (str,)}


class V2Error(Exception):
    """An answer in the protocol's error shape: {"error": message} with an HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def quote(value: Any) -> str:
    """A value from the input as it may appear in an error: repr'd and cut, never whole."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr_int(value)
    if isinstance(value, str):  # the repr of a prefix only (never of 1 MB), the length of the whole
        return cut(repr(value[: 2 * MAX_ECHO_CHARS]), length=len(value))
    if isinstance(value, list):
        return f"a list of {len(value):,}"
    if isinstance(value, dict):
        return "an object"
    return cut(repr(value))


def header_length(value: str | None, body_length: int) -> int | None:
    """Inference-Header-Content-Length: ASCII digits only, at most MAX_LENGTH_DIGITS, within the body."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_LENGTH_DIGITS) or int(value) > body_length:
        raise V2Error(
            f"Inference-Header-Content-Length must be a whole number of bytes (ASCII digits) up to the body's "
            f"{body_length:,}"
        )
    return int(value)


def check_shape(name: str, shape: list[int]) -> int:
    """The tensor's element count, after the shape is found sane: the first thing checked."""
    if len(shape) > 2 or not shape:
        raise V2Error(f"input {quote(name)}: a shape of {len(shape):,} dimensions; use [N], [N, 1] or [N, {WIDTH}]")
    if any(d < 0 for d in shape):
        raise V2Error(f"input {quote(name)}: shape {shape_text(shape)} has a negative dimension")
    elements = shape[0] * (shape[1] if len(shape) == 2 else 1)
    if shape[0] > MAX_BATCH:
        raise V2Error(f"input {quote(name)}: N = {repr_int(shape[0])} rows: send 1 to {MAX_BATCH} rows per request")
    if elements > MAX_ELEMENTS:
        raise V2Error(f"input {quote(name)}: shape {shape_text(shape)} holds over {MAX_ELEMENTS:,} elements")
    return elements


def shape_text(shape: list[int]) -> str:
    return "[" + ", ".join(repr_int(d) for d in shape[:2]) + "]"


def tensors(inputs: list, binary: bytes) -> dict[str, tuple[list, list[int]]]:
    """Each input's name -> (its elements flat, as Python values; its shape), every rule checked."""
    out, offset = {}, 0
    for t in inputs:
        elements = check_shape(t.name, t.shape)
        _check_name_and_type(t, out)
        size = (t.parameters or {}).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise V2Error(
                    f"input {quote(t.name)}: binary_data_size {quote(size)} does not fit the "
                    f"{len(binary) - offset:,} bytes of binary data left"
                )
            values = _from_binary(t, binary[offset : offset + size], elements)
            offset += size
        elif t.data is None:
            raise V2Error(f"input {quote(t.name)} has no data (neither `data` nor binary_data_size)")
        else:
            values = _from_json(t, elements)
        if len(values) != elements:
            raise V2Error(
                f"input {quote(t.name)}: shape {shape_text(t.shape)} needs {elements:,} elements, got {len(values):,}"
            )
        out[t.name] = (_to_python(t, values), t.shape)
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset:,} bytes of binary data after the last input's binary_data_size")
    return out


def _check_name_and_type(t, seen: dict) -> None:
    if t.name != MATRIX_INPUT and t.name not in BY_NAME:
        raise V2Error(
            f"unknown input {quote(t.name)}: expected the features ({', '.join(FEATURE_NAMES)}) "
            f"or one [N, {WIDTH}] tensor named {MATRIX_INPUT!r}"
        )
    if t.name in seen:
        raise V2Error(f"input {t.name!r} is given twice")
    allowed = ("FP64", "FP32", "INT64", "BYTES") if t.name in TEXT_FEATURES else ("FP64", "FP32", "INT64")
    if t.name == MATRIX_INPUT:
        allowed = ("FP64", "FP32")
    if t.datatype not in allowed:
        raise V2Error(f"input {t.name!r}: datatype {cut(t.datatype)} is not accepted: use {' or '.join(allowed)}")


def _from_json(t, elements: int) -> list:
    """`data` flat (row-major) or nested exactly as the shape says; each element of the datatype."""
    data = t.data
    if not isinstance(data, list):
        raise V2Error(f"input {t.name!r}: `data` must be a list, got {quote(data)}")
    if len(t.shape) == 2 and data and isinstance(data[0], list):
        rows, width = t.shape
        if len(data) != rows or any(type(row) is not list or len(row) != width for row in data):
            raise V2Error(
                f"input {t.name!r}: nested `data` must be {rows:,} lists of {width:,} elements, "
                f"as its shape {shape_text(t.shape)} says"
            )
        data = [x for row in data for x in row]
    if len(data) != elements:
        raise V2Error(
            f"input {t.name!r}: shape {shape_text(t.shape)} needs {elements:,} elements, got {len(data):,}"
            + (" (nested data must match the shape exactly)" if any(type(x) is list for x in data) else "")
        )
    ok = SCALARS[t.datatype]
    for i, x in enumerate(data):
        if type(x) not in ok:
            raise V2Error(f"input {t.name!r}: element {i:,} is {quote(x)}, not {t.datatype}")
    if t.datatype == "INT64":
        for i, x in enumerate(data):
            if not INT64[0] <= x <= INT64[1]:
                raise V2Error(f"input {t.name!r}: element {i:,} is {quote(x)}, not INT64 (out of its range)")
    return data


def _from_binary(t, raw: bytes, elements: int) -> list:
    if t.datatype != "BYTES":
        dtype = np.dtype(NUMERIC[t.datatype])
        if len(raw) != elements * dtype.itemsize:
            raise V2Error(
                f"input {t.name!r}: {len(raw):,} bytes of binary data; shape {shape_text(t.shape)} needs "
                f"{elements * dtype.itemsize:,} ({elements:,} {t.datatype} elements)"
            )
        return np.frombuffer(raw, dtype=dtype)  # type: ignore[return-value]  # converted by _to_python
    values, i = [], 0
    while i < len(raw):
        if len(values) == elements:
            raise V2Error(f"input {t.name!r}: BYTES data holds more than the shape's {elements:,} elements")
        n = struct.unpack_from("<I", raw, i)[0] if i + 4 <= len(raw) else None
        if n is None or i + 4 + n > len(raw):
            raise V2Error(f"input {t.name!r}: BYTES data is cut short at byte {i:,}")
        try:
            values.append(raw[i + 4 : i + 4 + n].decode())
        except UnicodeDecodeError:
            raise V2Error(f"input {t.name!r}: element {len(values):,} is not UTF-8 text") from None
        i += 4 + n
    return values


def _to_python(t, values) -> list:
    """Python values for the contract's validators: FP32 as the decimal it stands for
    (2.3, not 2.299999952316284), NaN as None (= missing, as null is on /predict). A value
    beyond float32 becomes inf (refused by the contract), without numpy's overflow warning."""
    if t.datatype == "FP32":
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                values = np.asarray(values, dtype=np.float32).astype(str).astype(np.float64)
        except OverflowError:  # a JSON integer beyond any float
            raise V2Error(f"input {t.name!r}: a value is beyond the FP32 range") from None
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if t.datatype in ("FP64", "FP32"):
        return [None if x != x else x for x in values]
    return values


def columns(tensors: dict[str, tuple[list, list[int]]]) -> dict[str, list]:
    """One list per feature (None where not given), all of one length N, 1 <= N <= MAX_BATCH."""
    if MATRIX_INPUT in tensors:
        if len(tensors) > 1:
            raise V2Error(f"send either the [N, {WIDTH}] tensor {MATRIX_INPUT!r} or one tensor per feature, not both")
        values, shape = tensors[MATRIX_INPUT]
        if len(shape) != 2 or shape[1] != WIDTH:
            raise V2Error(
                f"input {MATRIX_INPUT!r}: shape must be [N, {WIDTH}] (columns in schema order: "
                f"{', '.join(FEATURE_NAMES)}), got {shape_text(shape)}"
            )
        n = shape[0]
        out = {name: values[j::WIDTH] for j, name in enumerate(FEATURE_NAMES)}
    else:
        for name, (_, shape) in tensors.items():
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise V2Error(f"input {name!r}: shape must be [N] (or [N, 1]), got {shape_text(shape)}")
        lengths = {name: shape[0] for name, (_, shape) in tensors.items()}
        if len(set(lengths.values())) > 1:
            raise V2Error(f"inputs disagree on the number of rows N: {lengths}")
        n = next(iter(lengths.values()))
        for f in FEATURES:
            if f.required and f.name not in tensors:
                raise V2Error(f"input {f.name!r} is missing: {f.name} is required: must be {f.rule()}")
        out = {name: tensors[name][0] if name in tensors else [None] * n for name in FEATURE_NAMES}
    if not 1 <= n <= MAX_BATCH:
        raise V2Error(f"N = {n} rows: send 1 to {MAX_BATCH} rows per request")
    return out
