"""Markdown, HTML and JSON renderers, the renderer dispatch, and ``closuretrace render`` on bad input.

The session is built by hand (no profiling): two factories over six cycles, a leak, a chain of four hops, two
advice lines, and user-controlled text that tries to break out of a Markdown table or an HTML page.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import closuretrace
from closuretrace.analysis import conclude
from closuretrace.cli.main import main as cli_main
from closuretrace.renderers import (
    UnknownFormatError,
    format_for_path,
    markdown,
    render,
    render_for_path,
)
from closuretrace.renderers import html as html_renderer
from closuretrace.session import (
    SCHEMA_VERSION,
    ClosureRecord,
    RunInfo,
    Session,
    load_session,
)
from support import HOSTILE, MiB, assert_loaded_as_sent, make_session, md_to_html

GOLDEN = Path(__file__).parent / "golden"


# -- helpers -------------------------------------------------------------------------------------------------

def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CLOSURETRACE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with CLOSURETRACE_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed (CLOSURETRACE_UPDATE_GOLDEN=1)"


def _embedded_json(page: str, element_id: str) -> object:
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert m, f"no embedded JSON #{element_id}"
    return json.loads(m.group(1))


def _bad_session_files(tmp: Path) -> dict[str, Path]:
    good = make_session().to_dict()
    files = {
        "not a session": ('{"hello": "world"}', "not a closuretrace session"),
        "newer schema": (json.dumps({**good, "schema_version": SCHEMA_VERSION + 1}), "newer than this closuretrace"),
        "truncated": (json.dumps(good)[:500], "not valid JSON"),
    }
    out = {}
    for name, (content, _msg) in files.items():
        p = tmp / (name.replace(" ", "_") + ".json")
        p.write_text(content, encoding="utf-8")
        out[name] = p
    out["missing"] = tmp / "nope.json"
    return out


# -- Markdown ------------------------------------------------------------------------------------------------

def test_markdown_matches_golden():
    _golden("session.md", markdown.render(make_session()))


def test_text_summary_matches_golden():
    """The summary ``closuretrace profile`` prints (the README quotes its shape), pinned as a whole."""
    text = render(make_session(), "text")
    _golden("session.txt", text)
    assert text == closuretrace.render_text(make_session())  # the public name renders the same


def test_text_summary_fits_100_columns_one_line_per_row():
    """renderers/text.py promises 100 columns. Found while pinning the golden file: a growing type's name with a
    newline in it (a class the program named itself) split its table row in two, the table was as wide as the
    longest type name (110 columns), and the chain's heading line was not wrapped (123)."""
    text = render(make_session(), "text")
    assert [line for line in text.splitlines() if len(line) > 100] == []
    types = text.split("Types that grow\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(types) == 1 + len(make_session().growing_types)  # the header and one line per type


def test_markdown_tables_hold_and_no_html_gets_through():
    text = markdown.render(make_session())
    # Every table row has as many cells as its header: no | or newline in user text split a row.
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            widths = {len(re.split(r"(?<!\\)\|", row)) for row in table}
            assert len(widths) == 1, table
            table = []
    page = md_to_html(text)
    assert "<img" not in page and "<script" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown, as text
    # the hostile type name stays inside its table cell, as code
    assert "<code>a|b\\|\\n| c `d` **e** __f__ [g](h)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</code>" in page
    assert "<em>" not in page and "<a " not in page
    # advice keeps its code spans
    assert "<code>payload</code>" in page


def test_markdown_escape_helpers():
    assert markdown.escape("a|b\nc <b>x</b> *y* __main__ outer_loss") == (
        "a\\|b c \\<b>x\\</b> \\*y\\* \\_\\_main\\_\\_ outer_loss"
    )
    assert markdown.code("a`b") == "``a`b``"
    assert markdown.code("`x`") == "`` `x` ``"
    assert markdown.code("a|b", table=True) == "`a\\|b`"
    assert markdown.code("x" * 100, limit=10) == "`" + "x" * 9 + "…`"


def test_markdown_of_an_empty_and_a_failed_session():
    empty = conclude(Session(run=RunInfo(argv=[])))
    text = markdown.render(empty)
    assert "**Inconclusive**" in text and "No cycles measured." in text and "No closures seen." in text
    failed = make_session(leak=False)
    failed.run.outcome, failed.run.exit_code, failed.run.error = "exception", 1, "ValueError: bad\nvalue"
    text = markdown.render(failed)
    assert "**No leak**" in text
    assert "Error: `ValueError: bad\\nvalue`" in text


# -- HTML ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page() -> str:
    return html_renderer.render(make_session())


def test_html_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert "@import" not in page
    assert not re.search(r"""url\(\s*["']?(?!#)""", page)  # only local references (SVG clip paths)
    assert page.count("<svg") >= 3
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script type="application/json" id="session">']


def test_html_puts_the_verdict_first(page):
    body = page[page.index("<body>") :]
    first_badge = body.index("badge big leak")
    assert first_badge < body.index("<svg") and first_badge < body.index('id="verdicts"')
    assert "RSS +4.6 MiB/cycle, gc objects +1,200/cycle, closures alive +1/cycle" in body[:2000]
    assert "<title>closuretrace: LEAK · train.py --epochs 1</title>" in page


def test_html_escapes_everything_the_program_controls(page):
    assert HOSTILE not in page
    assert "<img" not in page
    assert html.escape(HOSTILE, quote=False) in page
    # the embedded session survives the hostile text and reads back whole
    data = _embedded_json(page, "session")
    assert_loaded_as_sent(Session.from_dict(data), make_session())


def test_html_closure_lifetimes_and_chain(page):
    assert page.count('class="bar alive"') == 7  # six outer_loss closures and the last make_callback one
    assert page.count('class="bar freed"') == 5
    for hop in ("train.history", "[3]", ".loss"):
        assert f'<span class="edge mono">{hop}</span>' in page
    assert page.count("<li>") >= 2  # advice


def test_html_is_deterministic():
    s = make_session()
    assert html_renderer.render(s) == html_renderer.render(s)


def test_html_caps_the_closure_rows_and_handles_odd_names():
    s = make_session()
    s.cycles[-1].closures_alive_by_factory.update({"$bad{math": 2, "_private": 1, **{f"f{i}": 1 for i in range(8)}})
    for c in s.cycles:
        c.metrics["tf_func_graphs"] = 10 + c.index * 2
    base = len(s.closures)
    s.closures += [
        ClosureRecord(serial=base + i + 1, id=i, factory="$bad{math", qualname="q", module="m", kind="closure",
                      source="census", created_cycle=i % 6, collected_cycle=(i % 6) + 1 if i % 3 else None,
                      weakrefable=i % 7 != 0)
        for i in range(250)
    ]
    page = html_renderer.render(s)
    assert page.count('<div class="bar ') == html_renderer.MAX_CLOSURE_ROWS
    assert f"{len(s.closures) - html_renderer.MAX_CLOSURE_ROWS} more closures not shown" in page
    assert 'class="bar unknown"' in page
    assert page.count("<svg") == 4  # RSS, gc objects, closures per factory, TF FuncGraphs


def test_html_of_an_empty_session():
    page = html_renderer.render(conclude(Session(run=RunInfo(argv=[]))))
    assert "Inconclusive" in page and "No closures seen." in page and "<svg" not in page


# -- JSON and dispatch ---------------------------------------------------------------------------------------

def test_json_output_round_trips():
    s = make_session()
    s.cycles[2].metrics["rss_bytes"] = float("nan")  # a reading that failed
    s.verdicts[0] = dataclasses.replace(s.verdicts[0], ci_high=float("inf"), intercept=300 * MiB)
    s.settings["chain_timeout"] = float("inf")
    text = render(s, "json")
    back = Session.from_dict(json.loads(text))
    assert_loaded_as_sent(back, s)
    assert math.isnan(back.cycles[2].metrics["rss_bytes"]) and math.isnan(back.verdicts[0].ci_high)
    assert back.verdicts[0].intercept == 300 * MiB and back.settings["chain_timeout"] is None


def test_format_follows_the_extension(tmp_path):
    s = make_session()
    assert format_for_path("r.HTML") == "html" and format_for_path("a/b.md") == "markdown"
    assert render_for_path(s, tmp_path / "x.md") == markdown.render(s)
    assert render_for_path(s, "x.json") == render(s, "json")
    with pytest.raises(UnknownFormatError, match=r"x\.txt: extension '\.txt'; use \.json, \.md or \.html"):
        render_for_path(s, "x.txt")
    with pytest.raises(UnknownFormatError, match="no extension"):
        format_for_path("report")
    assert render(s, "text").startswith("closuretrace profile of train.py")


# -- closuretrace render -------------------------------------------------------------------------------------

def _render(session: Path | str, output: str | None) -> int:
    """``closuretrace render SESSION [-o OUTPUT]`` in this process."""
    return cli_main(["render", str(session), *(["-o", output] if output is not None else [])])


@pytest.fixture
def saved(tmp_path) -> Path:
    p = tmp_path / "s.json"
    p.write_text(make_session().to_json(), encoding="utf-8")
    return p


def test_render_cli_writes_each_format(saved, tmp_path, capsys):
    session = load_session(saved)
    for name, expect in (("out.md", markdown.render(session)), ("out.json", render(session, "json"))):
        assert _render(saved, str(tmp_path / name)) == 0
        assert (tmp_path / name).read_text(encoding="utf-8") == expect
    assert _render(saved, str(tmp_path / "out.html")) == 0
    assert (tmp_path / "out.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    capsys.readouterr()
    for output in (None, "-"):
        assert _render(saved, output) == 0
        assert capsys.readouterr().out == markdown.render(session)


def test_render_command_line_writes_what_the_renderers_return(tmp_path):
    session = make_session()
    src = tmp_path / "s.json"
    src.write_text(session.to_json(), encoding="utf-8")
    for name, fmt in (("r.md", "markdown"), ("r.html", "html")):
        proc = subprocess.run(
            [sys.executable, "-m", "closuretrace", "render", str(src), "-o", str(tmp_path / name)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / name).read_text(encoding="utf-8") == render(session, fmt)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not a session", "not a closuretrace session"),
        ("newer schema", "newer than this closuretrace reads"),
        ("truncated", "not valid JSON"),
        ("missing", "no such file"),
        ("unknown extension", "extension '.txt'"),
        ("no such directory", "cannot write"),
        ("output is a directory", "cannot write"),
    ],
)
def test_render_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, saved, capsys, case, message):
    bad = _bad_session_files(tmp_path)
    source, output = saved, tmp_path / "out.md"
    if case in bad:
        source = bad[case]
    elif case == "unknown extension":
        output = tmp_path / "out.txt"
    elif case == "no such directory":
        output = tmp_path / "missing" / "out.md"
    elif case == "output is a directory":
        output = tmp_path / "adir.md"
        output.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _render(source, str(output)) == 2
    err = capsys.readouterr().err
    assert err.startswith("closuretrace: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written, no temporary file
