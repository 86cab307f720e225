"""mCODE shapes read as the plain FHIR the kinds already understand (one home for mCODE reading).

mCODE (HL7 FHIR IG hl7.fhir.us.mcode, STU4, CC0-1.0; FSH source github.com/HL7/fhir-mCODE-ig) records
a cancer's ICD-O-3 morphology in the ``histology-morphology-behavior`` extension of a Condition, and
early versions (STU1) coded performance status as a LOINC answer (``LA...``) in valueCodeableConcept.
"""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
# Extension: HistologyMorphologyBehavior (input/fsh/SD_Extensions.fsh, Id mcode-histology-morphology-behavior).
HISTOLOGY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"

ECOG_SCORE = "89247-1"  # ECOG Performance Status score (mCODE ECOGPerformanceStatus, code = LNC#89247-1)
KARNOFSKY_SCORE = "89243-0"  # Karnofsky Performance Status score (mCODE KarnofskyPerformanceStatus)

# LOINC answer code -> score, per question: LA9627-6 "Dead" is ECOG 5 but Karnofsky 0.
ANSWER_SCORES: dict[str, dict[str, int]] = {
    # LOINC answer list LL529-9 (ECOG). Source: the LL529-9 enumeration in the MII Onkologie IG
    # (ValueSet mii-vs-onko-allgemeiner-leistungszustand-ecog-loinc), LA9622-7 as 0 also in mCODE's own
    # examples (input/fsh/EX_ExtendedExample.fsh, valueInteger = 0 with interpretation LA9622-7).
    ECOG_SCORE: {
        "LA9622-7": 0,  # Fully active, able to carry on all pre-disease performance without restriction
        "LA9623-5": 1,  # Restricted in physically strenuous activity but ambulatory ...
        "LA9624-3": 2,  # Ambulatory and capable of all selfcare but unable to carry out any work ...
        "LA9625-0": 3,  # Capable of only limited selfcare, confined to bed or chair > 50% of waking hours
        "LA9626-8": 4,  # Completely disabled. Cannot carry on any selfcare ...
        "LA9627-6": 5,  # Dead
    },
    # LOINC answer list LL4986-7 (Karnofsky). Source: hl7.org/fhir/us/mcode/2019Sep/
    # ValueSet-obf-KarnofskyPerformanceStatusVS.html ("corresponds to LOINC list LL4986-7": KPS 100 ..
    # KPS 20), and mCODE's FSH KarnofskyPerformanceStatusVS for KPS 10 (LA29184-1) and KPS 0 (LA9627-6).
    KARNOFSKY_SCORE: {
        "LA29175-9": 100,  # Normal; no complaints; no evidence of disease
        "LA29176-7": 90,  # Able to carry on normal activity; minor signs or symptoms of disease
        "LA29177-5": 80,  # Normal activity with effort; some signs or symptoms of disease
        "LA29178-3": 70,  # Cares for self; unable to carry on normal activity or do active work
        "LA29179-1": 60,  # Requires occasional assistance but is able to care for most needs
        "LA29180-9": 50,  # Requires considerable assistance and frequent medical care
        "LA29181-7": 40,  # Disabled; requires special care and assistance
        "LA29182-5": 30,  # Severely disabled; hospitalization is indicated, although death not imminent
        "LA29183-3": 20,  # Very sick; hospitalization necessary; active supportive treatment necessary
        "LA29184-1": 10,  # Moribund; fatal processes progressing rapidly
        "LA9627-6": 0,  # Dead
    },
}


def answer_score(obs: dict[str, Any]) -> int | None:
    """The score a coded LOINC answer stands for, from the table above; None when the question or
    the answer is not in it, or when the answer's codings disagree (never guessed)."""
    tables = [
        ANSWER_SCORES[str(c.get("code"))]
        for c in (obs.get("code") or {}).get("coding") or ()
        if isinstance(c, dict) and c.get("system") == LOINC and str(c.get("code")) in ANSWER_SCORES
    ]
    concept = obs.get("valueCodeableConcept")
    if len(tables) != 1 or not isinstance(concept, dict):
        return None
    scores = {
        tables[0][c["code"]]
        for c in concept.get("coding") or ()
        if isinstance(c, dict) and c.get("system") == LOINC and c.get("code") in tables[0]
    }
    return scores.pop() if len(scores) == 1 else None


def with_histology(condition: dict[str, Any]) -> dict[str, Any]:
    """The Condition as screening reads it: the codings of its histology-morphology-behavior extension
    (an ICD-O-3 morphology such as 9837/3) count as codings of its code. Unchanged without one."""
    extensions = condition.get("extension")
    if not isinstance(extensions, list):
        return condition
    values = [
        ext.get("valueCodeableConcept")
        for ext in extensions
        if isinstance(ext, dict) and ext.get("url") == HISTOLOGY
    ]
    code = condition.get("code")
    if code is not None and not isinstance(code, dict):
        return condition  # an odd code is the engine's to judge (unknown), not this reading's
    codings = (code or {}).get("coding")
    present = codings if isinstance(codings, list) else []
    extra = [
        coding
        for value in values
        if isinstance(value, dict) and isinstance(value.get("coding"), list)
        for coding in value["coding"]
        if isinstance(coding, dict) and coding not in present  # once: records are rebuilt (ConceptMaps)
    ]
    if not extra:
        return condition
    return {**condition, "code": {**(code or {}), "coding": [*present, *extra]}}
