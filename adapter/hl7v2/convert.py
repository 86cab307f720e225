"""One HL7 v2 message -> one FHIR transaction Bundle of conditional updates (and creates, see below).

Messages: ORU^R01 (PID [PV1] {OBR {OBX}}, several patients allowed) and ADT^A01/A04/A08/A28/A31
(PID [PV1] [OBX] [DG1] [PRB]). Segments we do not map (NTE, NK1, Z-segments, ...) are skipped.

Every resource has a business identifier that the same fact keeps across messages, so a resend or a
correction (OBX-11 C) updates the resource instead of adding one (the IG's advice: identifiers from
the sending facility and the placer/filler order numbers plus the OBX set id):
- Patient: PID-3 (CX with its assigning authority); Encounter: PV1-19;
- DiagnosticReport: the filler order number OBR-3 (else the placer number OBR-2);
- Observation: OBX-21 if sent, else <filler (or placer) number>-<OBX-1>[-<OBX-4>] under the sending
  facility's system; an OBX outside an order: the patient, OBX-3 and OBX-14;
- Condition: DG1-20 / PRB-4 if sent, else the patient and the diagnosis code.

Who owns the demographics: an ADT message's PID is the patient's current record (a conditional update),
while an ORU's PID only says whom the results are about. Its Patient entry is a conditional create
(``POST`` + ``ifNoneExist``): the results link to the Patient already on the server and a lab system's
minimal or stale PID never rewrites a birth date; with no Patient there yet, it is created and the next
ADT message completes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from adapter.fhir.transaction import identifier_condition, transaction, uuid_urn

from . import segments as seg_map
from .datatypes import Context, date_time, entity_identifier, hd_system
from .message import (
    REQUIRED_MISSING,
    SEGMENT_SEQUENCE,
    UNSUPPORTED_EVENT,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION,
    Message,
    Segment,
    V2Error,
)

SUPPORTED = {"ORU": frozenset({"R01"}), "ADT": frozenset({"A01", "A04", "A08", "A28", "A31"})}
PROCESSING_IDS = frozenset({"P"})  # production only: training/debug data never reaches the record


@dataclass(frozen=True)
class Header:
    sending_application: str  # MSH-3 as sent (all components)
    sending_facility: str  # MSH-4 as sent
    facility_names: tuple[str, ...]  # MSH-4 HD.1 and HD.2: what the allow-list matches
    control_id: str  # MSH-10
    message_type: str
    event: str
    version: str
    accept_ack: str  # MSH-15 (empty: original acknowledgement mode)

    @property
    def key(self) -> str:
        """What makes a message a repeat: sending application + facility + MSH-10."""
        return f"{self.sending_application}|{self.sending_facility}|{self.control_id}"


def header(msg: Message) -> Header:
    msh = msg.msh
    control_id = msh.get(10)
    if not control_id:
        raise V2Error(
            REQUIRED_MISSING, "MSH-10 (message control id) is required", segment="MSH", field=10, ack="AR"
        )
    facility = msh.component(4, 1) + msh.component(4, 2) + msh.component(4, 3)
    names = tuple(n for n in (msh.get(4, 1), msh.get(4, 2)) if n)
    if not names:
        raise V2Error(
            REQUIRED_MISSING, "MSH-4 (sending facility) is required", segment="MSH", field=4, ack="AR"
        )
    mtype, event = msh.get(9, 1).upper(), msh.get(9, 2).upper()
    if mtype not in SUPPORTED:
        raise V2Error(
            UNSUPPORTED_MESSAGE_TYPE,
            "message type not accepted (ORU^R01, ADT^A01/A04/A08/A28/A31)",
            segment="MSH",
            field=9,
            ack="AR",
        )
    if event not in SUPPORTED[mtype]:
        raise V2Error(
            UNSUPPORTED_EVENT,
            f"{mtype} event not accepted (ORU^R01, ADT^A01/A04/A08/A28/A31)",
            segment="MSH",
            field=9,
            ack="AR",
        )
    if msh.get(11, 1) not in PROCESSING_IDS:
        raise V2Error(
            UNSUPPORTED_PROCESSING_ID,
            "only production messages (MSH-11 P) are accepted",
            segment="MSH",
            field=11,
            ack="AR",
        )
    version = msh.get(12, 1)
    if not version.startswith("2."):
        raise V2Error(
            UNSUPPORTED_VERSION, "MSH-12 must be an HL7 version 2.x", segment="MSH", field=12, ack="AR"
        )
    return Header(
        sending_application="^".join(msh.component(3, 1) + msh.component(3, 2) + msh.component(3, 3)),
        sending_facility="^".join(facility),
        facility_names=names,
        control_id=control_id,
        message_type=mtype,
        event=event,
        version=version,
        accept_ack=msh.get(15).upper(),
    )


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class _Builder:
    def __init__(self, msg: Message, head: Header, ctx: Context) -> None:
        self.msg, self.head, self.ctx = msg, head, ctx
        self.entries: list[dict[str, Any]] = []
        self.patient_url: str | None = None
        self.patient_key = ""
        self.encounter_url: str | None = None
        self.report: dict[str, Any] | None = None
        self.order_key = ""
        self.order_effective: str | None = None
        self.obx_in_order = 0

    def add(self, resource: dict[str, Any], create_only: bool = False) -> str:
        first = resource["identifier"][0]
        rtype = resource["resourceType"]
        url = uuid_urn(rtype, first["system"], first["value"])
        if any(e["fullUrl"] == url for e in self.entries):
            raise V2Error(SEGMENT_SEQUENCE, f"two {rtype} entries in one message have the same identifier")
        condition = identifier_condition(first["system"], first["value"])
        request = (
            {"method": "POST", "url": rtype, "ifNoneExist": condition}
            if create_only
            else {"method": "PUT", "url": f"{rtype}?{condition}"}
        )
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        return url

    def _subject(self, seg: Segment) -> dict[str, Any]:
        if self.patient_url is None:
            raise V2Error(
                SEGMENT_SEQUENCE,
                f"{seg.name} before any PID segment",
                segment=seg.name,
                sequence=seg.sequence,
            )
        out: dict[str, Any] = {"subject": {"reference": self.patient_url}}
        if self.encounter_url:
            out["encounter"] = {"reference": self.encounter_url}
        return out

    def pid(self, seg: Segment) -> None:
        resource = seg_map.patient(seg, self.ctx)
        # ADT owns the demographics; a lab result only refers to its patient (see the module's doc).
        self.patient_url = self.add(resource, create_only=self.head.message_type != "ADT")
        first = resource["identifier"][0]
        self.patient_key = _short_hash(first["system"], first["value"])
        self.encounter_url, self.report = None, None

    def pv1(self, seg: Segment) -> None:
        self._subject(seg)
        resource = seg_map.encounter(seg, self.ctx, self.head.event)
        if resource is not None:
            resource["subject"] = {"reference": self.patient_url}
            self.encounter_url = self.add(resource)

    def obr(self, seg: Segment) -> None:
        refs = self._subject(seg)
        filler = entity_identifier(seg, 3, self.ctx, "filler")
        placer = entity_identifier(seg, 2, self.ctx, "placer")
        order = [i for i in (filler, placer) if i]
        if not order:
            raise V2Error(
                REQUIRED_MISSING,
                "OBR-3 (filler order number) or OBR-2 (placer order number) is required",
                segment="OBR",
                sequence=seg.sequence,
                field=3,
            )
        self.report = seg_map.report(seg, self.ctx, order) | refs
        self.report["result"] = []
        self.add(self.report)
        self.order_key = filler["value"] if filler else f"placer-{order[0]['value']}"
        self.order_effective = self.report.get("effectiveDateTime")
        self.obx_in_order = 0

    def obx(self, seg: Segment) -> None:
        refs = self._subject(seg)
        resource = seg_map.observation(seg, self.ctx, self.order_effective if self.report else None) | refs
        sent = entity_identifier(seg, 21, self.ctx, "observation")
        if sent:
            resource["identifier"] = [sent]
        elif self.report is not None:
            self.obx_in_order += 1
            set_id = seg.get(1) or str(self.obx_in_order)
            sub_id = seg.get(4)
            value = f"{self.order_key}-{set_id}" + (f"-{sub_id}" if sub_id else "")
            resource["identifier"] = [{"system": self.ctx.local_system("observation"), "value": value}]
        else:
            coding = (resource["code"].get("coding") or [{}])[0]
            when = (
                resource.get("effectiveDateTime")
                or date_time(self.msg.msh.get(7), self.ctx, ("MSH", 7))
                or ""
            )
            value = (
                f"{self.patient_key}-{_short_hash(coding.get('system', ''), coding.get('code', ''), when)}"
            )
            resource["identifier"] = [{"system": self.ctx.local_system("observation"), "value": value}]
        if self.report is not None:
            resource["category"] = [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ]
        url = self.add(resource)
        if self.report is not None:
            self.report["result"].append({"reference": url})

    def condition(self, seg: Segment) -> None:
        refs = self._subject(seg)
        resource = (seg_map.diagnosis if seg.name == "DG1" else seg_map.problem)(seg, self.ctx) | refs
        sent = entity_identifier(seg, 20 if seg.name == "DG1" else 4, self.ctx, "condition")
        if sent is None:
            coding = (resource["code"].get("coding") or [{}])[0]
            value = f"{self.patient_key}-{_short_hash(coding.get('system', ''), coding.get('code', ''))}"
            sent = {"system": self.ctx.local_system("condition"), "value": value}
        resource["identifier"] = [sent]
        self.add(resource)


def to_bundle(msg: Message, head: Header, ctx: Context) -> dict[str, Any]:
    """The transaction Bundle for one message; raises V2Error (AE) naming the first problem."""
    builder = _Builder(msg, head, ctx)
    handlers = {
        "PID": builder.pid,
        "PV1": builder.pv1,
        "OBR": builder.obr,
        "OBX": builder.obx,
        "DG1": builder.condition,
        "PRB": builder.condition,
    }
    for seg in msg.segments[1:]:
        handler = handlers.get(seg.name)
        if handler:
            handler(seg)
    if builder.patient_url is None:
        raise V2Error(SEGMENT_SEQUENCE, "the message has no PID segment", segment="PID")
    if head.message_type == "ORU" and not any(
        e["resource"]["resourceType"] == "Observation" for e in builder.entries
    ):
        raise V2Error(SEGMENT_SEQUENCE, "an ORU^R01 needs at least one OBR with OBX segments", segment="OBX")
    for entry in builder.entries:  # a report without results says nothing screening reads: keep it lean
        if entry["resource"]["resourceType"] == "DiagnosticReport" and not entry["resource"]["result"]:
            del entry["resource"]["result"]
    return transaction(builder.entries)


__all__ = ["SUPPORTED", "Context", "Header", "hd_system", "header", "to_bundle"]
