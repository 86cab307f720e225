"""What changed since the last pass, from the worker's state: for ``trial-adapter report --state FILE``
and ``GET /report`` on the worker's listener.

- new candidates: candidates now, not before (or screened for the first time), with what to collect;
- newly ineligible: candidates before, ruled out now, with the criteria that rule them out;
- unknowns resolved: criteria unknown before and decided now, with the new result;
- reviewed: patients whose ResearchSubject a person moved on (never overwritten by the adapter), with
  the status and who set it.

"Since" defaults to the start of the latest full (daily) pass: what changed since yesterday's screening.
A worker serving several studies reports each (study, patient) pair: every item names its study.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from adapter.screening.funnel import rules_out
from adapter.screening.resolve import collect_next
from adapter.screening.results import PatientResult
from adapter.screening.wording import prose

from .state import HistoryRow, WorkerState

FULL_PASS_STARTED = "full_pass_started"
FORMATS = ("text", "json", "html")


def default_since(state: WorkerState) -> datetime | None:
    value = state.get(FULL_PASS_STARTED)
    return datetime.fromisoformat(value) if value else None


def _deciding(result: PatientResult) -> list[dict[str, str]]:
    return [{"id": c.id, "reason": prose(c.reason)} for c in result.criteria if rules_out(c)]


def what_changed(
    state: WorkerState,
    since: datetime | None = None,
    titles: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """``titles``: per study, each criterion's short title."""
    since = since if since is not None else default_since(state)
    titles = titles or {}
    report: dict[str, Any] = {
        "since": since.isoformat() if since else None,
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "newCandidates": [],
        "newlyIneligible": [],
        "unknownsResolved": [],
        "reviewed": [],
    }
    for row in state.history(since):
        _classify(row, report, titles.get(row.study) or {})
    return report


def _classify(row: HistoryRow, report: dict[str, Any], titles: Mapping[str, str]) -> None:
    now, before = row.current, row.previous
    base = {
        "study": row.study,
        "patient": row.patient,
        "changedAt": row.changed_at.isoformat(timespec="seconds"),
    }
    if row.reviewed:
        report["reviewed"].append({**base, **row.reviewed})
    if now.status == "candidate" and (before is None or before.status != "candidate"):
        report["newCandidates"].append(
            {**base, "firstScreened": before is None, "collectNext": collect_next(now)}
        )
    if now.status != "candidate" and before is not None and before.status == "candidate":
        report["newlyIneligible"].append({**base, "ruledOutBy": _deciding(now)})
    if before is not None:
        earlier = {c.id: c for c in before.criteria if c.result == "unknown"}
        settled = [
            {"id": c.id, "title": titles.get(c.id, ""), "result": c.result, "reason": prose(c.reason)}
            for c in now.criteria
            if c.id in earlier and c.result != "unknown"
        ]
        if settled:
            report["unknownsResolved"].append({**base, "criteria": settled})


# --- rendering ----------------------------------------------------------------------------------


def _who(item: dict[str, Any]) -> str:
    return f"{item.get('study', '')} {item['patient']}".strip()


def to_text(report: dict[str, Any]) -> str:
    since = report["since"] or "the first pass"
    lines = [f"What changed since {since}"]
    lines.append(f"\nNew candidates ({len(report['newCandidates'])})")
    for item in report["newCandidates"]:
        first = " (first screened)" if item["firstScreened"] else ""
        todo = "; ".join(item["collectNext"]) or "nothing to collect: ready for review"
        lines.append(f"  {_who(item)}{first}: collect next: {todo}")
    lines.append(f"\nNewly ineligible ({len(report['newlyIneligible'])})")
    for item in report["newlyIneligible"]:
        why = "; ".join(f"{c['id']}: {c['reason']}" for c in item["ruledOutBy"])
        lines.append(f"  {_who(item)}: {why}")
    lines.append(f"\nUnknowns resolved ({len(report['unknownsResolved'])})")
    for item in report["unknownsResolved"]:
        for c in item["criteria"]:
            title = f" {c['title']}" if c["title"] else ""
            lines.append(f"  {_who(item)}: {c['id']}{title} now {c['result']}: {c['reason']}")
    lines.append(f"\nReviewed by a person ({len(report['reviewed'])})")
    for item in report["reviewed"]:
        lines.append(f"  {_who(item)}: reviewed, status {item.get('status')} set by {item.get('by')}")
    return "\n".join(lines) + "\n"


def to_html(report: dict[str, Any]) -> str:
    def e(value: Any) -> str:
        return escape(str(value), quote=True)

    def table(caption: str, head: list[str], rows: list[list[str]]) -> str:
        if not rows:
            return f"<p>{e(caption)}: none.</p>"
        header = "".join(f"<th scope='col'>{e(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + f"<th scope='row'>{r[0]}</th>" + "".join(f"<td>{c}</td>" for c in r[1:]) + "</tr>"
            for r in rows
        )
        return f"<table><caption>{e(caption)}</caption><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"

    since = report["since"] or "the first pass"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>What changed</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:70rem;padding:0 1rem;color:#1b1b1b}"
        "table{border-collapse:collapse;width:100%;margin:.4rem 0 1.2rem}caption{text-align:left;font-weight:600}"
        "th,td{border:1px solid #c4c9cf;padding:.3rem .5rem;text-align:left;vertical-align:top}"
        "thead th{background:#eef1f4}a:focus-visible{outline:3px solid #f0a800}"
        "</style></head><body><main>",
        f"<h1>What changed since {e(since)}</h1>",
        table(
            "New candidates",
            ["Patient", "Study", "Collect next"],
            [
                [
                    e(i["patient"]),
                    e(i.get("study", "")),
                    e("; ".join(i["collectNext"]) or "nothing: ready for review"),
                ]
                for i in report["newCandidates"]
            ],
        ),
        table(
            "Newly ineligible",
            ["Patient", "Study", "Ruled out by"],
            [
                [
                    e(i["patient"]),
                    e(i.get("study", "")),
                    e("; ".join(f"{c['id']}: {c['reason']}" for c in i["ruledOutBy"])),
                ]
                for i in report["newlyIneligible"]
            ],
        ),
        table(
            "Unknowns resolved",
            ["Patient", "Study", "Criteria now decided"],
            [
                [
                    e(i["patient"]),
                    e(i.get("study", "")),
                    e("; ".join(f"{c['id']} {c['result']}: {c['reason']}" for c in i["criteria"])),
                ]
                for i in report["unknownsResolved"]
            ],
        ),
        table(
            "Reviewed by a person (never changed by the adapter)",
            ["Patient", "Study", "Status", "Set by"],
            [
                [e(i["patient"]), e(i.get("study", "")), e(i.get("status")), e(i.get("by"))]
                for i in report["reviewed"]
            ],
        ),
        "</main></body></html>\n",
    ]
    return "".join(parts)


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return to_html(report)
    return to_text(report)
