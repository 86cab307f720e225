"""The attrition funnel: how the screened population narrows criterion by criterion.

- ``steps``: criteria in definition order; each ruled-out patient is counted once, at the first
  criterion that rules them out, so the removed counts plus the candidates equal the patients screened.
- per criterion: how many it rules out, how many it alone rules out (the candidates gained if it were
  dropped: the what-if), how many are unknown on it, and how many candidates still need data for it.
- candidates split into ``ready`` (nothing left to collect, only people's judgement) and
  ``blockedByUnknowns`` (data to collect); ``ifMet`` says how many more would be ready if that
  criterion's unknowns were settled in the patient's favour.
- patients that could not be screened (status ``error``) have no criteria and are not in the funnel
  (its ``screened`` is the summary's minus its ``errors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .results import CriterionResult, Funnel, FunnelCriterion, FunnelStep, PatientResult


def rules_out(c: CriterionResult) -> bool:
    return (c.type == "inclusion" and c.result == "not-met") or (c.type == "exclusion" and c.result == "met")


def needs_data(c: CriterionResult) -> bool:
    """An unknown with something to collect (a criterion only people decide needs no data)."""
    if c.result != "unknown":
        return False
    if c.resolve is None:
        return True  # screened without resolve: count it as open, never as ready
    return any(n.decided_by == "data" for n in c.resolve.needs)


def build_funnel(patients: Sequence[PatientResult], dropped: Iterable[str] = ()) -> Funnel:
    """The funnel, optionally as if the ``dropped`` criteria were not part of the study."""
    skip = set(dropped)
    patients = [p for p in patients if p.status != "error"]
    order: list[tuple[str, str]] = []
    for p in patients:
        for c in p.criteria:
            if c.id not in skip and (c.id, c.type) not in order:
                order.append((c.id, c.type))
    index = {cid: i for i, (cid, _) in enumerate(order)}
    removed = [0] * len(order)
    ruled = [0] * len(order)
    only = [0] * len(order)
    unknown = [0] * len(order)
    blocking = [0] * len(order)
    if_met = [0] * len(order)
    candidates = ready = 0
    for p in patients:
        kept = [c for c in p.criteria if c.id not in skip]
        deciding = [index[c.id] for c in kept if rules_out(c)]
        for c in kept:
            if c.result == "unknown":
                unknown[index[c.id]] += 1
        if deciding:
            removed[min(deciding)] += 1
            for i in set(deciding):
                ruled[i] += 1
            if len(set(deciding)) == 1:
                only[deciding[0]] += 1
            continue
        candidates += 1
        open_ = {index[c.id] for c in kept if needs_data(c)}
        if not open_:
            ready += 1
        for i in open_:
            blocking[i] += 1
        if len(open_) == 1:
            if_met[next(iter(open_))] += 1
    steps, remaining = [], len(patients)
    for (cid, _), n in zip(order, removed, strict=True):
        remaining -= n
        steps.append(FunnelStep(id=cid, removed=n, remaining=remaining))
    return Funnel(
        screened=len(patients),
        candidates=candidates,
        ready=ready,
        blockedByUnknowns=candidates - ready,
        steps=steps,
        criteria=[
            FunnelCriterion(
                id=cid,
                type=ctype,  # type: ignore[arg-type]
                rulesOut=ruled[i],
                onlyThis=only[i],
                unknown=unknown[i],
                blocking=blocking[i],
                ifMet=if_met[i],
            )
            for i, (cid, ctype) in enumerate(order)
        ],
    )


def funnel_table(funnel: Funnel, titles: dict[str, str]) -> str:
    """``--format funnel``: a plain-text table for a terminal or an e-mail."""
    rows = [("criterion", "title", "rules out", "alone", "left", "unknown", "blocking", "if met")]
    left = {s.id: s.remaining for s in funnel.steps}
    for c in funnel.criteria:
        title = titles.get(c.id, "")
        rows.append(
            (
                c.id,
                title if len(title) <= 44 else title[:43] + "…",
                str(c.rules_out),
                str(c.only_this),
                str(left.get(c.id, "")),
                str(c.unknown),
                str(c.blocking),
                str(c.if_met),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f"{funnel.screened} screened, {funnel.candidates} candidates: {funnel.ready} ready for review "
        f"(only judgement left), {funnel.blocked_by_unknowns} with data to collect",
        "",
    ]
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        "rules out: patients it rules out; alone: ruled out by it and nothing else (candidates gained if it were",
        "dropped); left: patients remaining after the criteria up to it, in order; unknown: patients unknown on",
        "it; blocking: candidates with data to collect for it; if met: more ready for review if it were settled.",
    ]
    return "\n".join(lines) + "\n"
