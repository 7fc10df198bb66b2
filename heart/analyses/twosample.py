"""The drift analysis' statistics in NumPy alone, giving scipy.stats' numbers: the server's live drift
runs them in every worker, and SciPy (63 MiB of memory, a second of import) stays out of the server.

- ks_2samp: the two-sided two-sample Kolmogorov-Smirnov test. Up to 10,000 values a side (scipy's
  method="auto" limit) the p-value is exact: the share of lattice paths from (0, 0) to (m, n)
  that leave the band |x/m - y/n| < D, counted column by column as a probability (Hodges 1958;
  Viehmann 2021, arXiv:2102.08037, for the recursion on 1 - p, which stays accurate for small
  p). Beyond, Kolmogorov's limiting distribution at sqrt(mn/(m+n)) D.
- chi2_contingency: Pearson's chi-squared test of a 2 x k table, with Yates' correction when it
  has one degree of freedom; the survival function of chi-squared in closed form.
- false_discovery_control: Benjamini-Hochberg adjusted p-values.
- wasserstein_distance: the area between the two empirical distribution functions.
tests/test_drift.py checks each against SciPy.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to this many values a side


def ks_2samp(a, b) -> tuple[float, float]:
    """(D, p): D the largest distance between the empirical distribution functions, p two-sided."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("ks_2samp needs at least one value in each sample")
    both = np.concatenate([a, b])
    diff = np.searchsorted(a, both, side="right") / n1 - np.searchsorted(b, both, side="right") / n2
    d = float(max(np.clip(-diff.min(), 0, 1), diff.max()))
    if max(n1, n2) > EXACT_MAX_N:
        en = n1 * n2 / (n1 + n2)
        return d, kolmogorov_sf(math.sqrt(en) * d)
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = round(d * lcm)  # D is a multiple of 1/lcm: work on the integer lattice
    d = h / lcm
    return d, 1.0 if h == 0 else min(max(_paths_leaving_band(n1, n2, g, h), 0.0), 1.0)


def _paths_leaving_band(m: int, n: int, g: int, h: int) -> float:
    """P(D >= h / lcm(m, n)): the share of monotone lattice paths (0, 0) -> (m, n) that touch a point
    with |x n/g - y m/g| >= h. A point's value is the share of the paths reaching it that have left
    the band: 1 outside it, else the mean of its two predecessors weighted by their path counts,
    (x A(x-1, y) + y A(x, y-1)) / (x + y). One column of the smaller sample's axis is kept."""
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    column = [0.0 if y * mg < h else 1.0 for y in range(n + 1)]  # x = 0: left once y m/g reaches h
    for x in range(1, m + 1):
        low = max((x * ng - h) // mg + 1, 0)  # the band at x: x ng - h < y mg < x ng + h
        high = min(-(-(x * ng + h) // mg) - 1, n)
        if low > high:
            return 1.0  # no point of this column is inside: every path has left the band
        new = [1.0] * (n + 1)
        value = 1.0  # A(x, low - 1): outside the band, or unused when low is 0
        for y in range(low, high + 1):
            value = (x * column[y] + y * value) / (x + y)
            new[y] = value
        column = new
    return column[n]


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for Kolmogorov's limiting distribution (scipy.special.kolmogorov)."""
    if x <= 0:
        return 1.0
    if x < 1.0:  # the theta-function form converges fast for small x
        s = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 8))
        return 1.0 - math.sqrt(2 * math.pi) / x * s
    return min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101)))


def chi2_contingency(table) -> tuple[float, float]:
    """(statistic, p) of Pearson's test of independence, Yates-corrected at one degree of freedom."""
    observed = np.asarray(table, dtype=float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    dof = int(expected.size - sum(expected.shape) + expected.ndim - 1)
    if dof == 0:
        return 0.0, 1.0
    if dof == 1:  # Yates: each cell moved half a count towards its expectation (no further)
        gap = expected - observed
        observed = observed + np.sign(gap) * np.minimum(0.5, np.abs(gap))
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, chi2_sf(statistic, dof)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for chi-squared with a whole number of degrees of freedom, in closed form:
    Q(1) = erfc(sqrt(x/2)), Q(2) = exp(-x/2), Q(k + 2) = Q(k) + (x/2)^(k/2) exp(-x/2) / Gamma(k/2 + 1)."""
    if x <= 0:
        return 1.0
    k = 2 if dof % 2 == 0 else 1
    total = math.exp(-x / 2) if k == 2 else math.erfc(math.sqrt(x / 2))
    while k < dof:
        total += math.exp(k / 2 * math.log(x / 2) - x / 2 - math.lgamma(k / 2 + 1))
        k += 2
    return min(total, 1.0)


def false_discovery_control(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(ranked)
    adjusted[order] = np.clip(ranked, 0, 1)
    return adjusted


def wasserstein_distance(u, v) -> float:
    """The first Wasserstein distance of two 1-D samples: the area between their distribution functions."""
    u, v = np.sort(np.asarray(u, dtype=float)), np.sort(np.asarray(v, dtype=float))
    values = np.sort(np.concatenate([u, v]), kind="mergesort")
    deltas = np.diff(values)
    u_cdf = np.searchsorted(u, values[:-1], side="right") / u.size
    v_cdf = np.searchsorted(v, values[:-1], side="right") / v.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))
