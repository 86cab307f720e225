"""Shipped terminology: what makes a code a descendant of another, per code system.

Concept sets (``mappings.criteria.ConceptSet``) name roots whose descendants count; this module answers
"is code X a kind of root R in system S" from versioned sources shipped with the project:

- ICD-10-CM: the code structure (a subcategory's code extends its category's), checked against the
  ``simple-icd-10-cm`` package (MIT; CMS ICD-10-CM tabular list, April 2026 release) for expansions.
- WHO ICD-10: the same category/subcategory structure (no WHO data is shipped: its licence does not
  allow redistribution; the codes the criteria use coincide with ICD-10-CM's at category level).
- ICD-O-3 morphology: ``NNNN/B`` where B is the behaviour (3 = malignant, primary site).
- SNOMED CT and NCIt: curated descendant tables, ``data/snomed-descendants.tsv`` and
  ``data/ncit-descendants.tsv`` (``ancestor code display source``), each row verified at its source.
- RxNorm: drug -> ingredient (``data/rxnorm-ingredients.tsv``: ``drug ingredient drug_name source``),
  and the ingredient read from an RxNorm drug name ("clopidogrel 75 MG Oral Tablet").

A code no table knows is only itself: nothing is assumed to descend from anything.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SCT = "http://snomed.info/sct"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"

DATA_DIR = Path(__file__).parent / "data"
_ICD_SYSTEMS = frozenset({ICD10CM, ICD10})
_PREFIX_SYSTEMS = frozenset({ATC})  # ATC levels: a code's group is its prefix (B01A -> B01AC06)
_TABLE_SYSTEMS = {"snomed-descendants.tsv": SCT, "ncit-descendants.tsv": NCIT}
_MORPHOLOGY = re.compile(r"(\d{4})/(\d)")


class TerminologyError(ValueError):
    """A shipped or supplied terminology file cannot be used; the message says where and why."""


def icd_normal(code: str) -> str:
    """ICD-10(-CM) codes as written with a dot after the category, upper case: ``c9100`` -> ``C91.00``."""
    code = code.strip().upper()
    if "-" in code:  # a block (C00-C96) is left as it is
        return code
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code.rstrip(".")


def morphology(code: str) -> tuple[str, str] | None:
    """(histology, behaviour) of an ICD-O-3 morphology code, e.g. ``9837/3`` -> ("9837", "3")."""
    found = _MORPHOLOGY.fullmatch(code.strip())
    return (found[1], found[2]) if found else None


def _block_contains(block: str, code: str) -> bool:
    first, _, last = block.partition("-")
    category = code[:3]
    return len(category) == 3 and first[:3] <= category <= last[:3]


def read_tsv(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows of a tab-separated file with a header line; ``#`` lines are comments."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise TerminologyError(f"{path}: cannot read: {exc}") from None
    rows = list(csv.reader((line for line in lines if not line.startswith("#")), delimiter="\t"))
    if not rows:
        return
    header = [h.strip() for h in rows[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise TerminologyError(f"{path}: header lacks {', '.join(missing)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < len(columns):
            raise TerminologyError(f"{path}: row {number} has {len(row)} columns, expected {len(header)}")
        item = {name: value.strip() for name, value in zip(header, row, strict=False)}
        if not all(item.get(c) for c in columns[:2]):
            raise TerminologyError(f"{path}: row {number}: {columns[0]} and {columns[1]} are required")
        yield item


@dataclass
class Terminology:
    """Descendant tables and the drug-ingredient relation; ICD structure is built in."""

    # (system, ancestor) -> the ancestor's descendants (transitive)
    descendants: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # RxNorm drug -> its ingredients
    ingredients: dict[str, frozenset[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def is_a(self, system: str, code: str, root: str) -> bool:
        """Whether ``code`` is ``root`` or one of its descendants in ``system``."""
        if code == root:
            return True
        if system in _ICD_SYSTEMS:
            code, root = icd_normal(code), icd_normal(root)
            if "-" in root:
                return _block_contains(root, code)
            return code.startswith(root)
        if system in _PREFIX_SYSTEMS:
            return code.upper().startswith(root.upper())
        return code in self.descendants.get((system, root), ())

    def is_ancestor_of(self, system: str, code: str, other: str) -> bool:
        """Whether ``code`` is strictly broader than ``other`` (e.g. ICD-10-CM C91 above C91.02)."""
        return code != other and self.is_a(system, other, code) and not self.is_a(system, code, other)

    def expand(self, system: str, root: str) -> list[str]:
        """The root and every descendant this module knows (for searches and ValueSet expansions)."""
        found = [root]
        if system == ICD10CM:
            found += icd10cm_descendants(root)
        else:
            found += sorted(self.descendants.get((system, root), ()))
        return list(dict.fromkeys(found))

    def ingredients_of(self, drug: str) -> frozenset[str]:
        return self.ingredients.get(drug, frozenset())


def load_descendants(paths: Iterable[tuple[Path, str]]) -> dict[tuple[str, str], frozenset[str]]:
    """``(path, system)`` tables of ``ancestor code display source`` rows -> (system, ancestor) -> codes."""
    table: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, system in paths:
        for row in read_tsv(path, ("ancestor", "code", "display", "source")):
            table[(system, row["ancestor"])].add(row["code"])
    return {key: frozenset(codes) for key, codes in table.items()}


def load_ingredients(path: Path) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = defaultdict(set)
    for row in read_tsv(path, ("drug", "ingredient", "drug_name", "source")):
        table[row["drug"]].add(row["ingredient"])
    return {drug: frozenset(items) for drug, items in table.items()}


def load_terminology(data_dir: Path = DATA_DIR) -> Terminology:
    """The tables present in ``data_dir`` (a missing table is an empty one)."""
    present = [(data_dir / name, system) for name, system in _TABLE_SYSTEMS.items()]
    present = [(path, system) for path, system in present if path.is_file()]
    ingredients_path = data_dir / "rxnorm-ingredients.tsv"
    return Terminology(
        descendants=load_descendants(present),
        ingredients=load_ingredients(ingredients_path) if ingredients_path.is_file() else {},
        sources=[path.name for path, _ in present]
        + (["rxnorm-ingredients.tsv"] if ingredients_path.is_file() else []),
    )


@cache
def default_terminology() -> Terminology:
    return load_terminology()


@cache
def _icd10cm() -> Any:
    # Importing builds the whole tabular list (~1-2 s): only expansions (searches, ValueSets) need it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    return simple_icd_10_cm


def icd10cm_descendants(root: str) -> list[str]:
    """Every ICD-10-CM code below ``root`` (a category, subcategory or block), from the CMS tabular list."""
    icd = _icd10cm()
    root = icd_normal(root)
    if not icd.is_valid_item(root):
        return []
    return [str(code) for code in icd.get_descendants(root)]


def icd10cm_valid(code: str) -> bool:
    return bool(_icd10cm().is_valid_item(icd_normal(code)))


# --- RxNorm drug names ----------------------------------------------------------------------------

_LEADING_RELEASE = re.compile(r"^\d+\s+hr\s+", re.IGNORECASE)  # "24 HR tacrolimus 1 MG ..."
_BRAND = re.compile(r"\s*\[[^\]]*\]\s*$")


def ingredient_names(drug_name: str) -> list[str]:
    """The ingredient part of each component of an RxNorm clinical/branded drug name, lower case.

    RxNorm names a drug ``<ingredient> <strength> <unit> <dose form>`` with ``/`` between components and
    the brand in brackets: "aspirin 81 MG / dipyridamole 200 MG ... [Aggrenox]" -> aspirin, dipyridamole.
    """
    name = _BRAND.sub("", drug_name.strip())
    name = _LEADING_RELEASE.sub("", name)
    out = []
    for part in name.split(" / "):
        words = []
        for word in part.split():
            if word[:1].isdigit() or word.startswith("{"):
                break
            words.append(word.lower())
        if words:
            out.append(" ".join(words))
    return out


def names_ingredient(drug_name: str, ingredient: str) -> bool:
    """Whether an RxNorm drug name has ``ingredient`` (its salt forms included: "warfarin sodium")."""
    wanted = ingredient.strip().lower()
    return bool(wanted) and any(
        part == wanted or part.startswith(wanted + " ") or part.startswith(wanted + ",")
        for part in ingredient_names(drug_name)
    )
