"""Fuzzing the session loader and the renderers (hypothesis), bounded to run in a few seconds.

1. Any JSON (arbitrary values, any text, and real sessions with parts replaced by arbitrary values) either loads
   or is refused with a :class:`SessionError` whose message is one line: no other exception type gets out.
2. Any session (built by strategies over the dataclasses: arbitrary unicode including ``</script>`` and lone
   surrogates, NaN, infinities, huge numbers, empty lists) renders as JSON, Markdown, HTML and text without
   raising, and so does what ``load_session`` makes of its saved JSON.

The inputs that once broke them (NaN and infinities in cycles, numbers near the float maximum, lone surrogates
in chart labels, growing types without counts, closures born far outside the cycles) are drawn like any other,
and each also has a plain test at the end, which checks the chart is drawn, not just that the page renders.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import types
import typing
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from closuretrace.renderers import render
from closuretrace.session import (
    Capture,
    ClosureRecord,
    CompareSession,
    CycleSample,
    Event,
    GrowingType,
    MetricInfo,
    RetentionChain,
    RunInfo,
    Session,
    SessionError,
    Verdict,
    load_session,
    write_atomic,
)
from support import assert_loaded_as_sent, make_session

FORMATS = ("json", "markdown", "html", "text")
_BOUNDED = {
    "deadline": None,
    "database": None,  # nothing written to .hypothesis/ in the project
    "phases": (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
LOADS = settings(max_examples=150, **_BOUNDED)  # loading only: cheap
RENDERS = settings(max_examples=25, **_BOUNDED)  # every format, the HTML charts included: about 0.1 s each
DAMAGED = settings(max_examples=80, **_BOUNDED)  # most are refused (cheap), the rest rendered

# -- strategies ---------------------------------------------------------------------------------------------------

HOSTILE = [
    "</script>",
    "</script><img src=x onerror=\"document.title='PWNED'\">",
    "<!--",
    "]]>",
    "a|b\n| c",
    "`` ` ``",
    "**x** __y__ [z](javascript:alert(1))",
    "\udcff",  # a lone surrogate, as a non-UTF-8 argv or path gives
    "\x00\x1b[31m",
    "\u202etxt.exe",
    "{{ x }}{% if %}",
    "x" * 5000,
    "",
]
texts = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE), st.text(st.characters(codec=None), max_size=10))
names = st.one_of(st.sampled_from(["rss_bytes", "gc_objects", "closures_alive", "tf_func_graphs"]), texts)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2.0**63]),
)
ints = st.one_of(st.integers(-5, 50), st.integers(), st.sampled_from([2**63, -(2**63), 10**30]))
#: cycle numbers: mostly a run's own (small), sometimes anything
cycle_ints = st.one_of(st.integers(0, 12), st.integers(-3, 3), ints)
optional_ints = st.none() | ints
optional_texts = st.none() | texts
json_leaves = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)

captures = st.builds(Capture, name=texts, type=texts, nbytes=optional_ints, repr=texts)
closures = st.builds(
    ClosureRecord,
    serial=ints, id=ints, factory=texts, qualname=texts, module=texts,
    kind=st.sampled_from(["closure", "function", "lambda", "partial", "object"]) | texts,
    source=st.sampled_from(["track", "keras", "census"]) | texts,
    created_cycle=cycle_ints, collected_cycle=st.none() | cycle_ints, created_at=optional_texts,
    args=st.lists(texts, max_size=3), captures=st.lists(captures, max_size=3),
    refcount_at_creation=optional_ints, refcount_at_end=optional_ints, reused_id_of=optional_ints,
    weakrefable=st.booleans(), roles=st.lists(texts, max_size=2),
)
cycles = st.builds(
    CycleSample,
    index=cycle_ints, label=texts, seconds=floats, probe_seconds=floats,
    metrics=st.dictionaries(names, st.one_of(ints, floats), max_size=4),
    closures_alive_by_factory=st.dictionaries(texts, ints, max_size=3),
)
verdicts = st.builds(
    Verdict,
    metric=names, unit=st.sampled_from(["bytes", "objects", "closures", ""]) | texts,
    slope_per_cycle=floats, ci_low=floats, ci_high=floats, n_cycles=ints, noise_floor=floats,
    leak=st.booleans(), note=optional_texts,
)
growing = st.builds(
    GrowingType,
    type=texts, counts=st.lists(ints, max_size=5), slope_per_cycle=floats, ci_low=floats, ci_high=floats,
    grows_every_cycle=st.booleans(),
)
chains = st.builds(
    RetentionChain,
    target=texts, metrics=st.lists(texts, max_size=3), chain=st.lists(texts, max_size=4), found=st.booleans(),
    born_cycle=optional_ints, root=optional_texts, note=optional_texts, target_type=optional_texts,
)
events = st.builds(
    Event,
    cycle=ints, kind=st.sampled_from(["compile", "fit", "not_callable"]) | texts,
    detail=st.dictionaries(texts, json_values, max_size=3),
)
runs = st.builds(
    RunInfo,
    argv=st.lists(texts, max_size=4),
    outcome=st.sampled_from(["completed", "exception", "exit", "interrupted", "terminated"]) | texts,
    exit_code=ints, error=optional_texts, command=texts, started_at=texts, duration_s=floats,
    cwd=texts, python=texts, platform=texts, versions=st.dictionaries(texts, texts, max_size=3),
)
metric_infos = st.builds(MetricInfo, name=names, unit=texts, label=texts, covers=texts)
sessions = st.builds(
    Session,
    run=runs,
    settings=st.dictionaries(texts, json_values, max_size=4),
    metrics=st.lists(metric_infos, max_size=4),
    cycles=st.lists(cycles, max_size=8),
    closures=st.lists(closures, max_size=6),
    events=st.lists(events, max_size=3),
    verdicts=st.lists(verdicts, max_size=4),
    growing_types=st.lists(growing, max_size=3),
    retention=st.lists(chains, max_size=2),
    advice=st.lists(texts, max_size=3),
)


def _base_profile() -> dict[str, Any]:
    return make_session().to_dict()


def _base_compare() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": "compare",
        "run": {"argv": ["compare"], "command": "compare"},
        "settings": {"cycles": 4, "warmup": 1},
        "environment": {},
        "conclusion": ["x"],
        "comparisons": [],
        "save_check": {},
        "scenarios": [
            {
                "strategy": "recreate", "capture": "scalar", "compile": "same-optimizer", "warmup": 1,
                "cycles": [{"index": i, "label": f"c{i}", "seconds": 1.0, "probe_seconds": 0.1, "rss_bytes": 100 + i}
                           for i in range(3)],
                "verdicts": [], "growing_types": [], "steps": [{"cycle": 0, "compile_s": 0.1, "fit_s": 0.2}],
            }
        ],
    }


BASES = {"profile": _base_profile(), "compare": _base_compare()}


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value (keys and indices), the root excluded."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


PATHS = {name: list(_paths(base)) for name, base in BASES.items()}


@st.composite
def mutated_sessions(draw: st.DrawFn) -> Any:
    """A real session's JSON with 1-3 places replaced by arbitrary JSON (or deleted)."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = json.loads(json.dumps(BASES[name]))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS[name]))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this place
    return data


# -- the loader lets through only well-typed sessions -----------------------------------------------------------

_DATACLASSES = (RunInfo, Capture, ClosureRecord, CycleSample, MetricInfo, Verdict, GrowingType, RetentionChain, Event)
_HINTS = {cls: typing.get_type_hints(cls) for cls in _DATACLASSES}


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type the dataclass field declares (``int | None``, ``list[str]``, ...)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(hint)
        return isinstance(value, dict) and all(_conforms(a, k) and _conforms(b, v) for a, b in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _ill_typed(obj: Any, where: str = "session") -> str | None:
    """The first field of ``obj`` (a dataclass, recursively) whose value is not of its declared type."""
    if not is_dataclass(obj) or type(obj) not in _HINTS:
        return None
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _conforms(value, _HINTS[type(obj)][f.name]):
            return f"{where}.{type(obj).__name__}.{f.name} = {value!r:.60}"
        for item in value if isinstance(value, list) else [value]:
            bad = _ill_typed(item, f"{where}.{f.name}")
            if bad:
                return bad
    return None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _assert_well_typed(session: Session | CompareSession) -> None:
    """Every field of a loaded profile session has the type its dataclass declares (the loader checked it)."""
    if isinstance(session, CompareSession):
        return
    for part in (session.run, *session.metrics, *session.cycles, *session.closures, *session.events,
                 *session.verdicts, *session.growing_types, *session.retention):
        bad = _ill_typed(part)
        assert bad is None, f"the loader accepted an ill-typed field: {bad}"


# -- the properties -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="closuretrace-fuzz-") as d:
        yield Path(d) / "session.json"


def _dump(value: Any) -> str:
    # NaN and infinities as JSON's extension tokens (json.loads reads them back); lone surrogates as escapes.
    return json.dumps(value, allow_nan=True, ensure_ascii=True)


def _load_or_refuse(path: Path, text: str) -> Session | CompareSession | None:
    path.write_text(text, encoding="utf-8")
    try:
        return load_session(path)
    except SessionError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return None


#: A data point as matplotlib writes it in SVG: a marker filled with its line's colour (warm-up markers are hollow,
#: tick marks unfilled).
_POINT = re.compile(r'<use xlink:href="#m\w+" x="(-?[\d.e+-]+)" y="(-?[\d.e+-]+)" style="fill: (#\w+); stroke: \3')


#: The markers inside the plot area (clipped to it); the legend's sample markers are outside.
_CLIPPED = re.compile(r'<g clip-path="url\(#\w+\)">(.*?)</g>', re.S)


def _points(svg: str) -> int:
    """How many data points ``svg`` (one chart, or a page of them) draws inside its plot area."""
    return sum(len(_POINT.findall(group)) for group in _CLIPPED.findall(svg))


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, re.S)


def _renders(session: Session | CompareSession) -> None:
    for fmt in FORMATS:
        out = render(session, fmt)
        assert isinstance(out, str) and out
        if fmt == "html":
            # a chart that raised is replaced by a note and the page still renders: that must not pass unseen
            assert "chart unavailable" not in out, re.findall(r"chart unavailable: \w+", out)


@LOADS
@given(value=json_values)
def test_any_json_value_loads_or_is_refused_in_one_line(scratch: Path, value: Any) -> None:
    _load_or_refuse(scratch, _dump(value))


@LOADS
@given(text=st.text(max_size=200) | st.sampled_from(['{"schema_version": 1, "run": {', "[" * 50, "NaN", "\ufeff{}"]))
def test_any_text_loads_or_is_refused_in_one_line(scratch: Path, text: str) -> None:
    _load_or_refuse(scratch, text)


@LOADS
@given(data=mutated_sessions())
def test_damaged_sessions_load_or_are_refused_in_one_line(scratch: Path, data: Any) -> None:
    _load_or_refuse(scratch, _dump(data))


@DAMAGED
@given(data=mutated_sessions())
def test_what_loads_from_damaged_sessions_renders(scratch: Path, data: Any) -> None:
    loaded = _load_or_refuse(scratch, _dump(data))
    event("refused" if loaded is None else "rendered")
    if loaded is None:
        return  # refused in one line: the loader did its job
    _assert_well_typed(loaded)
    _renders(loaded)


@RENDERS
@given(session=sessions)
def test_any_session_renders_in_every_format(session: Session) -> None:
    _renders(session)


@RENDERS
@given(session=sessions)
def test_any_saved_session_loads_back_and_renders(scratch: Path, session: Session) -> None:
    text = session.to_json()  # NaN and infinities become null; no exception for any field value
    back = _load_or_refuse(scratch, text)
    assert isinstance(back, Session), "a session the tool wrote was refused"
    _renders(back)
    # field by field, what went in came back (NaN and infinities as documented: NaN or None)
    assert_loaded_as_sent(back, session)


# -- the inputs that once broke the loader or the renderers, one test each ------------------------------------------

def _profile_with(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASES["profile"]))
    for dotted, value in changes.items():
        parent: Any = data
        keys = [int(k) if k.isdigit() else k for k in dotted.split("__")]
        for k in keys[:-1]:
            parent = parent[k]
        parent[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    "changes",
    [
        {"run__argv": [["nested"], None]},
        {"run__argv": None},
        {"closures__0__kind": None},
        {"closures__0__roles": [1, None]},
        {"growing_types__0__counts": [None, "x"]},
        {"retention__0__note": 5},
        {"advice": [{"a": 1}]},
    ],
    ids=["argv-items", "argv-null", "kind-null", "roles-items", "counts-items", "note-number", "advice-items"],
)
def test_ill_typed_fields_are_refused_in_one_line(scratch: Path, changes: dict[str, Any]) -> None:
    scratch.write_text(json.dumps(_profile_with(**changes)), encoding="utf-8")
    with pytest.raises(SessionError):
        load_session(scratch)


def test_text_summary_of_a_growing_type_without_counts() -> None:
    s = Session(run=RunInfo(argv=["x.py"]), growing_types=[GrowingType("T", [], 1.0, 1.0, 1.0, True)])
    assert render(s, "text")


def test_a_lone_surrogate_is_written_and_read_back(tmp_path: Path) -> None:
    s = Session(run=RunInfo(argv=["train.py", "\udcff"]))
    write_atomic(tmp_path / "s.json", s.to_json())
    back = load_session(tmp_path / "s.json")
    assert isinstance(back, Session) and back.run.argv == ["train.py", "\udcff"]


def test_a_session_with_non_finite_cycle_numbers_loads_back(tmp_path: Path) -> None:
    cycle = CycleSample(0, "c", math.inf, math.nan, {"rss_bytes": math.nan, "gc_objects": 1.0}, {})
    (tmp_path / "s.json").write_text(Session(run=RunInfo(argv=["x.py"]), cycles=[cycle]).to_json(), encoding="utf-8")
    back = load_session(tmp_path / "s.json")
    assert isinstance(back, Session) and math.isnan(back.cycles[0].seconds)


@pytest.mark.parametrize("created", [2**63, -1], ids=["far-after", "before-the-first"])
def test_html_of_closures_created_outside_the_cycles(created: int) -> None:
    rec = ClosureRecord(1, 1, "f", "f.<locals>.g", "m", "closure", "track", created, None)
    page = render(Session(run=RunInfo(argv=["x.py"]), closures=[rec]), "html")
    assert page.count('<div class="bar alive"') == 1  # its lifetime bar is drawn
    assert "f.&lt;locals&gt;.g" in page


def test_html_chart_of_a_metric_near_the_float_maximum() -> None:
    cycles = [CycleSample(i, "c", 0.0, 0.0, {"gc_objects": 1e308 if i else 0.0}, {}) for i in range(3)]
    page = render(Session(run=RunInfo(argv=["x.py"]), cycles=cycles), "html")
    assert "chart unavailable" not in page
    (svg,) = _svgs(page)
    assert _points(svg) == 3


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([1.0, math.nan, 3.0, 4.0, math.nan, 6.0], id="nan"),
        # Found by this test: the chart once re-fitted its slope, and math.fsum raised ValueError on inf - inf
        # ("chart unavailable"). Reachable from a file: load_session accepts the JSON token Infinity. Charts now
        # draw the verdict's own fit.
        pytest.param([1.0, math.nan, 3.0, math.inf, 5.0, -math.inf], id="inf"),
    ],
)
def test_html_chart_of_non_finite_cycle_numbers(values: list[float]) -> None:
    cycles = [CycleSample(i, "c", 0.0, 0.0, {"rss_bytes": v}, {}) for i, v in enumerate(values)]
    page = render(Session(run=RunInfo(argv=["x.py"]), cycles=cycles), "html")
    assert "chart unavailable" not in page
    (svg,) = _svgs(page)
    assert _points(svg) == sum(1 for v in values if not math.isnan(v))  # NaN leaves a gap


def test_html_chart_of_a_factory_name_with_a_lone_surrogate() -> None:
    cycles = [CycleSample(i, "c", 0.0, 0.0, {}, {"f\udcff": i}) for i in range(3)]
    page = render(Session(run=RunInfo(argv=["x.py"]), cycles=cycles), "html")
    assert "chart unavailable" not in page
    (svg,) = _svgs(page)
    assert _points(svg) == 3


def test_the_chart_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above count the data points drawn (not the legend's, not the hollow warm-up overlays), and a
    chart that raised leaves only a note: no SVG, no points."""
    cycles = [CycleSample(i, "c", 0.0, 0.0, {"gc_objects": float(i)}, {}) for i in range(4)]
    session = Session(run=RunInfo(argv=["x.py"]), cycles=cycles)
    (svg,) = _svgs(render(session, "html"))
    assert _points(svg) == 4
    session.settings["warmup"] = 0
    assert _points(render(session, "html")) == 4

    from matplotlib.figure import Figure

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("drawing failed")

    monkeypatch.setattr(Figure, "savefig", broken)
    page = render(session, "html")
    assert "chart unavailable: ValueError" in page and _svgs(page) == [] and _points(page) == 0
