"""Reading an HL7 v2 message: bytes -> text (MSH-18), segments (python-hl7), fields as plain lists.

python-hl7 parses the message with its own encoding characters (MSH-1/MSH-2) and unescapes \\F\\ \\S\\
\\T\\ \\R\\ \\E\\ and \\Xhh\\. We normalise its tree into ``reps -> components -> subcomponents`` lists of
strings so that the mapping code never depends on how deep python-hl7 happened to nest a field.

Every problem is a ``V2Error`` naming the HL7 error code (table 0357), the location (segment, field)
and a text that never repeats the field's content (it may be patient data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import hl7
from hl7.exceptions import ParseException
from hl7.util import unescape

# python-hl7 logs an unknown escape sequence together with the whole field: never let that reach
# our logs (it may be a name or a result).
logging.getLogger(hl7.util.__file__).setLevel(logging.CRITICAL)

# HL7 table 0357 (message error condition codes), verified at terminology.hl7.org/CodeSystem-v2-0357.
SEGMENT_SEQUENCE = "100"
REQUIRED_MISSING = "101"
DATA_TYPE = "102"
TABLE_VALUE = "103"
VALUE_TOO_LONG = "104"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION = "203"
INTERNAL_ERROR = "207"

ERROR_NAMES = {
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_MISSING: "Required field missing",
    DATA_TYPE: "Data type error",
    TABLE_VALUE: "Table value not found",
    VALUE_TOO_LONG: "Value too long",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION: "Unsupported version id",
    INTERNAL_ERROR: "Application internal error",
}

# MSH-18 (HL7 table 0211) -> Python codec. An empty MSH-18 means ASCII by the standard; in practice
# engines send UTF-8 or ISO 8859-1 without saying so, so we read UTF-8 and fall back to 8859-1.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "iso-8859-1",
    "8859/15": "iso-8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}

# Escape sequences python-hl7 would turn into "_" (highlighting on/off): drop them instead.
_APP_ESCAPES = {"H": "", "N": ""}


class V2Error(ValueError):
    """A message we cannot accept. ``ack`` is AE (content: do not resend unchanged) or AR (rejected:
    wrong sender, type, version, or a temporary failure on our side)."""

    def __init__(
        self, code: str, text: str, *, segment: str = "", sequence: int = 1, field: int = 0, ack: str = "AE"
    ) -> None:
        super().__init__(text)
        self.code = code
        self.segment = segment
        self.sequence = sequence
        self.field = field
        self.ack = ack

    @property
    def location(self) -> str:
        if not self.segment:
            return ""
        return f"{self.segment}-{self.field}" if self.field else self.segment


Rep = list[list[str]]  # components -> subcomponents


@dataclass(frozen=True)
class Segment:
    name: str
    sequence: int  # 1-based occurrence of this segment name in the message (for ERR-2)
    fields: list[list[Rep]]  # fields[n] is field n (1-based; fields[0] unused) -> repetitions

    def reps(self, n: int) -> list[Rep]:
        return self.fields[n] if n < len(self.fields) else []

    def get(self, n: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        reps = self.reps(n)
        if len(reps) < rep:
            return ""
        comps = reps[rep - 1]
        if len(comps) < component:
            return ""
        subs = comps[component - 1]
        return subs[sub - 1].strip() if len(subs) >= sub else ""

    def component(self, n: int, component: int, rep: int = 1) -> list[str]:
        """The subcomponents of one component (e.g. the HD inside CX-4)."""
        reps = self.reps(n)
        if len(reps) < rep or len(reps[rep - 1]) < component:
            return []
        return [s.strip() for s in reps[rep - 1][component - 1]]


@dataclass(frozen=True)
class Message:
    segments: list[Segment]
    text: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def decode(raw: bytes) -> str:
    """The message text, in the character set MSH-18 names (read from the ASCII-compatible MSH)."""
    head = raw[:2000].decode("iso-8859-1")
    charset = ""
    if head.startswith("MSH") and len(head) > 8:
        sep = head[3]
        first = head.replace("\n", "\r").split("\r", 1)[0]
        fields = first.split(sep)
        charset = fields[17].split(first[4] if len(first) > 4 else "^")[0].strip() if len(fields) > 17 else ""
    if not charset:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("iso-8859-1")
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        raise V2Error(TABLE_VALUE, "character set in MSH-18 is not supported", segment="MSH", field=18)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise V2Error(
            DATA_TYPE, f"the message is not valid {charset} (byte {exc.start})", segment="MSH", field=18
        ) from None


def parse(raw: bytes) -> Message:
    """A whole message, read tolerantly: \\r, \\n or \\r\\n between segments, blank lines ignored."""
    text = decode(raw)
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\n \t\x00")
    lines = [line for line in text.split("\r") if line.strip()]
    if not lines or not lines[0].startswith("MSH"):
        raise V2Error(SEGMENT_SEQUENCE, "the message does not start with an MSH segment", ack="AR")
    msh = lines[0]
    if len(msh) < 8 or msh[3].isalnum() or len(set(msh[3:8])) != 5 or any(c.isalnum() for c in msh[4:8]):
        raise V2Error(
            DATA_TYPE,
            "MSH-1/MSH-2 encoding characters are missing or invalid",
            segment="MSH",
            field=2,
            ack="AR",
        )
    try:
        parsed = hl7.parse("\r".join(lines))
    except (ParseException, ValueError, IndexError):
        raise V2Error(SEGMENT_SEQUENCE, "the message cannot be parsed", ack="AR") from None
    counts: dict[str, int] = {}
    segments = []
    for seg in parsed:
        name = str(seg[0]).strip()
        if len(name) != 3 or not name.isalnum():
            raise V2Error(SEGMENT_SEQUENCE, "a segment has an invalid name (not 3 letters/digits)")
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, counts[name], _fields(parsed, seg, name)))
    return Message(segments, "\r".join(lines))


def _leaf(message: Any, value: Any) -> str:
    return unescape(message, str(value), _APP_ESCAPES)


def _fields(message: Any, seg: Any, name: str) -> list[list[Rep]]:
    out: list[list[Rep]] = [[]]
    start = 1
    if name == "MSH":  # MSH-1 is the field separator itself, MSH-2 the encoding characters: not escaped
        out += [[[[str(seg[1])]]], [[[str(seg[2])]]]]
        start = 3
    for field in list(seg)[start:]:
        out.append(_reps(message, field))
    return out


def _reps(message: Any, field: Any) -> list[Rep]:
    if isinstance(field, str):
        return [[[_leaf(message, field)]]] if field else []
    reps: list[Rep] = []
    for rep in field:
        if isinstance(rep, str):
            reps.append([[_leaf(message, rep)]])
            continue
        comps: Rep = []
        for comp in rep:
            if isinstance(comp, str):
                comps.append([_leaf(message, comp)])
            else:
                comps.append([_leaf(message, s) for s in comp])
        reps.append(comps)
    if len(reps) == 1 and reps[0] == [[""]]:
        return []
    return reps
