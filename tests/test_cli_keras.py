"""``closuretrace profile`` options that concern Keras and TensorFlow, on a tiny real model in subprocesses:
``--no-keras`` (no hooks, so no fit cycles) and the TF allocator metric (present where the allocator keeps
stats, absent where it does not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from support import require_module

require_module("keras")
pytestmark = [pytest.mark.tf, pytest.mark.slow]

FITS = 4

TINY = textwrap.dedent(
    f"""
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    # What TensorFlow itself says of the CPU allocator's stats, for the test to compare the report with.
    try:
        stats = {{"memory_info": tf.config.experimental.get_memory_info("CPU:0")}}
    except Exception as exc:  # "Allocator stats not available" where the CPU allocator keeps none
        stats = {{"error": f"{{type(exc).__name__}}: {{exc}}"}}
    with open("allocator.json", "w") as fh:
        json.dump(stats, fh)

    rng = np.random.default_rng(0)
    x = rng.random((64, 16), dtype=np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    for cycle in range({FITS}):
        model.compile("sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The tiny script profiled with the Keras hooks (``hooked``) and with ``--no-keras`` (``plain``), side by
    side; ``<name>_allocator`` is what TensorFlow said of the CPU allocator's stats in that run. The plain run
    turns oneDNN off, which on x86 takes the CPU allocator's stats away: the two runs see both cases there."""
    out: dict[str, dict[str, Any]] = {}
    procs = {}
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name, extra, env in (
        ("hooked", [], base),
        ("plain", ["--no-keras"], {**base, "TF_ENABLE_ONEDNN_OPTS": "0"}),
    ):
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "tiny.py").write_text(TINY)
        procs[name] = (tmp, subprocess.Popen(
            [sys.executable, "-m", "closuretrace", "profile", "-q", *extra, "-o", "out.json", "tiny.py"],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for name, (tmp, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        out[name] = json.loads((tmp / "out.json").read_text())
        out[f"{name}_allocator"] = json.loads((tmp / "allocator.json").read_text())
    return out


def test_with_the_hooks_each_fit_ends_a_cycle(runs: dict[str, dict[str, Any]]) -> None:
    data = runs["hooked"]
    assert data["settings"]["keras"] is True
    assert [c["label"] for c in data["cycles"]] == [f"fit #{i}" for i in range(1, FITS + 1)]
    assert [(e["cycle"], e["kind"]) for e in data["events"]] == [
        (i, kind) for i in range(FITS) for kind in ("compile", "fit")
    ]
    losses = [c for c in data["closures"] if c["source"] == "keras"]
    assert len(losses) == FITS and all(c["roles"] == ["loss"] for c in losses)


def test_no_keras_gets_no_fit_cycles(runs: dict[str, dict[str, Any]]) -> None:
    data = runs["plain"]
    assert data["settings"]["keras"] is False
    assert [c["label"] for c in data["cycles"]] == ["end"]  # the whole run is one cycle
    assert data["events"] == []
    assert [c for c in data["closures"] if c["source"] == "keras"] == []
    # only the hooks are off: TensorFlow, which the program imported, is still measured
    assert data["cycles"][0]["tf_func_graphs"] > 0
    assert all(v["state"] == "too_few" and v["leak"] is False for v in data["verdicts"])


@pytest.mark.parametrize("name", ["hooked", "plain"])
def test_the_allocator_metric_is_there_exactly_where_tensorflow_keeps_stats(
    runs: dict[str, dict[str, Any]], name: str
) -> None:
    data, said = runs[name], runs[f"{name}_allocator"]
    metric, peak = "tf_allocator_bytes:CPU:0", "tf_allocator_peak_bytes:CPU:0"
    names = [m["name"] for m in data["metrics"]]
    verdicts = {v["metric"]: v for v in data["verdicts"]}
    if "error" in said:
        # No stats (a CPU build without oneDNN's allocator): no metric, no verdict, no cycle key; nothing made up.
        assert not [n for n in names if n.startswith("tf_allocator")]
        assert not [k for c in data["cycles"] for k in c if k.startswith("tf_allocator")]
        assert not [m for m in verdicts if m.startswith("tf_allocator")]
        return
    assert set(said["memory_info"]) >= {"current", "peak"}
    info = next(m for m in data["metrics"] if m["name"] == metric)
    assert (info["unit"], info["label"]) == ("bytes", "TF allocator CPU:0")
    assert "oneDNN" in info["covers"]  # says what it misses on CPU (allocations under 256 KiB)
    assert peak in names
    for c in data["cycles"]:
        assert isinstance(c[metric], int) and isinstance(c[peak], int)
        assert 0 <= c[metric] <= c[peak]
    assert verdicts[metric]["noise_floor"] == 256 * 1024
    assert peak not in verdicts  # a peak only rises: recorded, never judged
    if name == "hooked":
        assert verdicts[metric]["state"] in ("flat", "grows", "leak") and verdicts[metric]["n_cycles"] == FITS - 1
