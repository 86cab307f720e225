# Two entry points on a fresh machine (Python 3.11, Java 17 + Maven):
#   make demo   install, then screen the bundled sample population (no server needed)
#   make test   install, build the HAPI FHIR test server, run unit + integration tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
AS_OF  ?= 2026-11-23
HAPI_JAR := docker/hapi/target/hapi-server.jar

.PHONY: install demo test unit lint hapi hapi-run cql-runner r5-validator profiles lock clean bench bench-pg bench-ingest bench-files-dense bench-spark browser screenshot postgres

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/trial-adapter screen --sample --as-of $(AS_OF) --format html --output out/sample-screening.html
	$(BIN)/trial-adapter screen --sample --as-of $(AS_OF) --output out/sample-screening.json --quiet
	$(BIN)/trial-adapter map --out out/study-resources
	@echo "reports: out/sample-screening.html, out/sample-screening.json; study resources: out/study-resources/"

# HAPI FHIR JPA server (R4, H2) built from Maven Central; Maven's cache makes rebuilds offline.
$(HAPI_JAR): docker/hapi/pom.xml $(shell find docker/hapi/src -type f 2>/dev/null)
	mvn -B -q -f docker/hapi/pom.xml package -DskipTests

hapi: $(HAPI_JAR)

# The reference CQL engine and translator (info.cqframework, Maven Central) that runs the exported CQL
# library in tests/integration/test_cql_export.py; Maven's cache makes rebuilds offline.
CQL_RUNNER := tools/cql-runner/target/classpath.txt
$(CQL_RUNNER): tools/cql-runner/pom.xml $(shell find tools/cql-runner/src -type f 2>/dev/null)
	mvn -B -q -f tools/cql-runner/pom.xml compile

cql-runner: $(CQL_RUNNER)

# HAPI's instance validator with the official R5 definitions, offline, for `map --fhir-version 5.0`
# (tests/integration/test_r5_validation.py).
R5_VALIDATOR := tools/r5-validator/target/classpath.txt
$(R5_VALIDATOR): tools/r5-validator/pom.xml $(shell find tools/r5-validator/src -type f 2>/dev/null)
	mvn -B -q -f tools/r5-validator/pom.xml compile

r5-validator: $(R5_VALIDATOR)

hapi-run: install hapi
	$(BIN)/python -m tests.support.hapi

# Debian's chromium for the browser test of the HTML report: installed when missing and we are root;
# never fatal (without it the browser test is skipped and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "chromium not installed: the browser test will be skipped"

# The README's screenshot of the report, made by chromium from the sample population.
screenshot: install browser
	$(BIN)/trial-adapter screen --sample --as-of $(AS_OF) --format html --output out/sample-screening.html --quiet
	$(BIN)/python -m tests.support.browser out/sample-screening.html docs/report.png

# The whole suite. tests/conftest.py starts HAPI on a free port and always stops it.
test: install hapi cql-runner r5-validator browser
	$(BIN)/ruff check adapter mappings tests bench
	$(BIN)/ruff format --check adapter mappings tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check adapter mappings tests bench
	$(BIN)/ruff format --check adapter mappings tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Benchmarks (never part of the tests): a synthetic hospital loaded into HAPI, the adapter's strategy
# against the naive way and the lower bound; results in bench/results/.
BENCH_SIZES ?= 1000,10000
bench: install hapi
	$(BIN)/python -m bench.run --sizes $(BENCH_SIZES)

# The same benchmark on a production-shaped server: HAPI on PostgreSQL (a cluster the bench creates in
# $(BENCH_DATA or /tmp/trial-adapter-bench), starts, stops and deletes; bench/pg.py). ~20 min at 1k+10k.
BENCH_PG_SIZES ?= 1000,10000
bench-pg: install hapi postgres
	$(BIN)/python -m bench.run --db postgres --sizes $(BENCH_PG_SIZES)

# Debian's PostgreSQL server for bench-pg: installed when missing and we are root (apt-get); never
# needed by `make test` (the test server stays on in-memory H2).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1; } || \
	  { echo "PostgreSQL server not installed: run make postgres as root (apt-get), or set PG_BINDIR"; exit 1; }

bench-ingest: install hapi
	$(BIN)/python -m bench.ingest

# Files screening on the dense hospital (issue 18): CPU against reading the export once, workers,
# --all-patients, byte-identical checks; results in bench/results/files-dense-latest.*.
# BENCH_DENSE_OPTS=--synthea uses Synthea people (Java 17 + Maven; ~/.cache/trial-adapter-bench).
# BENCH_DENSE_SIZES=2000,10000,100000 adds 100k people: ~21 GB of NDJSON in $(BENCH_DATA), ~15 min.
BENCH_DENSE_SIZES ?= 2000,10000
bench-files-dense: install
	$(BIN)/python -m bench.files_dense --sizes $(BENCH_DENSE_SIZES) $(BENCH_DENSE_OPTS)

# Spark engine (issue 19) against the in-process files path on the same synthetic export: patients/s
# on local[2], byte-identical checks, shuffled bytes per patient; a section appended to bench/results/latest.md.
BENCH_SPARK_PATIENTS ?= 10000
bench-spark: install
	$(BIN)/python -m bench.spark --patients $(BENCH_SPARK_PATIENTS) --master "local[2]"

# Recompile the FSH profiles (needs Node 20 + npm); the compiled JSON is committed.
profiles:
	bash fhir_profiles/scripts/build.sh

# Refresh the lock of exact versions after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip && .lock-venv/bin/python -m pip install -q ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude trial-adapter | sort > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf out .hapi .pytest_cache
