"""The JAX probe and its advice, on real JAX (CPU) in a child process (``closuretrace profile``).

JAX is imported only by the profiled programs, never by the test process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from support import require_module

pytestmark = pytest.mark.tf  # heavy: runs with the framework tests, last


def _require_jax() -> None:
    """Skip without JAX (fail under CI); the test process itself never imports it."""
    if importlib.util.find_spec("jax") is None:
        require_module("jax")


JIT_LOOP = """
    import sys
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: x * 2)
    def step(i):
        f(jnp.ones((i + 1,)))          # a new input shape each cycle: a new compiled version
        if "--clear" in sys.argv:
            jax.clear_caches()
    for i in range(8):
        step(i)
"""


def _profile(tmp_path, source: str, *args: str, env: dict[str, str] | None = None) -> dict:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    out = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "closuretrace", "profile", "--cycle-on", "step", "-q", "-o", str(out), str(script),
         *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def _verdict(report: dict, metric: str) -> dict:
    return next(v for v in report["verdicts"] if v["metric"] == metric)


def test_jit_cache_growth_is_measured_and_the_advice_applied_flattens_it(tmp_path):
    _require_jax()
    grown = _profile(tmp_path, JIT_LOOP)
    v = _verdict(grown, "jax_cache_entries")
    assert v["leak"] and v["slope_per_cycle"] > 0
    assert {"jax_live_arrays", "jax_live_array_bytes"} <= set(grown["cycles"][0])
    advice = " ".join(grown["advice"])
    assert "jax.clear_caches()" in advice

    cleared = _profile(tmp_path, JIT_LOOP, "--clear")  # the advice, applied to the same loop
    v2 = _verdict(cleared, "jax_cache_entries")
    assert not v2["leak"] and v2["slope_per_cycle"] == 0
    assert "jax.clear_caches()" not in " ".join(cleared["advice"])


def test_keras_on_jax_seed_loop_gets_cycles_and_jax_probes(tmp_path):
    _require_jax()
    require_module("keras")
    report = _profile(tmp_path, """
        import os
        import numpy as np
        import keras
        rng = np.random.default_rng(0)
        x = rng.standard_normal((128, 32), dtype=np.float32)
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 128)]
        def outer_loss(args):
            def loss_function(y_true, y_pred):
                return keras.losses.categorical_crossentropy(y_true, y_pred) + args
            return loss_function
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(4, activation="softmax")])
        opt = keras.optimizers.Adam()
        for i in range(5):
            model.compile(opt, loss=outer_loss(10.0))
            model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert keras.backend.backend() == "jax"
    """, env={"KERAS_BACKEND": "jax"})
    assert len(report["cycles"]) == 5  # each fit() ends a cycle on the JAX backend too
    assert "jax_live_arrays" in report["cycles"][-1] and "tf_func_graphs" not in report["cycles"][-1]
    closures = [c for c in report["closures"] if c["factory"].endswith("outer_loss")]
    assert len(closures) == 5 and sum(c["collected_cycle"] is None for c in closures) == 1


def test_a_program_that_imports_jax_but_never_runs_it_is_not_started_by_the_probe(tmp_path):
    """Keras 3 imports JAX whatever its backend. Reading live arrays or devices would start JAX's runtime (and its
    threads) in a program that never used it: the tool would change what it measures. The probe waits."""
    _require_jax()
    report = _profile(tmp_path, """
        import sys, json, os
        import jax  # imported, never used
        def step(i):
            return [i] * 100
        for i in range(4):
            step(i)
        bridge = sys.modules["jax._src.xla_bridge"]
        with open(os.path.join(os.path.dirname(__file__), "backends.json"), "w") as fh:
            json.dump(sorted(bridge._backends), fh)
    """)
    assert json.loads((tmp_path / "backends.json").read_text()) == []  # nobody started a backend
    assert not any(k.startswith("jax_") for c in report["cycles"] for k in c)
    used = _profile(tmp_path, """
        import jax.numpy as jnp
        def step(i):
            return jnp.ones((i + 1,)).sum()
        for i in range(4):
            step(i)
    """)
    assert all("jax_live_arrays" in c for c in used["cycles"])  # once the program runs JAX, it is measured
