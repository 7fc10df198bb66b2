"""Seeded random patients, valid by construction because they come from the schema.

Two modes: "uniform" draws each feature uniformly over its typical range or its codes (as
the original course scripts did: fine for load tests, unlike real patients), and
"marginal" resamples each feature from the training data's own values (realistic one
feature at a time; features are drawn independently, so joint structure is not kept).
Used by batch_predict.py, the drift analysis and the load test.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from .schema import FEATURE_NAMES, FEATURES, Feature

Mode = Literal["uniform", "marginal"]
MODES: tuple[str, ...] = ("uniform", "marginal")


def sample(n: int, seed: int = 0, mode: Mode = "uniform", reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """n patients as a frame in schema order (float, codes for discrete features)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    if mode == "uniform":
        columns = {f.name: _uniform(f, n, rng) for f in FEATURES}
    elif mode == "marginal":
        if reference is None:
            raise ValueError("mode 'marginal' needs the reference data to draw from")
        columns = {f.name: _marginal(f, reference[f.name].to_numpy(dtype=float), n, rng) for f in FEATURES}
    else:
        raise ValueError(f"unknown sampling mode {mode!r}: choose one of {', '.join(MODES)}")
    return pd.DataFrame(columns, columns=list(FEATURE_NAMES))


def _uniform(f: Feature, n: int, rng: np.random.Generator) -> np.ndarray:
    if f.discrete:
        return rng.choice(np.array(sorted(f.codes), dtype=float), size=n)
    low, high = f.typical
    if f.integer:
        return rng.integers(int(low), int(high), endpoint=True, size=n).astype(float)
    return np.round(rng.uniform(low, high, size=n), 1)


def _marginal(f: Feature, values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    observed = values[~np.isnan(values)]
    if observed.size == 0:
        raise ValueError(f"the reference data has no values for '{f.name}' to draw from")
    return rng.choice(observed, size=n)


def to_records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready patients as the API takes them: gender as text, codes as ints, NaN omitted."""
    records = []
    for row in frame[list(FEATURE_NAMES)].itertuples(index=False):
        rec = {}
        for f, v in zip(FEATURES, row):
            if v != v:  # NaN: leave the feature out, the model imputes it
                continue
            if f.text_codes:
                rec[f.name] = {code: text for text, code in f.text_codes.items()}[int(v)]
            elif f.discrete or f.integer:
                rec[f.name] = int(v)
            else:
                rec[f.name] = float(v)
        records.append(rec)
    return records
