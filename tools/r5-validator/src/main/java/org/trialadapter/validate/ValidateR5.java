package org.trialadapter.validate;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Validates FHIR R5 JSON files against the official R5 definitions (HAPI's instance validator, offline).
 *
 * <p>Usage: {@code ValidateR5 FILE.json...}. Prints one line per issue: {@code SEVERITY<TAB>file<TAB>
 * location<TAB>message}; exits 1 when any issue is an error or fatal, else 0.
 */
public final class ValidateR5 {
    private ValidateR5() {}

    public static void main(String[] args) throws Exception {
        FhirContext fhir = FhirContext.forR5Cached();
        ValidationSupportChain chain = new ValidationSupportChain(
                new DefaultProfileValidationSupport(fhir),
                new SnapshotGeneratingValidationSupport(fhir),
                new InMemoryTerminologyServerValidationSupport(fhir),
                new CommonCodeSystemsTerminologyService(fhir));
        FhirInstanceValidator module = new FhirInstanceValidator(chain);
        // No terminology server here: an unknown external code system is a warning, not an error.
        module.setNoTerminologyChecks(false);
        FhirValidator validator = fhir.newValidator().registerValidatorModule(module);
        boolean failed = false;
        for (String file : args) {
            String text = Files.readString(Path.of(file), StandardCharsets.UTF_8);
            ValidationResult result = validator.validateWithResult(text);
            for (SingleValidationMessage message : result.getMessages()) {
                String severity = message.getSeverity().getCode();
                failed |= "error".equals(severity) || "fatal".equals(severity);
                System.out.println(severity + "\t" + file + "\t" + message.getLocationString() + "\t"
                        + message.getMessage());
            }
        }
        System.exit(failed ? 1 : 0);
    }
}
