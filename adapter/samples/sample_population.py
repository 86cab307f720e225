"""A synthetic sample population for NCT06849401, screened as of 2026-11-23.

Builds a FHIR R4 ``collection`` Bundle of 24 fictional paediatric patients (no real people): full
candidates, patients who are not eligible for one distinct reason each, patients whose records leave
criteria unknown, and some noise the screening must ignore (vital signs, an entered-in-error lab, a
refuted condition, a future-dated result). The output is deterministic: fixed dates relative to the
as-of date, ids that say what each patient is, and ``urn:uuid`` fullUrls derived with uuid5.

Regenerate the committed file with ``python -m adapter.samples.sample_population``.
Standard library only.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from adapter.samples.sample import Sample
from adapter.samples.vocabulary import (
    ALL_REFRACTORY,
    AS_OF,
    ASTHMA,
    BODY_WEIGHT,
    CAR_T,
    CD7_LOINC,
    CREATININE_MASS,
    GVHD,
    HEART_RATE,
    ICD_ALL_RELAPSE,
    ICDO3_B_ALL,
    ICDO3_T_ALL,
    LANSKY,
    LOCAL,
    MENINGEAL_LEUKAEMIA,
    OSTEOSARCOMA,
    PLATELETS,
    POSITIVE,
    PREDNISONE,
    SEIZURE_DISORDER,
    birth,
    day,
)

SAMPLE_PATH = Path(__file__).with_name("nct06849401-sample-bundle.json")
BUNDLE_ID = "nct06849401-sample-population"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://trial-adapter.org/samples/NCT06849401")


def _samples() -> list[Sample]:
    samples: list[Sample] = []

    def new(pid: str, given: str, family: str, gender: str, birth_date: str | None, **kw: Any) -> Sample:
        sample = Sample(pid, given, family, gender, birth_date, **kw)
        samples.append(sample)
        return sample

    # --- candidates: every computable criterion passes ----------------------------------------------
    s = new("candidate-relapsed-girl", "Liora", "Fenwick-Sample", "female", birth(12, 140))
    s.t_all()
    s.workup()
    s.measured("weight", BODY_WEIGHT, 1, 39.5, "kg", category="vital-signs")  # noise: vital signs
    s.measured("heart-rate", HEART_RATE, 1, 92.0, "/min", category="vital-signs")
    s.measured("creatinine-error", CREATININE_MASS, 1, 4.2, "mg/dL", status="entered-in-error")

    s = new("candidate-refractory-boy", "Tobin", "Marlowe-Sample", "male", birth(8, 33))
    s.t_all(status=ALL_REFRACTORY)
    s.marrow(cd7=88.5)
    s.fitness(performance=LANSKY, score=80)
    s.labs(molar_units=True)
    s.infection_screen()
    s.condition("cns-refuted", MENINGEAL_LEUKAEMIA, 30, verification="refuted")  # noise: refuted

    s = new("candidate-relapsed-teen-boy", "Caspian", "Oakridge-Sample", "male", birth(19, -1))  # 19 tomorrow
    s.t_all(lineage=ICDO3_T_ALL)
    s.workup(platelet_unit="10*3/uL", platelets=51.0)

    s = new("candidate-toddler-girl", "Wren", "Ashdown-Sample", "female", birth(2))  # 2nd birthday today
    s.t_all()
    s.marrow(cd7=97.0)
    s.fitness(performance=LANSKY, score=70)
    s.labs(molar_units=True)
    s.infection_screen()  # no pregnancy test at 2 years: inclusion-11 stays unknown, never excludes
    s.measured("platelets-future", PLATELETS, -3, 4.0, "10*9/L")  # noise: dated after as-of

    s = new("candidate-relapsed-teen-girl", "Isolde", "Brackenbury-Sample", "female", birth(16, 200))
    s.t_all()
    s.marrow(cd7_code=CD7_LOINC, cd7=81.0)
    s.fitness(spo2_oxygen=0.0)  # oxygen flow recorded as 0 L/min: room air
    s.labs(days=7)
    s.infection_screen()
    s.pregnancy_test()

    # --- not eligible: one distinct reason each -----------------------------------------------------
    s = new("excl-age-19", "Rowan", "Thistledown-Sample", "male", birth(19))  # 19th birthday today
    s.t_all()
    s.workup()

    s = new("excl-age-1", "Pip", "Larkspur-Sample", "female", birth(2, -1))  # 2nd birthday tomorrow
    s.t_all()
    s.workup()

    s = new("excl-b-all", "Ansel", "Whitcombe-Sample", "male", birth(10, 50))
    s.t_all(lineage=ICDO3_B_ALL)
    s.workup()

    s = new("excl-cd7-78", "Maren", "Holloway-Sample", "female", birth(14, 10))
    s.t_all()
    s.marrow(cd7=78.0)
    s.fitness()
    s.labs()
    s.infection_screen()
    s.pregnancy_test()

    s = new("excl-creatinine-umol", "Fenn", "Raybourne-Sample", "male", birth(15, 90))
    s.t_all()
    s.workup(molar_units=True, creatinine=160.0)  # 1.81 mg/dL

    s = new("excl-cns", "Elodie", "Carrow-Sample", "female", birth(9, 75))
    s.t_all()
    s.workup()
    s.condition("cns", MENINGEAL_LEUKAEMIA, 12)

    s = new("excl-prior-car-t", "Jasper", "Quenby-Sample", "male", birth(13, 5))
    s.t_all()
    s.workup()
    s.procedure("car-t", CAR_T, 240)

    s = new("excl-vaccinated", "Noor", "Penhallow-Sample", "female", birth(6, 180))
    s.t_all()
    s.workup()
    s.immunization("flu-vaccine", 10)

    s = new("excl-pregnant", "Seren", "Aldwych-Sample", "female", birth(17, 60))
    s.t_all()
    s.marrow()
    s.fitness()
    s.labs()
    s.infection_screen()
    s.pregnancy_test(POSITIVE)

    s = new("excl-deceased", "Oren", "Mistral-Sample", "male", birth(11, 20), deceased=f"{day(24)}T04:10:00Z")
    s.t_all()
    s.workup(days=30)

    s = new("excl-platelets-8", "Tamsin", "Greyfriars-Sample", "female", birth(7, 300))
    s.t_all()
    s.workup(platelets=8.0)

    s = new("excl-other-malignancy", "Bram", "Evershaw-Sample", "male", birth(16, 15))
    s.t_all()
    s.workup()
    s.condition("osteosarcoma", OSTEOSARCOMA, 730, clinical="remission", abated_days=400)

    s = new("excl-gvhd-prednisone", "Ysolde", "Kestrel-Sample", "female", birth(12, 222))
    s.t_all()
    s.workup()
    s.condition("gvhd", GVHD, 90)
    s.medication("prednisone", PREDNISONE, 60)

    s = new("excl-bilirubin-high", "Cassius", "Fairweather-Sample", "male", birth(5, 45))
    s.t_all()
    s.workup(molar_units=True, bilirubin=82.0)  # 4.8 mg/dL = 4 x ULN 1.2 mg/dL

    s = new("excl-no-all", "Juniper", "Alderney-Sample", "female", birth(10, 11))
    s.condition("asthma", ASTHMA, 1500)
    s.measured("weight", BODY_WEIGHT, 4, 31.2, "kg", category="vital-signs")

    # --- unknown-heavy: never excluded for missing data ---------------------------------------------
    s = new("unknown-icd10-only", "Ezra", "Stonebridge-Sample", "male", birth(9, 120))
    s.condition("dx", ICD_ALL_RELAPSE, 40)  # ALL of unstated lineage
    s.workup()

    s = new("unknown-stale-labs", "Clementine", "Harrowgate-Sample", "female", birth(15, 30))
    s.t_all()
    s.workup(days=10)

    s = new("unknown-no-birth-date", "Idris", "Farrowmere-Sample", "male", None)
    s.t_all()
    s.workup()

    s = new("unknown-supplemental-oxygen", "Sable", "Wintermere-Sample", "female", birth(11, 64))
    s.t_all()
    s.marrow()
    s.fitness(spo2_oxygen=2.0)
    s.labs()
    s.infection_screen()
    s.pregnancy_test()

    s = new("unknown-diagnosis-only", "Quill", "Brightwater-Sample", "male", birth(4, 100))
    s.t_all()

    s = new("unknown-seizure-disorder", "Lorcan", "Ambleside-Sample", "male", birth(14, 3))
    s.t_all()
    s.workup()
    s.condition("seizures", SEIZURE_DISORDER, 1200)  # whether it is uncontrolled needs review
    return samples


def build_bundle() -> dict[str, Any]:
    """The sample population as a FHIR R4 collection Bundle (a plain dict, deterministic)."""
    entries = []
    for sample in _samples():
        for resource in sample.resources:
            key = f"{resource['resourceType']}/{resource['id']}"
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}", "resource": resource})
    return {
        "resourceType": "Bundle",
        "id": BUNDLE_ID,
        "meta": {
            "tag": [
                {"system": LOCAL, "code": "synthetic", "display": "Synthetic test data"},
                {"system": LOCAL, "code": f"as-of-{AS_OF.isoformat()}", "display": "Screening as-of date"},
            ]
        },
        "identifier": {"system": "http://trial-adapter.org/fhir/sid/sample-bundle", "value": BUNDLE_ID},
        "type": "collection",
        "timestamp": f"{AS_OF.isoformat()}T00:00:00Z",
        "entry": entries,
    }


def render(bundle: dict[str, Any]) -> str:
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SAMPLE_PATH
    target.write_text(render(build_bundle()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
