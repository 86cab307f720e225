package org.trialadapter.cql;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.Property;
import org.hl7.fhir.r4.model.Reference;
import org.hl7.fhir.r4.model.Resource;
import org.opencds.cqf.cql.engine.retrieve.RetrieveProvider;
import org.opencds.cqf.cql.engine.runtime.Code;
import org.opencds.cqf.cql.engine.runtime.Interval;

/**
 * Retrieves from the resources of one Bundle, by type and patient only. The exported CQL filters codes
 * and dates in its own where clauses (never in the retrieve), so this provider ignores code and date
 * filters; it refuses them rather than return unfiltered data as if filtered.
 */
final class BundleRetrieveProvider implements RetrieveProvider {
    private final List<Resource> resources = new ArrayList<>();

    BundleRetrieveProvider(Bundle bundle) {
        for (Bundle.BundleEntryComponent entry : bundle.getEntry()) {
            if (entry.hasResource()) {
                resources.add(entry.getResource());
            }
        }
    }

    Set<String> patientIds() {
        Set<String> ids = new LinkedHashSet<>();
        for (Resource resource : resources) {
            if ("Patient".equals(resource.fhirType())) {
                ids.add(resource.getIdElement().getIdPart());
            }
        }
        return ids;
    }

    @Override
    public Iterable<Object> retrieve(
            String context,
            String contextPath,
            Object contextValue,
            String dataType,
            String templateId,
            String codePath,
            Iterable<Code> codes,
            String valueSet,
            String datePath,
            String dateLowPath,
            String dateHighPath,
            Interval dateRange) {
        if (codes != null || valueSet != null || dateRange != null) {
            throw new UnsupportedOperationException("code or date filters in a retrieve are not supported");
        }
        List<Object> found = new ArrayList<>();
        for (Resource resource : resources) {
            if (dataType.equals(resource.fhirType()) && belongsTo(resource, contextPath, contextValue)) {
                found.add(resource);
            }
        }
        return found;
    }

    private static boolean belongsTo(Resource resource, String contextPath, Object contextValue) {
        if (contextValue == null || contextPath == null) {
            return true;
        }
        String patient = contextValue.toString();
        if ("id".equals(contextPath)) {
            return patient.equals(resource.getIdElement().getIdPart());
        }
        Property property = resource.getNamedProperty(contextPath);
        if (property == null) {
            return false;
        }
        for (var value : property.getValues()) {
            if (value instanceof Reference reference && reference.hasReference()) {
                String ref = reference.getReference();
                if (ref.equals("Patient/" + patient)) {
                    return true;
                }
            }
        }
        return false;
    }
}
