"""The robust trend behind every verdict: rank statistics checked against brute force, each shape on seeded
series, the interval's coverage over a few hundred simulated series, and ``profile --cycle-on`` end to end on
pure-Python loops that allocate known amounts.

``python tests/test_trend.py [RUNS]`` prints the coverage table that docs/statistics.md quotes.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from closuretrace.analysis import conclude
from closuretrace.analysis.stats import EXACT_MAX, fit_slope, mann_kendall, sen_rank, theil_sen
from closuretrace.analysis.trend import describe, find_steps, trend
from closuretrace.analysis.verdicts import judge, state_of, verdicts
from closuretrace.session import CycleSample, RunInfo, Session, Step, Verdict, load_session

KiB = 1024
MiB = 1024 * KiB
RSS_FLOOR = 256 * KiB


# -- rank statistics against brute force -------------------------------------------------------------------


def _s(values: Sequence[float]) -> int:
    pairs = itertools.combinations(range(len(values)), 2)
    return sum((values[j] > values[i]) - (values[j] < values[i]) for i, j in pairs)


def _brute_p(values: Sequence[float], sizes: Sequence[int]) -> float:
    """P(S >= s) over every arrangement of each segment's values (what the exact test claims to compute)."""
    parts, start = [], 0
    for m in sizes:
        parts.append(values[start : start + m])
        start += m
    s0 = sum(_s(p) for p in parts)
    hits = total = 0
    for combo in itertools.product(*(itertools.permutations(p) for p in parts)):
        total += 1
        hits += sum(_s(p) for p in combo) >= s0
    return hits / total


@pytest.mark.parametrize(
    ("values", "sizes"),
    [
        ([3, 1, 4, 1, 5, 9, 2], [7]),
        ([0, 0, 1, 1, 1, 2], [6]),  # ties
        ([1, 2, 2, 5, 3, 4, 4], [3, 4]),  # two segments, ties
        ([0, 0, 1, 5, 5, 6, 7], [4, 3]),
        ([5, 4, 3, 2, 1], [5]),
    ],
)
def test_exact_mann_kendall_matches_every_permutation(values: list[float], sizes: list[int]) -> None:
    mk = mann_kendall(values, sizes)
    assert mk.exact
    assert mk.p_rise == pytest.approx(_brute_p(values, sizes))


def test_normal_approximation_takes_over_where_exact_stops() -> None:
    # Sen's rank from the exact distribution at 40 points equals the normal approximation's at 40, and the
    # approximation at 41 continues the sequence.
    n = EXACT_MAX
    big_n = n * (n - 1) // 2
    sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    assert sen_rank(n) == math.floor((big_n - 1 - 1.959964 * sd) / 2)
    assert sen_rank(n) < sen_rank(n + 1) < sen_rank(n + 5)
    rng = random.Random(3)
    values = [rng.gauss(0, 1) + 0.02 * i for i in range(n)]
    exact = mann_kendall(values)
    normal = 0.5 * math.erfc((exact.s - 1) / sd / math.sqrt(2))  # what the approximation says at the same 40
    assert exact.exact and exact.s > 0 and exact.p_rise == pytest.approx(normal, abs=0.005)
    assert not mann_kendall([*values, 0.0]).exact


def test_no_rank_interval_below_five_points() -> None:
    assert [sen_rank(n) for n in range(1, 8)] == [None, None, None, None, 0, 1, 3]
    s = theil_sen([1.0, 2.0, 3.0, 4.0])
    assert s.slope == 1.0 and (s.low, s.high) == (-math.inf, math.inf)


def test_one_outlier_moves_theil_sen_by_one_rank_not_least_squares() -> None:
    values = [10.0 + 2 * i for i in range(9)]
    values[6] += 1000
    robust, ols = theil_sen(values), fit_slope(values)
    assert robust.slope == 2.0 and robust.low == 2.0
    assert ols.slope > 20 and ols.low < 0


def test_segments_share_one_slope() -> None:
    s = theil_sen([0, 1, 2, 103, 104, 105, 106], blocks=[3, 4])
    assert (s.slope, s.low, s.high, s.intercept) == (1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        theil_sen([1, 2, 3], blocks=[1, 1])


# -- steps and shapes on generated series -------------------------------------------------------------------


def noisy(n: int, slope: float, sd: float, seed: int, start: float = 100 * MiB) -> list[float]:
    rng = random.Random(seed)
    return [start + slope * i + rng.gauss(0, sd) for i in range(n)]


def test_one_jump_is_a_step_and_leaves_the_slope_alone() -> None:
    ys = noisy(14, 300 * KiB, 20 * KiB, seed=1)
    ys = [y + (9 * MiB if i >= 6 else 0) for i, y in enumerate(ys)]
    t = trend(ys, RSS_FLOOR, cycles=range(1, 15))
    assert [s.cycle for s in t.steps] == [7]  # the 7th value, numbered from 1
    assert t.steps[0].delta == pytest.approx(9 * MiB, abs=100 * KiB)
    assert t.low <= 300 * KiB <= t.high and t.high - t.low < 100 * KiB
    assert t.shape == "growth"
    assert describe(t, "bytes") == f"one step of +{t.steps[0].delta / MiB:.1f} MiB at cycle 7, left out of the slope"
    ols = fit_slope(ys)
    assert not ols.low <= 300 * KiB <= ols.high  # what the least-squares verdict got wrong


def test_a_staircase_is_growth_not_steps() -> None:
    ys = [float(10 * (i // 3)) for i in range(30)]  # +10 every third cycle: regular jumps are the trend
    assert find_steps(ys) == []
    t = trend(ys, 0.5)
    assert t.shape == "growth" and t.low > 0 and judge(ys, 0.5)[1] == "leak"


def test_a_lumpier_cycle_of_a_leak_is_not_a_step() -> None:
    ys = [float(i) for i in range(12)]
    ys[6:] = [y + 1 for y in ys[6:]]  # one cycle made two closures instead of one
    assert find_steps(ys, 0.5) == []
    assert trend(ys, 0.5).shape == "growth"


def test_step_shape_flat_with_one_jump_is_not_a_leak() -> None:
    ys = noisy(12, 0, 30 * KiB, seed=2)
    ys = [y + (9 * MiB if i >= 4 else 0) for i, y in enumerate(ys)]
    t, state = judge(ys, RSS_FLOOR)
    assert t.shape == "step" and state == "flat"
    assert t.low <= 0 <= t.high
    assert describe(t, "bytes") == f"one step of +{t.steps[0].delta / MiB:.1f} MiB at cycle 4"


def test_bounded_cache_is_not_a_leak_and_says_where_it_stopped() -> None:
    ys = [float(min(i, 50)) for i in range(1, 150)]  # lru_cache(maxsize=50): one closure per cycle up to 50
    t, state = judge(ys, 0.5, cycles=range(1, 150))
    assert t.shape == "bounded" and state != "leak"
    assert (t.plateau, t.plateau_cycle, t.flat_for) == (50, 50, 99)
    assert describe(t, "closures") == (
        "bounded: rose to 50 closures by cycle 50, flat for the last 99 cycles (e.g. a cache that filled)"
    )


def test_bounded_with_noise() -> None:
    rng = random.Random(4)
    ys = [100 * MiB + 1 * MiB * min(i, 15) + rng.gauss(0, 50 * KiB) for i in range(60)]
    t, state = judge(ys, RSS_FLOOR)
    assert t.shape == "bounded" and state != "leak"
    assert t.plateau == pytest.approx(115 * MiB, abs=200 * KiB)
    assert t.plateau_cycle == 15


def test_slow_leak_after_a_fast_rise_is_not_bounded() -> None:
    ys = [float(min(i, 20) * 10 + i) for i in range(60)]  # fills fast, then keeps growing +1 per cycle
    t, state = judge(ys, 0.5)
    assert t.shape == "growth" and state == "leak"


def test_few_rising_cycles_are_undecided_but_can_leak() -> None:
    ys = [100 * MiB + i * MiB for i in range(7)]
    t, state = judge(ys, RSS_FLOOR)
    assert t.shape == "undecided" and state == "leak" and t.estimator == "theil-sen"
    assert describe(t, "bytes") == "still rising after 7 cycles: run more to tell a leak from a cache that fills"


def test_four_points_fall_back_to_least_squares() -> None:
    t, state = judge([0.0, 4 * MiB, 8 * MiB, 12 * MiB], RSS_FLOOR)
    assert t.estimator == "least-squares" and state == "leak" and t.shape == "undecided"
    t, state = judge([0.0, 4 * MiB, 8 * MiB], RSS_FLOOR)  # 3 points: no order is unlikely enough to be a rise
    assert state == "grows"


@pytest.mark.parametrize(
    ("series", "shape", "state"),
    [
        ([], "undecided", "too_few"),
        ([1.0, 2.0], "undecided", "too_few"),
        ([5.0] * 10, "flat", "flat"),
        ([math.nan, 1.0, 2.0, math.inf, 3.0, 4.0, 5.0, 6.0], "undecided", "leak"),  # non-finite values are skipped
        ([0.0, 1e308, -1e308, 1e308, 0.0, 1.0], "undecided", "flat"),  # differences overflow: no fit, no verdict
    ],
)
def test_edge_series(series: list[float], shape: str, state: str) -> None:
    t, got = judge(series, 0.5)
    assert (t.shape, got) == (shape, state)


def test_verdicts_carry_shape_estimator_and_steps_numbered_by_cycle() -> None:
    values = [100 * MiB + 300 * KiB * i + (9 * MiB if i >= 9 else 0) for i in range(14)]
    cycles = [CycleSample(index=i, label="", seconds=0, probe_seconds=0, metrics={"rss_bytes": v})
              for i, v in enumerate(values)]
    (v,) = verdicts(cycles, warmup=1)
    assert v.leak and v.state == "leak" and v.shape == "growth" and v.estimator == "theil-sen"
    assert v.steps == [Step(cycle=9, delta=9 * MiB)]
    assert v.slope_per_cycle == 300 * KiB and v.ci_low == v.ci_high == 300 * KiB
    assert v.note == "one step of +9.0 MiB at cycle 9, left out of the slope"


def test_json_round_trip_and_old_files(tmp_path: Path) -> None:
    v = Verdict("rss_bytes", "bytes", 1.0, 0.5, 1.5, 12, 0.0, True, state="leak", shape="growth",
                estimator="theil-sen", steps=[Step(7, 9.0 * MiB), Step(9, math.nan)])
    s = Session(run=RunInfo(argv=["x.py"]), verdicts=[v])
    data = json.loads(s.to_json())
    assert data["verdicts"][0]["steps"] == [{"cycle": 7, "delta": 9.0 * MiB}, {"cycle": 9, "delta": None}]
    (tmp_path / "new.json").write_text(s.to_json())
    back = load_session(tmp_path / "new.json")
    assert isinstance(back, Session)
    (b,) = back.verdicts
    assert b.steps[0] == Step(7, 9.0 * MiB) and math.isnan(b.steps[1].delta)
    assert (b.shape, b.estimator) == ("growth", "theil-sen")
    for key in ("shape", "estimator", "steps"):
        del data["verdicts"][0][key]
    data["verdicts"][0]["state"] = ""
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_session(tmp_path / "old.json")
    assert isinstance(old, Session)
    (o,) = conclude(old).verdicts
    assert (o.shape, o.estimator, o.steps) == ("", "least-squares", [])
    assert o.state == state_of(12, 1.0, 0.5, 0.0) == "leak"  # re-judged by the rule its figures were made for
    bad = json.loads(s.to_json())
    bad["verdicts"][0]["steps"] = [{"cycle": "x", "delta": 1}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"Step\.cycle"):
        load_session(tmp_path / "bad.json")


# -- coverage of the interval over simulated series --------------------------------------------------------

SHAPES = ("steady leak", "leak + one jump", "noise only", "step", "bounded")


def simulate(shape: str, n: int, sd: float, rng: random.Random) -> tuple[list[float], float]:
    """One RSS-like series and its true per-cycle growth (the slope the interval must cover)."""
    slope = 300 * KiB if shape in ("steady leak", "leak + one jump") else 0.0
    ys = [100 * MiB + slope * i + rng.gauss(0, sd) for i in range(n)]
    if shape in ("leak + one jump", "step"):
        at = rng.randrange(1, n)
        ys = [y + (9 * MiB if i >= at else 0) for i, y in enumerate(ys)]
    if shape == "bounded":  # 1 MiB per cycle until a cache fills in the first third, flat after
        top = rng.randrange(3, max(4, n // 3))
        ys = [100 * MiB + MiB * min(i, top) + rng.gauss(0, sd) for i in range(n)]
    return ys, slope


def coverage_table(runs: int, seed: int = 13) -> dict[tuple[str, int, float], dict[str, float]]:
    out: dict[tuple[str, int, float], dict[str, float]] = {}
    for shape, n, sd in itertools.product(SHAPES, (8, 12, 20), (30 * KiB, 100 * KiB)):
        rng = random.Random(f"{seed}/{shape}/{n}/{sd}")
        cover = leaks = same = 0
        for _ in range(runs):
            ys, truth = simulate(shape, n, sd, rng)
            t, state = judge(ys, RSS_FLOOR)
            cover += t.low <= truth <= t.high
            leaks += state == "leak"
            same += t.shape == {"steady leak": "growth", "leak + one jump": "growth", "noise only": "flat",
                                "step": "step", "bounded": "bounded"}[shape] or (t.shape == "undecided" and n < 10)
        out[shape, n, sd] = {"coverage": cover / runs, "leak": leaks / runs, "shape": same / runs}
    return out


def test_interval_covers_the_true_growth_and_noise_never_leaks() -> None:
    table = coverage_table(runs=40)  # 5 shapes x 3 lengths x 2 noise levels x 40 series, seeded: 1200 series
    by_shape: dict[str, list[float]] = {}
    for (shape, n, sd), row in table.items():
        where = f"{shape}, {n} cycles, sd {sd / KiB:.0f} KiB: {row}"
        if shape != "bounded":  # a cache that fills has no one true slope: it must not leak
            by_shape.setdefault(shape, []).append(row["coverage"])
            assert row["coverage"] >= 0.85, where  # 40 series a row: +-3.5% of binomial noise around 95%
        if shape in ("steady leak", "leak + one jump"):
            assert row["leak"] >= 0.95, where
        elif shape == "bounded" and n < 12:  # 5 noisy points of plateau cannot always show it stopped
            assert row["leak"] <= 0.05, where
        else:
            assert row["leak"] == 0, where
        assert row["shape"] >= 0.9, where
    for shape, rows in by_shape.items():
        assert sum(rows) / len(rows) >= 0.90, (shape, rows)  # 240 series a shape
    pooled = [c for rows in by_shape.values() for c in rows]
    assert sum(pooled) / len(pooled) >= 0.93


# -- end to end: profile --cycle-on on pure-Python loops that allocate known amounts -------------------------

# mmap pages touched one by one: the resident set grows by exactly the requested bytes (a bytes object would add
# its header and round up to a page: 304 KiB for 300 KiB).
ALLOC = """
import mmap
kept = []

def block(nbytes):
    m = mmap.mmap(-1, nbytes)
    for off in range(0, nbytes, mmap.PAGESIZE):
        m[off] = 1
    kept.append(m)
"""


def _profiled(tmp_path: Path, body: str, *args: str) -> dict[str, dict[str, object]]:
    from test_cli_profile import profile, report, script

    script(tmp_path, "loop.py", body)
    proc = profile(tmp_path, "-q", "-o", "out.json", "--cycle-on", "step", *args, "loop.py")
    assert proc.returncode in (0, 10), proc.stderr
    return {str(v["metric"]): v for v in report(tmp_path / "out.json")["verdicts"]}


@pytest.mark.parametrize("seed", [1, 2])
def test_e2e_steady_leak_with_one_jump(tmp_path: Path, seed: int) -> None:
    jump = random.Random(seed).randrange(3, 12)
    body = ALLOC + f"""
def step(i):
    block(300 * 1024)
    if i == {jump}:
        block(9 * 1024 * 1024)

for i in range(14):
    step(i)
"""
    rss = _profiled(tmp_path, body)["rss_bytes"]
    slope, low, high = (float(rss[k]) for k in ("slope_per_cycle", "ci_low", "ci_high"))  # type: ignore[arg-type]
    assert 150 * KiB <= slope <= 600 * KiB, rss
    assert low <= 300 * KiB <= high, rss
    assert rss["leak"] is True and rss["shape"] == "growth" and rss["estimator"] == "theil-sen"
    steps: list[dict[str, float]] = rss["steps"]  # type: ignore[assignment]
    assert [s["cycle"] for s in steps] == [jump], rss
    assert steps[0]["delta"] == pytest.approx(9 * MiB, rel=0.05)
    assert f"at cycle {jump}" in str(rss["note"])


def test_e2e_lru_cache_of_closures_is_bounded(tmp_path: Path) -> None:
    body = """
import functools

@functools.lru_cache(maxsize=50)
def make(i):
    def f(x):
        return x + i
    return f

def step(i):
    return make(i)(1)

for i in range(150):
    step(i)
"""
    alive = _profiled(tmp_path, body)["closures_alive"]
    assert alive["shape"] == "bounded" and alive["leak"] is False, alive
    assert str(alive["note"]).startswith("bounded: rose to 50 closures by cycle 49, flat for the last 100 cycles")


def test_e2e_one_mib_per_cycle_leaks_within_8_cycles(tmp_path: Path) -> None:
    body = ALLOC + """
def step(i):
    block(1024 * 1024)

for i in range(8):
    step(i)
"""
    rss = _profiled(tmp_path, body)["rss_bytes"]
    assert rss["leak"] is True and rss["n_cycles"] == 7, rss
    assert rss["slope_per_cycle"] == pytest.approx(MiB, rel=0.05)


def _print_table(runs: int) -> None:
    table = coverage_table(runs)
    print(f"{runs} seeded series per row; RSS noise floor {RSS_FLOOR // KiB} KiB; true slope 300 KiB/cycle (leaks)")
    print("| shape | cycles | noise sd | CI covers the truth | leak verdicts | shape as generated |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (shape, n, sd), row in table.items():
        cov = "n/a" if shape == "bounded" else f"{row['coverage']:.1%}"
        print(f"| {shape} | {n} | {sd / KiB:.0f} KiB | {cov} | {row['leak']:.1%} | {row['shape']:.1%} |")
    pooled = [row["coverage"] for (shape, _, _), row in table.items() if shape != "bounded"]
    print(f"\npooled coverage (all but bounded): {sum(pooled) / len(pooled):.1%}")


if __name__ == "__main__":
    _print_table(int(sys.argv[1]) if len(sys.argv) > 1 else 200)

