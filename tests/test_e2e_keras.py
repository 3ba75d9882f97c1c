"""The seed's example, ported to Keras 3, profiled end to end by ``closuretrace profile`` in both strategies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from support import require_module

require_module("keras")
pytestmark = [pytest.mark.tf, pytest.mark.slow]

SEED = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras

    def outer_loss(args):
        def loss_function(y_true, y_pred):
            return keras.losses.categorical_crossentropy(y_true, y_pred) + args
        return loss_function

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 512)
    protos = rng.random((10, 784)).astype("float32")
    x = (protos[labels] * 0.5 + rng.random((512, 784)) * 0.5).astype("float32")
    y = np.eye(10, dtype="float32")[labels]

    inp = keras.Input((784,))
    h = keras.layers.Dense(64, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    optimizer = keras.optimizers.Adam()
    strategy = sys.argv[1]
    reused = outer_loss(10) if strategy == "reuse" else None
    for cycle in range(5):
        loss = reused if strategy == "reuse" else outer_loss(10)
        model.compile(optimizer, loss=loss)
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    """
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("seed")
    (tmp / "seed.py").write_text(SEED)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = {
        s: subprocess.Popen(
            [sys.executable, "-m", "closuretrace", "profile", "-q", "-o", f"{s}.json", "seed.py", s],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for s in ("recreate", "reuse")
    }
    out = {}
    for s, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        out[s] = json.loads(Path(tmp, f"{s}.json").read_text())
    return out


def _verdict(data: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(v for v in data["verdicts"] if v["metric"] == metric)


def _seed_closures(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["closures"] if c["factory"] == "outer_loss"]


def test_recreate_makes_one_closure_per_cycle_and_frees_the_old_ones(reports: dict[str, dict[str, Any]]) -> None:
    data = reports["recreate"]
    assert [c["label"] for c in data["cycles"]] == [f"fit #{i}" for i in range(1, 6)]
    closures = _seed_closures(data)
    assert len(closures) == 5
    assert all("loss" in c["roles"] and c["captures"][0]["name"] == "args" for c in closures)
    assert sum(c["collected_cycle"] is None for c in closures) == 1
    assert _verdict(data, "closures_alive")["leak"] is False


def test_reuse_is_one_closure_record(reports: dict[str, dict[str, Any]]) -> None:
    closures = _seed_closures(reports["reuse"])
    assert len(closures) == 1
    assert closures[0]["collected_cycle"] is None and closures[0]["created_cycle"] == 0


@pytest.mark.parametrize("strategy", ["recreate", "reuse"])
def test_the_growth_is_traces_not_closures_and_has_a_chain(
    reports: dict[str, dict[str, Any]], strategy: str
) -> None:
    data = reports[strategy]
    graphs = _verdict(data, "tf_func_graphs")
    assert graphs["leak"] is True and graphs["slope_per_cycle"] >= 1
    assert _verdict(data, "gc_objects")["leak"] is True
    chain = next(r for r in data["retention"] if "tf_func_graphs" in r["metric"])
    assert chain["found"], chain
    # Found by referrer search: a TensorFlow module global, down to a FuncGraph, through a named closure cell.
    assert chain["root"].startswith("tensorflow.")
    assert "FuncGraph" in chain["chain"][-1]
    assert any("closure cell" in hop for hop in chain["chain"])
    assert any("compile once" in a for a in data["advice"])


def test_recreate_advice_says_the_closures_are_freed(reports: dict[str, dict[str, Any]]) -> None:
    advice = " ".join(reports["recreate"]["advice"])
    assert "outer_loss: 5 closures created and 4 freed" in advice
    assert "not what grows memory" in advice
    assert "not what grows memory" not in " ".join(reports["reuse"]["advice"])
