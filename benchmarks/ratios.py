"""Whole-process figures: P1 (profile overhead vs plain python, tracemalloc, memray) and P5 (detection power).

    python benchmarks/ratios.py            # P1 with 5 alternating rounds, P5; prints a Markdown table
    python benchmarks/ratios.py --rounds 3 --skip-p5

Commands are alternated round by round (plain, closuretrace, tracemalloc, memray, plain, ...) so drift on the
machine hits each the same; medians and ratios to the median plain wall time are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = ["-m", "closuretrace.examples.seed", "--strategy", "recreate", "--cycles", "8", "--samples", "6000"]

LEAK_1MIB = """
import sys
keep = []
def step(i):
    keep.append(bytearray(1024 * 1024))   # 1 MiB per cycle, held by a module global
for i in range(8):
    step(i)
"""

FLAT = """
def step(i):
    data = [bytearray(1024 * 1024) for _ in range(4)]   # 4 MiB allocated and freed per cycle
    return sum(len(d) for d in data)
for i in range(10):
    step(i)
"""


def _timed(cmd: list[str], cwd: str) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def p1(rounds: int) -> list[tuple[str, float, float]]:
    tmp = tempfile.mkdtemp(prefix="ct-bench-")
    py = sys.executable
    commands = {
        "python": [py, *SEED],
        "closuretrace profile": [py, "-m", "closuretrace", "profile", "-q", "-o", f"{tmp}/r.json", *SEED],
        "python -X tracemalloc": [py, "-X", "tracemalloc", *SEED],
    }
    if shutil.which("memray"):
        commands["memray run"] = ["memray", "run", "-f", "-q", "-o", f"{tmp}/m.bin", *SEED]
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            times[name].append(_timed(cmd, tmp))
    base = statistics.median(times["python"])
    shutil.rmtree(tmp, ignore_errors=True)
    return [(name, statistics.median(ts), statistics.median(ts) / base) for name, ts in times.items()]


def _verdict(source: str, cwd: str, warmup: int = 1) -> tuple[bool, float, int]:
    Path(cwd, "prog.py").write_text(source)
    out = Path(cwd, "out.json")
    subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "--cycle-on", "step", "--warmup", str(warmup),
         "-o", str(out), "prog.py"],
        cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    data = json.loads(out.read_text())
    rss = next(v for v in data["verdicts"] if v["metric"] == "rss_bytes")
    return bool(rss["leak"]), float(rss["slope_per_cycle"]), len(data["cycles"])


def p5(flat_runs: int) -> tuple[tuple[bool, float, int], list[tuple[bool, float, int]]]:
    tmp = tempfile.mkdtemp(prefix="ct-p5-")
    leak = _verdict(LEAK_1MIB, tmp)
    flats = [_verdict(FLAT, tmp) for _ in range(flat_runs)]
    shutil.rmtree(tmp, ignore_errors=True)
    return leak, flats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-p1", action="store_true")
    parser.add_argument("--skip-p5", action="store_true")
    opts = parser.parse_args()
    if not opts.skip_p1:
        print(f"P1: seed workload ({' '.join(SEED)}), median of {opts.rounds} alternating rounds\n")
        print("| command | median wall | ratio to python |\n| --- | ---: | ---: |")
        for name, wall, ratio in p1(opts.rounds):
            print(f"| {name} | {wall:.2f} s | {ratio:.2f}x |")
    if not opts.skip_p5:
        leak, flats = p5(10)
        mib = 1024 * 1024
        print(f"\nP5: 1 MiB/cycle leak over {leak[2]} cycles: leak={leak[0]}, slope {leak[1] / mib:+.2f} MiB/cycle")
        flagged = sum(f[0] for f in flats)
        slopes = ", ".join(f"{f[1] / 1024:+.0f}" for f in flats)
        print(f"P5: flat loop, 10 runs: {flagged} flagged as leaks; RSS slopes (KiB/cycle): {slopes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
