"""heart.analyses.twosample gives scipy.stats' numbers without SciPy (the server's live drift runs it)."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from heart.analyses import twosample

from conftest import ROOT


def samples(seed: int, n1: int, n2: int, shift: float, rounded: bool):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(50, 10, n1), rng.normal(50 + shift, 10, n2)
    return (np.round(a), np.round(b)) if rounded else (a, b)


@pytest.mark.parametrize(
    "n1, n2",
    [(2, 2), (2, 3), (5, 5), (17, 40), (100, 100), (303, 1000), (303, 300), (1000, 303), (7, 9999), (250, 10_000)],
)
@pytest.mark.parametrize("shift", [0.0, 2.0, 15.0])
@pytest.mark.parametrize("rounded", [False, True], ids=["continuous", "ties"])
def test_ks_2samp_is_scipys_exact_test(n1, n2, shift, rounded):
    a, b = samples(n1 * 7 + n2, n1, n2, shift, rounded)
    expected = scipy_stats.ks_2samp(a, b)
    d, p = twosample.ks_2samp(a, b)
    assert d == expected.statistic
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_2samp_of_identical_and_disjoint_samples():
    a = np.arange(30.0)
    assert twosample.ks_2samp(a, a) == (0.0, 1.0)
    d, p = twosample.ks_2samp(a, a + 100)
    assert d == 1.0 and p == pytest.approx(scipy_stats.ks_2samp(a, a + 100).pvalue, rel=1e-12) and p < 1e-15
    with pytest.raises(ValueError, match="at least one value in each sample"):
        twosample.ks_2samp(a, [])


def test_ks_2samp_beyond_10000_a_side_uses_kolmogorovs_limit():
    a, b = samples(3, 12_000, 500, 1.0, False)
    d, p = twosample.ks_2samp(a, b)
    assert d == scipy_stats.ks_2samp(a, b).statistic
    assert p == pytest.approx(special.kolmogorov(math.sqrt(12_000 * 500 / 12_500) * d), rel=1e-12)


@pytest.mark.parametrize("x", [0.0, 0.05, 0.3, 0.6, 0.99, 1.0, 1.01, 1.5, 2.5, 4.0, 6.0])
def test_kolmogorov_sf_is_scipys(x):
    assert twosample.kolmogorov_sf(x) == pytest.approx(special.kolmogorov(x), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("dof", range(1, 13))
def test_chi2_sf_is_scipys(dof):
    for x in (1e-6, 0.01, 0.5, 1, 2.7, 7.5, 20, 60, 200, 700):
        assert twosample.chi2_sf(x, dof) == pytest.approx(scipy_stats.chi2.sf(x, dof), rel=1e-12, abs=1e-300)
    assert twosample.chi2_sf(0, dof) == 1.0


def test_chi2_contingency_is_scipys_with_yates_at_one_degree_of_freedom():
    rng = np.random.default_rng(4)
    tested = {1: 0, 2: 0, 3: 0}
    for _ in range(300):
        table = rng.integers(0, 60, size=(2, int(rng.integers(2, 5))))
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
            continue
        expected = scipy_stats.chi2_contingency(table)
        stat, p = twosample.chi2_contingency(table)
        assert stat == pytest.approx(expected.statistic, rel=1e-12, abs=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-12, abs=1e-300)
        tested[table.shape[1] - 1] = tested.get(table.shape[1] - 1, 0) + 1
    assert min(tested.values()) > 20, tested  # every degree of freedom, Yates' included
    assert twosample.chi2_contingency([[3], [4]]) == (0.0, 1.0)


def test_a_small_table_is_corrected_by_half_a_count_at_most():
    """Yates by hand: [[5, 1], [1, 5]] expects 3 everywhere; |o - e| = 2 becomes 1.5: 4 * 1.5**2 / 3 = 3."""
    stat, p = twosample.chi2_contingency([[5, 1], [1, 5]])
    assert stat == pytest.approx(3.0, rel=1e-15) and p == pytest.approx(math.erfc(math.sqrt(1.5)), rel=1e-15)
    # a cell within half a count of its expectation is moved onto it, not past it
    assert twosample.chi2_contingency([[10, 10], [10, 11]])[0] == 0.0


def test_false_discovery_control_and_wasserstein_are_scipys():
    rng = np.random.default_rng(5)
    for n in (1, 2, 13, 40):
        p = rng.beta(0.3, 2, size=n)
        np.testing.assert_allclose(
            twosample.false_discovery_control(p), scipy_stats.false_discovery_control(p), rtol=1e-12, atol=0
        )
    for n1, n2 in ((1, 1), (30, 7), (303, 1000)):
        u, v = rng.normal(0, 1, n1), rng.gamma(2, 1, n2)
        assert twosample.wasserstein_distance(u, v) == pytest.approx(scipy_stats.wasserstein_distance(u, v), rel=1e-12)


def test_the_drift_analysis_imports_neither_scipy_nor_pandas():
    code = (
        "import sys, numpy as np; from heart.analyses.drift import drift_report; "
        "r = drift_report(np.random.default_rng(0).normal(50, 5, (300, 13)), np.full((50, 13), 50.0)); "
        "print(r.share_drifted, sorted({'scipy', 'pandas', 'sklearn'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    share, imported = out.split(" ", 1)
    assert float(share) > 0 and imported.strip() == "[]"
