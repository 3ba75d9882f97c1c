"""What ran the program's training: which Keras, which loop driver, and which frameworks nothing hooked.

Read from the ``framework``, ``driver``, ``compile`` and ``fit`` events the hooks recorded
(:mod:`closuretrace.instrument.frameworks`, :mod:`closuretrace.instrument.drivers`), so a saved session gives the
same sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

from closuretrace.analysis.verdicts import measured
from closuretrace.session import Session

#: How the report names a driver and its unit.
DRIVER_NAMES = {"keras_tuner": "KerasTuner", "scikeras": "scikeras", "optuna": "Optuna"}
#: A program whose unhooked framework ran fewer measured cycles than this gets the note.
MIN_CYCLES = 3


@dataclass(frozen=True)
class Driver:
    """The library that ran compile+fit for the program, as its ``driver`` event says."""

    name: str
    unit: str
    via: str | None = None
    version: str | None = None

    @property
    def title(self) -> str:
        """``KerasTuner 1.4.8``, ``scikeras 0.13.0 in scikit-learn's cross_val_score``."""
        name = DRIVER_NAMES.get(self.name, self.name)
        version = f" {self.version}" if self.version else ""
        return f"{name}{version} in scikit-learn's {self.via}" if self.via else f"{name}{version}"


def driver(session: Session) -> Driver | None:
    """The first driver the hooks saw, if any."""
    for e in session.events:
        if e.kind == "driver" and e.detail.get("name"):
            via, version = e.detail.get("via"), e.detail.get("version")
            return Driver(
                name=str(e.detail["name"]),
                unit=str(e.detail.get("unit") or "cycle"),
                via=str(via) if via else None,
                version=str(version) if version else None,
            )
    return None


def unhooked(session: Session) -> list[str]:
    """The frameworks the program imported that no hook covered (``torch 2.5.1``), in the order recorded."""
    out: list[str] = []
    for e in session.events:
        if e.kind != "framework" or e.detail.get("hooked", True):
            continue
        name = str(e.detail.get("name", "?"))
        version = e.detail.get("version")
        text = f"{name} {version}" if version else name
        if text not in out:
            out.append(text)
    return out


def unhooked_note(session: Session) -> str | None:
    """One line when the program imported a framework that nothing hooks, no Keras ``fit()`` ran, and too few
    cycles were measured: the reason there is no verdict, and how to end cycles by hand."""
    if any(e.kind == "fit" for e in session.events):
        return None
    if len(measured(session.cycles, session.warmup)) >= MIN_CYCLES:
        return None
    names = unhooked(session)
    if not names:
        return None
    return (
        f"This program imported {', '.join(names)}, whose training calls closuretrace does not hook, and no "
        "Keras fit() ran, so no cycle ended by itself: end cycles with --cycle-on MODULE:FUNCTION (the function "
        "that runs one step, epoch or trial) or `with profiler.cycle():`."
    )


def driver_line(session: Session) -> str | None:
    """Which driver ran the loop and what one cycle was (``Loop driven by KerasTuner 1.4.8: one cycle per
    trial, 3 trials ...``)."""
    d = driver(session)
    if d is None:
        return None
    labels = [c.label for c in session.cycles]
    shown = "; ".join(labels[:4]) + ("; ..." if len(labels) > 4 else "")
    fits = sum(1 for e in session.events if e.kind == "fit")
    return f"Loop driven by {d.title}: each {d.unit} was one cycle ({len(labels)} cycles: {shown}; {fits} fit() calls)."
