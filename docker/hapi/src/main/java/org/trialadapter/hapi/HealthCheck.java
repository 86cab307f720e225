package org.trialadapter.hapi;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/**
 * Tiny HTTP probe for the Docker HEALTHCHECK (the JRE image has no curl/wget):
 * {@code java -cp <dir with this class> org.trialadapter.hapi.HealthCheck [url]} exits 0 when the
 * URL (default http://127.0.0.1:$SERVER_PORT/fhir/metadata, port 8080 if unset) answers 200.
 * Uses only the JDK; the Dockerfile copies the compiled class next to the fat jar.
 */
public final class HealthCheck {
	private HealthCheck() {}

	public static void main(String[] args) {
		String port = System.getenv().getOrDefault("SERVER_PORT", "8080");
		String url = args.length > 0 ? args[0] : "http://127.0.0.1:" + port + "/fhir/metadata";
		try {
			HttpClient client =
					HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
			HttpRequest request = HttpRequest.newBuilder(URI.create(url))
					.timeout(Duration.ofSeconds(20))
					.GET()
					.build();
			int status = client.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
			System.exit(status == 200 ? 0 : 1);
		} catch (Exception e) {
			System.exit(1);
		}
	}
}
