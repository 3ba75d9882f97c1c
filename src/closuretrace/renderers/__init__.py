"""Renderers: pure functions ``render(session) -> str``; they never write files or print."""

from __future__ import annotations

import json as _json  # not "json": that name is the submodule closuretrace.renderers.json
import os
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from closuretrace.session import CompareSession, Session
    from closuretrace.session.diff import SessionDiff

#: Output file extension -> format name.
FORMATS: dict[str, str] = {
    ".json": "json",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
}


class UnknownFormatError(ValueError):
    """An output path whose extension names no format; the message is one line for users."""


def format_for_path(path: str | os.PathLike[str]) -> str:
    """``"report.html"`` -> ``"html"``; raise :class:`UnknownFormatError` for any other extension."""
    suffix = PurePath(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise UnknownFormatError(f"{os.fspath(path)}: {what}; use .json, .md or .html") from None


def render(session: Session | CompareSession, fmt: str) -> str:
    """``session`` in format ``fmt``: ``json``, ``markdown``, ``html`` or ``text``.

    A :class:`~closuretrace.session.CompareSession` (``closuretrace compare``) gets the compare layout.
    """
    from closuretrace.session import CompareSession

    if isinstance(session, CompareSession):
        return _render_compare(session, fmt)
    # Imported here: the HTML renderer pulls in Jinja2 and matplotlib, which ``closuretrace profile`` never needs.
    if fmt == "json":
        from closuretrace.renderers import json as json_renderer

        return json_renderer.render(session)
    if fmt == "markdown":
        from closuretrace.renderers import markdown

        return markdown.render(session)
    if fmt == "html":
        from closuretrace.renderers import html

        return html.render(session)
    if fmt == "text":
        from closuretrace.renderers import text

        return text.render(session)
    raise UnknownFormatError(f"unknown format {fmt!r}; use json, markdown, html or text")


def _render_compare(session: CompareSession, fmt: str) -> str:
    if fmt == "json":
        return session.to_json() + "\n"
    if fmt == "markdown":
        from closuretrace.renderers import markdown

        return markdown.render_compare(session)
    if fmt == "html":
        from closuretrace.renderers import html

        return html.render_compare(session)
    if fmt == "text":
        from closuretrace.renderers import text

        return text.render_compare(session)
    raise UnknownFormatError(f"unknown format {fmt!r}; use json, markdown, html or text")


def render_for_path(session: Session | CompareSession, path: str | os.PathLike[str]) -> str:
    """``session`` in the format ``path``'s extension names (``.json``, ``.md``, ``.html``)."""
    return render(session, format_for_path(path))


def render_diff(diff: SessionDiff, fmt: str) -> str:
    """A :class:`~closuretrace.session.diff.SessionDiff` in format ``fmt``: ``json``, ``markdown`` or ``html``."""
    if fmt == "json":
        return _json.dumps(diff.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "markdown":
        from closuretrace.renderers import markdown

        return markdown.render_diff(diff)
    if fmt == "html":
        from closuretrace.renderers import html

        return html.render_diff(diff)
    raise UnknownFormatError(f"unknown format {fmt!r}; use json, markdown or html")
