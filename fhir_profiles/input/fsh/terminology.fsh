CodeSystem: TrialAdapterLocal
Id: trial-adapter-local
Title: "Trial Adapter Local Codes"
Description: "Local codes of the trial adapter for concepts that have no suitable standard (SNOMED CT / LOINC) code, or that are adapter-specific."
* ^status = #draft
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #cd7-positive-blasts "CD7-positive blasts, % of blasts" "Percentage of leukaemic blasts expressing CD7, measured by flow cytometry immunophenotyping. No LOINC code exists for this measurement."
* #manual-review "Requires manual review" "Eligibility criterion that needs human or investigator judgement and is not computable from FHIR data."
* #relapsed-refractory-t-all "Relapsed or refractory T-cell acute lymphoblastic leukaemia" "T-cell acute lymphoblastic leukaemia that has relapsed after, or is refractory to, prior therapy."
* #life-expectancy-weeks "Estimated survival period, weeks" "Investigator-estimated survival period (life expectancy) of the patient, in weeks."
* #ctcae-dyspnea-grade "Dyspnea, CTCAE v5.0 grade" "Grade of dyspnea according to the Common Terminology Criteria for Adverse Events (CTCAE) version 5.0."
* #blasts-after-salvage "Blasts after one cycle of salvage therapy, %" "Percentage of blasts (bone marrow) after one cycle of salvage (re-induction) therapy."
* #platelet-transfusion-threshold "Platelet count meets clinical transfusion criteria" "The patient's platelet count meets the clinical criteria for platelet transfusion."
* #adapter-device "Trial adapter software" "The trial adapter software itself, used as the Device type of Provenance agents."

ValueSet: TAllConditions
Id: t-all-conditions
Title: "T-ALL Conditions"
Description: "Condition codes (SNOMED CT and ICD-10-CM) that identify T-cell acute lymphoblastic leukaemia and its relapsed/refractory/remission states, or acute lymphoid leukaemia in general."
* ^status = #draft
* ^experimental = false
* $SCT#277575008 "T-cell acute lymphoblastic leukemia"
* $SCT#420890002 "Precursor T cell lymphoblastic leukemia/lymphoblastic lymphoma"
* $SCT#427642009 "T-cell acute lymphoblastic leukemia in remission"
* $SCT#91857003 "Acute lymphoid leukemia"
* $SCT#12301000132103 "Acute lymphoid leukemia relapse"
* $SCT#12311000132101 "Refractory acute lymphoid leukemia"
* $ICD10CM#C91.00 "Acute lymphoblastic leukemia not having achieved remission"
* $ICD10CM#C91.01 "Acute lymphoblastic leukemia, in remission"
* $ICD10CM#C91.02 "Acute lymphoblastic leukemia, in relapse"

ValueSet: Cd7BlastObservations
Id: cd7-blast-observations
Title: "CD7 Blast Observations"
Description: "Observation codes for the CD7 expression of leukaemic blasts: the local code for CD7-positive blasts (% of blasts) and the nearest LOINC code (CD7 cells/cells in Bone marrow)."
* ^status = #draft
* ^experimental = false
* TrialAdapterLocal#cd7-positive-blasts "CD7-positive blasts, % of blasts"
* $LOINC#35641-0 "CD7 cells/cells in Bone marrow"

ValueSet: ResearchSubjectFlagStatus
Id: research-subject-flag-status
Title: "Research Subject Flag Status"
Description: "The R4 ResearchSubject status codes the adapter uses when it flags a patient for the study: candidate (potentially eligible) or ineligible."
* ^status = #draft
* ^experimental = false
* $ResearchSubjectStatus#candidate "Candidate"
* $ResearchSubjectStatus#ineligible "Ineligible"
