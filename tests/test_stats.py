import math

import pytest

from closuretrace.analysis.stats import fit_slope, t_quantile_975
from closuretrace.analysis.verdicts import growing_types, verdicts
from closuretrace.session import CycleSample


def test_exact_line_has_zero_width_interval():
    s = fit_slope([5.0, 7.0, 9.0, 11.0, 13.0])
    assert s.slope == pytest.approx(2.0)
    assert s.low == pytest.approx(2.0) and s.high == pytest.approx(2.0)


def test_interval_matches_textbook_example():
    # y = [1, 3, 2, 5, 4]: slope 0.8, se = sqrt(SSE/(n-2)/Sxx) = sqrt(3.6/3/10), t(3) = 3.182
    s = fit_slope([1, 3, 2, 5, 4])
    half = 3.182 * math.sqrt(3.6 / 3 / 10)
    assert s.slope == pytest.approx(0.8)
    assert (s.low, s.high) == pytest.approx((0.8 - half, 0.8 + half))


def test_two_points_give_no_interval():
    s = fit_slope([1.0, 2.0])
    assert s.slope == 1.0 and s.low == -math.inf and s.high == math.inf


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (5, 2.571), (30, 2.042), (60, 2.000), (120, 1.980)])
def test_t_quantiles(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=2e-3)


def _cycles(series):
    return [CycleSample(index=i, label="", seconds=0, probe_seconds=0, metrics={"rss_bytes": v})
            for i, v in enumerate(series)]


def test_leak_needs_ci_clear_of_zero_and_slope_above_floor():
    mib = 1024 * 1024
    leaking = verdicts(_cycles([100 * mib + i * mib for i in range(8)]), warmup=1)[0]
    assert leaking.leak and leaking.slope_per_cycle == pytest.approx(mib)
    below_floor = verdicts(_cycles([100 * mib + i * 1000 for i in range(8)]), warmup=1)[0]
    assert below_floor.ci_low > 0 and not below_floor.leak
    noisy = verdicts(_cycles([100 * mib + (mib if i % 2 else -mib) * 3 for i in range(8)]), warmup=1)[0]
    assert not noisy.leak and noisy.ci_low < 0


def test_warmup_cycle_is_excluded():
    mib = 1024 * 1024
    v = verdicts(_cycles([0, 50 * mib, 50 * mib, 50 * mib, 50 * mib]), warmup=1)[0]
    assert v.n_cycles == 4 and not v.leak
    v0 = verdicts(_cycles([0, 50 * mib, 50 * mib, 50 * mib, 50 * mib]), warmup=0)[0]
    assert v0.n_cycles == 5


def test_too_few_cycles_says_so():
    v = verdicts(_cycles([1, 2, 3]), warmup=1)[0]
    assert not v.leak and "at least 3" in (v.note or "")


def test_growing_types_ranks_steady_growth_first():
    census = [{"A": 10 + 5 * i, "B": 100 + (i % 2), "C": 3 + i} for i in range(6)]
    ranked = growing_types(census, warmup=1)
    assert [g.type for g in ranked] == ["A", "C"]
    assert ranked[0].grows_every_cycle and ranked[0].slope_per_cycle == pytest.approx(5)
