"""What several test files share: in-CI requirements, headless Chromium, and a session built by hand.

Tests import it as ``import support`` (pytest puts ``tests/`` on ``sys.path``). Nothing here is a test.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import shutil
import subprocess
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from closuretrace.analysis import conclude
from closuretrace.session import (
    Capture,
    ClosureRecord,
    CycleSample,
    GrowingType,
    MetricInfo,
    RetentionChain,
    RunInfo,
    Session,
    Verdict,
)


def in_ci() -> bool:
    """True under CI (``CI`` set to anything but empty/0/false): there a missing requirement fails, not skips."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require_module(name: str) -> ModuleType:
    """The module ``name``, or a skip outside CI; under CI (which installs everything) a failure."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if in_ci():
            pytest.fail(f"{name} is not installed and CI is set: .ci/run installs it")
        pytest.skip(f"{name} is not installed", allow_module_level=True)


def chromium_path() -> str:
    """Headless Chromium's executable, or a skip outside CI (a failure under CI, which installs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if in_ci():
        pytest.fail("chromium is not installed and CI is set: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


WIDTH, HEIGHT = 1280, 2000


def chromium_dom(chromium: str, page: Path, tmp: Path, screenshot: Path | None = None) -> str:
    """Open ``page`` headless; return the DOM after load (and write a screenshot if asked)."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={WIDTH},{HEIGHT}", "--dump-dom",
    ]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    cmd.append(page.resolve().as_uri())
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def md_to_html(text: str) -> str:
    """GitHub-like rendering (raw HTML allowed, tables on): what a PR comment or step summary would show."""
    markdown_it = require_module("markdown_it")
    return str(markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text))


def assert_loaded_as_sent(back: Any, sent: Any, where: str = "session", hint: Any = Any) -> None:
    """``back`` (a session read from JSON) holds what ``sent`` (the one written) held, field by field.

    Compared to the values that went in, never ``to_dict()`` with ``to_dict()`` (which writes NaN and infinity
    the same way and so hides a change). JSON has neither: as docs/reliability.md documents, a NaN or an
    infinity is written as ``null`` and read back as NaN in a ``float`` field (cycle metrics included), and as
    ``None`` in an optional (``float | None``) or free-form (``Any``) one. Everything else comes back equal and of
    the same type.
    """
    if dataclasses.is_dataclass(sent) and not isinstance(sent, type):
        assert type(back) is type(sent), f"{where}: {type(sent).__name__} went in, {type(back).__name__} came back"
        hints = typing.get_type_hints(type(sent))
        for f in dataclasses.fields(sent):
            assert_loaded_as_sent(getattr(back, f.name), getattr(sent, f.name), f"{where}.{f.name}", hints[f.name])
        return
    if isinstance(sent, float) and not math.isfinite(sent):
        if hint is float:
            assert isinstance(back, float) and math.isnan(back), f"{where}: {sent!r} went in, {back!r} came back"
        else:
            assert back is None, f"{where}: {sent!r} went in, {back!r} came back (want None)"
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(sent, dict):
        assert isinstance(back, dict) and set(back) == set(sent), f"{where}: keys {list(sent)} -> {back!r:.200}"
        item = args[1] if origin is dict else Any
        for k, v in sent.items():
            assert_loaded_as_sent(back[k], v, f"{where}[{k!r}]", item)
        return
    if isinstance(sent, (list, tuple)):
        assert type(back) is type(sent) and len(back) == len(sent), f"{where}: {sent!r:.200} -> {back!r:.200}"
        item = args[0] if origin is list and args else Any
        for i, (b, v) in enumerate(zip(back, sent)):
            assert_loaded_as_sent(b, v, f"{where}[{i}]", item)
        return
    assert type(back) is type(sent) and back == sent, f"{where}: {sent!r:.200} went in, {back!r:.200} came back"


MiB = 1024 * 1024
HOSTILE = "</script><img src=x onerror=alert(1)>"
#: A repr with a table separator, a newline, backticks and emphasis markers in it.
BREAKER = "a|b\\|\n| c `d` **e** __f__ [g](h)"


def make_session(hostile: str = HOSTILE, leak: bool = True, argv: list[str] | None = None) -> Session:
    """A finished, judged session by hand: ``outer_loss`` leaks one closure per cycle (``leak=False``: it is freed),
    ``make_callback`` makes one per cycle and frees it by the next one."""
    n = 6
    jitter = [0, 40_000, -25_000, 10_000, -5_000, 30_000]
    rss_step = 4.6 * MiB if leak else 0.1 * MiB
    gc_step = 1200 if leak else 3
    cycles = []
    for i in range(n):
        outer_alive = (i + 1) if leak else 1
        cycles.append(
            CycleSample(
                index=i,
                label=f"fit #{i}",
                seconds=1.5,
                probe_seconds=0.05,
                metrics={
                    "rss_bytes": 300 * MiB + rss_step * i + jitter[i],
                    "gc_objects": 80_000 + gc_step * i + (jitter[i] // 1000),
                    "closures_alive": outer_alive + 1,
                },
                closures_alive_by_factory={"outer_loss": outer_alive, "make_callback": 1},
            )
        )
    closures = []
    serial = 0
    for i in range(n):
        serial += 1
        captures = [Capture("args", "int", 28, "10")]
        if i == 3:
            captures.append(Capture("payload", "bytes", 4_000_000, hostile))
        closures.append(
            ClosureRecord(
                serial=serial, id=0x7F0000 + 0x100 * i, factory="outer_loss",
                qualname="outer_loss.<locals>.loss_function", module="train", kind="closure", source="keras",
                created_cycle=i, collected_cycle=None if (leak or i == n - 1) else i + 1,
                captures=captures, roles=["loss"],
            )
        )
        serial += 1
        closures.append(
            ClosureRecord(
                serial=serial, id=0x7E0000 + 0x100 * (i % 2), factory="make_callback",
                qualname="make_callback.<locals>.<lambda>", module="train", kind="lambda", source="track",
                created_cycle=i, collected_cycle=None if i == n - 1 else i + 1,
                captures=[Capture("BREAKER", "str", 80, BREAKER)],
                reused_id_of=serial - 4 if i >= 2 else None,
            )
        )
    if leak:
        verdicts = [
            Verdict("rss_bytes", "bytes", 4.6 * MiB, 4.5 * MiB, 4.7 * MiB, 5, 256 * 1024, True),
            Verdict("gc_objects", "objects", 1200.4, 1150.2, 1250.6, 5, 100, True),
            Verdict("closures_alive", "closures", 1.0, 1.0, 1.0, 5, 0.5, True),
        ]
        growing = [
            GrowingType("builtins.function", [3, 4, 5, 6, 7], 1.0, 1.0, 1.0, True),
            GrowingType("builtins.bytes", [10, 11, 12, 13, 14], 1.0, 1.0, 1.0, True),
            GrowingType("keras.src.losses.losses.LossFunctionWrapper", [2, 3, 4, 5, 6], 1.0, 1.0, 1.0, True),
            # a class the program named itself (type("...", ...)): shown in a table
            GrowingType(f"dyn.{BREAKER}{hostile}", [1, 2, 2, 3, 4], 0.7, 0.4, 1.0, False),
        ]
        retention = [
            RetentionChain(
                target="closure #7 outer_loss.<locals>.loss_function",
                metrics=["rss_bytes", "gc_objects", "closures_alive"],
                chain=[
                    "train.history → dict",
                    f"[{hostile!r}] → list",
                    "[3] → Functional",
                    ".loss → function outer_loss.<locals>.loss_function",
                ],
                found=True,
                born_cycle=3,
                root="train.history",
                note="one of 2 paths shown",
            )
        ]
        advice = [
            "outer_loss: 6 closures created and none freed; each keeps `payload` (3.8 MiB) alive. Create the loss "
            "once, outside the loop, and pass the same function to every compile().",
            f"train.history holds every model (see the chain); the key {hostile!r} keeps cycle 3's model alive.",
        ]
    else:
        verdicts = [
            Verdict("rss_bytes", "bytes", 0.1 * MiB, -0.05 * MiB, 0.25 * MiB, 5, 256 * 1024, False),
            Verdict("gc_objects", "objects", 3.2, -20.0, 26.4, 5, 100, False),
            Verdict("closures_alive", "closures", 0.0, 0.0, 0.0, 5, 0.5, False),
        ]
        growing = [GrowingType("builtins.dict", [100, 101, 101, 102, 103], 0.7, 0.2, 1.2, False)]
        retention = []
        advice = []
    session = Session(
        run=RunInfo(
            argv=argv or ["train.py", "--epochs", "1"],
            outcome="completed",
            exit_code=0,
            command="profile",
            started_at="2026-01-05T10:00:00Z",
            duration_s=12.5,
            cwd="/home/user/project",
            python="3.11.2",
            platform="Linux-6.1-x86_64",
            versions={"closuretrace": "0.1.0", "keras": "3.6.0"},
        ),
        settings={"warmup": 1},
        metrics=[
            MetricInfo("rss_bytes", "bytes", "RSS", "resident set size of the process (psutil)"),
            MetricInfo("gc_objects", "objects", "gc objects", "objects tracked by Python's gc"),
            MetricInfo("closures_alive", "closures", "closures alive", "watched callables still alive"),
        ],
        cycles=cycles,
        closures=closures,
        verdicts=verdicts,
        growing_types=growing,
        retention=retention,
        advice=advice,
    )
    return conclude(session)  # the status and finding, as the analysis sets them
