"""``diff_sessions`` and its renderers: a leaking session against the same program after the fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from closuretrace.analysis.diff import diff_sessions, fmt_ratio, slope_ratio
from closuretrace.cli.main import main as cli_main
from closuretrace.renderers import html as html_renderer
from closuretrace.renderers import markdown, render_diff
from closuretrace.session import Verdict
from support import HOSTILE, MiB, make_session, md_to_html


@pytest.fixture(scope="module")
def fixed_diff():
    return diff_sessions(make_session(leak=True), make_session(leak=False), "before.json", "after.json")


def test_diff_shows_the_drop_the_ratio_and_what_stopped_growing(fixed_diff):
    d = fixed_diff
    rss = next(m for m in d.metrics if m.metric == "rss_bytes")
    assert rss.slope_a == pytest.approx(4.6 * MiB) and rss.slope_b == pytest.approx(0.1 * MiB)
    assert rss.ratio == pytest.approx(0.1 / 4.6)
    assert (rss.leak_a, rss.leak_b, rss.change) == (True, False, "fixed")
    assert d.headline == "rss_bytes: +4.6 MiB/cycle -> +102.4 KiB/cycle (x0.02)"
    assert d.status == "fixed"
    assert [m.metric for m in d.with_change("fixed")] == ["rss_bytes", "gc_objects", "closures_alive"]
    closures = next(m for m in d.metrics if m.metric == "closures_alive")
    assert closures.ratio == 0.0
    outer = next(f for f in d.factories if f.factory == "outer_loss")
    assert (outer.created_a, outer.alive_a, outer.created_b, outer.alive_b) == (6, 6, 6, 1)
    vanished = [g.type for g in d.types_vanished]
    assert "builtins.function" in vanished and "keras.src.losses.losses.LossFunctionWrapper" in vanished
    assert [g.type for g in d.types_appeared] == ["builtins.dict"]


def test_reverse_diff_is_a_new_leak():
    d = diff_sessions(make_session(leak=False), make_session(leak=True))
    assert d.status == "new leak"
    assert d.headline.startswith("rss_bytes: +102.4 KiB/cycle -> +4.6 MiB/cycle (x46")
    assert "New leak in B: rss_bytes, gc_objects, closures_alive" in d.conclusion
    assert [g.type for g in d.types_vanished] == ["builtins.dict"]


def test_ratio_is_none_when_a_is_about_zero():
    flat = Verdict("closures_alive", "closures", 0.0, 0.0, 0.0, 5, 0.5, False)
    grows = Verdict("closures_alive", "closures", 1.0, 1.0, 1.0, 5, 0.5, True)
    assert slope_ratio(flat, grows) is None
    assert slope_ratio(grows, flat) == 0.0
    assert slope_ratio(grows, None) is None
    tiny = Verdict("rss_bytes", "bytes", 3.0, -1e5, 1e5, 5, 256 * 1024, False)  # 3 B/cycle: noise
    assert slope_ratio(tiny, grows) is None
    assert [fmt_ratio(r) for r in (None, 0.0, 0.0217, 0.003, 1.0, 350.2)] == ["", "x0", "x0.02", "x0.003", "x1.00",
                                                                             "x350"]


def test_metric_only_in_one_session():
    a, b = make_session(), make_session(leak=False)
    for c in b.cycles:
        c.metrics["tf_func_graphs"] = 3
    b.verdicts.append(Verdict("tf_func_graphs", "graphs", 0.0, 0.0, 0.0, 5, 0.5, False))
    d = diff_sessions(a, b)
    tf = d.metrics[-1]
    assert (tf.metric, tf.a, tf.ratio, tf.change) == ("tf_func_graphs", None, None, "")
    assert "| TF FuncGraphs | not measured | not measured | 0/cycle | flat |   |   |" in markdown.render_diff(d)


def test_markdown_diff(fixed_diff):
    text = markdown.render_diff(fixed_diff)
    first = text.splitlines()[0]
    assert first == "# closuretrace diff: rss_bytes: +4.6 MiB/cycle -> +102.4 KiB/cycle (x0.02)"
    assert "**Fixed: rss_bytes, gc_objects, closures_alive leaked in before.json and do not leak in after.json.**" \
        in text
    assert "| RSS | +4.6 MiB/cycle | **LEAK** | +102.4 KiB/cycle | flat | x0.02 | fixed |" in text
    assert "| `outer_loss` | 6 | 6 | 6 | 1 |" in text
    assert "## Types that stopped growing (growing in A, not in B)" in text
    assert "- `LossFunctionWrapper`: +1/cycle (2 → 6)" in text
    assert "## Types that started growing (growing in B, not in A)" in text and "- `dict`: +0.70/cycle" in text
    page = md_to_html(text)  # the hostile type name is among the types that stopped growing
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;</code>" in page


def test_html_diff(fixed_diff):
    page = html_renderer.render_diff(fixed_diff)
    assert page.startswith("<!DOCTYPE html>")
    assert "rss_bytes: +4.6 MiB/cycle -&gt; +102.4 KiB/cycle (x0.02)" in page
    assert '<span class="badge big flat">Fixed</span>' in page
    assert "<strong>x0.02</strong>" in page
    assert page.count("<svg") == 2  # RSS of A and B, closures alive of A and B
    assert "LossFunctionWrapper" in page and "Types that stopped growing" in page
    assert HOSTILE not in page and "<img" not in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    data = json.loads(re.search(r'<script type="application/json" id="diff">(.*?)</script>', page, re.S).group(1))
    assert data["headline"] == fixed_diff.headline and data["status"] == "fixed"


def test_json_diff(fixed_diff):
    data = json.loads(render_diff(fixed_diff, "json"))
    assert data["kind"] == "diff" and data["a"]["name"] == "before.json"
    rss = data["metrics"][0]
    assert rss["metric"] == "rss_bytes" and rss["change"] == "fixed" and rss["ratio"] == pytest.approx(0.1 / 4.6)
    assert [t["type"] for t in data["types_appeared"]] == ["builtins.dict"]


# -- closuretrace diff ---------------------------------------------------------------------------------------

def _save(tmp: Path, name: str, leak: bool) -> Path:
    p = tmp / name
    p.write_text(make_session(leak=leak).to_json(), encoding="utf-8")
    return p


def test_diff_cli(tmp_path, capsys):
    a, b = _save(tmp_path, "before.json", True), _save(tmp_path, "after.json", False)
    assert cli_main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# closuretrace diff: rss_bytes: +4.6 MiB/cycle -> +102.4 KiB/cycle (x0.02)\n")
    for name in ("d.md", "d.html", "d.json"):
        assert cli_main(["diff", str(a), str(b), "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "d.md").read_text(encoding="utf-8") == out
    assert json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))["status"] == "fixed"
    # The installed command line gives the same file.
    proc = subprocess.run(
        [sys.executable, "-m", "closuretrace", "diff", str(a), str(b), "-o", str(tmp_path / "cli.md")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli.md").read_text(encoding="utf-8") == out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing A", "nope.json: no such file"),
        ("B not a session", "not a closuretrace session"),
        ("B truncated", "not valid JSON"),
        ("unknown extension", "extension '.pdf'"),
        ("unwritable", "cannot write"),
    ],
)
def test_diff_cli_bad_input(tmp_path, capsys, case, message):
    a, b = _save(tmp_path, "before.json", True), _save(tmp_path, "after.json", False)
    out = tmp_path / "d.md"
    if case == "missing A":
        a = tmp_path / "nope.json"
    elif case == "B not a session":
        b.write_text("[]", encoding="utf-8")
    elif case == "B truncated":
        b.write_text(b.read_text(encoding="utf-8")[:300], encoding="utf-8")
    elif case == "unknown extension":
        out = tmp_path / "d.pdf"
    else:
        out = tmp_path / "no" / "such" / "d.md"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli_main(["diff", str(a), str(b), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("closuretrace: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
