"""The tool's own footprint over a long run: 1,000 cycles of a flat pure-Python loop.

    python benchmarks/footprint.py                  # 1,000 cycles, snapshot-child probes (the default)
    python benchmarks/footprint.py --probe-in-process
    python benchmarks/footprint.py --cycles 200
    python benchmarks/footprint.py --fork-any-heap  # fork even on this small heap (the default probes in process)

The same program runs under plain python and under ``closuretrace profile``; it reads its own RSS (psutil) after
its first cycle and after its last. The tool's growth is the profiled run's growth minus the plain run's (target
< 2 MiB). Also printed: the JSON report's size (target < 2 MB), the HTML report's (target < 3 MB), and the
median per-cycle probe cost over the first and the last 100 cycles (it must not grow with the cycle count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = """
import json, sys
import psutil
proc = psutil.Process()
marks = {}
def step(i):
    data = [{"i": i, "v": list(range(20))} for _ in range(200)]   # made and freed every cycle
    return len(data)
n = int(sys.argv[1])
for i in range(n):
    step(i)
    if i == 0:
        marks["first"] = proc.memory_info().rss
marks["last"] = proc.memory_info().rss
with open(sys.argv[2], "w") as f:
    json.dump(marks, f)
"""

MIB = 1024 * 1024
#: This checkout's code, whatever the working directory of the runs (an installed closuretrace would be measured
#: instead)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(cmd: list[str], cwd: Path, extra: dict[str, str] | None = None) -> None:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path, **(extra or {})}
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{cmd} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def measure(cycles: int, in_process: bool, fork_any_heap: bool = False) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ct-footprint-"))
    prog = tmp / "prog.py"
    prog.write_text(PROGRAM)
    py = sys.executable
    _run([py, str(prog), str(cycles), str(tmp / "plain.json")], tmp)
    flag = ["--probe-in-process"] if in_process else []
    report = tmp / "r.json"
    _run([py, "-m", "closuretrace", "profile", "-q", *flag, "--cycle-on", "step", "-o", str(report),
          str(prog), str(cycles), str(tmp / "tool.json")], tmp,
         {"CLOSURETRACE_SNAPSHOT_MIN_OBJECTS": "0"} if fork_any_heap else None)
    _run([py, "-m", "closuretrace", "render", str(report), "-o", str(tmp / "r.html")], tmp)
    plain = json.loads((tmp / "plain.json").read_text())
    tool = json.loads((tmp / "tool.json").read_text())
    data = json.loads(report.read_text())
    probe = [c["probe_seconds"] for c in data["cycles"]]
    return {
        "plain_growth": plain["last"] - plain["first"],
        "tool_growth": (tool["last"] - tool["first"]) - (plain["last"] - plain["first"]),
        "json_bytes": report.stat().st_size,
        "html_bytes": (tmp / "r.html").stat().st_size,
        "probe_first_ms": statistics.median(probe[1:101]) * 1000,
        "probe_last_ms": statistics.median(probe[-100:]) * 1000,
        "cycles": len(data["cycles"]),
        "events": len(data["events"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--probe-in-process", action="store_true")
    parser.add_argument("--fork-any-heap", action="store_true", help="fork even on a small heap")
    opts = parser.parse_args()
    m = measure(opts.cycles, opts.probe_in_process, opts.fork_any_heap)
    mode = "--probe-in-process" if opts.probe_in_process else (
        "snapshot child forced" if opts.fork_any_heap else "default: a small heap probes in process")
    print(f"Footprint over {m['cycles']:.0f} cycles of a flat loop ({mode}; {m['events']:.0f} events)\n")
    print("| figure | value | target |\n| --- | ---: | --- |")
    print(f"| tool RSS growth (profiled growth minus plain growth) | {m['tool_growth'] / MIB:+.2f} MiB | < 2 MiB |")
    print(f"| plain run's own RSS growth | {m['plain_growth'] / MIB:+.2f} MiB | - |")
    print(f"| JSON report | {m['json_bytes'] / 1e6:.2f} MB | < 2 MB |")
    print(f"| HTML report | {m['html_bytes'] / 1e6:.2f} MB | < 3 MB |")
    print(f"| probe cost per cycle, median of cycles 1-100 | {m['probe_first_ms']:.1f} ms | - |")
    print(f"| probe cost per cycle, median of the last 100 | {m['probe_last_ms']:.1f} ms | not above the first |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
