"""Screening report formats: JSON (the stable contract), CSV (a row per patient and criterion), HTML."""

from __future__ import annotations

import csv
import html
import io
import json

from .results import PatientResult, ScreeningReport

FORMATS = ("json", "csv", "html")
MANUAL_REASON = "requires manual review"


def _reason(patient: PatientResult, criterion_id: str) -> str:
    return next((c.reason for c in patient.criteria if c.id == criterion_id), "")


def render(report: ScreeningReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def to_csv(report: ScreeningReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["study", "asOf", "patient", "status", "criterion", "type", "result", "reason", "evidence"]
    )
    for patient in report.patients:
        for c in patient.criteria:
            writer.writerow(
                [
                    report.study,
                    report.as_of.isoformat(),
                    patient.patient,
                    patient.status,
                    c.id,
                    c.type,
                    c.result,
                    c.reason,
                    " ".join(c.evidence),
                ]
            )
    return out.getvalue()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:75rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f3f3f3} .met{color:#0a6b2d} .not-met{color:#a11} .unknown{color:#8a6100}
.candidate{background:#e8f6ec} .not-eligible{background:#fbeaea}
.badge{padding:.1rem .4rem;border-radius:.3rem;font-weight:600}
code{font-size:.8rem}
"""


def _criteria_rows(patient: PatientResult) -> str:
    rows = []
    for c in patient.criteria:
        evidence = " ".join(f"<code>{html.escape(ref)}</code>" for ref in c.evidence)
        rows.append(
            f"<tr><td>{html.escape(c.id)}</td><td class='{c.result}'>{c.result}</td>"
            f"<td>{html.escape(c.reason)}</td><td>{evidence}</td></tr>"
        )
    return "".join(rows)


def to_html(report: ScreeningReport) -> str:
    ordered = sorted(report.patients, key=lambda p: (p.status != "candidate", p.patient))
    summary = report.summary
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Screening {html.escape(report.study)} {report.as_of.isoformat()}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Eligibility screening for {html.escape(report.study)} as of {report.as_of.isoformat()}</h1>",
        f"<p>{summary.screened} patients screened: <strong>{summary.candidates} candidates</strong> for review, "
        f"{summary.not_eligible} not eligible. Candidates are listed first. A candidate is a patient that no "
        "criterion rules out: every <span class='unknown'>unknown</span> criterion still needs the study "
        "team's review.</p>",
    ]
    # Criteria that are unknown for everyone only because a person must judge them: say so once.
    manual = [c.id for c in ordered[0].criteria if c.reason == MANUAL_REASON] if ordered else []
    manual = [cid for cid in manual if all(_reason(p, cid) == MANUAL_REASON for p in ordered)]
    if manual:
        parts.append(f"<p>Always for the study team's judgement: {', '.join(manual)}.</p>")
    parts.append(
        "<table><tr><th>Patient</th><th>Status</th><th>Unknown (data missing, unclear or partly manual)</th>"
        "<th>Ruled out by</th></tr>"
    )
    for p in ordered:
        unknown = ", ".join(c.id for c in p.unknown_criteria() if c.id not in manual)
        deciding = ", ".join(c.id for c in p.deciding_criteria())
        anchor = html.escape(p.patient.replace("/", "-"))
        parts.append(
            f"<tr class='{p.status}'><td><a href='#{anchor}'>{html.escape(p.patient)}</a></td>"
            f"<td><span class='badge'>{p.status}</span></td><td>{unknown}</td><td>{deciding}</td></tr>"
        )
    parts.append("</table>")
    for p in ordered:
        anchor = html.escape(p.patient.replace("/", "-"))
        parts.append(f"<h2 id='{anchor}' class='{p.status}'>{html.escape(p.patient)}: {p.status}</h2>")
        parts.append("<table><tr><th>Criterion</th><th>Result</th><th>Reason</th><th>Evidence</th></tr>")
        parts.append(_criteria_rows(p))
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)
