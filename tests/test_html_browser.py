"""The HTML report in a real headless Chromium: it renders, the charts are in the DOM, and nothing the profiled
program wrote runs as script.

Skipped only where Chromium is not installed and ``CI`` is not set; under CI (which installs it) a missing
Chromium fails the test.
"""

from __future__ import annotations

import struct
from html.parser import HTMLParser

from closuretrace.renderers import html as html_renderer
from closuretrace.session import ClosureRecord
from support import HEIGHT, WIDTH, chromium_dom, make_session

PWN_IMG = """</script><img src=x onerror="document.title='PWNED'">"""
PWN_SCRIPT = "<script>document.title='PWNED'</script>"


class _DOM(HTMLParser):
    """The parts of a DOM dump these tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def _parse(dom: str) -> _DOM:
    parsed = _DOM()
    parsed.feed(dom)
    parsed.close()
    return parsed


def _hostile_session():
    s = make_session(hostile=PWN_IMG, argv=["train.py", PWN_SCRIPT])
    s.run.outcome, s.run.exit_code, s.run.error = "exception", 1, f"ValueError: {PWN_SCRIPT}{PWN_IMG}"
    evil = PWN_IMG + PWN_SCRIPT
    s.closures.append(
        ClosureRecord(serial=99, id=1, factory=evil, qualname=evil, module=PWN_SCRIPT, kind="closure",
                      source="track", created_cycle=2, collected_cycle=None, roles=[PWN_IMG])
    )
    for c in s.cycles[2:]:
        c.closures_alive_by_factory[evil] = 1
    s.advice.append(f"{PWN_SCRIPT} and {PWN_IMG}")
    return s


def test_the_harness_would_see_an_injection(chromium, tmp_path):
    """Control: the same check flags a page where the payload does run."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><title>ok</title><body>{PWN_IMG}</body>", encoding="utf-8")
    assert _parse(chromium_dom(chromium, page, tmp_path)).title == "PWNED"


def test_report_renders_in_chromium_and_runs_no_injected_script(chromium, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html_renderer.render(_hostile_session()), encoding="utf-8")
    png = tmp_path / "report.png"
    dom = _parse(chromium_dom(chromium, page, tmp_path, screenshot=png))

    # the page rendered: a real PNG of the window size with something on it
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    assert len(data) > 30_000

    # the charts are in the DOM
    assert dom.count("svg") >= 3
    assert any(t == "svg" and "viewbox" in a for t, a in dom.tags)

    # nothing injected ran or became an element
    assert dom.title.startswith("closuretrace: LEAK") and "PWNED" not in dom.title.replace(PWN_SCRIPT, "")
    assert dom.count("img") == 0
    assert [a for t, a in dom.tags if t == "script"] == [{"type": "application/json", "id": "session"}]
    handlers = [(t, k) for t, a in dom.tags for k in a if k.startswith("on")]
    assert handlers == []
