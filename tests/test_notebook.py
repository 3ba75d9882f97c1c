"""``%load_ext closuretrace`` in real notebooks, run headless by nbclient on an ipykernel kernel.

The kernels import the installed closuretrace; no notebook server and no browser are needed for these, except
the last test, which opens the inline report in headless Chromium.
"""

from __future__ import annotations

import html
import os
import re
import textwrap

import pytest

from support import chromium_dom, require_module

pytestmark = pytest.mark.tf  # kernels import Keras: run with the framework tests, last

PWN = """</script><img src=x onerror="document.title='PWNED'"><script>document.title='PWNED'</script>"""


def _run(tmp_path, cells: list[str], repeat: dict[int, int] | None = None):
    """Execute ``cells`` in one kernel (cell ``i`` ``repeat[i]`` times); return the outputs per execution."""
    nbformat = require_module("nbformat")
    nbclient = require_module("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in cells])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    )
    outputs: list[list[dict]] = []
    with client.setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            for _ in range((repeat or {}).get(i, 1)):
                client.execute_cell(cell, i)
                outputs.append([dict(o) for o in cell.outputs])
    return outputs


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o.get("output_type") == "stream":
            parts.append(o["text"])
        elif "data" in o:
            parts.append(o["data"].get("text/plain", ""))
        elif o.get("output_type") == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
    return "".join(parts)


def _report(outputs: list[dict]) -> str:
    """The report document inside the first inline frame of ``outputs``."""
    for o in outputs:
        page = o.get("data", {}).get("text/html", "")
        m = re.search(r'<iframe[^>]*srcdoc="([^"]*)"', page)
        if m:
            assert 'sandbox=""' in page  # no script may run in the frame
            return html.unescape(m.group(1))
    raise AssertionError(f"no inline report in {outputs!r:.2000}")


SETUP = """
    %load_ext closuretrace
    import numpy as np
    import keras
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]
    def outer_loss(args):
        def loss_function(y_true, y_pred):
            return keras.losses.categorical_crossentropy(y_true, y_pred) + args
        return loss_function
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    opt = keras.optimizers.Adam()
"""

LOOP = """
    %%closuretrace --name prof
    for i in range(4):
        model.compile(opt, loss=outer_loss(10.0))
        model.fit(x, y, epochs=1, verbose=0)
"""


def test_cell_magic_shows_the_report_inline_and_keeps_the_session(tmp_path):
    out = _run(tmp_path, [SETUP, LOOP, "print(len(prof.cycles), prof.run.outcome, type(prof).__name__)", "prof"])
    doc = _report(out[1])
    assert "Verdicts" in doc and "<svg" in doc and "outer_loss" in doc
    assert _text(out[2]).split() == ["4", "completed", "Session"]
    assert _report(out[3])  # a Session as a cell's last value displays as the report


def test_a_cell_that_raises_still_reports_and_restores_keras(tmp_path):
    raising = LOOP + "    raise ValueError('boom')\n"
    check = """
        hooked = [getattr(keras.Model, n).__dict__.get("__closuretrace_hook__") for n in ("compile", "fit")]
        print(prof.run.outcome, prof.run.error, len(prof.cycles), hooked)
    """
    out = _run(tmp_path, [SETUP, raising, check])
    assert "Verdicts" in _report(out[1])
    assert _text(out[2]).strip() == "exception ValueError: boom 4 [None, None]"


def test_rerunning_a_marked_cell_makes_one_cycle_per_run(tmp_path):
    cells = [
        "%load_ext closuretrace\nkept = []",
        "%%closuretrace_cycle --name runs\nkept.append(bytearray(300_000))",
        "%closuretrace report",
        "%closuretrace stop",
        "print(len(runs.cycles), [c.label for c in runs.cycles])",
        "%closuretrace stop",
    ]
    out = _run(tmp_path, cells, repeat={1: 4})
    report, stopped, printed, again = out[5], out[6], out[7], out[8]
    assert "Verdicts" in _report(report) and "Verdicts" in _report(stopped)
    assert _text(printed).strip() == "4 ['run 1', 'run 2', 'run 3', 'run 4']"
    assert "no session is recording" in _text(again)


def test_the_output_cache_is_named_when_it_keeps_the_growth(tmp_path):
    """A cell whose last line is a value: IPython keeps every result in ``Out`` (and ``_``, ``_N``). The chain
    names that cache for what it is, not as an unknown dict of ``__main__``."""
    cells = [
        "%load_ext closuretrace\nimport numpy as np",
        "%%closuretrace_cycle --name runs\nnp.ones(500_000)",  # 4 MB, the cell's result: Out keeps it
        "%closuretrace stop",
    ]
    out = _run(tmp_path, cells, repeat={1: 6})
    doc = _report(out[7])
    assert "IPython&#39;s output cache" in doc or "IPython's output cache" in doc, doc[-3000:]
    assert "__main__.Out" in doc


def test_bad_magic_options_are_one_line(tmp_path):
    cells = ["%load_ext closuretrace", "%%closuretrace --warmup lots\nx = 1", "%%closuretrace --cycle-on nope\nx = 1"]
    out = _run(tmp_path, cells)
    first, second = _text(out[1]).strip(), _text(out[2]).strip()
    assert first.startswith("closuretrace: argument --warmup") and "\n" not in first
    assert second == "closuretrace: --cycle-on nope: no such name in the notebook"


def test_inline_report_runs_no_script_from_a_hostile_repr(chromium, tmp_path):
    cells = [
        f"""
        %load_ext closuretrace
        class Hostile:
            def __repr__(self):
                return {PWN!r}
        def make(v):
            def f():
                return v
            return f
        def step(i):
            return make(Hostile())
        """,
        """
        %%closuretrace --track make --cycle-on step
        keep = [step(i) for i in range(4)]
        """,
    ]
    out = _run(tmp_path, cells)
    doc = _report(out[1])  # also asserts the frame is sandboxed: no script may run in it at all
    assert "document.title=" in doc  # the hostile repr is in the report, as text
    page = tmp_path / "inline.html"
    page.write_text(doc, encoding="utf-8")
    dom = chromium_dom(chromium, page, tmp_path)
    assert "PWNED</title>" not in dom and "Verdicts" in dom
