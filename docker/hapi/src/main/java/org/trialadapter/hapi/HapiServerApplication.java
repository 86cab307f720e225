package org.trialadapter.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.rest.server.RestfulServer;
import java.util.Map;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.event.ApplicationEnvironmentPreparedEvent;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.ApplicationEvent;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;
import org.springframework.core.env.ConfigurableEnvironment;
import org.springframework.core.env.MapPropertySource;
import org.springframework.core.env.StandardEnvironment;

/**
 * Entry point of the lean HAPI FHIR R4 JPA server.
 *
 * <p>HAPI ships its server as a set of Spring {@code @Configuration} classes; we pull in only
 * the ones we need (the hapi-fhir-jpaserver-starter imports many more: MDM, CR, IPS, CDS hooks,
 * websockets, Elasticsearch, tester UI ... all deliberately left out here).
 */
@SpringBootApplication(
		exclude = {
			// thymeleaf is on the classpath (HAPI narratives) but we serve no HTML views
			ThymeleafAutoConfiguration.class,
			// the Elasticsearch REST client comes with hibernate-search; without this exclusion
			// Boot would create a client that keeps sniffing for a node on localhost:9200
			ElasticsearchRestClientAutoConfiguration.class,
			// HAPI runs its own Quartz schedulers; Boot would start a third, unused one
			QuartzAutoConfiguration.class
		})
@Import({
	// FhirContext(R4) + all R4 resource DAOs/providers + the JPA core (JpaConfig: search,
	// transactions, validation support chain, package loader, bulk-export support, scheduler)
	JpaR4Config.class,
	// Beans JpaConfig expects the application to supply: paging provider, stale-search
	// cleanup, resource-count cache, IResourceSupportedSvc, (disabled) full-text service
	HapiJpaConfig.class,
	// Thread pool used by the transaction processor for batch bundles
	ThreadPoolFactoryConfig.class,
	// Subscriptions, three parts: the "submitter" interceptor that sends every write to the
	// matching queue, the "processor" that matches + delivers (rest-hook), and the
	// in-memory (LinkedBlockingQueue) channel implementation connecting the two
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	// Batch2 job framework persisted in JPA + the job definitions ($export, $reindex, ...)
	JpaBatch2Config.class,
	Batch2JobsConfig.class
})
public class HapiServerApplication {

	public static void main(String[] args) {
		SpringApplication app = new SpringApplication(HapiServerApplication.class);
		app.addListeners(HapiServerApplication::applyH2FileShortcut);
		app.run(args);
	}

	/**
	 * Convenience switch: {@code hapi.db.file} (env HAPI_DB_FILE or --hapi.db.file=PATH) turns
	 * the default in-memory H2 database into an H2 file database at PATH. The derived URL is
	 * inserted just below the OS environment, so an explicit spring.datasource.url given on
	 * the command line, as a -D flag or as env SPRING_DATASOURCE_URL still wins, while the
	 * in-memory default in application.yaml loses.
	 */
	private static void applyH2FileShortcut(ApplicationEvent event) {
		if (!(event instanceof ApplicationEnvironmentPreparedEvent prepared)) {
			return;
		}
		ConfigurableEnvironment env = prepared.getEnvironment();
		String file = env.getProperty("hapi.db.file");
		if (file == null || file.isBlank()) {
			return;
		}
		MapPropertySource source =
				new MapPropertySource("hapiDbFile", Map.of("spring.datasource.url", "jdbc:h2:file:" + file + ";TRACE_LEVEL_FILE=0"));
		String envName = StandardEnvironment.SYSTEM_ENVIRONMENT_PROPERTY_SOURCE_NAME;
		if (env.getPropertySources().contains(envName)) {
			env.getPropertySources().addAfter(envName, source);
		} else {
			env.getPropertySources().addLast(source);
		}
	}

	/** Mount HAPI's RestfulServer servlet (configured in {@link FhirServerConfig}) at /fhir/*. */
	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		reg.setName("fhir");
		reg.setLoadOnStartup(1); // initialise during start-up, not on the first request
		return reg;
	}
}
