"""Which NDJSON lines are about which patients, decided from their raw bytes without parsing them.

A dense export is mostly other patients' lines. Parsing a line costs ~10-30x reading it, so the files
path decides from the bytes which lines to parse: a line is *skipped* only when it provably cannot be
about a patient we screen. The rule (``wanted_line``) is conservative:

- the patient a resource is about is ``Patient/<id>`` (``record.normalise_reference``), with ``<id>``
  of ``[A-Za-z0-9-.]`` only, so a line about patient ``p`` holds ``Patient/p`` (or ``Patient\\/p``, a
  legal JSON escape) followed by ``"``, ``/`` (``/_history``) or ``\\``; a Patient line holds
  ``"id":"p"`` (any whitespace). Those bytes anywhere in the line make it wanted, wherever they are
  (a contained resource, an ``encounter``): parsing then attributes it exactly as before;
- a line we cannot read that way is always wanted (parsed and checked as before): ``\\u`` escapes (which
  can spell any key or id), ``urn:`` references (an error in NDJSON), a line that does not start with
  ``{"resourceType":`` or does not end with ``}``, and Medication lines (shared by every patient).

``LineFilter.wanted_starts`` applies the same rule to a whole chunk with C-speed searches, so the cost
of another patient's line is a few byte scans, not a Python step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

CHUNK_BYTES = 8 << 20
_ID_CHARS = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Lines we always parse, whoever they are about.
_ESCAPE = re.compile(rb"\\u")
_URN_REFERENCE = re.compile(rb'"reference"\s*:\s*"urn:')
_MEDICATION = re.compile(rb'"resourceType"\s*:\s*"Medication"')
_STARTS = (b'{"resourceType":"', b'{"resourceType": "')
_PATIENT_TYPE = re.compile(rb'\{"resourceType": ?"Patient",')
# A Patient line whose id is its second key: the only id it can have (else it is parsed).
_PATIENT_ID_FIRST = re.compile(rb'\{"resourceType": ?"Patient", ?"id": ?"([A-Za-z0-9\-.]{1,64})"[,}]')
_TYPED_LINE = re.compile(rb'(?:^|\n)(\{)"resourceType": ?"(Medication|Patient)",')
_ANY_REFERENCE = re.compile(rb'Patient(?:/|\\/)([A-Za-z0-9\-.]{1,64})(?=["/\\])')
# A line with no patient reference at all (tested per line by the regex engine, not by Python).
_NO_REFERENCE = re.compile(rb'^(?![^\n]*Patient(?:/|\\/)[A-Za-z0-9\-.]{1,64}["/\\])', re.MULTILINE)


def chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, whole lines) of a file, in chunks of about ``size`` bytes."""
    with path.open("rb") as handle:
        rest = b""
        line = 1
        while True:
            block = handle.read(size)
            if not block:
                if rest:
                    yield line, rest
                return
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data  # one line longer than a chunk: keep reading
                continue
            chunk, rest = data[:cut], data[cut:]
            yield line, chunk
            line += chunk.count(b"\n")


def plain_line(raw: bytes) -> bool:
    """A line shaped as Bulk Data writers write it: resourceType first, ends with ``}``."""
    return raw.startswith(_STARTS) and (raw.endswith(b"}\n") or raw.endswith(b"}"))


class LineFilter:
    """Recognises the lines about some patients from raw bytes.

    ``patient_ids``: those patients; ``owns``: instead, a test on any patient id (a worker's share of
    every patient); neither: every line is wanted."""

    def __init__(
        self, patient_ids: Collection[str] | None, owns: Callable[[str], bool] | None = None
    ) -> None:
        self._owns = owns
        self._pop: re.Pattern[bytes] | None = None
        if patient_ids is not None:
            for pid in patient_ids:
                if not _ID_CHARS.fullmatch(pid):
                    raise ValueError(f"not a FHIR id: {pid[:80]!r}")
            # Longest first, so an id that is a prefix of another cannot end a match early.
            ids = b"|".join(re.escape(p.encode()) for p in sorted(patient_ids, key=len, reverse=True))
            self._pop = re.compile(
                rb"Patient(?:/|\\/)(?:" + ids + rb')(?=["/\\])|"id"\s*:\s*"(?:' + ids + rb')"'
                if ids
                else rb"(?!x)x"  # nobody: matches nothing
            )
        self.everything = self._pop is None and owns is None

    def wanted_line(self, raw: bytes) -> bool:
        """Whether a line may be about one of the patients (or cannot be read without parsing)."""
        if self.everything:
            return True
        if not raw.strip():
            return False
        if not plain_line(raw) or _ESCAPE.search(raw) or _URN_REFERENCE.search(raw):
            return True
        if _MEDICATION.match(raw, 1):
            return True
        if self._pop is not None and self._pop.search(raw):
            return True
        if _PATIENT_TYPE.match(raw):
            first = _PATIENT_ID_FIRST.match(raw)
            return first is None or (self._owns is not None and self._owns(first[1].decode()))
        refs = _ANY_REFERENCE.findall(raw)
        if not refs:
            return True  # about no patient we can see: read it as the full path does
        return self._owns is not None and any(self._owns(ref.decode()) for ref in refs)

    def wanted_starts(self, chunk: bytes) -> list[int]:
        """Offsets of the lines of a chunk (whole lines) that ``wanted_line`` keeps, in order."""
        if self.everything:
            return _line_starts(chunk)
        lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        starts = chunk.count(b'\n{"resourceType":"') + chunk.count(b'\n{"resourceType": "')
        starts += chunk.startswith(_STARTS)
        ends = chunk.count(b"}\n") + chunk.endswith(b"}")
        if starts != lines or ends != lines or b"\n\n" in chunk:
            # Unusual lines in this chunk: decide line by line (the same rule).
            found = []
            offset = 0
            for raw in chunk.splitlines(keepends=True):
                if self.wanted_line(raw):
                    found.append(offset)
                offset += len(raw)
            return found
        wanted: set[int] = set()
        patterns = [_ESCAPE, _URN_REFERENCE] + ([self._pop] if self._pop is not None else [])
        for pattern in patterns:
            for match in pattern.finditer(chunk):
                wanted.add(chunk.rfind(b"\n", 0, match.start()) + 1)
        for match in _TYPED_LINE.finditer(chunk):  # Medication and Patient lines
            start = match.start(1)
            if match[2] == b"Medication":
                wanted.add(start)
                continue
            first = _PATIENT_ID_FIRST.match(chunk, start)
            if first is None or (self._owns is not None and self._owns(first[1].decode())):
                wanted.add(start)
        for match in _NO_REFERENCE.finditer(chunk):
            if not _PATIENT_TYPE.match(chunk, match.start()):
                wanted.add(match.start())
        if self._owns is not None:
            for match in _ANY_REFERENCE.finditer(chunk):
                start = chunk.rfind(b"\n", 0, match.start()) + 1
                if start not in wanted and self._owns(match[1].decode()):
                    wanted.add(start)
        return sorted(wanted)


def _line_starts(chunk: bytes) -> list[int]:
    starts = [0]
    find = chunk.find
    at = find(b"\n")
    while at != -1 and at + 1 < len(chunk):
        starts.append(at + 1)
        at = find(b"\n", at + 1)
    return starts


def lines_at(chunk: bytes, first_line: int, starts: list[int]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each start offset (ascending) of a chunk."""
    number, counted = first_line, 0
    for start in starts:
        number += chunk.count(b"\n", counted, start)
        counted = start
        end = chunk.find(b"\n", start)
        yield number, chunk[start : len(chunk) if end == -1 else end + 1]
