"""``closuretrace compare``: the seed's question (recreate the loss closure, or reuse it?) run as an experiment.

Every scenario runs in its own fresh Python process (:mod:`closuretrace.experiment.worker`), under the same
:class:`closuretrace.Profiler` that ``closuretrace profile`` uses, so one scenario cannot pollute another's memory.
:mod:`~closuretrace.experiment.scenarios` defines the matrix, :mod:`~closuretrace.experiment.pool` runs the
processes with a progress display, :mod:`~closuretrace.experiment.savecheck` checks what ``model.save`` /
``load_model`` do with a closure loss and with the fix, and :mod:`~closuretrace.experiment.environment` records
the library versions and checks by behaviour whether traced graphs outlive their model in the installed
TensorFlow. The conclusion is drawn by :mod:`closuretrace.experiment.conclusion` from the measured slopes alone.
"""

from __future__ import annotations

from typing import Any


def write_result(result: dict[str, Any], out: str | None) -> int:
    """Write a job's result as JSON to ``out`` (atomically) or stdout; the exit status says whether it failed."""
    import json
    import sys

    from closuretrace.session import finite, write_atomic

    text = json.dumps(finite(result), allow_nan=False, default=str)
    if out:
        write_atomic(out, text)
    else:
        sys.stdout.write(text + "\n")
    return 1 if result.get("error") else 0


def exit_now(code: int) -> None:
    """End a job process at once, once its result is written: TensorFlow's interpreter teardown takes about a
    second per process and nothing is left to do (the result file is closed, the streams are flushed here)."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
