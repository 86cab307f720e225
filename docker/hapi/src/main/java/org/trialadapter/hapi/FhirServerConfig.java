package org.trialadapter.hapi;

import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.api.svc.IIdHelperService;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.SubscriptionTriggeringProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.LoggingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManager;
import jakarta.persistence.EntityManagerFactory;
import java.util.Map;
import java.util.function.Supplier;
import javax.sql.DataSource;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.autoconfigure.orm.jpa.JpaProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.orm.jpa.SharedEntityManagerCreator;

/**
 * The beans HAPI's JPA configuration expects the application to provide, plus the
 * RestfulServer servlet itself. Tunables are plain Spring properties ({@code hapi.*} in
 * application.yaml), so they can be overridden with --hapi.x=y or env HAPI_X.
 */
@Configuration
public class FhirServerConfig {

	/** Server-wide storage/behaviour switches. */
	@Bean
	public JpaStorageSettings jpaStorageSettings(
			@Value("${hapi.allow-external-references:true}") boolean allowExternalReferences,
			@Value("${hapi.enforce-referential-integrity-on-write:false}") boolean enforceRefIntegrityOnWrite,
			@Value("${hapi.enforce-referential-integrity-on-delete:true}") boolean enforceRefIntegrityOnDelete,
			@Value("${hapi.client-id-strategy:ALPHANUMERIC}") JpaStorageSettings.ClientIdStrategyEnum clientIds,
			@Value("${hapi.allow-multiple-delete:true}") boolean allowMultipleDelete,
			@Value("${hapi.expunge-enabled:true}") boolean expungeEnabled,
			@Value("${hapi.reuse-cached-search-results-millis:0}") long reuseCachedSearchMillis,
			@Value("${hapi.delete-enabled:true}") boolean deleteEnabled,
			@Value("${hapi.mass-ingestion-mode:false}") boolean massIngestionMode) {
		JpaStorageSettings s = new JpaStorageSettings();
		// Bulk loading (bench) only; both change visible behaviour, so off by default.
		// delete-enabled=false: DELETE is refused, and in exchange HAPI may trust its id cache
		// when resolving reference targets (nothing can have been deleted since it was cached).
		s.setDeleteEnabled(deleteEnabled);
		// mass ingestion: skips some per-write re-reads and duplicate checks of conditional
		// operations and keeps id caches longer.
		s.setMassIngestionMode(massIngestionMode);
		// absolute references to other servers are stored as-is instead of being rejected
		s.setAllowExternalReferences(allowExternalReferences);
		// relative references to resources that are not (yet) on this server are accepted
		s.setEnforceReferentialIntegrityOnWrite(enforceRefIntegrityOnWrite);
		s.setEnforceReferentialIntegrityOnDelete(enforceRefIntegrityOnDelete);
		// ALPHANUMERIC: PUT Patient/abc-1 creates it; purely numeric client ids are refused
		s.setResourceClientIdStrategy(clientIds);
		s.setAllowMultipleDelete(allowMultipleDelete);
		s.setExpungeEnabled(expungeEnabled);
		s.setDeleteExpungeEnabled(expungeEnabled);
		// 0 = every search hits the database (tests want to see their own writes at once)
		s.setReuseCachedSearchResultsForMillis(reuseCachedSearchMillis);
		// Hibernate Search / Lucene stays off: no full-text indexing
		s.setHibernateSearchIndexFullText(false);
		s.setHibernateSearchIndexSearchParams(false);
		// bulk $export jobs run in-process through the batch2 framework
		s.setEnableTaskBulkExportJobExecution(true);
		// let a finished batch2 step trigger the next maintenance pass right away
		s.setJobFastTrackingEnabled(true);
		// no legacy $import, no background ValueSet pre-expansion: less start-up/background work
		s.setEnableTaskBulkImportJobExecution(false);
		s.setEnableTaskPreExpandValueSets(false);
		return s;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings(); // partitioning disabled
	}

	/**
	 * Only REST-hook subscriptions; matching happens in memory where possible.
	 *
	 * <p>HAPI 8 does not hand a write to the subscription matcher directly: the change is stored
	 * in a table and a scheduled job submits stored changes every "submission interval" (HAPI
	 * default 5 s). We poll every second so tests see deliveries quickly. Changes to
	 * Subscription resources themselves are queued immediately, so a new subscription turns
	 * "active" (and starts matching) without waiting for the poll.
	 */
	@Bean
	public SubscriptionSettings subscriptionSettings(
			@Value("${hapi.subscription.submission-interval-ms:1000}") long submissionIntervalMs,
			@Value("${hapi.subscription.enabled:true}") boolean enabled) {
		SubscriptionSettings s = new SubscriptionSettings();
		// enabled=false (bulk loading): with no supported channel type HAPI does not register its
		// matcher, so a write no longer stores a "resource modified" row that a scheduled job then
		// reads back, matches and deletes (~15% of the server's CPU while loading).
		if (enabled) {
			s.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		}
		s.setSubscriptionIntervalInMs(submissionIntervalMs);
		s.setSubscriptionChangeQueuedImmediately(true);
		return s;
	}

	/**
	 * Batch2 jobs (bulk $export) advance from one step to the next only during a "maintenance
	 * pass", which HAPI schedules once a minute: a small export would take 3-4 minutes. Run
	 * it every second instead (cheap: one query on the job table). Must be applied before the
	 * scheduler starts, hence a (static) BeanPostProcessor rather than a setter call later.
	 */
	@Bean
	public static BeanPostProcessor batch2MaintenanceInterval(
			@Value("${hapi.batch2.maintenance-interval-ms:1000}") long intervalMs) {
		return new BeanPostProcessor() {
			@Override
			public Object postProcessAfterInitialization(Object bean, String beanName) {
				if (bean instanceof JobMaintenanceServiceImpl maintenance) {
					maintenance.setScheduledJobFrequencyMillis(intervalMs);
				}
				return bean;
			}
		};
	}

	/** See {@link SplitIdLookups}: one indexed id lookup per id instead of a table scan on H2. */
	@Bean
	public static BeanPostProcessor splitIdLookups(
			@Value("${hapi.db.split-id-lookups:true}") boolean split, ConfigurableListableBeanFactory beanFactory) {
		return new BeanPostProcessor() {
			@Override
			public Object postProcessAfterInitialization(Object bean, String beanName) {
				if (split && bean instanceof IIdHelperService<?> helper) {
					// the shared EntityManager joins whatever transaction the caller is in;
					// looked up lazily because it does not exist yet when this bean is wrapped
					Supplier<EntityManager> em = () -> SharedEntityManagerCreator.createSharedEntityManager(
							beanFactory.getBean(EntityManagerFactory.class));
					return SplitIdLookups.wrap(helper, em);
				}
				return bean;
			}
		};
	}

	/**
	 * SubscriptionProcessorConfig insists on an IEmailSender even when e-mail subscriptions
	 * are not enabled; a no-op satisfies it.
	 */
	@Bean
	public IEmailSender emailSender() {
		return details -> {};
	}

	/**
	 * HAPI needs its own EntityManagerFactory subclass (entity packages, dialect translation,
	 * persistence provider); Spring Boot's JPA auto-configuration backs off when this bean
	 * exists but still supplies the DataSource and the spring.jpa.properties map. Boot's
	 * auto-configured JpaTransactionManager then wraps this factory.
	 */
	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			JpaProperties jpaProperties,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Map<String, String> props = jpaProperties.getProperties();
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setJpaPropertyMap(props);
		emf.setDataSource(dataSource);
		return emf;
	}

	/** The FHIR endpoint. Registered as a servlet at /fhir/* by HapiServerApplication. */
	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			BulkDataExportProvider bulkDataExportProvider,
			ValueSetOperationProvider valueSetOperationProvider,
			SubscriptionTriggeringProvider subscriptionTriggeringProvider,
			@Value("${hapi.default-page-size:100}") int defaultPageSize,
			@Value("${hapi.max-page-size:1000}") int maxPageSize,
			@Value("${hapi.request-logging:false}") boolean requestLogging) {
		FhirContext ctx = systemDao.getContext();
		RestfulServer server = new RestfulServer(ctx);

		// CRUD/search/history for every R4 resource type + system-level transaction/batch/history
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		// system/group/patient $export (+ $export-poll-status)
		server.registerProvider(bulkDataExportProvider);
		// ValueSet $expand / $validate-code (used by profile validation of bound codes)
		server.registerProvider(valueSetOperationProvider);
		// Subscription $trigger-subscription (re-deliver for a test, handy but cheap)
		server.registerProvider(subscriptionTriggeringProvider);

		// CapabilityStatement that reflects the JPA search parameters actually available
		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("trial-adapter HAPI FHIR R4 test server");
		server.setServerConformanceProvider(capabilities);

		// Search results are paged through the database; next links use these sizes
		pagingProvider.setDefaultPageSize(defaultPageSize);
		pagingProvider.setMaximumPageSize(maxPageSize);
		server.setPagingProvider(pagingProvider);

		server.setDefaultResponseEncoding(ca.uhn.fhir.rest.api.EncodingEnum.JSON);
		// base URL in links = whatever host:port the client used
		server.setServerAddressStrategy(new IncomingRequestAddressStrategy());

		if (requestLogging) {
			LoggingInterceptor logging = new LoggingInterceptor();
			logging.setLoggerName("fhir.access");
			logging.setMessageFormat(
					"${requestVerb} ${completeRequestUrl} -> ${operationType} ${processingTimeMillis}ms");
			logging.setLogExceptions(true);
			server.registerInterceptor(logging);
		}
		return server;
	}
}
