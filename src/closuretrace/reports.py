"""The one report writer: where reports go, which formats, and writing them so none is lost.

``closuretrace profile``, ``compare``, the notebook magic and the pytest plugin's run report all write through
here: a path given by the user names one format by its extension (``.json``, ``.md``, ``.html``); without one,
JSON, Markdown and HTML are written side by side as ``reports/<stem>-<UTC time>-<pid>.*`` under the working
directory, with ``~N`` added where a name is taken. Every file is written atomically; the first (the JSON) falls
back to the temp directory if its own place fails, so the measurements survive.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from closuretrace.renderers import UnknownFormatError, format_for_path
from closuretrace.session import write_atomic

__all__ = [
    "ReportError",
    "append_step_summary",
    "check_output",
    "default_output",
    "report_paths",
    "warn",
    "write_reports",
]

#: The formats written side by side when the user names no file.
DEFAULT_EXTENSIONS = (".json", ".md", ".html")


class ReportError(Exception):
    """A report that cannot be written where asked; one line for the user."""


def warn(message: str) -> None:
    """``closuretrace: warning: <message>`` on stderr, even if the program closed or replaced it badly."""
    line = "closuretrace: warning: " + " ".join(str(message).split("\n")) + "\n"
    err(line)


def err(text: str) -> None:
    """Write ``text`` (a newline added if missing) to stderr, falling back to the original stderr."""
    line = text if text.endswith("\n") else text + "\n"
    for stream in (sys.stderr, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.write(line)
            stream.flush()
            return
        except (OSError, ValueError, AttributeError):
            continue


def default_output(stem: str, cwd: str | None = None, now: _dt.datetime | None = None) -> Path:
    """``<cwd>/reports/<stem>-<YYYYmmddTHHMMSSZ>-<pid>.json``: the pid keeps concurrent runs apart."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip(".") or "run"
    stamp = now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(cwd or os.getcwd()) / "reports" / f"{safe}-{stamp}-{os.getpid()}.json"


def check_output(path: Path) -> None:
    """Fail now, before any work, if a report cannot be written to ``path``."""
    if path.is_dir():
        raise ReportError(f"cannot write report to {path}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ReportError(f"cannot write report to {path}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".closuretrace-", suffix=".probe", dir=parent)
    except OSError as exc:
        raise ReportError(f"cannot write report to {path}: {parent} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def report_paths(output: str | os.PathLike[str] | None, stem: str) -> list[Path]:
    """The files to write: ``[output]`` (its format checked), or the default trio under ``reports/``, each name
    free of clashes with files already there. Checked for writability now, so a bad path fails before the run."""
    if output:
        path = Path(os.path.abspath(output))
        try:
            format_for_path(path)
        except UnknownFormatError as exc:
            raise ReportError(str(exc)) from None
        check_output(path)
        return [path]
    path = default_output(stem)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create report directory {path.parent}: {exc.strerror}") from None
    base, n = path.stem, 1
    while any(path.with_suffix(ext).exists() for ext in DEFAULT_EXTENSIONS):  # same second, same process
        path = path.with_name(f"{base}~{n}.json")
        n += 1
    check_output(path)
    return [path.with_suffix(ext) for ext in DEFAULT_EXTENSIONS]


def _write_one(path: Path, text: str) -> Path:
    """Atomically; if that fails, to the temp directory, and say so."""
    try:
        return write_atomic(path, text)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / path.name
        try:
            written = write_atomic(fallback, text)
        except OSError as exc2:
            raise ReportError(
                f"cannot write report to {path} ({exc.strerror}) nor to {fallback} ({exc2.strerror})"
            ) from None
        warn(f"cannot write report to {path} ({exc.strerror}); writing it to {written} instead")
        return written


def write_reports(
    paths: Sequence[Path], render: Callable[[str], str], raw_json: Callable[[], str] | None = None
) -> list[Path]:
    """Write ``render(fmt)`` to each path; return the files written.

    The first path must be written (a JSON renderer that fails falls back to ``raw_json()``, the document's own
    serialisation); a later format whose renderer fails is skipped with a warning, never losing the first.
    """
    written: list[Path] = []
    for i, path in enumerate(paths):
        fmt = format_for_path(path)
        try:
            text = render(fmt)
        except Exception as exc:  # a report must be written
            if i == 0 and fmt == "json" and raw_json is not None:
                warn(f"JSON renderer failed ({type(exc).__name__}: {exc}); writing the raw session")
                text = raw_json()
            elif i == 0:
                raise
            else:
                warn(f"could not write {path.name} ({type(exc).__name__}: {exc})")
                continue
        if i == 0:
            written.append(_write_one(path, text))
            continue
        try:
            written.append(_write_one(path, text))
        except ReportError as exc:  # the first file is safe; one more format is not worth failing for
            warn(str(exc))
    return written


def append_step_summary(markdown: str, enabled: bool = True) -> Path | None:
    """Append ``markdown`` to the GitHub Actions step summary (``$GITHUB_STEP_SUMMARY``), so the report shows on
    the run's page; ``None`` where it is not set, ``enabled`` is false, or the file cannot be written (warned)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not enabled or not target:
        return None
    try:
        with open(target, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        warn(f"cannot append to GITHUB_STEP_SUMMARY {target} ({exc.strerror})")
        return None
    return Path(target)
