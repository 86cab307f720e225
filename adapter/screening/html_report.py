"""The HTML report for the study team: one self-contained page (no scripts, no network), readable on a
laptop and printable, with table headers, captions, visible keyboard focus and every data value escaped.

Order: the summary; candidates closest first with what to collect next; the patients that could not be
screened (status ``error``) and why; how the population narrows (the funnel and its what-ifs); who is
not eligible and why; terminology gaps when the report has any;
then each patient's criteria with the reason and what would settle each unknown.
"""

from __future__ import annotations

from datetime import date
from html import escape

from .funnel import build_funnel
from .report import MANUAL_REASON, ranked_candidates
from .resolve import collect_next, judgements
from .results import CriterionResult, Funnel, PatientResult, ScreeningReport
from .wording import prose

_STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;padding:0 1.5rem;
color:#1b1b1b;background:#fff;max-width:78rem;line-height:1.45}
h1{font-size:1.45rem;margin:.2rem 0 .6rem} h2{font-size:1.15rem;margin:2rem 0 .4rem;border-bottom:2px solid #d0d7de}
h3{font-size:1rem;margin:1.6rem 0 .3rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1.2rem}
caption{text-align:left;font-weight:600;padding:.3rem 0;color:#333}
th,td{border:1px solid #c4c9cf;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
thead th{background:#eef1f4} tbody th{font-weight:600;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums} td.num{white-space:nowrap}
.met{color:#0a6b2d} .not-met{color:#a4161a} .unknown{color:#7a5500}
.result{font-weight:600;white-space:nowrap}
.status{display:inline-block;padding:.05rem .45rem;border-radius:.3rem;font-weight:600;font-size:.85rem}
.status.candidate{background:#dff3e4;color:#0a4d22} .status.not-eligible{background:#fbe3e4;color:#7d1016}
.status.reviewed{background:#e4ecfb;color:#14357a} .status.error{background:#fff1c2;color:#5c3d00}
.next{margin:0;padding-left:1.1rem} .nowrap{white-space:nowrap} .muted{color:#555} .small{font-size:.82rem}
.bar{display:inline-block;height:.7rem;background:#5b7db1;vertical-align:middle;margin-right:.3rem}
code{font-size:.8rem;word-break:break-all}
a{color:#0b4fa8} a:focus-visible,summary:focus-visible{outline:3px solid #f0a800;outline-offset:2px}
.skip{position:absolute;left:-999px} .skip:focus{left:1rem;top:1rem;background:#fff;padding:.3rem}
.lead{font-size:1rem;background:#f4f6f8;border-left:4px solid #5b7db1;padding:.6rem .8rem}
@media print{
 body{margin:0;max-width:none;font-size:10pt;padding:0} a{color:inherit;text-decoration:none}
 .skip{display:none} h2{break-after:avoid} tr,.patient{break-inside:avoid}
 .patient{break-before:auto} th,td{font-size:8.5pt}
 .lead{background:none}
}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _anchor(patient: str) -> str:
    return "p-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in patient)


def _name(cid: str, titles: dict[str, str]) -> str:
    title = titles.get(cid)
    return f"{_e(cid)} <span class='muted'>{_e(title)}</span>" if title else _e(cid)


def _always_manual(patients: list[PatientResult]) -> list[str]:
    """Criteria unknown for everyone only because a person must judge them: said once, not per row."""
    patients = [p for p in patients if p.status != "error"]  # no criteria to compare
    if not patients:
        return []
    first = [c.id for c in patients[0].criteria if c.reason == MANUAL_REASON]
    return [cid for cid in first if all(_reason(p, cid) == MANUAL_REASON for p in patients)]


def _reason(patient: PatientResult, criterion_id: str) -> str:
    return next((c.reason for c in patient.criteria if c.id == criterion_id), "")


def _candidates(report: ScreeningReport, titles: dict[str, str], manual: list[str]) -> list[str]:
    ranked = ranked_candidates(report)
    parts = ["<section aria-labelledby='h-candidates'><h2 id='h-candidates'>Candidates, closest first</h2>"]
    if not ranked:
        return [*parts, "<p>No candidates.</p></section>"]
    # Judgements every candidate shares are said once; the column keeps what is particular to one.
    own = {
        p.patient: [c for c in p.unknown_criteria() if c.id not in manual and _judgement_only(c)]
        for p in ranked
    }
    shared = set.intersection(*({c.id for c in own[p.patient]} for p in ranked))
    common = [c.id for c in own[ranked[0].patient] if c.id in shared]
    if common:
        named = ", ".join(_name(cid, titles) for cid in common)
        parts.append(f"<p class='small'>For every candidate, people also decide part of: {named}.</p>")
    parts.append(
        "<table><caption>Ranked by what is left to collect, then unknowns, then how recent the data is"
        "</caption><thead><tr><th scope='col' class='num'>#</th><th scope='col'>Patient</th>"
        "<th scope='col'>Collect next</th><th scope='col'>Also for people to decide</th>"
        "<th scope='col'>Latest data</th></tr></thead><tbody>"
    )
    for rank, p in enumerate(ranked, 1):
        items = collect_next(p)
        todo = (
            "<ul class='next'>" + "".join(f"<li>{_e(prose(i))}</li>" for i in items) + "</ul>"
            if items
            else "nothing: ready for review"
        )
        particular = [c for c in own[p.patient] if c.id not in shared]
        people = (
            "; ".join(
                f"{_e(c.id)}: {_e('; '.join(n.text for n in c.resolve.needs if n.decided_by != 'data'))}"
                for c in particular
                if c.resolve
            )
            or "<span class='muted'>nothing else</span>"
        )
        latest = (
            f"<span class='nowrap'>{_e(p.latest_data.isoformat())}</span>"
            if p.latest_data
            else "<span class='muted'>none</span>"
        )
        parts.append(
            f"<tr><td class='num'>{rank}</td><th scope='row'><a href='#{_anchor(p.patient)}'>"
            f"{_e(p.patient)}</a></th><td>{todo}</td><td>{people}</td><td>{latest}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def _judgement_only(c: CriterionResult) -> bool:
    return c.resolve is not None and not _has_data(c)


def _has_data(c: CriterionResult) -> bool:
    return bool(c.resolve and any(n.decided_by == "data" for n in c.resolve.needs))


def _lead(funnel: Funnel, titles: dict[str, str]) -> list[str]:
    """The funnel in one line and its what-ifs: the first thing a person reads."""
    parts = [
        f"<p class='lead'>{funnel.screened} screened &rarr; <strong>{funnel.candidates} candidates</strong>: "
        f"{funnel.ready} ready for review (only people's judgement left), {funnel.blocked_by_unknowns} "
        "blocked only by unknowns (data to collect).</p>"
    ]
    what_ifs = []
    for c in sorted(funnel.criteria, key=lambda c: (-c.only_this, c.id))[:4]:
        if c.only_this:
            what_ifs.append(
                f"{c.only_this} more candidate{'s' if c.only_this > 1 else ''} if {_name(c.id, titles)} "
                "were dropped"
            )
    for c in sorted(funnel.criteria, key=lambda c: (-c.if_met, c.id))[:4]:
        if c.if_met:
            what_ifs.append(
                f"{c.if_met} more ready for review if {_name(c.id, titles)} were met for those with it unknown"
            )
    if what_ifs:
        parts.append("<p>What if:</p><ul>" + "".join(f"<li>{w}</li>" for w in what_ifs) + "</ul>")
    return parts


def _funnel(funnel: Funnel, titles: dict[str, str]) -> list[str]:
    parts = ["<section aria-labelledby='h-funnel'><h2 id='h-funnel'>How the population narrows</h2>"]
    left = {s.id: s.remaining for s in funnel.steps}
    widest = max([c.rules_out for c in funnel.criteria] + [1])
    parts.append(
        "<table><caption>Attrition by criterion (in order: each ruled-out patient counted at the first "
        "criterion that rules them out)</caption><thead><tr><th scope='col'>Criterion</th>"
        "<th scope='col' class='num'>Rules out</th><th scope='col' class='num'>Only this</th>"
        "<th scope='col' class='num'>Remaining</th><th scope='col' class='num'>Unknown</th>"
        "<th scope='col' class='num'>Candidates blocked</th><th scope='col' class='num'>Ready if met</th>"
        "</tr></thead><tbody>"
    )
    for c in funnel.criteria:
        width = round(4 * c.rules_out / widest, 2)
        bar = f"<span class='bar' style='width:{width}rem' aria-hidden='true'></span>" if c.rules_out else ""
        parts.append(
            f"<tr><th scope='row'>{_name(c.id, titles)}</th><td class='num'>{bar}{c.rules_out}</td>"
            f"<td class='num'>{c.only_this}</td><td class='num'>{left.get(c.id, '')}</td>"
            f"<td class='num'>{c.unknown}</td><td class='num'>{c.blocking}</td>"
            f"<td class='num'>{c.if_met}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def _not_eligible(report: ScreeningReport, titles: dict[str, str]) -> list[str]:
    as_of = report.as_of
    out = sorted((p for p in report.patients if p.status == "not-eligible"), key=lambda p: p.patient)
    if not out:
        return []
    parts = [
        "<section aria-labelledby='h-out'><h2 id='h-out'>Not eligible</h2><table>"
        "<caption>Each patient with the criteria that rule them out</caption><thead><tr>"
        "<th scope='col'>Patient</th><th scope='col'>Ruled out by</th></tr></thead><tbody>"
    ]
    for p in out:
        why = "; ".join(f"{_name(c.id, titles)}: {_e(prose(c.reason, as_of))}" for c in p.deciding_criteria())
        parts.append(
            f"<tr><th scope='row'><a href='#{_anchor(p.patient)}'>{_e(p.patient)}</a></th><td>{why}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def _errors(report: ScreeningReport) -> list[str]:
    """Patients whose record could not be screened: not candidates, not excluded; the data needs fixing."""
    errors = [p for p in report.patients if p.status == "error"]
    if not errors:
        return []
    parts = [
        "<section aria-labelledby='h-errors'><h2 id='h-errors'>Could not be screened</h2><p>Their records "
        "hold data the screening could not read. They are neither candidates nor excluded: fix the data "
        "named here and screen again.</p><table><caption>Each patient with the resource and its problem"
        "</caption><thead><tr><th scope='col'>Patient</th><th scope='col'>Why</th></tr></thead><tbody>"
    ]
    for p in errors:
        parts.append(
            f"<tr><th scope='row'><a href='#{_anchor(p.patient)}'>{_e(p.patient)}</a></th>"
            f"<td>{_e(p.reason or '')}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def _unmapped(report: ScreeningReport) -> list[str]:
    entries = report.summary.unmapped
    if not entries:
        return []
    parts = [
        "<section aria-labelledby='h-unmapped'><h2 id='h-unmapped'>For the site's terminologist: codes and "
        "texts no concept set recognises</h2><p>Seen on screened patients; each may hide a fact a criterion "
        "needs. Add them to the site's ConceptMap or report them.</p><table><caption>Unrecognised codes and "
        "texts, most frequent first</caption><thead><tr><th scope='col'>Kind</th><th scope='col'>System</th>"
        "<th scope='col'>Code</th><th scope='col'>Text</th><th scope='col'>Resource</th>"
        "<th scope='col' class='num'>Count</th><th scope='col'>Examples</th></tr></thead><tbody>"
    ]
    for u in sorted(entries, key=lambda u: (-u.count, u.system or "", u.code or "", u.text or "")):
        examples = " ".join(f"<code>{_e(x)}</code>" for x in u.examples[:5])
        parts.append(
            f"<tr><td>{_e(u.kind)}</td><td><code>{_e(u.system or '')}</code></td><td>{_e(u.code or '')}</td>"
            f"<td>{_e(u.text or '')}</td><td>{_e(u.resource_type or '')}</td><td class='num'>{u.count}</td>"
            f"<td>{examples}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def _patient(p: PatientResult, titles: dict[str, str], as_of: date) -> list[str]:
    label = p.status.replace("-", " ")
    parts = [
        f"<section class='patient' aria-labelledby='{_anchor(p.patient)}'>"
        f"<h3 id='{_anchor(p.patient)}'>{_e(p.patient)} <span class='status {_e(p.status)}'>{_e(label)}</span></h3>"
    ]
    if p.status == "error":
        return [*parts, f"<p>Could not be screened: {_e(p.reason or '')}</p></section>"]
    people = judgements(p)
    if p.status == "candidate" and people:
        who = "; ".join(f"{_e(text)} ({_e(by)})" for text, by in people)
        parts.append(f"<p class='small'>For people to decide: {who}.</p>")
    parts.append(
        f"<table><caption>Every criterion for {_e(p.patient)}</caption><thead><tr>"
        "<th scope='col'>Criterion</th><th scope='col'>Result</th><th scope='col'>Why</th>"
        "<th scope='col'>What would settle it</th><th scope='col'>Evidence</th></tr></thead><tbody>"
    )
    for c in p.criteria:
        evidence = " ".join(f"<code>{_e(ref)}</code>" for ref in c.evidence)
        settle = _e(prose(c.resolve.text)) if c.resolve else ""
        parts.append(
            f"<tr><th scope='row'>{_name(c.id, titles)}</th><td class='result {_e(c.result)}'>"
            f"{_e(c.result)}</td><td>{_e(prose(c.reason, as_of))}</td><td>{settle}</td><td>{evidence}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return parts


def to_html(report: ScreeningReport) -> str:
    titles = report.titles()
    summary = report.summary
    funnel = summary.funnel or build_funnel(report.patients)
    manual = _always_manual(report.patients)
    title = f"Screening {report.study} as of {report.as_of.isoformat()}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        "<a class='skip' href='#h-candidates'>Skip to the candidates</a><main>",
        f"<h1>Eligibility screening for {_e(report.study)} as of {_e(report.as_of.isoformat())}</h1>",
        f"<p>{summary.screened} patients screened: <strong>{summary.candidates} candidates</strong> for review, "
        f"{summary.not_eligible} not eligible"
        + (f", <strong>{summary.errors} could not be screened</strong>" if summary.errors else "")
        + ". A candidate is a patient no criterion rules out; every "
        "<span class='unknown'>unknown</span> still needs the study team: collect what is listed, and "
        "people decide the rest. A missing fact is never an exclusion.</p>",
    ]
    if manual:
        named = ", ".join(_name(cid, titles) for cid in manual)
        parts.append(f"<p>Always for the study team's judgement: {named}.</p>")
    parts += _lead(funnel, titles)
    parts += _candidates(report, titles, manual)
    parts += _errors(report)
    parts += _funnel(funnel, titles)
    parts += _not_eligible(report, titles)
    parts += _unmapped(report)
    parts.append("<h2 id='h-patients'>Each patient</h2>")
    for p in [
        *ranked_candidates(report),
        *sorted((p for p in report.patients if p.status != "candidate"), key=lambda p: p.patient),
    ]:
        parts += _patient(p, titles, report.as_of)
    parts.append("</main></body></html>\n")
    return "".join(parts)
