Invariant: ta-nct-1
Description: "The ClinicalTrials.gov identifier is 'NCT' followed by exactly 8 digits."
Expression: "$this.matches('^NCT[0-9]{8}$')"
Severity: #error

Profile: TrialResearchStudy
Parent: ResearchStudy
Id: trial-research-study
Title: "Trial Research Study"
Description: "A clinical trial as registered on ClinicalTrials.gov (NCT identifier), with its eligibility criteria (enrollment Group) and protocol (PlanDefinition)."
* extension contains TargetEnrollment named targetEnrollment 0..1 MS
* identifier 1..* MS
* identifier ^slicing.discriminator.type = #value
* identifier ^slicing.discriminator.path = "system"
* identifier ^slicing.rules = #open
* identifier ^slicing.description = "Slice on identifier.system; the ClinicalTrials.gov NCT number is required."
* identifier contains nct 1..1 MS
* identifier[nct] ^short = "ClinicalTrials.gov identifier (NCT number)"
* identifier[nct].system 1..1 MS
* identifier[nct].system = $NCT (exactly)
* identifier[nct].value 1..1 MS
* identifier[nct].value obeys ta-nct-1
* title 1..1 MS
* status 1..1 MS
* phase 1..1 MS
* category 1..* MS
* primaryPurposeType 1..1 MS
* condition 1..* MS
* focus 1..* MS
* description 1..1 MS
* sponsor 1..1 MS
* arm 1..* MS
* enrollment 1..1 MS
* enrollment only Reference(EligibilityGroup)
* enrollment ^short = "Eligibility criteria of the study, as an EligibilityGroup"
* protocol 1..* MS
* protocol only Reference(PlanDefinition)

Profile: TrialProtocol
Parent: PlanDefinition
Id: trial-protocol
Title: "Trial Protocol"
Description: "The treatment protocol of a trial (clinical-protocol PlanDefinition), with the dose of each action in the action-dose extension."
* url 1..1 MS
* title 1..1 MS
* status MS
* type 1..1 MS
* type = $PlanDefinitionType#clinical-protocol
* relatedArtifact 0..* MS
* relatedArtifact ^short = "Related artifacts, e.g. the study record on clinicaltrials.gov (type documentation)"
* action 1..* MS
* action.extension contains ActionDose named actionDose 0..1 MS

Profile: EligibilityGroup
Parent: Group
Id: eligibility-group
Title: "Eligibility Group"
Description: "The eligibility criteria of a trial as a descriptive (actual = false) Group of persons. Each characteristic carries the eligibility-criterion extension naming the registry criterion it expresses."
* type = #person
* type MS
* actual = false
* actual MS
* characteristic 1..* MS
* characteristic.extension contains EligibilityCriterion named eligibilityCriterion 1..1 MS
* characteristic.code MS
* characteristic.value[x] MS
* characteristic.exclude MS

Profile: CandidateResearchSubject
Parent: ResearchSubject
Id: candidate-research-subject
Title: "Candidate Research Subject"
Description: "A patient flagged by the adapter for a study (status candidate or ineligible), identified by the adapter's screening identifier."
* identifier 1..* MS
* identifier ^slicing.discriminator.type = #value
* identifier ^slicing.discriminator.path = "system"
* identifier ^slicing.rules = #open
* identifier ^slicing.description = "Slice on identifier.system; the adapter's screening identifier is required."
* identifier contains screening 1..1 MS
* identifier[screening] ^short = "Screening identifier assigned by the trial adapter"
* identifier[screening].system 1..1 MS
* identifier[screening].system = $ScreeningId (exactly)
* identifier[screening].value 1..1 MS
* status MS
* study 1..1 MS
* study only Reference(ResearchStudy)
* individual 1..1 MS
* individual only Reference(Patient)
