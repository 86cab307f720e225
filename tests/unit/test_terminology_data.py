"""Shape of the curated terminology data (mappings/terminology/data) and of the criteria's own codes.

Not a re-verification of the terminology (that was done against public sources, named row by row):
these tests catch what a hand edit breaks: a header, a duplicate, a row without its source, a code that
cannot be a code of its system (SNOMED CT Verhoeff check digit, LOINC mod-10 check digit), or a
subtree hung on an ancestor that no concept set in criteria.yaml uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "mappings" / "terminology" / "data"
CRITERIA = REPO / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"

HIERARCHY_HEADER = ["ancestor", "code", "display", "source"]
RXNORM_HEADER = ["drug", "ingredient", "drug_name", "source"]

# --- code shapes --------------------------------------------------------------------------------

_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def is_sctid_concept(code: str) -> bool:
    """A SNOMED CT concept id: 6-18 digits, concept partition (00 or 10), valid Verhoeff check digit."""
    if not re.fullmatch(r"[1-9]\d{5,17}", code) or code[-3:-1] not in ("00", "10"):
        return False
    check = 0
    for i, digit in enumerate(reversed(code)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(digit)]]
    return check == 0


def is_loinc_term(code: str) -> bool:
    """A LOINC term code (digits, dash, mod-10 check digit); answer codes (LA...) have no check digit."""
    if re.fullmatch(r"LA\d{1,6}-\d", code):
        return True
    match = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if not match:
        return False
    total = 0
    for i, ch in enumerate(reversed(match.group(1))):
        digit = int(ch) * (2 if i % 2 == 0 else 1)
        total += digit // 10 + digit % 10
    return (10 - total % 10) % 10 == int(match.group(2))


def test_code_shape_helpers_know_good_and_bad_codes():
    assert is_sctid_concept("230690007") and is_sctid_concept("12301000132103")
    assert not is_sctid_concept("230690008")  # check digit
    assert not is_sctid_concept("23069013")  # valid check digit, but a description id (partition 01)
    assert is_loinc_term("2160-0") and is_loinc_term("777-3") and is_loinc_term("LA28406-9")
    assert not is_loinc_term("2160-1") and not is_loinc_term("777-4")


# --- readers ------------------------------------------------------------------------------------


def read_tsv(name: str, header: list[str], allow_empty: bool = False) -> list[dict[str, str]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    body = [line for line in lines if line.strip() and not line.startswith("#")]
    assert lines and lines[0].startswith("#"), f"{name}: starts with a comment naming the source version"
    assert body[0].split("\t") == header, f"{name}: header"
    rows = []
    for number, line in enumerate(body[1:], start=2):
        fields = line.split("\t")
        assert len(fields) == len(header), f"{name} row {number}: {len(fields)} fields"
        assert all(f.strip() == f and f for f in fields), f"{name} row {number}: empty or padded field"
        rows.append(dict(zip(header, fields, strict=True)))
    assert rows or allow_empty, f"{name}: no rows"
    return rows


def criteria_codes() -> dict[str, set[str]]:
    """Codes used in criteria.yaml concept sets, by system alias (sct, loinc, rxnorm, ncit, ...)."""
    doc = yaml.safe_load(CRITERIA.read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for concept in doc["concepts"].values():
        for entry in concept.get("codes", []):
            found.setdefault(str(entry[0]), set()).add(str(entry[1]))
    return found


HIERARCHIES = {
    # file: (system alias in criteria.yaml, code shape, may ship without rows)
    "snomed-descendants.tsv": ("sct", is_sctid_concept, False),
    "ncit-descendants.tsv": ("ncit", lambda code: re.fullmatch(r"C\d{1,7}", code) is not None, True),
}


# --- the files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HIERARCHIES))
def test_hierarchy_file_shape(name: str):
    alias, looks_right, allow_empty = HIERARCHIES[name]
    rows = read_tsv(name, HIERARCHY_HEADER, allow_empty)
    pairs = [(row["ancestor"], row["code"]) for row in rows]
    assert len(pairs) == len(set(pairs)), f"{name}: duplicate ancestor/code rows"
    used = criteria_codes().get(alias, set())
    for row in rows:
        assert looks_right(row["ancestor"]) and looks_right(row["code"]), row
        assert row["ancestor"] != row["code"], row
        assert row["ancestor"] in used, f"{name}: ancestor {row['ancestor']} is in no concept set"
        assert len(row["source"]) > 10, row


def test_rxnorm_ingredient_file_shape():
    rows = read_tsv("rxnorm-ingredients.tsv", RXNORM_HEADER)
    pairs = [(row["drug"], row["ingredient"]) for row in rows]
    assert len(pairs) == len(set(pairs)), "duplicate drug/ingredient rows"
    used = criteria_codes().get("rxnorm", set())
    for row in rows:
        assert re.fullmatch(r"[1-9]\d{0,8}", row["drug"]) and re.fullmatch(r"[1-9]\d{0,8}", row["ingredient"])
        assert row["drug"] != row["ingredient"], row
        assert row["ingredient"] in used, f"ingredient {row['ingredient']} is in no concept set"
        assert len(row["source"]) > 10, row


def test_rxnorm_file_maps_no_local_dose_form():
    """Topical or inhaled products are not systemic use: mapping them would flag asthma or eczema care."""
    local = re.compile(r"Topical|Cream|Ointment|Lotion|Ophthalmic|Otic|Nasal|Inhal|Rectal|Vaginal", re.I)
    assert [
        r["drug_name"]
        for r in read_tsv("rxnorm-ingredients.tsv", RXNORM_HEADER)
        if local.search(r["drug_name"])
    ] == []


def test_readme_names_every_data_file():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for path in DATA.glob("*.tsv"):
        assert path.name in readme


# --- the criteria's own codes -------------------------------------------------------------------


def test_criteria_snomed_and_loinc_codes_are_well_formed():
    codes = criteria_codes()
    bad_sct = sorted(code for code in codes.get("sct", set()) if not is_sctid_concept(code))
    bad_loinc = sorted(code for code in codes.get("loinc", set()) if not is_loinc_term(code))
    assert bad_sct == [] and bad_loinc == []


def test_added_criteria_codes_carry_their_source():
    """Every code line appended after the first curation pass says where it was verified
    (lines of a concept set's `codes:` list; `roots:` and `exclude:` lines name hierarchy roots)."""
    listing = None
    for line in CRITERIA.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and not stripped.startswith(("-", "#")):
            listing = stripped[:-1]
        elif listing == "codes" and stripped.startswith("- [") and "#" in line.split("]", 1)[1]:
            assert "# source: " in line.split("]", 1)[1], line
