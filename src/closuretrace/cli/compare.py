"""``closuretrace compare``: the seed's comparison (recreate the loss closure, or reuse it?) run for real.

Each scenario runs in its own fresh Python process under the profiler (see :mod:`closuretrace.experiment`), up to
``--jobs`` at a time, with a progress display on stderr; the save check and the graph-lifetime check run in
processes of their own. The report (JSON, Markdown, HTML) ranks the scenarios by growth per cycle and ends in a
conclusion drawn from the measured slopes.

Exit status: 0 when every scenario ran, 1 when a scenario failed (the report is written all the same, with the
error recorded in that scenario), 130 on Ctrl-C (the report holds what finished), 2 for a bad option or a report
that cannot be written.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import os
import platform
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from closuretrace.cli.errors import CLIError
from closuretrace.experiment.run import usable_cores
from closuretrace.experiment.scenarios import (
    BACKENDS,
    CAPTURES,
    COMPILES,
    KERASES,
    STRATEGIES,
    Scenario,
    design,
    matrix,
    parse_list,
)
from closuretrace.outcome import EXIT_INTERRUPTED
from closuretrace.renderers import render
from closuretrace.reports import ReportError, append_step_summary, err, report_paths, write_reports

NAME = "compare"
HELP = "run the closure-loss scenarios, each in its own process, and say what drives memory growth"

#: Exit status when at least one scenario failed (the report is still written).
EXIT_SCENARIO_FAILED = 1

DEFAULT_CYCLES = 8
DEFAULT_SAMPLES = 2048
DEFAULT_CAPTURE_MB = 4.0


def _positive_int(option: str) -> Any:
    def check(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: {option} must be 1 or more")
        return n

    return check


def _capture_mb(text: str) -> float:
    try:
        mb = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not (0 < mb <= 4096):
        raise argparse.ArgumentTypeError(f"{text!r}: --capture-mb must be more than 0 and at most 4096")
    return mb


def _list_arg(universe: tuple[str, ...], option: str) -> Any:
    def check(text: str) -> list[str]:
        try:
            return parse_list(text, universe, option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def check_data(path: str) -> str:
    """``path`` if it is an ``.npz`` with ``x_train`` and ``y_train`` (CLIError otherwise); absolute."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CLIError(f"--data {path}: no such file")
    if p.is_dir():
        raise CLIError(f"--data {path}: is a directory, not an .npz file")
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        raise CLIError(f"--data {path}: not an .npz file (like Keras's mnist.npz)") from None
    missing = [k for k in ("x_train", "y_train") if f"{k}.npy" not in names]
    if missing:
        raise CLIError(f"--data {path}: the .npz has no {' or '.join(missing)} (MNIST's format)")
    return str(p.resolve())


def data_source(path: str | None) -> str:
    from closuretrace.examples.data import MNIST_CACHE

    if path:
        return f"mnist ({path})"
    if MNIST_CACHE.exists():
        return f"mnist ({MNIST_CACHE})"
    return "synthetic MNIST-shaped (seed 0)"


def _need_keras(keras: str = "3", backends: tuple[str, ...] = ("tensorflow",)) -> None:
    needed = ["tensorflow" if keras == "2" or b == "tensorflow" else b for b in backends]
    needed.append("tf_keras" if keras == "2" else "keras")
    missing = [m for m in dict.fromkeys(needed) if importlib.util.find_spec(m) is None]
    if missing:
        hint = {
            "tf_keras": "pip install --no-deps tf-keras", "jax": "pip install 'jax[cpu]'", "torch": "pip install torch"
        }
        how = "; ".join(dict.fromkeys(hint.get(m, "pip install 'closuretrace[tensorflow]'") for m in missing))
        raise CLIError(f"closuretrace compare needs {' and '.join(missing)}: {how}")


class CompareCommand:
    """Run the seed's loop (the MLP compiled with an outer_loss(...) closure, fit in a loop) as a matrix of
    scenarios, each in its own Python process, and say what actually drives memory growth.

    Axes: strategy (recreate: a new closure before every compile; reuse: one closure), what the closure
    captures (scalar, numpy, tensor, variable), and the compile mode (new-optimizer: compile every cycle with
    optimizer='adam'; same-optimizer: compile every cycle with one Adam instance; once: compile once, fit every
    cycle). By default every axis is covered but not every combination: the capture kinds x strategies under
    same-optimizer, the compile modes x strategies under the scalar capture, compile once once. --full runs the
    whole matrix (20 scenarios instead of 11). Every process pays a TensorFlow import, so the default run takes
    about a minute on 2 free cores, --full about twice that.

    Each scenario is profiled like 'closuretrace profile' (each fit() ends a cycle; slopes with 95% CIs) and
    records closures created and alive, traces per cycle, compile and fit seconds, the final loss and accuracy,
    and the loss minus the plain cross-entropy (the captured value, when it reaches the loss). A save check
    (model.save / load_model with the closure loss and with a keras.losses.Loss subclass) and a check of whether
    traced graphs outlive their model in the installed TensorFlow run in processes of their own.

    Data: the built-in MNIST-shaped set (no network), or real MNIST where ~/.keras/datasets/mnist.npz exists or
    --data names an .npz. Without -o the report is written as reports/compare-<UTC time>-<pid>.{json,md,html}.
    Exit status: 0; 1 when a scenario failed (its error is in the report); 130 on Ctrl-C; 2 for bad options.
    """

    name = NAME
    help = HELP

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cycles", type=_positive_int("--cycles"), default=DEFAULT_CYCLES, metavar="N",
            help=f"compile+fit cycles per scenario, the first one a warm-up (default: {DEFAULT_CYCLES})",
        )
        parser.add_argument(
            "--epochs", type=_positive_int("--epochs"), default=1, metavar="N", help="epochs per fit (default: 1)"
        )
        parser.add_argument(
            "--samples", type=_positive_int("--samples"), default=DEFAULT_SAMPLES, metavar="N",
            help=f"training samples (default: {DEFAULT_SAMPLES})",
        )
        parser.add_argument(
            "--capture-mb", type=_capture_mb, default=DEFAULT_CAPTURE_MB, metavar="MB",
            help=f"size of the numpy/tensor/variable captures in MB (default: {DEFAULT_CAPTURE_MB:g})",
        )
        parser.add_argument(
            "--strategies", type=_list_arg(STRATEGIES, "--strategies"), default=list(STRATEGIES), metavar="LIST",
            help=f"comma-separated, from {','.join(STRATEGIES)} (default: all)",
        )
        parser.add_argument(
            "--captures", type=_list_arg(CAPTURES, "--captures"), default=list(CAPTURES), metavar="LIST",
            help=f"comma-separated, from {','.join(CAPTURES)} (default: all)",
        )
        parser.add_argument(
            "--compiles", type=_list_arg(COMPILES, "--compiles"), default=list(COMPILES), metavar="LIST",
            help=f"comma-separated, from {','.join(COMPILES)} (default: all)",
        )
        parser.add_argument(
            "--full", action="store_true", help="every combination of the axes instead of the default design"
        )
        parser.add_argument(
            "--keras", choices=KERASES, default="3",
            help="Keras 3 (keras, the default) or Keras 2 (tf_keras, TensorFlow only)",
        )
        parser.add_argument(
            "--backend", type=_list_arg(BACKENDS, "--backend"), default=["tensorflow"], metavar="LIST",
            help=f"Keras 3 backends, comma-separated, from {','.join(BACKENDS)}; each scenario runs in its own "
            "process with KERAS_BACKEND set, and each backend gets its own report (default: tensorflow)",
        )
        parser.add_argument(
            "--jobs", "-j", type=_positive_int("--jobs"), default=None, metavar="N",
            help=f"processes at a time (default: the cores, here {usable_cores()})",
        )
        parser.add_argument(
            "--data", metavar="PATH", default=None,
            help="an .npz with x_train/y_train (default: ~/.keras/datasets/mnist.npz if present, else built-in)",
        )
        parser.add_argument(
            "-o", "--output", metavar="PATH",
            help="report file, its format from the extension (.json, .md, .html); default: all three as "
            "reports/compare-<UTC time>-<pid>.*",
        )
        parser.add_argument(
            "--no-step-summary", action="store_true",
            help="do not append the Markdown report to $GITHUB_STEP_SUMMARY (GitHub Actions)",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress display and no summary")

    def run(self, args: argparse.Namespace) -> int:
        return execute(args)


def execute(args: argparse.Namespace) -> int:
    """``compare``; raises :class:`CLIError` for anything the user can fix.

    With several ``--backend`` values the matrix runs once per backend, each with its own report (the report
    paths get ``-<backend>`` before their extension), and the exit status is the worst of them.
    """
    keras = getattr(args, "keras", "3")
    backends = list(getattr(args, "backend", None) or ["tensorflow"])
    if keras == "2" and backends != ["tensorflow"]:
        raise CLIError("--keras 2 (tf_keras) runs on TensorFlow only: leave out --backend")
    data = check_data(args.data) if args.data else None
    triples = matrix(args.strategies, args.captures, args.compiles, full=args.full)
    if not triples:
        raise CLIError("no scenario to run with these --strategies/--captures/--compiles")
    _need_keras(keras, tuple(backends))
    try:
        outputs = report_paths(args.output, "compare")
    except ReportError as exc:
        raise CLIError(str(exc)) from None
    status = 0
    for backend in backends:
        paths = outputs if len(backends) == 1 else [p.with_name(f"{p.stem}-{backend}{p.suffix}") for p in outputs]
        status = max(status, _run_one(args, triples, data, paths, keras, backend))
        if status == EXIT_INTERRUPTED:
            break
    return status


def _run_one(
    args: argparse.Namespace,
    triples: list[tuple[str, str, str]],
    data: str | None,
    outputs: list[Path],
    keras: str,
    backend: str,
) -> int:
    """The matrix on one Keras and backend, its report written to ``outputs``."""
    from closuretrace.experiment.run import CompareInterrupted, CompareOptions, run_compare

    jobs = args.jobs or usable_cores()
    options = CompareOptions(
        scenarios=[
            Scenario(
                strategy=s,
                capture=c,
                compile=m,
                cycles=args.cycles,
                epochs=args.epochs,
                samples=args.samples,
                capture_bytes=round(args.capture_mb * 1000**2),
                data=data,
                keras=keras,
                backend=backend,
            )
            for s, c, m in triples
        ],
        jobs=jobs,
        design=design(args.strategies, args.captures, args.compiles, args.full),
        full=args.full,
        data_source=data_source(data),
        capture_mb=args.capture_mb,
        argv=_argv(),
    )
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    interrupted = False
    try:
        session = run_compare(options, quiet=args.quiet)
    except CompareInterrupted as exc:
        session = exc.session
        interrupted = True
    session.run.started_at = started
    session.run.duration_s = time.perf_counter() - t0
    session.run.python = platform.python_version()
    session.run.platform = platform.platform()
    session.run.cwd = os.getcwd()
    session.settings["keras"] = "Keras 2 (tf_keras)" if keras == "2" else "Keras 3 (keras)"
    session.settings["backend"] = backend
    try:
        written = write_reports(outputs, lambda fmt: render(session, fmt), session.to_json)
    except ReportError as exc:
        raise CLIError(str(exc)) from None
    with contextlib.suppress(Exception):  # the step summary is a courtesy: the report is written
        append_step_summary(render(session, "markdown"), enabled=not args.no_step_summary)
    if not args.quiet:
        err(render(session, "text"))
    err(f"closuretrace: report written to {', '.join(str(w) for w in written)}")
    if interrupted:
        err("closuretrace: interrupted; the report holds the scenarios that finished")
        return EXIT_INTERRUPTED
    return EXIT_SCENARIO_FAILED if any(not s.ok for s in session.scenarios) else 0


def _argv() -> list[str]:
    """The command line as typed, when this process is ``closuretrace compare ...``."""
    if sys.argv[1:2] == ["compare"]:
        return ["closuretrace", *sys.argv[1:]]
    return ["closuretrace", "compare"]
