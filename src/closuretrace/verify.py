"""Counterfactual confirmation: re-run the program with its cause holders letting go, and compare the slopes.

The holder analysis says what *would* be freed if a holder let go; this proves it. ``closuretrace profile
--verify`` (or :func:`verify`) runs the program once more, in a child process under the profiler, with an
intervention at the end of every cycle, before the cycle is measured: for each holder shown to be a cause, the
container at the holder's path (found again from its module global or ``__main__`` name, e.g.
``tensorflow.python.framework.ops.gradient_registry._registry``) loses the entries added during that cycle (dict
keys, list or deque items appended, set members). Joint holders let go together. For each metric a cause
explains, the report gets a :class:`~closuretrace.session.Verification`: the slope per cycle with its 95% CI,
without and with the intervention, and ``confirmed`` when the re-run no longer leaks in that metric (its own
verdict, from :func:`closuretrace.analysis.verdicts.judge`) and the slope fell to half or less.

A holder that cannot be found again, a container of another kind, or a re-run that fails is reported in the
verification's ``note``; the first run's report is kept as it was, plus the verifications.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from closuretrace.session import Session, SessionError, Verification, load_session, write_atomic

__all__ = ["add_argument", "after_profile", "child_command", "install_from_env", "resolve", "verify"]

_ENV = "CLOSURETRACE_INTERVENE"
_ENV_LOG = "CLOSURETRACE_INTERVENE_LOG"
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[([^\]]*)\]")


# -- the parent: which holders, the child run, the comparison ------------------------------------------------

def groups(session: Session) -> list[tuple[list[str], list[str]]]:
    """The cause holders to let go of, as ``(holders, metrics)``: a joint group is one entry."""
    out: list[tuple[list[str], list[str]]] = []
    for c in session.retention:
        if c.role != "cause" or not c.holder:
            continue
        members = sorted({c.holder, *c.joint_with})
        hit = next((g for g in out if g[0] == members), None)
        if hit is None:
            out.append((members, list(c.metrics)))
        else:
            hit[1].extend(m for m in c.metrics if m not in hit[1])
    return out


def verify(
    session: Session, command: list[str], *, cwd: str | None = None, timeout: float | None = None
) -> list[Verification]:
    """Re-run ``command`` (a ``closuretrace profile`` command line without ``-o``, e.g. from
    :func:`child_command`; the report option is put right after ``profile``) with every cause holder of
    ``session`` letting go at each cycle end, and compare.

    Returns one :class:`Verification` per (holder group, metric); an empty list when no holder is a cause.
    """
    todo = groups(session)
    if not todo:
        return []
    with tempfile.TemporaryDirectory(prefix="closuretrace-verify-") as tmp:
        report, log = Path(tmp, "verify.json"), Path(tmp, "interventions.json")
        env = {**os.environ, _ENV: json.dumps([h for members, _ in todo for h in members]), _ENV_LOG: str(log)}
        failure: str | None = None
        proc_err = ""
        try:
            at = command.index("profile") + 1 if "profile" in command else len(command)
            proc = subprocess.run(
                [*command[:at], "-o", str(report), *command[at:]], cwd=cwd, env=env, timeout=timeout,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            )
            if proc.returncode not in (0, 10):
                failure = f"the re-run exited with status {proc.returncode}"
            proc_err = (proc.stderr or "").strip().splitlines()[-1:][0] if (proc.stderr or "").strip() else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = f"the re-run could not finish ({type(exc).__name__}: {exc})"
        child: Session | None = None
        try:
            loaded = load_session(report)
            child = loaded if isinstance(loaded, Session) else None
        except (OSError, SessionError) as exc:
            failure = failure or f"the re-run wrote no report ({exc})"
        if failure and proc_err:
            failure += f": {proc_err}"
        notes = _read_log(log)
    return [_compare(session, child, group, metric, notes, failure) for group, metrics in todo for metric in metrics]


def _compare(
    session: Session, child: Session | None, members: list[str], metric: str, notes: dict[str, str],
    failure: str | None,
) -> Verification:
    v = session.verdict(metric)
    base = (v.slope_per_cycle, v.ci_low, v.ci_high) if v is not None else (math.nan, math.nan, math.nan)
    holder = " + ".join(members)
    note = "; ".join(f"{h}: {notes[h]}" for h in members if h in notes) or None
    w = child.verdict(metric) if child is not None else None
    if w is None:
        why = failure or f"the re-run measured no {metric}"
        return Verification(holder, metric, *base, math.nan, math.nan, math.nan, False, _join(why, note))
    confirmed = w.state != "leak" and v is not None and w.slope_per_cycle <= 0.5 * v.slope_per_cycle
    if failure:
        note = _join(failure, note)
    return Verification(holder, metric, *base, w.slope_per_cycle, w.ci_low, w.ci_high, confirmed, note)


def _join(a: str, b: str | None) -> str:
    return a if not b else f"{a}; {b}"


def _read_log(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# -- the command line ---------------------------------------------------------------------------------------

def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--verify`` for ``closuretrace profile``."""
    parser.add_argument(
        "--verify", action="store_true",
        help="run the program a second time with each cause holder letting go of what it gained in every cycle, "
        "and report whether the growth stops (costs one more run)",
    )


def child_command(args: argparse.Namespace) -> list[str]:
    """The ``closuretrace profile`` command line of the re-run, from the first run's parsed options."""
    cmd = [sys.executable, "-m", "closuretrace", "profile", "-q", "--warmup", str(args.warmup)]
    for metric, value in dict(args.threshold).items():
        cmd += ["--threshold", f"{metric}={value!r}"]
    for name in args.cycle_on:
        cmd += ["--cycle-on", name]
    for name in args.track:
        cmd += ["--track", name]
    cmd += [flag for flag, on in (("--tracemalloc", args.tracemalloc), ("--no-keras", args.no_keras),
                                  ("--census-all", args.census_all)) if on]
    cmd += ["-m", args.target] if args.as_module else [args.target]
    return [*cmd, "--", *args.args] if args.args and args.args[0].startswith("-") else [*cmd, *args.args]


def after_profile(args: argparse.Namespace, session: Session) -> None:
    """With ``--verify``, add the verifications to ``session`` (never raises: a failure becomes a note)."""
    if not getattr(args, "verify", False):
        return
    try:
        session.verification = verify(session, child_command(args))
    except Exception as exc:  # the first run's report must be written whatever happens here
        session.verification = [
            Verification(" + ".join(h), m, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, False,
                         f"the verification failed ({type(exc).__name__}: {exc})")
            for h, ms in groups(session) for m in ms
        ]


# -- the child: the intervention ----------------------------------------------------------------------------

def install_from_env(profiler: Any) -> None:
    """In the re-run: make every cycle end let go of what the holders named in the environment gained."""
    spec = os.environ.pop(_ENV, None)
    log = os.environ.pop(_ENV_LOG, None)
    if not spec:
        return
    holders = [str(h) for h in json.loads(spec)]
    state: dict[str, Any] = {}
    notes: dict[str, str] = {}
    original = profiler.end_cycle

    def end_cycle(label: str | None = None) -> Any:
        for h in holders:
            try:
                _let_go(h, state)
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                notes.setdefault(h, f"intervention failed at cycle {profiler.cycle_index} ({why})")
        if log and notes:
            try:
                write_atomic(log, json.dumps(notes))
            except OSError:
                pass
        return original(label)

    profiler.end_cycle = end_cycle


def resolve(holder: str) -> Any:
    """The object at a holder's path: ``module.global``, then ``.attr`` and ``['key']`` steps (``__main__`` is
    the running program). Raises ``LookupError`` when the path does not lead to an object now."""
    head = re.match(r"[A-Za-z_][\w.]*", holder)
    if head is None or " → " in holder:
        raise LookupError(f"{holder!r} is not a path of attributes and keys from a module global")
    dotted = head.group().split(".")
    for cut in range(len(dotted) - 1, 0, -1):
        mod = sys.modules.get(".".join(dotted[:cut]))
        if mod is not None:
            break
    else:
        raise LookupError(f"no module of {holder!r} is imported")
    obj: Any = mod
    rest = "".join(f".{a}" for a in dotted[cut:]) + holder[head.end():]
    for m in _STEP.finditer(rest):
        attr, key = m.groups()
        obj = getattr(obj, attr) if attr is not None else obj[ast.literal_eval(key)]
    return obj


def _let_go(holder: str, state: dict[str, Any]) -> None:
    c = resolve(holder)
    before = state.get(holder)
    if isinstance(c, dict):
        if before is not None:
            for k in [k for k in c if k not in before]:
                del c[k]
        state[holder] = set(c)
    elif isinstance(c, (list, deque)):
        if before is not None and len(c) > before:
            for _ in range(len(c) - before):
                c.pop()
        state[holder] = len(c)
    elif isinstance(c, set):
        if before is not None:
            c.difference_update(c - before)
        state[holder] = set(c)
    else:
        raise LookupError(f"a {type(c).__name__} is not a container whose entries can be dropped")

