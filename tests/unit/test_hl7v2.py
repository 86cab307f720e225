"""HL7 v2 -> FHIR: parsing (python-hl7 underneath), the IG's segment and data-type maps, ACKs."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.hl7v2.ack import build_ack, msh_fields, wants_ack
from adapter.hl7v2.convert import header, to_bundle
from adapter.hl7v2.datatypes import Context
from adapter.hl7v2.message import V2Error, parse
from adapter.service.checks import check_bundle
from tests.support.hl7v2 import MRN_OID, adt, message, msh, obr, obx, oru, pid

LOINC = "http://loinc.org"


def convert(raw: bytes, tz: str = "UTC") -> dict[str, Any]:
    msg = parse(raw)
    head = header(msg)
    bundle = to_bundle(msg, head, Context(head.facility_names[0], tz=ZoneInfo(tz)))
    check_bundle(bundle, 1000)  # always valid FHIR R4 (the service's own input checks)
    return bundle


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def error_of(raw: bytes) -> V2Error:
    with pytest.raises(V2Error) as caught:
        convert(raw)
    return caught.value


def test_oru_maps_patient_report_and_observations():
    bundle = convert(
        oru(
            "m1",
            "MRN1",
            "F100",
            obx(1, "150", flags="N"),
            obx(2, "0.1", code="1975-2^Bilirubin total^LN", units="mg/dL", ref_range="0.2-1.2", flags="L"),
        )
    )
    assert bundle["type"] == "transaction"
    [patient] = resources(bundle, "Patient")
    assert patient["identifier"][0]["system"] == f"urn:oid:{MRN_OID}"
    assert patient["identifier"][0]["value"] == "MRN1"
    assert patient["birthDate"] == "2014-06-15" and patient["gender"] == "female"
    assert patient["name"] == [{"family": "Test", "given": ["Pat"], "use": "official"}]
    [report] = resources(bundle, "DiagnosticReport")
    platelets, bilirubin = resources(bundle, "Observation")
    assert platelets["code"]["coding"][0] == {"system": LOINC, "code": "777-3", "display": "Platelets"}
    assert platelets["valueQuantity"] == {
        "value": 150,
        "unit": "10*9/L",
        "system": "http://unitsofmeasure.org",
        "code": "10*9/L",
    }
    assert platelets["status"] == "final"
    assert platelets["effectiveDateTime"] == "2026-11-23T09:00:00+00:00"  # OBX-14 empty: OBR-7
    assert (
        platelets["referenceRange"][0]["low"]["value"] == 150
        and platelets["referenceRange"][0]["high"]["value"] == 400
    )
    assert bilirubin["interpretation"][0]["coding"][0]["code"] == "L"
    assert {r["reference"] for r in report["result"]} == {
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    }
    patient_url = bundle["entry"][0]["fullUrl"]
    assert platelets["subject"] == {"reference": patient_url}
    # Deterministic identifiers: filler order number + OBX set id under the facility's system.
    assert platelets["identifier"] == [
        {"system": "http://trial-adapter.org/fhir/v2/LAB1/observation", "value": "F100-1"}
    ]
    # The results' patient: a conditional create (links, never updates); the rest: conditional updates.
    assert bundle["entry"][0]["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": f"identifier=urn%3Aoid%3A{MRN_OID}%7CMRN1",
    }
    assert all(
        e["request"]["method"] == "PUT" and "?identifier=" in e["request"]["url"] for e in bundle["entry"][1:]
    )


@pytest.mark.parametrize("event", ["A01", "A04", "A08", "A28", "A31"])
def test_adt_updates_the_patient_and_oru_only_creates_it_if_absent(event):
    [adt_patient] = [
        e for e in convert(adt("a", "M", event))["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert adt_patient["request"] == {"method": "PUT", "url": f"Patient?identifier=urn%3Aoid%3A{MRN_OID}%7CM"}
    minimal = message(msh("o"), f"PID|1||M^^^HOSP&{MRN_OID}&ISO^MR", obr("F1"), obx(1, "150"))
    bundle = convert(minimal)
    [oru_patient] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert oru_patient["request"]["method"] == "POST" and "birthDate" not in oru_patient["resource"]
    assert resources(bundle, "Observation")[0]["subject"] == {"reference": oru_patient["fullUrl"]}


def test_the_same_message_twice_gives_the_same_bundle_and_a_correction_the_same_identifiers():
    first = convert(oru("m1", "MRN1", "F100", obx(1, "150")))
    again = convert(oru("m1", "MRN1", "F100", obx(1, "150")))
    corrected = convert(oru("m2", "MRN1", "F100", obx(1, "140", status="C")))
    assert first == again
    obs, fixed = resources(first, "Observation")[0], resources(corrected, "Observation")[0]
    assert fixed["identifier"] == obs["identifier"] and fixed["status"] == "corrected"
    assert [e["fullUrl"] for e in corrected["entry"]] == [e["fullUrl"] for e in first["entry"]]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("F", "final"),
        ("C", "corrected"),
        ("P", "preliminary"),
        ("X", "cancelled"),
        ("W", "entered-in-error"),
        ("D", "entered-in-error"),
        ("A", "amended"),
    ],
)
def test_obx11_result_status(status, expected):
    assert (
        resources(convert(oru("m", "M", "F", obx(1, "1", status=status))), "Observation")[0]["status"]
        == expected
    )


@pytest.mark.parametrize(
    ("vtype", "value", "units", "expected"),
    [
        (
            "NM",
            "7.25",
            "mmol/L^^UCUM",
            {
                "valueQuantity": {
                    "value": 7.25,
                    "unit": "mmol/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/L",
                }
            },
        ),
        ("NM", "80", "x10E9/L", {"valueQuantity": {"value": 80, "unit": "x10E9/L"}}),  # not UCUM: unit only
        (
            "NM",
            "<10",
            "10*9/L",
            {
                "valueQuantity": {
                    "value": 10,
                    "comparator": "<",
                    "unit": "10*9/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "10*9/L",
                }
            },
        ),
        ("ST", "no growth", "", {"valueString": "no growth"}),
        (
            "CWE",
            "260385009^Negative^SCT",
            "",
            {
                "valueCodeableConcept": {
                    "coding": [
                        {"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}
                    ],
                    "text": "Negative",
                }
            },
        ),
        (
            "CE",
            "NEG^Negative^L",
            "",
            {
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://trial-adapter.org/fhir/v2/LAB1/L",
                            "code": "NEG",
                            "display": "Negative",
                        }
                    ],
                    "text": "Negative",
                }
            },
        ),
        (
            "SN",
            "<^5",
            "10*9/L^^UCUM",
            {
                "valueQuantity": {
                    "value": 5,
                    "comparator": "<",
                    "unit": "10*9/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "10*9/L",
                }
            },
        ),
        ("SN", "^1^:^128", "", {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}),
        (
            "SN",
            "^2^-^5",
            "%^^UCUM",
            {
                "valueRange": {
                    "low": {"value": 2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
                    "high": {"value": 5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
                }
            },
        ),
    ],
)
def test_obx_value_types(vtype, value, units, expected):
    observation = resources(
        convert(oru("m", "M", "F", obx(1, value, vtype=vtype, units=units, ref_range=""))), "Observation"
    )[0]
    got = {k: v for k, v in observation.items() if k.startswith("value")}
    assert got == expected


def test_local_codes_stay_local_under_the_sending_facility():
    observation = resources(
        convert(oru("m", "M", "F", obx(1, "85", code="CD7BL^CD7+ blasts^99LAB", units="%"))), "Observation"
    )[0]
    assert observation["code"]["coding"][0]["system"] == "http://trial-adapter.org/fhir/v2/LAB1/99LAB"


def test_dates_keep_their_offset_and_times_without_one_are_in_the_site_zone():
    raw = oru("m", "M", "F", obx(1, "1", when="202611230930+0100"), obx(2, "1", when="202611230930"))
    first, second = resources(convert(raw, tz="Europe/Paris"), "Observation")
    assert first["effectiveDateTime"] == "2026-11-23T09:30:00+01:00"
    assert second["effectiveDateTime"] == "2026-11-23T09:30:00+01:00"  # Paris in November
    assert resources(convert(raw), "Observation")[1]["effectiveDateTime"] == "2026-11-23T09:30:00+00:00"


def test_pid_death_and_sex():
    dead = convert(message(msh("m", "ADT^A08"), pid("M", extra="|" + "|" * 20 + "20261101|Y")))
    assert resources(dead, "Patient")[0]["deceasedDateTime"] == "2026-11-01"
    flagged = convert(message(msh("m", "ADT^A08"), pid("M", sex="U", extra="|" + "|" * 20 + "|Y")))
    assert resources(flagged, "Patient")[0]["deceasedBoolean"] is True
    assert resources(flagged, "Patient")[0]["gender"] == "unknown"


def test_adt_with_visit_and_diagnoses():
    bundle = convert(
        adt(
            "a1",
            "M9",
            "A01",
            "DG1|1||C91.02^ALL in relapse^I10C||20261101|F",
            "PRB|AD||277575008^T-ALL^SCT|P1^LAB1||||||||||||20261001",
        )
    )
    [encounter] = resources(bundle, "Encounter")
    assert encounter["class"]["code"] == "IMP" and encounter["status"] == "in-progress"
    assert encounter["period"]["start"] == "2026-11-20T08:00:00+00:00"
    diagnosis, problem = resources(bundle, "Condition")
    assert diagnosis["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10-cm",
        "code": "C91.02",
        "display": "ALL in relapse",
    }
    assert (
        diagnosis["onsetDateTime"] == "2026-11-01"
        and diagnosis["encounter"]["reference"] == bundle["entry"][1]["fullUrl"]
    )
    assert (
        problem["code"]["coding"][0]["system"] == "http://snomed.info/sct"
        and problem["onsetDateTime"] == "2026-10-01"
    )


@pytest.mark.parametrize("event", ["A01", "A04", "A08", "A28", "A31"])
def test_every_adt_event_is_accepted(event):
    assert resources(convert(adt("a", "M", event)), "Patient")


def test_escapes_repetitions_and_line_endings():
    raw = message(
        msh("m"),
        pid("M").replace("Test^Pat", "O\\S\\Brien\\F\\x\\T\\y^Ann~Alias^Bea"),
        obr("F"),
        obx(1, "a\\E\\b\\X41\\", vtype="ST", units=""),
        sep="\r\n",
    )
    bundle = convert(raw)
    patient = resources(bundle, "Patient")[0]
    assert patient["name"][0]["family"] == "O^Brien|x&y" and patient["name"][1]["given"] == ["Bea"]
    assert resources(bundle, "Observation")[0]["valueString"] == "a\\bA"
    assert convert(raw.replace(b"\r\n", b"\n")) == bundle


@pytest.mark.parametrize(
    ("charset", "codec"), [("8859/1", "iso-8859-1"), ("UNICODE UTF-8", "utf-8"), ("", "utf-8")]
)
def test_character_sets(charset, codec):
    raw = message(
        msh("m", extra="||||||" + charset), pid("M").replace("Test", "Müller"), obr("F"), obx(1, "1")
    )
    assert resources(convert(raw.decode().encode(codec)), "Patient")[0]["name"][0]["family"] == "Müller"


@pytest.mark.parametrize(
    ("raw", "code", "where", "ack"),
    [
        (b"hello world", "100", "", "AR"),
        (b"PID|1||M\r", "100", "", "AR"),
        (message(msh("m").replace("^~\\&", "^^^^")), "102", "MSH-2", "AR"),
        (message(msh("m", "ORM^O01"), pid("M")), "200", "MSH-9", "AR"),
        (message(msh("m", "ADT^A03"), pid("M")), "201", "MSH-9", "AR"),
        (message(msh("m").replace("|P|", "|T|"), pid("M")), "202", "MSH-11", "AR"),
        (message(msh("")), "101", "MSH-10", "AR"),
        (message(msh("m"), obr("F"), obx(1, "1")), "100", "OBR", "AE"),
        (message(msh("m"), pid("M")), "100", "OBX", "AE"),
        (message(msh("m"), "PID|1||"), "101", "PID-3", "AE"),
        (oru("m", "M", "F", obx(1, "12,5")), "102", "OBX-5", "AE"),
        (oru("m", "M", "F", obx(1, "1", status="")), "101", "OBX-11", "AE"),
        (oru("m", "M", "F", obx(1, "1", status="Q")), "103", "OBX-11", "AE"),
        (oru("m", "M", "F", obx(1, "1", vtype="ED")), "102", "OBX-2", "AE"),
        (oru("m", "M", "F", obx(1, "1", when="20261345")), "102", "OBX-14", "AE"),
        (message(msh("m", extra="||||||KOI8"), pid("M")), "103", "MSH-18", "AE"),
        (
            message(msh("m", extra="||||||UNICODE UTF-8"), pid("M")).replace(b"Test", b"T\xe9st"),
            "102",
            "MSH-18",
            "AE",
        ),
    ],
)
def test_bad_messages_name_the_problem(raw, code, where, ack):
    error = error_of(raw)
    assert (error.code, error.location, error.ack) == (code, where, ack)


def test_ack_accept_and_error_without_patient_data():
    raw = oru("CTRL42", "MRN-SECRET", "F", obx(1, "1", status="Q"))
    error = error_of(raw)
    ack = build_ack(raw, "AE", error).decode()
    segments = ack.split("\r")
    assert segments[0].startswith("MSH|^~\\&|TRIAL-ADAPTER|STUDY|LIS|LAB1|")
    assert "|ACK^R01^ACK|" in segments[0]
    assert segments[1].startswith("MSA|AE|CTRL42|")
    assert segments[2].startswith("ERR||OBX^1^11|103^Table value not found^HL70357|E|")
    assert "MRN-SECRET" not in ack and "Test" not in ack
    assert build_ack(raw, "AA").decode().split("\r")[1] == "MSA|AA|CTRL42"


def test_enhanced_mode_acks():
    always = message(msh("m", extra="|||AL"), pid("M"))
    assert build_ack(always, "AA").decode().split("\r")[1] == "MSA|CA|m"
    errors_only = msh_fields(message(msh("m", extra="|||ER")))
    assert not wants_ack(errors_only, ok=True) and wants_ack(errors_only, ok=False)
    assert not wants_ack(msh_fields(message(msh("m", extra="|||NE"))), ok=False)
    assert wants_ack(msh_fields(message(msh("m"))), ok=True)  # original mode: always


def test_birth_date_from_a_date_object():
    bundle = convert(oru("m", "M", "F", obx(1, "1"), birth=date(2015, 2, 3)))
    assert resources(bundle, "Patient")[0]["birthDate"] == "2015-02-03"


_VALID = oru("FZ", "M", "F", obx(1, "150"), obx(2, "<^5", vtype="SN"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_any_bytes_give_a_bundle_or_a_v2_error(raw):
    with contextlib.suppress(V2Error):
        convert(b"MSH|^~\\&|" + raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.sampled_from(list(b"|^~\\&\r\n 0X.-+<"))), max_size=8
    )
)
def test_damaged_messages_give_a_valid_bundle_or_a_v2_error(edits):
    raw = bytearray(_VALID)
    for index, byte in edits:
        raw[index] = byte
    with contextlib.suppress(V2Error):
        convert(bytes(raw))  # convert() also checks the Bundle is valid FHIR


def test_adt_observation_outside_an_order_is_identified_by_patient_code_and_time():
    extra = obx(1, "32.5", code="WT^Weight^99ADT", units="kg^^UCUM", ref_range="", when="202611230800")
    first = resources(convert(adt("a1", "M", "A08", extra)), "Observation")[0]
    resent = resources(convert(adt("a2", "M", "A08", extra)), "Observation")[0]  # a new MSH-10, same fact
    assert first["identifier"] == resent["identifier"]
    assert "category" not in first and first["valueQuantity"]["code"] == "kg"


def test_sending_facility_universal_id_is_matched_too():
    head = header(parse(message(msh("m", facility="LAB1^2.16.840.1.113883.19.5^ISO"), pid("M"))))
    assert head.facility_names == ("LAB1", "2.16.840.1.113883.19.5")
    assert head.key == "LIS|LAB1^2.16.840.1.113883.19.5^ISO|m"
