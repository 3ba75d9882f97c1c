"""The sentences every renderer shows for holders and verifications (one wording for Markdown, text and HTML)."""

from __future__ import annotations

from collections.abc import Sequence

from closuretrace.session import RetentionChain, Session, Verification
from closuretrace.units import fmt_bytes, fmt_rate

__all__ = ["holder_sentence", "verification_lines"]


def holder_sentence(chain: RetentionChain, verification: Sequence[Verification] = ()) -> str:
    """What a chain's holder accounts for (its role and retained figures), and whether ``--verify`` confirmed
    it (``verification``: the session's); empty for chains without a holder analysis."""
    r = chain.retains
    if not chain.role or r is None or not chain.holder:
        return ""
    figures = f"{r.objects:,} objects / {fmt_bytes(r.bytes)} ({r.share:.0%} of the growth)"
    if chain.role == "cause" and chain.joint_with and chain.joint_retains is not None:
        j = chain.joint_retains
        text = (
            f"Cause, together with {', '.join(chain.joint_with)}: {chain.holder} alone retains {figures}; "
            f"letting go of all of them frees {j.objects:,} objects / {fmt_bytes(j.bytes)} ({j.share:.0%})."
        )
    elif chain.role == "cause":
        text = f"Cause: {chain.holder} retains {figures}."
    else:
        return f"A path, not the cause: {chain.holder} retains {figures}."
    mine = [v for v in verification if v.holder == chain.holder and v.metric in chain.metrics]
    if not mine:
        return text + " (From the references Python's gc sees: --verify re-runs the program clearing it to confirm.)"
    if all(v.confirmed for v in mine):
        return text + " Confirmed by --verify: clearing it every cycle removed the growth."
    return text + (
        " Not confirmed by --verify: clearing it every cycle left the growth, so something the gc does not see "
        "(C/C++ code) holds it too."
    )


def verification_lines(session: Session) -> list[str]:
    """One sentence per verification: the slope without and with the intervention, and the verdict."""
    out = []
    for v in session.verification:
        unit = session.metric_info(v.metric).unit
        if v.note and not v.confirmed and v.slope_with_intervention != v.slope_with_intervention:  # NaN: no re-run
            out.append(f"{v.holder} ({v.metric}): not verified: {v.note}")
            continue
        verdict = "confirmed" if v.confirmed else "not confirmed"
        text = (
            f"{v.holder} ({v.metric}): {fmt_rate(v.slope_per_cycle, unit)} → "
            f"{fmt_rate(v.slope_with_intervention, unit)} with the intervention "
            f"(95% CI {fmt_rate(v.ci_low_with, unit)} .. {fmt_rate(v.ci_high_with, unit)}): {verdict}"
        )
        out.append(text + (f" ({v.note})" if v.note else ""))
    return out
