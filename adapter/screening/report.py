"""Screening report formats: JSON (the stable contract), NDJSON (the same contract a patient a line,
for reports too big to read as one document), CSV (a row per patient and criterion), HTML
(for the study team, see ``html_report``) and a plain-text attrition funnel."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

from .funnel import build_funnel, funnel_table
from .resolve import collect_next
from .results import PatientResult, ScreeningReport
from .wording import prose

FORMATS = ("json", "ndjson", "csv", "html", "funnel")
MANUAL_REASON = "requires manual review"


def render(report: ScreeningReport, fmt: str) -> str:
    if fmt == "json":
        # pydantic's serializer writes the same bytes as json.dumps(indent=2, ensure_ascii=False) of
        # to_json_dict(), about 3x faster (the stdlib falls back to pure Python when indenting)
        return report.model_dump_json(indent=2, by_alias=True) + "\n"
    if fmt == "ndjson":
        return "".join(ndjson_lines(report))
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        from .html_report import to_html

        return to_html(report)
    if fmt == "funnel":
        table = funnel_table(report.summary.funnel or build_funnel(report.patients), report.titles())
        return table + candidates_text(report) + errors_text(report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def ndjson_lines(report: ScreeningReport) -> Iterator[str]:
    """Each patient's result (the JSON report's ``patients`` item) a line, in the report's order, then
    one last line: the report without ``patients`` (study, asOf, summary, criteria, concepts). A reader
    tells them apart by ``patient`` / ``summary``."""
    for patient in report.patients:
        yield patient.model_dump_json(by_alias=True) + "\n"
    yield report.model_dump_json(by_alias=True, exclude={"patients"}) + "\n"


def to_csv(report: ScreeningReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["study", "asOf", "patient", "status", "criterion", "type", "result", "reason", "evidence", "resolve"]
    )
    for patient in report.patients:
        if patient.status == "error":  # one row: no criterion was screened, the reason says why
            row = [report.study, report.as_of.isoformat(), patient.patient, patient.status, "", "", ""]
            writer.writerow([*row, patient.reason or "", "", ""])
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
                    c.resolve.text if c.resolve else "",
                ]
            )
    return out.getvalue()


def rank_key(patient: PatientResult) -> tuple[int, int, int, str]:
    """Closest first: fewest things to collect, then fewest unknowns, then the most recent data."""
    recent = -(patient.latest_data or date.min).toordinal()
    return (len(collect_next(patient)), len(patient.unknown_criteria()), recent, patient.patient)


def ranked_candidates(report: ScreeningReport) -> list[PatientResult]:
    return sorted((p for p in report.patients if p.status == "candidate"), key=rank_key)


def candidates_text(report: ScreeningReport) -> str:
    """Candidates closest first, one line each with what to collect next."""
    lines = ["", "Candidates, closest first:"]
    for rank, p in enumerate(ranked_candidates(report), 1):
        todo = "; ".join(prose(item) for item in collect_next(p)) or "nothing: ready for review"
        lines.append(f"{rank:>3}. {p.patient}: collect next: {todo}")
    return "\n".join(lines) + "\n"


def errors_text(report: ScreeningReport) -> str:
    """The patients that could not be screened, each with the reason (nothing when there are none)."""
    errors = [p for p in report.patients if p.status == "error"]
    if not errors:
        return ""
    lines = ["", f"Could not be screened ({len(errors)}): fix the data and screen again:"]
    lines += [f"  {p.patient}: {p.reason}" for p in errors]
    return "\n".join(lines) + "\n"
