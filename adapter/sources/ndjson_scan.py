"""Which NDJSON lines are about which patients, decided from their raw bytes without parsing them.

A dense export is mostly other patients' lines. Parsing a line costs ~10-30x reading it, so the files
path decides from the bytes which lines to parse: a line is *skipped* only when it provably cannot be
about a patient we screen. The rule (``wanted_line``) is conservative:

- the patient a resource is about is ``Patient/<id>`` (``record.normalise_reference``), with ``<id>``
  of ``[A-Za-z0-9-.]`` only, so a line about patient ``p`` holds ``Patient/p`` (or ``Patient\\/p``, a
  legal JSON escape) followed by ``"``, ``/`` (``/_history``) or ``\\``. Those bytes anywhere in the
  line make it wanted (a contained resource, an ``encounter``): parsing then attributes it as before;
- a Patient line is skipped only when its id is plainly its second key (``{"resourceType":"Patient",
  "id":"x"``) and not one of ours; any other Patient line is parsed;
- always wanted (parsed and checked as before): ``\\u`` escapes (which can spell any key or id),
  a line that does not start with ``{"resourceType":`` or does not end with ``}``, Medication lines
  (shared by every patient), a line naming no patient at all (so its errors are still reported, e.g.
  a ``urn:`` subject) and, when asked (``conditions``), every Condition line (a late sign of the
  disease must be seen). Another patient's line is not checked, whatever it holds (invalid JSON, a
  ``urn:`` reference beside its subject): like a vital sign, it is never read.

``LineFilter.wanted_starts`` applies the same rule to a whole chunk with C-speed searches (one pass
per test, the population's ids as one trie regex), so the cost of another patient's line is a few
byte scans, not a Python step. Only for the "names no patient" test it trusts a count (every line
has a ``"subject"``/``"patient"`` reference) before searching line by line: that test is about error
reporting, never about whose data a line is.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Collection, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

CHUNK_BYTES = 8 << 20
_ID_CHARS = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Lines we always parse, whoever they are about.
_ESCAPE = re.compile(rb"\\u")
_MEDICATION = re.compile(rb'"resourceType"\s*:\s*"Medication"')
_STARTS = (b'{"resourceType":"', b'{"resourceType": "')
_PATIENT_TYPE = re.compile(rb'\{"resourceType": ?"Patient",')
# A Patient line whose id is its second key: the only id it can have (else it is parsed).
_PATIENT_ID_FIRST = re.compile(rb'\{"resourceType": ?"Patient", ?"id": ?"([A-Za-z0-9\-.]{1,64})"[,}]')
_TYPED_LINE = re.compile(rb'\n\{"resourceType": ?"(Patient|Medication)",')
_FIRST_TYPED = re.compile(rb'\{"resourceType": ?"(Patient|Medication)",')
_TYPED_LINE_C = re.compile(rb'\n\{"resourceType": ?"(Patient|Medication|Condition)",')
_FIRST_TYPED_C = re.compile(rb'\{"resourceType": ?"(Patient|Medication|Condition)",')
_CONDITION_TYPE = re.compile(rb'\{"resourceType": ?"Condition",')
_FIRST_TYPE = re.compile(rb'\{"resourceType":("[A-Za-z]{1,64}",)')
_ANY_REFERENCE = re.compile(rb'Patient(?:/|\\/)([A-Za-z0-9\-.]{1,64})(?=["/\\])')
# A line with no patient reference at all (tested per line by the regex engine, not by Python).
_NO_REFERENCE = re.compile(rb'^(?![^\n]*Patient(?:/|\\/)[A-Za-z0-9\-.]{1,64}["/\\])', re.MULTILINE)


def chunks(
    path: Path, size: int = CHUNK_BYTES, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, bytes, int]]:
    """(number of the first line, whole lines, their newlines) of a file, in ~``size`` byte chunks.

    ``start``/``end``: a byte range of the file (both at line starts, see ``line_ranges``); line
    numbers then count from the range's first line."""
    with path.open("rb") as handle:
        end = os.fstat(handle.fileno()).st_size if end is None else end
        if start >= end:
            return
        # A map of the file: the last line break of a chunk is found in place and the chunk is copied
        # once, as a read would copy it.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            line, at, want = 1, start, size
            while at < end:
                stop = min(at + want, end)
                cut = stop if stop == end else mapped.rfind(b"\n", at, stop) + 1
                if cut <= at:
                    want *= 2  # one line longer than a chunk: take more at once
                    continue
                chunk = mapped[at:cut]
                newlines = chunk.count(b"\n")
                yield line, chunk, newlines
                # drop the pages read from this process's memory (the page cache keeps them)
                page = at - at % mmap.PAGESIZE
                mapped.madvise(mmap.MADV_DONTNEED, page, cut - page)
                line += newlines
                at = cut
                want = size


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """About ``parts`` byte ranges of a file, each starting at a line start: one per worker."""
    size = path.stat().st_size
    bounds = [0]
    with path.open("rb") as handle:
        for k in range(1, parts):
            handle.seek(max(bounds[-1], size * k // parts))
            handle.readline()  # to the start of the next line
            at = handle.tell()
            if bounds[-1] < at < size:
                bounds.append(at)
    bounds.append(size)
    return list(pairwise(bounds))


def plain_line(raw: bytes) -> bool:
    """A line shaped as Bulk Data writers write it: resourceType first, ends with ``}``."""
    return raw.startswith(_STARTS) and (raw.endswith(b"}\n") or raw.endswith(b"}"))


class LineFilter:
    """Recognises the lines about some patients from raw bytes.

    ``patient_ids``: those patients (None: every line is wanted); ``conditions``: every Condition line
    is wanted too. ``coded``: when every line is wanted, a chunk of plain Observation lines yields only
    those holding one of these codes (``ScreeningReads.criteria_code``) or an escape: the lines
    ``skippable_line`` would skip are dropped with one search instead of one Python step each."""

    def __init__(
        self,
        patient_ids: Collection[str] | None,
        *,
        conditions: bool = False,
        coded: re.Pattern[bytes] | None = None,
    ) -> None:
        self._conditions = conditions
        self._coded = coded
        self._typed_line, self._first_typed = (
            (_TYPED_LINE_C, _FIRST_TYPED_C) if conditions else (_TYPED_LINE, _FIRST_TYPED)
        )
        self._pop: re.Pattern[bytes] | None = None
        self._pop_ids: frozenset[str] = frozenset()
        self._pop_bytes: frozenset[bytes] = frozenset()
        if patient_ids is not None:
            for pid in patient_ids:
                if not _ID_CHARS.fullmatch(pid):
                    raise ValueError(f"not a FHIR id: {pid[:80]!r}")
            # One pass finds only our patients' references: the ids as a trie (shared prefixes tested once).
            ids = _trie([p.encode() for p in set(patient_ids)])
            self._pop = (
                re.compile(rb"Patient(?:/|\\/)" + ids + rb'(?=["/\\])') if ids else re.compile(rb"(?!)")
            )
            self._pop_ids = frozenset(patient_ids)
            self._pop_bytes = frozenset(p.encode() for p in patient_ids)
        self.everything = self._pop is None
        self.patient_lines = 0  # Patient lines seen typed first (to count those not screened)

    def wanted_line(self, raw: bytes) -> bool:
        """Whether a line may be about one of the patients (or cannot be read without parsing)."""
        if self.everything:
            return True
        if not raw.strip():
            return False
        if not plain_line(raw) or _ESCAPE.search(raw):
            return True
        if _MEDICATION.match(raw, 1) or (self._conditions and _CONDITION_TYPE.match(raw)):
            return True
        if self._pop is not None and not self._pop_bytes.isdisjoint(_ANY_REFERENCE.findall(raw)):
            return True
        if _PATIENT_TYPE.match(raw):
            self.patient_lines += 1
            return self._patient_line_wanted(_PATIENT_ID_FIRST.match(raw))
        return not _ANY_REFERENCE.search(raw)  # about no patient we can see: read it as the full path does

    def wanted_starts(self, chunk: bytes, newlines: int | None = None) -> list[int]:
        """Offsets of the lines of a chunk (whole lines) that ``wanted_line`` keeps, in order.

        Each test is one C-speed pass over the chunk; Python steps only for lines that are wanted."""
        if self.everything and self._coded is None:
            return _line_starts(chunk)
        newlines = chunk.count(b"\n") if newlines is None else newlines
        lines = newlines + (0 if chunk.endswith(b"\n") else 1)
        # Every line typed first and ending in }: then each line boundary is '}\n{"resourceType":'
        # (one count instead of one per test; an empty or truncated line breaks it).
        plain = chunk.startswith(_STARTS) and (chunk.endswith(b"}\n") or chunk.endswith(b"}"))
        typed = True  # whether some line may be a Patient, Medication or Condition
        if plain:
            # Usually every line has the first line's type (an export has one file per type): one count
            # proves it, and then no line is a Patient, Medication or Condition unless the first is.
            first = _FIRST_TYPE.match(chunk)
            if first and chunk.count(b'}\n{"resourceType":' + first[1]) == lines - 1:
                typed = first[1][1:-2] in (b"Patient", b"Medication", b"Condition")
                if self.everything and first[1] == b'"Observation",':
                    return self._coded_lines(chunk)
            else:
                boundaries = chunk.count(b'}\n{"resourceType":"')
                if boundaries != lines - 1:
                    boundaries += chunk.count(b'}\n{"resourceType": "')
                plain = boundaries == lines - 1
        if self.everything:
            return _line_starts(chunk)
        if not plain:
            # Unusual lines in this chunk: decide line by line (the same rule).
            found = []
            offset = 0
            for raw in chunk.splitlines(keepends=True):
                if self.wanted_line(raw):
                    found.append(offset)
                offset += len(raw)
            return found
        wanted: set[int] = set()
        # \u escapes (a backslash is rare: one fast byte search first), then our patients' references
        patterns = [_ESCAPE] if b"\\" in chunk else []
        patterns += [self._pop] if self._pop is not None else []
        for pattern in patterns:
            for match in pattern.finditer(chunk):
                wanted.add(chunk.rfind(b"\n", 0, match.start()) + 1)
        if typed:
            for match in self._typed_line.finditer(chunk):
                start = match.start() + 1
                self._typed(match[1], chunk, start, wanted)
            first = self._first_typed.match(chunk)
            if first:
                self._typed(first[1], chunk, 0, wanted)
        named = chunk.count(b'"subject":{"reference":"Patient/')
        if named < lines and named + chunk.count(b'"patient":{"reference":"Patient/') < lines:
            # Some line may name no patient: find those (the regex engine tests each line).
            for match in _NO_REFERENCE.finditer(chunk, 0, len(chunk) - 1):  # not after the last newline
                if not _PATIENT_TYPE.match(chunk, match.start()):
                    wanted.add(match.start())
        return sorted(wanted)

    def _coded_lines(self, chunk: bytes) -> list[int]:
        """Plain Observation lines: those with a criteria code or an escape."""
        assert self._coded is not None
        wanted = {chunk.rfind(b"\n", 0, m.start()) + 1 for m in self._coded.finditer(chunk)}
        if b"\\" in chunk:
            wanted.update(chunk.rfind(b"\n", 0, m.start()) + 1 for m in _ESCAPE.finditer(chunk))
        return sorted(wanted)

    def _typed(self, rtype: bytes, chunk: bytes, start: int, wanted: set[int]) -> None:
        """A Medication or Condition line (wanted) or a Patient line (wanted by its id) at ``start``."""
        if rtype != b"Patient":
            wanted.add(start)
            return
        self.patient_lines += 1
        if self._patient_line_wanted(_PATIENT_ID_FIRST.match(chunk, start)):
            wanted.add(start)

    def _patient_line_wanted(self, first: re.Match[bytes] | None) -> bool:
        """A Patient line: wanted if its id is not plainly its second key, or is one of ours."""
        if first is None:
            return True
        return first[1].decode() in self._pop_ids


def _trie(words: list[bytes]) -> bytes:
    """A regex matching exactly ``words``, as a trie: ``p1``, ``p10`` -> ``p1(?:0)?``."""
    root: dict[int | None, Any] = {}
    for word in words:
        node = root
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}

    def build(node: dict[int | None, Any]) -> bytes:
        branches = [
            re.escape(bytes([k])) + build(v)
            for k, v in sorted((k, v) for k, v in node.items() if k is not None)
        ]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + body + b")?" if None in node else body

    return build(root)


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
