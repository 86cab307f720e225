package org.trialadapter.hapi;

import ca.uhn.fhir.jpa.api.svc.IIdHelperService;
import jakarta.persistence.EntityManager;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;
import org.hl7.fhir.instance.model.api.IIdType;

/**
 * Makes HAPI's FHIR-id lookups use an index on H2.
 *
 * <p>Before writing a transaction Bundle, HAPI resolves every PUT target and every referenced id
 * in ONE query: {@code WHERE (RES_TYPE=? AND FHIR_ID=?) OR (RES_TYPE=? AND FHIR_ID=?) OR ...}.
 * H2 cannot use an index for a disjunction of conjunctions, so it scans HFJ_RESOURCE and tests
 * every row against every id: a Bundle of 1000 PUTs costs (rows already stored) x (ids), and
 * loading slows down as the database grows (quadratic overall; ~40% of server CPU at 45k rows).
 * Resolving the ids one at a time gives one indexed lookup each (unique index on PARTITION_ID,
 * RES_TYPE, FHIR_ID): same results, cost independent of the table size.
 *
 * <p>Wraps the {@link IIdHelperService} bean in a JDK proxy (every HAPI injection point uses the
 * interface) that splits {@code resolveResourceIdentities(partition, ids, mode)} into one call per
 * id and merges the maps; every other method goes straight through. For a long list (a Bundle's
 * pre-fetch, mostly ids that do not exist yet) one indexed {@code FHIR_ID IN (...)} query first
 * drops the ids that are not in the table at all: HAPI leaves unknown ids out of its answer too,
 * so only ids that exist (under any type or partition) still need HAPI's own lookup.
 */
final class SplitIdLookups {

	private SplitIdLookups() {}

	/** Below this many ids, asking HAPI once per id is cheaper than the extra query. */
	private static final int PREFILTER_MIN_IDS = 20;

	private static final int IN_CHUNK = 500;

	static Object wrap(IIdHelperService<?> target, Supplier<EntityManager> entityManager) {
		return Proxy.newProxyInstance(
				SplitIdLookups.class.getClassLoader(),
				new Class<?>[] {IIdHelperService.class},
				(proxy, method, args) -> invoke(target, entityManager, method, args));
	}

	private static Object invoke(Object target, Supplier<EntityManager> em, Method method, Object[] args)
			throws Throwable {
		try {
			if ("resolveResourceIdentities".equals(method.getName())
					&& args != null
					&& args.length == 3
					&& args[1] instanceof Collection<?> allIds
					&& allIds.size() > 1) {
				Collection<?> ids = allIds.size() >= PREFILTER_MIN_IDS ? mayExist(em.get(), allIds) : allIds;
				Map<Object, Object> merged = new HashMap<>(ids.size() * 2);
				for (Object id : ids) {
					Map<?, ?> one = (Map<?, ?>) method.invoke(target, args[0], List.of(id), args[2]);
					merged.putAll(one);
				}
				return merged;
			}
			return method.invoke(target, args);
		} catch (InvocationTargetException e) {
			throw e.getCause(); // the caller expects HAPI's own exceptions, not reflection's
		}
	}

	/**
	 * The ids whose id part is stored as some resource's FHIR_ID (indexed: IDX_RES_FHIR_ID), plus
	 * numeric ids (HAPI may look those up by primary key). Runs in the caller's transaction.
	 */
	private static List<Object> mayExist(EntityManager em, Collection<?> ids) {
		List<String> parts = new ArrayList<>(ids.size());
		for (Object id : ids) {
			if (id instanceof IIdType t && !t.isIdPartValidLong()) {
				parts.add(t.getIdPart());
			}
		}
		Set<String> found = new HashSet<>();
		for (int i = 0; i < parts.size(); i += IN_CHUNK) {
			List<?> rows = em.createNativeQuery("SELECT FHIR_ID FROM HFJ_RESOURCE WHERE FHIR_ID IN (:ids)")
					.setParameter("ids", parts.subList(i, Math.min(parts.size(), i + IN_CHUNK)))
					.getResultList();
			for (Object row : rows) {
				found.add(String.valueOf(row));
			}
		}
		List<Object> keep = new ArrayList<>();
		for (Object id : ids) {
			if (!(id instanceof IIdType t) || t.isIdPartValidLong() || found.contains(t.getIdPart())) {
				keep.add(id);
			}
		}
		return keep;
	}
}
