Extension: TargetEnrollment
Id: target-enrollment
Title: "Target Enrollment"
Description: "Planned (target) number of participants of the study. R4 ResearchStudy has no element for it (R5 has ResearchStudy.recruitment.targetNumber)."
Context: ResearchStudy
* value[x] 1..1
* value[x] only unsignedInt
* value[x] ^short = "Planned number of participants"

Extension: ActionDose
Id: action-dose
Title: "Action Dose"
Description: "The dose given at this protocol action, e.g. 4e7 CAR-NK cells/kg expressed as the UCUM quantity {value: 40000000, unit: \"CAR-NK cells/kg\", system: \"http://unitsofmeasure.org\", code: \"{cells}/kg\"}."
Context: PlanDefinition.action, PlanDefinition.action.action
* value[x] 1..1
* value[x] only Quantity
* value[x] ^short = "Dose given at this action"

Extension: EligibilityCriterion
Id: eligibility-criterion
Title: "Eligibility Criterion"
Description: "Links a Group.characteristic to the registry's eligibility criterion it expresses: the criterion identifier, its verbatim text, whether it is computable from FHIR data and, for multi-clause criteria, which clause this characteristic expresses."
Context: Group.characteristic
* value[x] 0..0
* extension contains
    id 1..1 and
    text 1..1 and
    computable 1..1 and
    clause 0..1
* extension[id] ^short = "Criterion identifier, e.g. inclusion-5"
* extension[id].value[x] 1..1
* extension[id].value[x] only string
* extension[text] ^short = "Verbatim criterion text from the trial registry"
* extension[text].value[x] 1..1
* extension[text].value[x] only string
* extension[computable] ^short = "Whether the criterion is computable from FHIR data"
* extension[computable].value[x] 1..1
* extension[computable].value[x] only boolean
* extension[clause] ^short = "Which clause of a multi-clause criterion this characteristic expresses, e.g. creatinine"
* extension[clause].value[x] 1..1
* extension[clause].value[x] only string
