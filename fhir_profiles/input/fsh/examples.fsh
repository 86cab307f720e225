// Illustrative examples, one per profile. Values are placeholders that show the
// shape of the resources (they are NOT the registry record of NCT06849401).

Instance: example-trial-research-study
InstanceOf: TrialResearchStudy
Title: "Example Trial Research Study"
Description: "Example of a TrialResearchStudy for NCT06849401."
Usage: #example
* extension[targetEnrollment].valueUnsignedInt = 20
* identifier[nct].system = $NCT
* identifier[nct].value = "NCT06849401"
* title = "Example: CD7 CAR-NK cells in paediatric relapsed/refractory T-ALL"
* status = #active
* phase = $ResearchStudyPhase#phase-1 "Phase 1"
* category.text = "Interventional"
* primaryPurposeType = $ResearchStudyPurpose#treatment "Treatment"
* condition = $SCT#277575008 "T-cell acute lymphoblastic leukemia"
* focus.text = "CD7 CAR-NK cells"
* description = "Illustrative example only."
* sponsor.display = "Example sponsor"
* arm[0].name = "CD7 CAR-NK"
* enrollment = Reference(example-eligibility-group)
* protocol = Reference(example-trial-protocol)

Instance: example-trial-protocol
InstanceOf: TrialProtocol
Title: "Example Trial Protocol"
Description: "Example of a TrialProtocol with one dosed action."
Usage: #example
* url = "http://trial-adapter.org/fhir/PlanDefinition/example-trial-protocol"
* title = "Example CD7 CAR-NK protocol"
* status = #draft
* type = $PlanDefinitionType#clinical-protocol "Clinical Protocol"
* relatedArtifact[0].type = $RelatedArtifactType#documentation
* relatedArtifact[0].url = "https://clinicaltrials.gov/study/NCT06849401"
* action[0].title = "CD7 CAR-NK cell infusion"
* action[0].extension[actionDose].valueQuantity = $UCUM#{cells}/kg "CAR-NK cells/kg"
* action[0].extension[actionDose].valueQuantity.value = 40000000

Instance: example-eligibility-group
InstanceOf: EligibilityGroup
Title: "Example Eligibility Group"
Description: "Example of an EligibilityGroup with one computable and one manual-review characteristic."
Usage: #example
* type = #person
* actual = false
* characteristic[0].extension[eligibilityCriterion].extension[id].valueString = "inclusion-2"
* characteristic[0].extension[eligibilityCriterion].extension[text].valueString = "Example criterion text: CD7-positive blasts."
* characteristic[0].extension[eligibilityCriterion].extension[computable].valueBoolean = true
* characteristic[0].code = TrialAdapterLocal#cd7-positive-blasts "CD7-positive blasts, % of blasts"
* characteristic[0].valueQuantity = $UCUM#% "%"
* characteristic[0].valueQuantity.value = 70
* characteristic[0].valueQuantity.comparator = #>=
* characteristic[0].exclude = false
* characteristic[1].extension[eligibilityCriterion].extension[id].valueString = "inclusion-6"
* characteristic[1].extension[eligibilityCriterion].extension[text].valueString = "Example criterion text needing investigator judgement."
* characteristic[1].extension[eligibilityCriterion].extension[computable].valueBoolean = false
* characteristic[1].code = TrialAdapterLocal#manual-review "Requires manual review"
* characteristic[1].valueBoolean = true
* characteristic[1].exclude = false

Instance: example-candidate-research-subject
InstanceOf: CandidateResearchSubject
Title: "Example Candidate Research Subject"
Description: "Example of a CandidateResearchSubject flagged as candidate."
Usage: #example
* identifier[screening].system = $ScreeningId
* identifier[screening].value = "example-0001"
* status = #candidate
* study = Reference(example-trial-research-study)
* individual.reference = "Patient/example-patient"
