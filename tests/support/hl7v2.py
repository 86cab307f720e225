"""HL7 v2 test messages (synthetic patients only), built segment by segment.

Clinical codes are the ones verified in mappings/studies/NCT06849401/criteria.yaml and tests/support/clinical.py
(LOINC 777-3 platelets, 1975-2 bilirubin; ICD-10-CM C91.02; SNOMED 277575008, 260385009); panel
codes are local (99LAB) on purpose."""

from __future__ import annotations

from datetime import date

MRN_OID = "1.2.36.146.595.217.0.1"  # the MRN system the HTTP service tests use (urn:oid:...)


def msh(
    control_id: str, message_type: str = "ORU^R01^ORU_R01", facility: str = "LAB1", extra: str = ""
) -> str:
    # MSH-15 / MSH-18 etc. may be appended through ``extra`` ("|||AL" puts AL in MSH-15).
    return f"MSH|^~\\&|LIS|{facility}|TRIAL-ADAPTER|STUDY|20261123101500||{message_type}|{control_id}|P|2.5.1{extra}"


def pid(mrn: str, birth: date | str = "20140615", sex: str = "F", extra: str = "") -> str:
    born = birth.strftime("%Y%m%d") if isinstance(birth, date) else birth
    return f"PID|1||{mrn}^^^HOSP&{MRN_OID}&ISO^MR||Test^Pat^^^^^L||{born}|{sex}{extra}"


def obr(filler: str, when: str = "202611230900+0000", placer: str = "") -> str:
    return f"OBR|1|{placer}|{filler}^LAB1|FBC^Full blood count^99LAB|||{when}"


def obx(
    set_id: int,
    value: str,
    code: str = "777-3^Platelets^LN",
    vtype: str = "NM",
    units: str = "10*9/L^^UCUM",
    status: str = "F",
    when: str = "",
    ref_range: str = "150-400",
    flags: str = "",
) -> str:
    return f"OBX|{set_id}|{vtype}|{code}||{value}|{units}|{ref_range}|{flags}|||{status}|||{when}"


def message(*segments: str, sep: str = "\r") -> bytes:
    return (sep.join(segments) + sep).encode()


def oru(
    control_id: str, mrn: str, filler: str, *obxs: str, facility: str = "LAB1", birth: date | str = "20140615"
) -> bytes:
    return message(msh(control_id, facility=facility), pid(mrn, birth), obr(filler), *obxs)


def adt(control_id: str, mrn: str, event: str = "A08", *extra: str, birth: date | str = "20140615") -> bytes:
    return message(
        msh(control_id, f"ADT^{event}^ADT_A01", facility="ADT1"),
        f"EVN|{event}|20261123101500",
        pid(mrn, birth),
        "PV1|1|I|WARD^1^1||||||||||||||||V"
        + control_id[-6:]
        + "^^^HOSP&"
        + MRN_OID
        + "&ISO^VN|||||||||||||||||||||||||202611200800",
        *extra,
    )
