import json
import math

import pytest

from closuretrace.session import (
    SCHEMA_VERSION,
    Capture,
    ClosureRecord,
    CycleSample,
    RunInfo,
    Session,
    SessionError,
    Verdict,
    load_session,
    write_atomic,
)
from support import assert_loaded_as_sent


def make_session() -> Session:
    cycles = [CycleSample(index=i, label=f"fit #{i}", seconds=0.5, probe_seconds=0.1,
                          metrics={"rss_bytes": 1000 + i, "gc_objects": 50}, closures_alive_by_factory={"f": 1})
              for i in range(3)]
    cycles[1].metrics["tf_allocator_bytes"] = float("nan")  # a probe that could not read
    cycles[2].seconds = float("inf")
    return Session(
        run=RunInfo(argv=["train.py"], outcome="exception", exit_code=1, error="ValueError: boom"),
        settings={"warmup": 1, "chain_timeout": float("inf")},
        cycles=cycles,
        closures=[ClosureRecord(serial=1, id=123, factory="outer_loss", qualname="outer_loss.<locals>.loss_function",
                                module="__main__", kind="closure", source="keras", created_cycle=0,
                                collected_cycle=None, captures=[Capture("args", "int", 28, "10")])],
        verdicts=[Verdict("rss_bytes", "bytes", 1.0, float("-inf"), float("inf"), 2, 0.0, False, intercept=999.5)],
    )


def test_round_trip_keeps_everything_and_infinities_become_null():
    s = make_session()
    text = s.to_json()
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["cycles"][0]["rss_bytes"] == 1000  # metrics are flat keys of a cycle
    assert data["verdicts"][0]["ci_low"] is None and data["verdicts"][0]["ci_high"] is None
    assert data["cycles"][1]["tf_allocator_bytes"] is None and data["cycles"][2]["seconds"] is None
    assert data["settings"]["chain_timeout"] is None
    back = Session.from_dict(data)
    assert back.closures[0].captures[0] == Capture("args", "int", 28, "10")
    # field by field against what went in: NaN and infinities read back as NaN in float fields, None elsewhere
    assert_loaded_as_sent(back, s)
    v = back.verdicts[0]
    assert (v.slope_per_cycle, v.intercept) == (1.0, 999.5)
    assert math.isnan(v.ci_low) and math.isnan(v.ci_high)
    assert math.isnan(back.cycles[1].metrics["tf_allocator_bytes"]) and math.isnan(back.cycles[2].seconds)
    assert back.settings == {"warmup": 1, "chain_timeout": None}
    assert back.cycles[0] == s.cycles[0]


def test_the_helper_that_checks_round_trips_can_fail():
    s = make_session()
    back = Session.from_dict(json.loads(s.to_json()))
    back.verdicts[0].ci_high = float("inf")  # what went in, but not what JSON can bring back
    with pytest.raises(AssertionError, match=r"verdicts\[0\]\.ci_high"):
        assert_loaded_as_sent(back, s)
    back = Session.from_dict(json.loads(s.to_json()))
    back.cycles[0].metrics["rss_bytes"] = 1000.0  # an int came back as a float
    with pytest.raises(AssertionError, match=r"cycles\[0\]\.metrics\['rss_bytes'\]"):
        assert_loaded_as_sent(back, s)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 1, "run": {"argv": []}', "not valid JSON"),
        ("[1, 2, 3]", "not a closuretrace session"),
        ('{"hello": "world"}', "not a closuretrace session"),
        ('{"schema_version": 99, "run": {"argv": []}}', "newer than this closuretrace reads"),
        ('{"schema_version": 1, "run": {"argv": []}, "cycles": [{"index": "x"}]}', "malformed"),
        ('{"schema_version": 1, "run": {"argv": []}, "closures": [{"serial": 1}]}', "malformed"),
        ('{"schema_version": 1, "run": {"argv": []}, "cycles": [{"index": 0, "rss_bytes": "big"}]}', "not a number"),
    ],
)
def test_bad_files_are_refused_with_one_line(tmp_path, content, message):
    p = tmp_path / "s.json"
    p.write_text(content)
    with pytest.raises(SessionError) as err:
        load_session(p)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SessionError, match="no such file"):
        load_session(tmp_path / "nope.json")
    (tmp_path / "b.json").write_bytes(b"\x89PNG\x00\xff\xfe")
    with pytest.raises(SessionError, match="not a text file"):
        load_session(tmp_path / "b.json")


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    write_atomic(tmp_path / "out.json", make_session().to_json())
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert load_session(tmp_path / "out.json").run.error == "ValueError: boom"
