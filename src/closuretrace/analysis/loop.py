"""What kind of loop the program ran, read from the events the hooks recorded.

Advice must fit the loop it is given for: "compile once" only helps a loop that compiles the *same* model again,
and one optimizer instance can only serve the model it was built for (Keras raises ``ValueError: Unknown
variable ... This optimizer can only be called for the variables it was originally built with`` when a second
model uses it). :func:`loop_shape` says which models each measured cycle compiled, whether they were new, and
which optimizers they were given, from the ``compile`` and ``fit`` events alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from closuretrace.analysis.verdicts import measured
from closuretrace.session import Session


@dataclass(frozen=True)
class LoopShape:
    """The measured cycles' compile pattern."""

    #: measured cycles (after the warm-up)
    cycles: int
    #: measured cycles in which compile() ran
    compiled_cycles: int
    #: measured cycles that compiled a model first compiled in that cycle
    new_model_cycles: int
    #: measured cycles that compiled a model already compiled in an earlier cycle
    recompiled_cycles: int
    #: optimizer descriptions given to compile() in the measured cycles ("string 'adam'", "instance Adam #1")
    optimizers: list[str] = field(default_factory=list)
    #: the library that drove the loop, where the hooks saw one (keras_tuner, scikeras, optuna, ...)
    driver: str | None = None

    @property
    def recompiles_same_model(self) -> bool:
        """Every measured cycle but at most one compiled a model compiled before: compiling once would do."""
        return self.compiled_cycles > 0 and self.recompiled_cycles >= max(1, self.cycles - 1)

    @property
    def new_model_per_cycle(self) -> bool:
        """Every measured cycle but at most one built and compiled a new model (a search, a fold)."""
        return self.new_model_cycles >= max(1, self.cycles - 1)

    @property
    def optimizer_per_compile(self) -> str | None:
        """How compile() got a new optimizer each time, if it did: a string, or distinct instances."""
        strings = [o for o in self.optimizers if o.startswith("string")]
        instances = {o for o in self.optimizers if o.startswith("instance")}
        if len(strings) >= 2:
            return "a string optimizer"
        if len(instances) >= 2:
            return f"{len(instances)} different optimizer instances"
        return None


def loop_shape(session: Session) -> LoopShape:
    """The compile pattern of ``session``'s measured cycles."""
    used = {c.index for c in measured(session.cycles, session.warmup)}
    seen: set[str] = set()
    by_cycle: dict[int, list[tuple[str, bool]]] = {}
    optimizers: list[str] = []
    driver: str | None = None
    for e in session.events:
        if e.kind == "driver" and driver is None:
            name = e.detail.get("name")
            driver = str(name) if name else None
        if e.kind != "compile":
            continue
        model = str(e.detail.get("model", ""))
        new = model not in seen if model else True
        seen.add(model)
        if e.cycle in used:
            by_cycle.setdefault(e.cycle, []).append((model, new))
            opt = e.detail.get("optimizer")
            if isinstance(opt, str) and opt:
                optimizers.append(opt)
    new_cycles = sum(1 for entries in by_cycle.values() if any(new for _, new in entries))
    re_cycles = sum(1 for entries in by_cycle.values() if any(not new for _, new in entries))
    return LoopShape(
        cycles=len(used),
        compiled_cycles=len(by_cycle),
        new_model_cycles=new_cycles,
        recompiled_cycles=re_cycles,
        optimizers=optimizers,
        driver=driver,
    )
