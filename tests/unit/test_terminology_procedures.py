"""Issue 12: surgery is recognised by concept (descendants of SNOMED CT 387713003), and a recent
Procedure whose name reads as an operation but whose code the shipped subtree does not know goes to
review (`unknown`), never silently `not-met` and never a confident `met`."""

from __future__ import annotations

from adapter.screening.reads import ScreeningReads
from tests.support.clinical import SCT, days_ago, definition, evaluate, patient, procedure

SURGERY = "exclusion-17"


def named(code: str, display: str, ago: int | None, status: str = "completed") -> dict:
    resource = procedure((SCT, code))
    resource["status"] = status
    resource["code"]["coding"][0]["display"] = display
    resource.pop("performedPeriod", None)
    resource.pop("performedDateTime", None)
    if ago is not None:
        resource["performedDateTime"] = days_ago(ago)
    return resource


def test_a_coded_descendant_of_surgical_procedure_in_the_window_excludes():
    result = evaluate(SURGERY, patient(), named("6025007", "Laparoscopic appendectomy", 7))
    assert result.result == "met" and "surgery within 28 days on record" in result.reason


def test_an_operation_known_only_by_name_is_unknown_at_the_window_boundary():
    inside = evaluate(SURGERY, patient(), named("80146002", "Appendectomy", 28))
    outside = evaluate(SURGERY, patient(), named("80146002", "Appendectomy", 29))
    assert inside.result == "unknown" and '"Appendectomy"' in inside.reason
    assert inside.evidence and outside.result == "not-met"


def test_an_undated_operation_by_name_is_unknown_and_a_cancelled_one_is_ignored():
    assert evaluate(SURGERY, patient(), named("80146002", "Appendectomy", None)).result == "unknown"
    cancelled = named("80146002", "Appendectomy", 3, status="entered-in-error")
    assert evaluate(SURGERY, patient(), cancelled).result == "not-met"


def test_procedures_whose_names_do_not_read_as_operations_do_not_count():
    for display in ("Bone marrow aspiration", "Lumbar puncture", "Echocardiography", "Dental scaling"):
        assert evaluate(SURGERY, patient(), named("1", display, 3)).result == "not-met", display


def test_text_as_well_as_display_is_read_and_files_keep_such_procedures():
    by_text = named("1", "local", 5)
    by_text["code"]["text"] = "Excision of lesion of skin"
    assert evaluate(SURGERY, patient(), by_text).result == "unknown"
    reads = ScreeningReads(definition())
    assert reads.reads(by_text) and not reads.reads(named("1", "Lumbar puncture", 5))
