"""Wall time of the default ``closuretrace compare`` run (the README's main job), as a user would start it.

    python benchmarks/bench_compare.py            # one run
    python benchmarks/bench_compare.py --runs 3   # best and median of three

The target: about a minute and a half on 2 cores. Each scenario is a fresh Python process that pays a
TensorFlow import (~3-5 s), so the run costs about (11 scenarios + 2 checks) x ~10 s / cores. The report goes to a
temporary directory; the load average is printed with each run because another busy process on the machine
slows every scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def one_run(extra: list[str]) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        out = os.path.join(tmp, "compare.json")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "closuretrace", "compare", "-q", "-o", out, *extra],
            env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"closuretrace compare exited with status {proc.returncode}")
        with open(out, encoding="utf-8") as fh:
            data = json.load(fh)
    per = [s.get("wall_seconds") or 0.0 for s in data["scenarios"]]
    return wall, {"scenarios": len(per), "scenario_wall_mean": statistics.fmean(per) if per else 0.0,
                  "scenario_wall_max": max(per, default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="extra options for closuretrace compare")
    opts = parser.parse_args()
    walls = []
    for i in range(opts.runs):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        wall, info = one_run(opts.args)
        walls.append(wall)
        print(
            f"run {i + 1}: {wall:.1f} s wall ({info['scenarios']:.0f} scenarios, each "
            f"{info['scenario_wall_mean']:.1f} s on average, slowest {info['scenario_wall_max']:.1f} s; "
            f"load average before: {load:.2f}; {os.cpu_count()} CPUs)"
        )
    if len(walls) > 1:
        print(f"best {min(walls):.1f} s, median {statistics.median(walls):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
