// Code system and identifier system aliases used across the FSH files.
Alias: $SCT = http://snomed.info/sct
Alias: $ICD10CM = http://hl7.org/fhir/sid/icd-10-cm
Alias: $LOINC = http://loinc.org
Alias: $UCUM = http://unitsofmeasure.org
Alias: $PlanDefinitionType = http://terminology.hl7.org/CodeSystem/plan-definition-type
Alias: $ResearchSubjectStatus = http://hl7.org/fhir/research-subject-status
Alias: $ResearchStudyPhase = http://terminology.hl7.org/CodeSystem/research-study-phase
Alias: $ResearchStudyPurpose = http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type
Alias: $RelatedArtifactType = http://hl7.org/fhir/related-artifact-type
Alias: $NCT = https://clinicaltrials.gov
Alias: $ScreeningId = http://trial-adapter.org/fhir/sid/research-subject
