"""Whole-process figures: P1 (profile overhead vs plain python, tracemalloc, memray) and P5 (detection power).

    python benchmarks/ratios.py            # P1 with 5 rounds, P5; prints a Markdown table
    python benchmarks/ratios.py --rounds 3 --skip-p5
    python benchmarks/ratios.py --rounds 5 --skip-p5 --only-closuretrace   # P1 pairs only

Each round runs plain python next to each tool on the same workload, the order reversed every other round, and
each tool's ratio is taken to the plain run of *its own round*: P1 is the median of these per-round ratios, so a
busy spell on the machine hits both halves of a pair. The median wall times are printed too. ``closuretrace
profile`` runs twice: as it is (heap probes in process) and with ``--probe-in-child``. The runs import
this checkout's ``src`` (not an installed closuretrace). The load average before and after is printed: on a
shared machine, say it next to the figures.
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


SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}


def _timed(cmd: list[str], cwd: str) -> float:
    env = _env()
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def p1(rounds: int, only_closuretrace: bool = False) -> list[tuple[str, float, float, list[float]]]:
    """Per command: median wall, median of per-round ratios to plain python, and those ratios."""
    tmp = tempfile.mkdtemp(prefix="ct-bench-")
    py = sys.executable
    profile = [py, "-m", "closuretrace", "profile", "-q", "-o", f"{tmp}/r.json"]
    tools = {
        "closuretrace profile": [*profile, *SEED],
        "closuretrace profile --probe-in-child": [*profile, "--probe-in-child", *SEED],
    }
    if not only_closuretrace:
        tools["python -X tracemalloc"] = [py, "-X", "tracemalloc", *SEED]
        if shutil.which("memray"):
            tools["memray run"] = ["memray", "run", "-f", "-q", "-o", f"{tmp}/m.bin", *SEED]
    plain = [py, *SEED]
    walls: dict[str, list[float]] = {"python": [], **{k: [] for k in tools}}
    ratios: dict[str, list[float]] = {k: [] for k in tools}
    for r in range(rounds):
        names = list(tools)
        if r % 2:
            names.reverse()
        for name in names:
            pair = [("python", plain), (name, tools[name])]
            if r % 2:
                pair.reverse()
            got = {n: _timed(cmd, tmp) for n, cmd in pair}
            walls["python"].append(got["python"])
            walls[name].append(got[name])
            ratios[name].append(got[name] / got["python"])
    shutil.rmtree(tmp, ignore_errors=True)
    out = [("python", statistics.median(walls["python"]), 1.0, [])]
    out += [(n, statistics.median(walls[n]), statistics.median(ratios[n]), ratios[n]) for n in tools]
    return out


def _verdict(source: str, cwd: str, warmup: int = 1) -> tuple[bool, float, int]:
    Path(cwd, "prog.py").write_text(source)
    out = Path(cwd, "out.json")
    subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", "-q", "--cycle-on", "step", "--warmup", str(warmup),
         "-o", str(out), "prog.py"],
        cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    parser.add_argument("--only-closuretrace", action="store_true", help="P1 without tracemalloc and memray")
    opts = parser.parse_args()
    if not opts.skip_p1:
        load = os.getloadavg()[0]
        print(f"P1: seed workload ({' '.join(SEED)}), {opts.rounds} rounds of plain/tool pairs")
        print(f"(load average before: {load:.2f} on {os.cpu_count()} cores)\n")
        print("| command | median wall | P1: median of per-round ratios | per-round ratios |")
        print("| --- | ---: | ---: | --- |")
        for name, wall, ratio, each in p1(opts.rounds, opts.only_closuretrace):
            rounds = ", ".join(f"{x:.2f}" for x in each) or "-"
            print(f"| {name} | {wall:.2f} s | {ratio:.2f}x | {rounds} |")
        print(f"\n(load average after: {os.getloadavg()[0]:.2f})")
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
