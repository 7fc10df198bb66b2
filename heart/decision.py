"""The one decision rule: class 1 (heart disease) iff P(disease) >= the model card's threshold.

Serving (both engines), CV metrics, the analyses and the client's checks all call decide(),
so a probability exactly at the threshold gets the same class everywhere.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5


def decide(proba, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """0/1 int array: 1 iff proba >= threshold (a scalar gives a one-element array)."""
    return (np.atleast_1d(np.asarray(proba, dtype=float)) >= threshold).astype(int)


def threshold_of(card: dict | None) -> float:
    """The card's decision threshold (`card["threshold"]`), 0.5 for a card without one."""
    value = (card or {}).get("threshold", DEFAULT_THRESHOLD)
    return float(value)
