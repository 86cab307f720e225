package org.trialadapter.cql;

import ca.uhn.fhir.context.FhirContext;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.commons.lang3.tuple.Pair;
import org.cqframework.cql.cql2elm.CqlCompilerException;
import org.cqframework.cql.cql2elm.CqlTranslator;
import org.cqframework.cql.cql2elm.LibraryManager;
import org.cqframework.cql.cql2elm.ModelManager;
import org.cqframework.cql.cql2elm.StringLibrarySourceProvider;
import org.cqframework.cql.cql2elm.quick.FhirLibrarySourceProvider;
import org.hl7.elm.r1.ExpressionDef;
import org.hl7.elm.r1.FunctionDef;
import org.hl7.elm.r1.Library;
import org.hl7.elm.r1.VersionedIdentifier;
import org.hl7.fhir.r4.model.Bundle;
import org.opencds.cqf.cql.engine.data.CompositeDataProvider;
import org.opencds.cqf.cql.engine.data.DataProvider;
import org.opencds.cqf.cql.engine.execution.CqlEngine;
import org.opencds.cqf.cql.engine.execution.Environment;
import org.opencds.cqf.cql.engine.execution.EvaluationResult;
import org.opencds.cqf.cql.engine.fhir.model.R4FhirModelResolver;

/**
 * Runs a CQL library over the patients of a FHIR R4 Bundle with the reference CQL translator and engine.
 *
 * <p>Usage: {@code java -jar cql-runner.jar LIBRARY.cql BUNDLE.json AS_OF(yyyy-mm-dd)}. Prints one JSON
 * object: patient id -> {define name -> true | false | null} for every Boolean define of the library
 * (Patient context). The evaluation date is the as-of date at noon UTC, so Today() is the as-of day.
 * Exit 2 when the library does not translate (errors on stderr).
 */
public final class Runner {
    private Runner() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: cql-runner LIBRARY.cql BUNDLE.json AS_OF");
            System.exit(64);
        }
        String cql = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8);
        FhirContext fhir = FhirContext.forR4Cached();
        Bundle bundle = fhir.newJsonParser().parseResource(Bundle.class, Files.readString(Path.of(args[1])));
        ZonedDateTime asOf = ZonedDateTime.of(LocalDate.parse(args[2]), LocalTime.NOON, ZoneOffset.UTC);

        ModelManager models = new ModelManager();
        LibraryManager libraries = new LibraryManager(models);
        libraries.getLibrarySourceLoader().registerProvider(new FhirLibrarySourceProvider());
        libraries.getLibrarySourceLoader().registerProvider(new StringLibrarySourceProvider(List.of(cql)));

        CqlTranslator translator = CqlTranslator.fromText(cql, libraries);
        if (!translator.getErrors().isEmpty()) {
            for (CqlCompilerException error : translator.getErrors()) {
                System.err.println("CQL error: " + error.getMessage() + " at " + error.getLocator());
            }
            System.exit(2);
        }
        Library elm = translator.toELM();
        VersionedIdentifier id = elm.getIdentifier();
        Set<String> defines = new LinkedHashSet<>();
        for (ExpressionDef def : elm.getStatements().getDef()) {
            boolean function = def instanceof FunctionDef;
            if (!function && "Patient".equals(def.getContext()) && !"Patient".equals(def.getName())) {
                defines.add(def.getName());
            }
        }

        BundleRetrieveProvider retrieve = new BundleRetrieveProvider(bundle);
        DataProvider data = new CompositeDataProvider(new R4FhirModelResolver(), retrieve);
        Environment environment = new Environment(libraries, Map.of("http://hl7.org/fhir", data), null);

        Map<String, Map<String, Object>> out = new LinkedHashMap<>();
        for (String patient : retrieve.patientIds()) {
            CqlEngine engine = new CqlEngine(environment);
            EvaluationResult result =
                    engine.evaluate(id, defines, Pair.of("Patient", patient), Map.of(), null, asOf);
            Map<String, Object> values = new LinkedHashMap<>();
            for (String name : defines) {
                Object value = result.forExpression(name).value();
                if (value == null || value instanceof Boolean) {
                    values.put(name, value);
                }
            }
            out.put(patient, values);
        }
        PrintStream stdout = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        stdout.println(toJson(out));
    }

    private static String toJson(Map<String, Map<String, Object>> results) {
        List<String> patients = new ArrayList<>();
        for (Map.Entry<String, Map<String, Object>> patient : results.entrySet()) {
            List<String> values = new ArrayList<>();
            for (Map.Entry<String, Object> value : patient.getValue().entrySet()) {
                values.add(quote(value.getKey()) + ": " + value.getValue());
            }
            patients.add(quote(patient.getKey()) + ": {" + String.join(", ", values) + "}");
        }
        return "{" + String.join(",\n ", patients) + "}";
    }

    private static String quote(String text) {
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
