import json

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


def make_session() -> Session:
    return Session(
        run=RunInfo(argv=["train.py"], outcome="exception", exit_code=1, error="ValueError: boom"),
        settings={"warmup": 1},
        cycles=[CycleSample(index=i, label=f"fit #{i}", seconds=0.5, probe_seconds=0.1,
                            metrics={"rss_bytes": 1000 + i, "gc_objects": 50}, closures_alive_by_factory={"f": 1})
                for i in range(3)],
        closures=[ClosureRecord(serial=1, id=123, factory="outer_loss", qualname="outer_loss.<locals>.loss_function",
                                module="__main__", kind="closure", source="keras", created_cycle=0,
                                collected_cycle=None, captures=[Capture("args", "int", 28, "10")])],
        verdicts=[Verdict("rss_bytes", "bytes", 1.0, float("-inf"), float("inf"), 2, 0.0, False)],
    )


def test_round_trip_keeps_everything_and_infinities_become_null():
    s = make_session()
    text = s.to_json()
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["cycles"][0]["rss_bytes"] == 1000  # metrics are flat keys of a cycle
    assert data["verdicts"][0]["ci_low"] is None
    back = Session.from_dict(data)
    assert back.closures[0].captures[0] == Capture("args", "int", 28, "10")
    assert back.cycles == s.cycles
    assert back.to_dict() == s.to_dict()


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
