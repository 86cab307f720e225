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
  ``urn:`` references (an error in NDJSON), a line that does not start with ``{"resourceType":`` or
  does not end with ``}``, Medication lines (shared by every patient), and a line naming no patient
  at all (so its errors are still reported).

``LineFilter.wanted_starts`` applies the same rule to a whole chunk with C-speed searches (one pass
per test, the population's ids as one trie regex), so the cost of another patient's line is a few
byte scans, not a Python step. Only for the "names no patient" test it trusts a count (every line
has a ``"subject"``/``"patient"`` reference) before searching line by line: that test is about error
reporting, never about whose data a line is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

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
_TYPED_LINE = re.compile(rb'\n\{"resourceType": ?"(Patient|Medication)",')
_FIRST_TYPED = re.compile(rb'\{"resourceType": ?"(Patient|Medication)",')
_ANY_REFERENCE = re.compile(rb'Patient(?:/|\\/)([A-Za-z0-9\-.]{1,64})(?=["/\\])')
# A line with no patient reference at all (tested per line by the regex engine, not by Python).
_NO_REFERENCE = re.compile(rb'^(?![^\n]*Patient(?:/|\\/)[A-Za-z0-9\-.]{1,64}["/\\])', re.MULTILINE)


def chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """(number of the first line, whole lines, their newlines) of a file, in ~``size`` byte chunks."""
    with path.open("rb") as handle:
        rest = b""
        line = 1
        while True:
            block = handle.read(size)
            if not block:
                if rest:
                    yield line, rest, rest.count(b"\n")
                return
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data  # one line longer than a chunk: keep reading
                continue
            chunk, rest = data[:cut], data[cut:]
            newlines = chunk.count(b"\n")
            yield line, chunk, newlines
            line += newlines


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
        self.everything = self._pop is None and owns is None
        self.patient_lines = 0  # Patient lines seen typed first (to count those not screened)

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
        if self._pop is not None and not self._pop_bytes.isdisjoint(_ANY_REFERENCE.findall(raw)):
            return True
        if _PATIENT_TYPE.match(raw):
            self.patient_lines += 1
            return self._patient_line_wanted(_PATIENT_ID_FIRST.match(raw))
        refs = _ANY_REFERENCE.findall(raw)
        if not refs:
            return True  # about no patient we can see: read it as the full path does
        return self._owns is not None and any(self._owns(ref.decode()) for ref in refs)

    def wanted_starts(self, chunk: bytes, newlines: int | None = None) -> list[int]:
        """Offsets of the lines of a chunk (whole lines) that ``wanted_line`` keeps, in order.

        Each test is one C-speed pass over the chunk; Python steps only for lines that are wanted."""
        if self.everything:
            return _line_starts(chunk)
        newlines = chunk.count(b"\n") if newlines is None else newlines
        lines = newlines + (0 if chunk.endswith(b"\n") else 1)
        # Every line typed first and ending in }: then each line boundary is '}\n{"resourceType":'
        # (one count instead of one per test; an empty or truncated line breaks it).
        plain = chunk.startswith(_STARTS) and (chunk.endswith(b"}\n") or chunk.endswith(b"}"))
        if plain:
            boundaries = chunk.count(b'}\n{"resourceType":"')
            if boundaries != lines - 1:
                boundaries += chunk.count(b'}\n{"resourceType": "')
            plain = boundaries == lines - 1
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
        # \u escapes and urn: references: two passes (one alternation has no literal to scan for)
        patterns = [_ESCAPE, _URN_REFERENCE] + ([self._pop] if self._pop is not None else [])
        for pattern in patterns:
            for match in pattern.finditer(chunk):
                wanted.add(chunk.rfind(b"\n", 0, match.start()) + 1)
        for match in _TYPED_LINE.finditer(chunk):
            start = match.start() + 1
            self._typed(match[1], chunk, start, wanted)
        first = _FIRST_TYPED.match(chunk)
        if first:
            self._typed(first[1], chunk, 0, wanted)
        named = chunk.count(b'"subject":{"reference":"Patient/')
        if named < lines and named + chunk.count(b'"patient":{"reference":"Patient/') < lines:
            # Some line may name no patient: find those (the regex engine tests each line).
            for match in _NO_REFERENCE.finditer(chunk, 0, len(chunk) - 1):  # not after the last newline
                if not _PATIENT_TYPE.match(chunk, match.start()):
                    wanted.add(match.start())
        if self._owns is not None:
            for match in _ANY_REFERENCE.finditer(chunk):
                start = chunk.rfind(b"\n", 0, match.start()) + 1
                if start not in wanted and self._owns(match[1].decode()):
                    wanted.add(start)
        return sorted(wanted)

    def _typed(self, rtype: bytes, chunk: bytes, start: int, wanted: set[int]) -> None:
        """A Medication line (always wanted) or a Patient line (wanted by its id) at ``start``."""
        self.patient_lines += rtype == b"Patient"
        if rtype == b"Medication" or self._patient_line_wanted(_PATIENT_ID_FIRST.match(chunk, start)):
            wanted.add(start)

    def _patient_line_wanted(self, first: re.Match[bytes] | None) -> bool:
        """A Patient line: wanted if its id is not plainly its second key, or is one of ours."""
        if first is None:
            return True
        pid = first[1].decode()
        if self._owns is not None:
            return self._owns(pid)
        return pid in self._pop_ids


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
