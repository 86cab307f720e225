"""Acknowledgements: ACK^<event> with MSA (AA/AE/AR, or CA/CE/CR in enhanced mode) and, for an error,
an ERR segment in the v2.5 layout (ERR-2 location, ERR-3 code from table 0357, ERR-4 severity, ERR-8
text). The text is ours (what is wrong and where), never the content of the offending field.

Enhanced mode (MSH-15 valued): AL always answers, NE never, ER only on error, SU only on success.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from .message import ERROR_NAMES, V2Error

RECEIVING_APPLICATION = "TRIAL-ADAPTER"
_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


def msh_fields(raw: bytes) -> list[str]:
    """The MSH fields of a message we may not be able to parse (to address the ACK): index n is MSH-n."""
    text = raw[:4000].decode("iso-8859-1")
    first = text.replace("\n", "\r").split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return []
    sep = first[3]
    parts = first.split(sep)
    return ["", sep, *parts[1:]] if len(parts) > 1 else []


def _escape(text: str) -> str:
    """Our own text inside a field: the standard encoding characters escaped (ACKs use |^~\\&)."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def _field(fields: list[str], n: int) -> str:
    value = fields[n] if n < len(fields) else ""
    return "".join(c for c in value if c.isprintable())[:200]


def wants_ack(fields: list[str], ok: bool) -> bool:
    """Whether MSH-15 (accept acknowledgement type) asks for an accept ACK in this case."""
    mode = _field(fields, 15).split(fields[2][0] if len(fields) > 2 and fields[2] else "^")[0].upper()
    if mode in ("", "AL"):
        return True
    if mode == "NE":
        return False
    if mode == "ER":
        return not ok
    if mode == "SU":
        return ok
    return True  # an unknown mode: answering is the safe side


def build_ack(raw: bytes, code: str, error: V2Error | None = None, now: datetime | None = None) -> bytes:
    """The ACK for ``raw`` (which may be unparseable): ``code`` is AA, AE or AR; in enhanced mode
    (MSH-15 valued) it becomes CA, CE or CR. Encoded in the message's MSH-18 character set."""
    fields = msh_fields(raw)
    enhanced = bool(_field(fields, 15))
    if enhanced:
        code = _ENHANCED[code]
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    control = _field(fields, 10)
    comp = fields[2][0] if len(fields) > 2 and fields[2] else "^"
    event = _field(fields, 9).split(comp)[1] if comp in _field(fields, 9) else ""
    ack_id = "ACK" + hashlib.sha256(f"{control}|{code}|{stamp}".encode()).hexdigest()[:17]
    version = _field(fields, 12) or "2.5.1"
    charset = _field(fields, 18)
    msh = [
        "MSH",
        "^~\\&",
        _field(fields, 5) or RECEIVING_APPLICATION,
        _field(fields, 6),
        _field(fields, 3),
        _field(fields, 4),
        stamp,
        "",
        f"ACK^{event}^ACK" if event else "ACK",
        ack_id,
        _field(fields, 11) or "P",
        version,
        "",
        "",
        "NE" if enhanced else "",
        "NE" if enhanced else "",
        "",
        charset,
    ]
    segments = ["|".join(msh).rstrip("|")]
    text = str(error) if error else ""
    segments.append("|".join(["MSA", code, control, _escape(text)[:80]]).rstrip("|"))
    if error is not None:
        location = ""
        if error.segment:
            location = f"{error.segment}^{error.sequence}" + (f"^{error.field}" if error.field else "")
        name = ERROR_NAMES.get(error.code, "")
        err = ["ERR", "", location, f"{error.code}^{name}^HL70357", "E", "", "", "", _escape(text)]
        segments.append("|".join(err))
    codec = {"8859/1": "iso-8859-1", "8859/15": "iso-8859-15"}.get(charset.upper(), "utf-8")
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")
