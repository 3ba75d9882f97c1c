"""The profiled program sees what it would see under plain ``python``: argv, __name__, __file__, __spec__,
sys.path[0], cwd and its own fresh ``__main__`` module. Each check runs the same probe natively and under
``python -m closuretrace profile`` (real subprocesses) and compares everything the probe recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from closuretrace import runner

PROBE = textwrap.dedent(
    """
    import json, os, sys
    _spec = __spec__
    _info = {
        "argv": sys.argv,
        "name": __name__,
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "file": __file__,
        "spec": None if _spec is None else [
            _spec.name, _spec.origin, _spec.parent, _spec.cached, _spec.has_location,
            type(_spec.loader).__name__,
        ],
        "package": __package__,
        "cached": __cached__,
        "loader": [type(__loader__).__name__, getattr(__loader__, "name", None), getattr(__loader__, "path", None)],
        "builtins_is_module": type(__builtins__).__name__,
        "doc": __doc__,
        "dunders": sorted(k for k in globals() if k.startswith("__")),
        "main_is_module": sys.modules["__main__"].__dict__ is globals(),
    }
    with open(os.environ["PROBE_OUT"], "w") as fh:
        json.dump(_info, fh)
    """
)

ARGS = ["a", "b c", "-o", "--track", "x", "--", "-m"]  # option-like arguments must reach the program untouched


def _run(cmd: list[str], cwd: Path, out: Path) -> dict[str, Any]:
    env = dict(os.environ, PROBE_OUT=str(out))
    env.pop("PYTHONSAFEPATH", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _profile(report: Path) -> list[str]:
    return [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", str(report)]


def test_script_sees_what_python_shows(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "probe.py").write_text(PROBE)
    # Run from another directory with a relative path: __file__ is absolute, argv[0] stays as given.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rel = os.path.join("..", "scripts", "probe.py")
    native = _run([sys.executable, rel, *ARGS], elsewhere, tmp_path / "native.json")
    profiled = _run([*_profile(tmp_path / "r.json"), rel, *ARGS], elsewhere, tmp_path / "profiled.json")
    assert native["argv"] == [rel, *ARGS]
    assert native["path0"] == str(scripts.resolve())
    assert profiled == native
    assert (tmp_path / "r.json").is_file()


def test_symlinked_script_gets_real_directory_on_sys_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "probe.py").write_text(PROBE)
    link = tmp_path / "link.py"
    try:
        link.symlink_to(real / "probe.py")
    except OSError:
        pytest.skip("no symlinks here")
    native = _run([sys.executable, "link.py"], tmp_path, tmp_path / "native.json")
    profiled = _run([*_profile(tmp_path / "r.json"), "link.py"], tmp_path, tmp_path / "profiled.json")
    assert native["path0"] == str(real.resolve())
    assert profiled == native


def _package(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text(PROBE)
    (pkg / "__main__.py").write_text(PROBE)


@pytest.mark.parametrize("module", ["pkg.sub.mod", "pkg"])
def test_module_sees_what_python_m_shows(tmp_path: Path, module: str) -> None:
    _package(tmp_path)
    native = _run([sys.executable, "-m", module, *ARGS], tmp_path, tmp_path / "native.json")
    profiled = _run([*_profile(tmp_path / "r.json"), "-m", module, *ARGS], tmp_path, tmp_path / "profiled.json")
    assert native["argv"][0].endswith(("mod.py", "__main__.py"))
    assert native["spec"] is not None
    assert profiled == native


def test_console_script_replaces_its_own_sys_path_entry(tmp_path: Path) -> None:
    """Under the ``closuretrace`` console script sys.path[0] is its bin directory: the program must not see it."""
    exe = shutil.which("closuretrace")
    if exe is None or os.path.dirname(os.path.realpath(exe)) == "":
        pytest.skip("closuretrace console script not on PATH")
    _package(tmp_path)
    (tmp_path / "probe.py").write_text(PROBE)
    native = _run([sys.executable, "probe.py", "x"], tmp_path, tmp_path / "native.json")
    profiled = _run([exe, "profile", "-q", "-o", "r.json", "probe.py", "x"], tmp_path, tmp_path / "p.json")
    assert profiled == native
    native_m = _run([sys.executable, "-m", "pkg.sub.mod"], tmp_path, tmp_path / "native_m.json")
    profiled_m = _run([exe, "profile", "-q", "-o", "r.json", "-m", "pkg.sub.mod"], tmp_path, tmp_path / "p_m.json")
    assert profiled_m == native_m


def test_in_process_run_restores_sys_and_keeps_namespace_until_after(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys\nleaked = [sys.argv[1]]\nsys.argv.append('changed')\nsys.path.insert(0, 'x')\n")
    argv, path, main = sys.argv, list(sys.path), sys.modules["__main__"]
    seen: dict[str, Any] = {}

    def after(outcome: runner.Outcome) -> None:
        seen["outcome"] = outcome
        seen["leaked"] = sys.modules["__main__"].leaked
        seen["argv"] = list(sys.argv)

    outcome = runner.run_script(str(script), ["arg"], after=after)
    assert outcome == runner.Outcome("completed", 0, None)
    assert seen["leaked"] == ["arg"]
    assert seen["argv"] == [str(script), "arg", "changed"]
    assert sys.argv is argv
    assert sys.path == path
    assert sys.modules["__main__"] is main


def test_in_process_outcomes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "raise ValueError('bad')": runner.Outcome("exception", 1, "ValueError: bad"),
        "import sys; sys.exit(4)": runner.Outcome("exit", 4, "4"),
        "import sys; sys.exit(None)": runner.Outcome("exit", 0, None),
        "import sys; sys.exit(False)": runner.Outcome("exit", 0, None),
        "import sys; sys.exit('bye')": runner.Outcome("exit", 1, "bye"),
        "raise KeyboardInterrupt": runner.Outcome("interrupted", 130, "KeyboardInterrupt"),
    }
    for i, (code, want) in enumerate(cases.items()):
        script = tmp_path / f"case{i}.py"
        script.write_text(code + "\n")
        assert runner.run_script(str(script)) == want, code
    err = capsys.readouterr().err
    assert "ValueError: bad" in err and "bye" in err
    assert "runner.py" not in err  # the tool's own frames are not in the user's traceback


def test_prepare_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("x = (\n")
    with pytest.raises(runner.TargetError, match=r"bad\.py:1: SyntaxError"):
        runner.run_script(str(tmp_path / "bad.py"))
    with pytest.raises(runner.TargetError, match="can't open file"):
        runner.run_script(str(tmp_path / "missing.py"))
    with pytest.raises(runner.TargetError, match="no module named 'no_such_mod_xyz'"):
        runner.run_module("no_such_mod_xyz")
    assert sys.modules["__main__"].__name__ == "__main__"
