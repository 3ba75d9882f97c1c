"""Keras 2 (tf_keras) is hooked like Keras 3; generated code is not the user's; unhooked frameworks are named.

The seed runs on both Kerases with the same cycles and the same findings: its closures are freed, the traced graphs
grow, and a retention chain explains them.
"""

from __future__ import annotations

import sys

import pytest

import closuretrace
from closuretrace.analysis import analyse, frameworks
from closuretrace.probes.heap import CodeFilter, is_generated
from closuretrace.recording import ProfileOptions, Recording
from closuretrace.renderers import render
from closuretrace.session import CycleSample, Event, RunInfo, Session
from support import require_module

# -- generated code ---------------------------------------------------------------------------------------------


def test_generated_code_is_not_the_users_unless_census_all():
    autograph = "/tmp/tmpq1w2e3/__autograph_generated_filek9x8y7.py"
    assert is_generated(autograph) and is_generated("<string>")
    user = CodeFilter()
    assert not user(autograph, "__autograph_generated_filek9x8y7")
    assert not user("<string>", "__main__")
    assert user("/home/someone/train.py", "__main__")
    assert user("<ct_module>", "ct_module")  # source the program exec'd under its own name stays the user's
    everything = CodeFilter(include_libraries=True)
    assert everything(autograph, "__autograph_generated_filek9x8y7") and everything("<string>", "__main__")


def test_closures_exec_d_from_string_are_left_out_of_the_census():
    namespace: dict[str, object] = {}
    exec("def make(i):\n    def f():\n        return i\n    return f\n", namespace)
    make = namespace["make"]
    with closuretrace.Profiler() as prof:
        kept = [make(i) for i in range(3)]  # type: ignore[operator]
        prof.end_cycle()
    assert prof.session is not None
    assert not [r for r in prof.session.closures if r.qualname.startswith("make")], prof.session.factories()
    del kept


# -- frameworks closuretrace does not hook ---------------------------------------------------------------------


def _session(events: list[Event], cycles: int = 1) -> Session:
    return Session(
        run=RunInfo(argv=["x"]),
        settings={"warmup": 1},
        cycles=[CycleSample(i, f"c{i}", 0.1, 0.0, {"rss_bytes": 0.0}) for i in range(cycles)],
        events=events,
    )


def test_an_unhooked_framework_replaces_too_few_cycles_with_one_line():
    torch = Event(0, "framework", {"name": "torch", "version": "2.5.1", "hooked": False})
    keras = Event(0, "framework", {"name": "keras", "version": "3.15.1", "hooked": True, "keras": "3"})
    note = frameworks.unhooked_note(_session([keras, torch]))
    assert note is not None and "torch 2.5.1" in note and "does not hook" in note and "keras" not in note.split(",")[0]
    from closuretrace.analysis.advice import advise

    advice = advise(_session([keras, torch]))
    assert advice[0] == note and not any("Only 0 cycle(s)" in a for a in advice)
    # A Keras fit ran, or enough cycles were measured: the framework is no reason for a missing verdict.
    assert frameworks.unhooked_note(_session([torch, Event(0, "fit", {"n": 1})])) is None
    assert frameworks.unhooked_note(_session([torch], cycles=5)) is None
    # Keras 2 whose hooks could not be set is named the same way.
    failed = Event(0, "framework", {"name": "tf_keras", "version": "2.21.0", "hooked": False, "keras": "2"})
    assert "tf_keras 2.21.0" in (frameworks.unhooked_note(_session([failed])) or "")


def test_a_jax_program_without_keras_is_told_why_no_cycle_ended():
    jnp = require_module("jax.numpy")
    with closuretrace.Profiler(ProfileOptions(warmup=1)) as prof:
        total = float(sum(float(jnp.ones(4).sum()) for _ in range(3)))
    assert total == 12.0
    session = prof.session
    assert session is not None
    unhooked = [e.detail.get("name") for e in session.events if e.kind == "framework" and not e.detail["hooked"]]
    assert "jax" in unhooked
    note = frameworks.unhooked_note(session)
    assert note is not None and "imported jax" in note
    assert session.advice[0] == note and "does not hook" in session.finding
    for fmt in ("text", "markdown"):
        out = render(session, fmt)
        assert "closuretrace does not hook" in out, fmt
        assert "End cycles with Keras fit()" not in out, fmt


# -- the seed on Keras 2 and Keras 3 ----------------------------------------------------------------------------

CYCLES = 5


def _seed(version: str) -> Session:
    from closuretrace.examples import seed

    try:
        with closuretrace.Profiler(ProfileOptions(warmup=1)) as prof:
            seed.main(["--keras", version, "--cycles", str(CYCLES), "--samples", "64"])
    finally:
        seed.use_keras("3")
    assert prof.session is not None
    return prof.session


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("version", ["2", "3"])
def test_the_seed_runs_and_is_judged_the_same_on_both_kerases(version, capsys):
    require_module("tf_keras" if version == "2" else "keras")
    session = _seed(version)
    capsys.readouterr()
    assert [c.label for c in session.cycles] == [f"fit #{i}" for i in range(1, CYCLES + 1)]
    fits = [e for e in session.events if e.kind == "fit"]
    assert len(fits) == CYCLES and {e.detail["keras"] for e in fits} == {version}
    hooked = {e.detail["name"] for e in session.events if e.kind == "framework" and e.detail["hooked"]}
    assert ("tf_keras" if version == "2" else "keras") in hooked
    factories = session.factories()
    recs = next((v for k, v in factories.items() if k.endswith("outer_loss")), None)
    assert recs is not None, list(factories)
    assert len(recs) == CYCLES and all(r.collected_cycle is not None for r in recs), recs
    graphs = session.verdict("tf_func_graphs")
    assert graphs is not None and graphs.leak and graphs.slope_per_cycle >= 1, session.verdicts
    chain = session.chain_for("tf_func_graphs")
    assert chain is not None and chain.found and chain.root, session.retention
    assert not [f for f in session.factories() if "__autograph_generated_file" in f]
    assert session.run.versions.get("tf_keras" if version == "2" else "keras")


@pytest.mark.tf
def test_keras2_v1_training_class_is_hooked_and_restored():
    tf_keras = require_module("tf_keras")
    v1 = sys.modules["tf_keras.src.engine.training_v1"].Model
    before = {n: v1.__dict__[n] for n in ("compile", "fit")}
    with closuretrace.Profiler() as prof:
        assert getattr(v1.__dict__["fit"], "__closuretrace_hook__", None) == "fit"
        assert getattr(tf_keras.Model.__dict__["compile"], "__closuretrace_hook__", None) == "compile"
        prof.end_cycle()
    assert {n: v1.__dict__[n] for n in ("compile", "fit")} == before
    assert getattr(tf_keras.Model.__dict__["fit"], "__closuretrace_hook__", None) is None


def test_analyse_keeps_the_framework_events():
    events = [Event(0, "framework", {"name": "tf_keras", "version": "2.21.0", "hooked": True, "keras": "2"})]
    rec = Recording(run=RunInfo(argv=["x"]), options=ProfileOptions(), metrics=[], cycles=[], census=[], closures=[],
                    events=events, live=None)
    session = analyse(rec)
    assert Session.from_dict(session.to_dict()).events[0].detail["keras"] == "2"


def test_compare_refuses_keras2_on_another_backend_in_one_line(capsys, tmp_path):
    from closuretrace.cli.main import main

    assert main(["compare", "--keras", "2", "--backend", "jax", "-q", "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorFlow only" in err[0], err
    assert main(["compare", "--backend", "theano", "-q"]) == 2
    assert "unknown 'theano'" in capsys.readouterr().err


def test_compare_scenarios_carry_keras_and_backend_to_their_process():
    from closuretrace.experiment.run import CompareOptions, build_jobs
    from closuretrace.experiment.scenarios import Scenario

    spec = Scenario("recreate", "scalar", "same-optimizer", keras="3", backend="jax")
    (job,) = build_jobs(CompareOptions(scenarios=[spec], checks=False))
    assert job.env == {"KERAS_BACKEND": "jax"}
    assert Scenario.from_dict(spec.to_dict()) == spec
