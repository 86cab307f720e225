"""HL7 v2 data types -> FHIR data types, after the "Version 2 to FHIR" IG's data-type maps
(CWE/CE -> CodeableConcept, CX -> Identifier, XPN -> HumanName, HD -> system, EI -> Identifier,
DTM/TS -> date/dateTime, SN -> Quantity/Range/Ratio, NM -> Quantity).

Sources: http://hl7.org/fhir/uv/v2mappings (ConceptMap datatype-cwe-to-codeableconcept,
datatype-cx-to-identifier, datatype-xpn-to-humanname, datatype-sn-to-quantity/-range/-ratio).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from .message import DATA_TYPE, Segment, V2Error

# HL7 table 0396 coding-system names -> FHIR code-system URIs (FHIR terminology registry,
# hl7.org/fhir/terminologies-systems.html and namingsystem-terminologies).
CODE_SYSTEMS = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "UCUM": "http://unitsofmeasure.org",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
}
UCUM = "http://unitsofmeasure.org"
_HL7_TABLE = re.compile(r"^HL7(\d{4})$")
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


@dataclass(frozen=True)
class Context:
    """What the mapping needs beyond the message: the sender, a base for local systems, a time zone."""

    facility: str
    local_base: str = "http://trial-adapter.org/fhir/v2/"
    tz: tzinfo = UTC

    def local_system(self, *path: str) -> str:
        """A system URI for a code or identifier local to the sending facility (kept local: the
        screening side's ConceptMaps translate local codes, not this mapping)."""
        return self.local_base + "/".join(quote(p, safe="") for p in (self.facility, *path))


def code_system(name: str, ctx: Context) -> str:
    name = name.strip()
    if name.upper() in CODE_SYSTEMS:
        return CODE_SYSTEMS[name.upper()]
    if match := _HL7_TABLE.match(name.upper()):
        return f"http://terminology.hl7.org/CodeSystem/v2-{match[1]}"
    if _OID.match(name):
        return f"urn:oid:{name}"
    return ctx.local_system(name or "local")


def _coding(code: str, display: str, system: str, ctx: Context) -> dict[str, Any] | None:
    if not code:
        return None
    coding: dict[str, Any] = {"system": code_system(system, ctx), "code": code}
    if display:
        coding["display"] = display
    return coding


def codeable_concept(seg: Segment, n: int, ctx: Context, rep: int = 1) -> dict[str, Any] | None:
    """CWE/CE: CWE.1-3 the primary coding, CWE.4-6 the alternate, CWE.9 (else CWE.2) the text."""
    codings = [
        c
        for c in (
            _coding(seg.get(n, 1, rep=rep), seg.get(n, 2, rep=rep), seg.get(n, 3, rep=rep), ctx),
            _coding(seg.get(n, 4, rep=rep), seg.get(n, 5, rep=rep), seg.get(n, 6, rep=rep), ctx),
        )
        if c
    ]
    text = seg.get(n, 9, rep=rep) or seg.get(n, 2, rep=rep)
    if not codings and not text:
        return None
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def hd_system(parts: list[str], ctx: Context, kind: str) -> str:
    """An HD (assigning authority / namespace) as an identifier system: an ISO OID or a URI when
    HD.2/HD.3 give one, else a local system under the sending facility named by HD.1."""
    namespace, universal, utype = ([*parts, "", "", ""])[:3]
    if universal and utype.upper() == "ISO" and _OID.match(universal):
        return f"urn:oid:{universal}"
    if universal and utype.upper() in ("URI", "URL"):
        return universal
    if universal and utype.upper() == "UUID":
        return f"urn:uuid:{universal.lower()}"
    return ctx.local_system(kind, namespace or universal or "default")


def identifier(seg: Segment, n: int, ctx: Context, rep: int = 1, kind: str = "id") -> dict[str, Any] | None:
    """CX: CX.1 value, CX.4 assigning authority -> system, CX.5 identifier type (table 0203)."""
    value = seg.get(n, 1, rep=rep)
    if not value:
        return None
    out: dict[str, Any] = {"system": hd_system(seg.component(n, 4, rep=rep), ctx, kind), "value": value}
    id_type = seg.get(n, 5, rep=rep)
    if id_type:
        out["type"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": id_type}]
        }
    return out


def entity_identifier(seg: Segment, n: int, ctx: Context, kind: str) -> dict[str, Any] | None:
    """EI: EI.1 the id, EI.2-4 the namespace (an HD spread over components)."""
    value = seg.get(n, 1)
    if not value:
        return None
    parts = [seg.get(n, 2), seg.get(n, 3), seg.get(n, 4)]
    return {"system": hd_system(parts, ctx, kind), "value": value}


def human_name(seg: Segment, n: int, rep: int = 1) -> dict[str, Any] | None:
    """XPN: XPN.1 family (FN.1), XPN.2 and .3 given, XPN.4 suffix, XPN.5 prefix, XPN.7 L -> official."""
    name: dict[str, Any] = {}
    if family := seg.get(n, 1, rep=rep):
        name["family"] = family
    given = [g for g in (seg.get(n, 2, rep=rep), seg.get(n, 3, rep=rep)) if g]
    if given:
        name["given"] = given
    if suffix := seg.get(n, 4, rep=rep):
        name["suffix"] = [suffix]
    if prefix := seg.get(n, 5, rep=rep):
        name["prefix"] = [prefix]
    if not name:
        return None
    if seg.get(n, 7, rep=rep) == "L":
        name["use"] = "official"
    return name


def date_time(value: str, ctx: Context, where: tuple[str, int]) -> str | None:
    """DTM/TS -> FHIR dateTime at the precision given. A time without a zone is in the site's zone."""
    value = value.strip()
    if not value:
        return None
    match = _DTM.match(value)
    if not match:
        raise V2Error(
            DATA_TYPE,
            "not a valid HL7 date/time (YYYY[MM[DD[HHMM[SS]]]][+/-ZZZZ])",
            segment=where[0],
            field=where[1],
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if hour is None:
            datetime(int(year), int(month or 1), int(day or 1))
            return "-".join(p for p in (year, month, day) if p)
        stamp = datetime(
            int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0)
        )
    except ValueError:
        raise V2Error(DATA_TYPE, "not a valid calendar date/time", segment=where[0], field=where[1]) from None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        zone: tzinfo = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    else:
        zone = ctx.tz
    stamp = stamp.replace(tzinfo=zone)
    text = stamp.isoformat(timespec="seconds")
    if fraction:
        text = text[:19] + fraction + text[19:]
    return text


def date_only(value: str, ctx: Context, where: tuple[str, int]) -> str | None:
    """The date part of a DTM as written (a birth date is not moved across time zones)."""
    full = date_time(value, ctx, where)
    return full[:10] if full else None


def decimal(value: str, where: tuple[str, int]) -> float | int:
    value = value.strip()
    if not _NUMBER.match(value):
        raise V2Error(DATA_TYPE, "not a number", segment=where[0], field=where[1])
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise V2Error(DATA_TYPE, "not a number", segment=where[0], field=where[1]) from None
    if number == number.to_integral_value() and "." not in value:
        return int(number)
    return float(number)
