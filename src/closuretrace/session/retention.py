"""What keeps the growth alive, as plain data: retention chains with their holder's role and retained share, and
the counterfactual verifications of ``closuretrace profile --verify`` (see ``docs/retention.md``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from closuretrace.session.codec import as_object, build

#: Whether a chain's holder retains a material share of the metric's growth (``cause``) or not (``path``).
Role = Literal["cause", "path", ""]


@dataclass
class Retained:
    """What letting go of a holder frees: objects, bytes, and the share (0..1) of the metric's growth."""

    objects: int
    bytes: int
    share: float
    #: the share of each metric's growth this holder accounts for (``share`` is the first metric's)
    shares: dict[str, float] = field(default_factory=dict)


@dataclass
class RetentionChain:
    """Referrer chain from a root (module global, registry) down to an object kept alive, root first.

    With the holder analysis (:mod:`closuretrace.analysis.holders`), ``holder`` is the readable path of the
    container that holds the growth, ``retains`` what that holder alone would free, and ``role`` says whether
    that is a material share of the metric's growth (``"cause"``) or not (``"path"``); ``joint_with``: the holders
    it retains the growth with (clearing all frees ``joint_retains``). Older files load with ``role == ""``.
    """

    target: str
    #: the leaking metrics this chain explains (JSON also carries them comma-joined as ``metric``)
    metrics: list[str]
    chain: list[str]
    found: bool
    born_cycle: int | None = None
    root: str | None = None
    note: str | None = None
    #: qualified type name of the target (as in ``growing_types``)
    target_type: str | None = None
    #: ``""`` where no holder analysis ran
    role: Role = ""
    retains: Retained | None = None
    holder: str | None = None
    joint_with: list[str] = field(default_factory=list)
    joint_retains: Retained | None = None

    @property
    def metric(self) -> str:
        """The metrics comma-joined, as the JSON's ``metric`` key writes them (for display; test with ``metrics``)."""
        return ", ".join(self.metrics)

    @property
    def is_cause(self) -> bool:
        """Shown to hold a material share of the growth (alone or with ``joint_with``); files without the
        holder analysis count every found chain, as they were read before."""
        return self.found and self.role in ("", "cause")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metric"] = self.metric
        return d

    @classmethod
    def from_dict(cls, d: Any) -> RetentionChain:
        d = as_object(d, "retention chain")
        if "metrics" not in d:  # files written before the list existed
            d = {**d, "metrics": [m for m in str(d.get("metric", "")).split(", ") if m]}
        chain: RetentionChain = build(cls, d)
        if chain.retains is not None:
            chain.retains = build(Retained, chain.retains)
        if chain.joint_retains is not None:
            chain.joint_retains = build(Retained, chain.joint_retains)
        return chain


@dataclass
class Verification:
    """One counterfactual re-run (``closuretrace profile --verify``): a metric's slope per cycle without and
    with the intervention that drops, at each cycle end, what ``holder`` gained in that cycle.

    ``confirmed``: the intervention removed the growth (see :mod:`closuretrace.verify` for the rule). ``note``
    says why a verification could not be made (the holder was not found again, the re-run failed).
    """

    holder: str
    metric: str
    slope_per_cycle: float
    ci_low: float
    ci_high: float
    slope_with_intervention: float
    ci_low_with: float
    ci_high_with: float
    confirmed: bool
    note: str | None = None
