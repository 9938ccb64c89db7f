/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl export PATIENT --fhir: the patient's clinical record (the
 * daemon's Course) as an HL7 FHIR R4 Bundle of type "collection"
 * (docs/clinical.md has the mapping):
 *   Patient       the patient by identifier only (no name: the daemon has none)
 *   Device        each unit, by serial number
 *   Practitioner  each operator, by uid (and user name)
 *   Procedure     each treatment: performed period, body site (the patch),
 *                 performer, the unit used, the parameters as a note
 *   Observation   each endpoint (part of its Procedure), and each finding of
 *                 a follow-up (pigment remaining as a UCUM percentage,
 *                 redness resolved as a boolean)
 *   AdverseEvent  each adverse event a follow-up found, its suspect the
 *                 patch's last treatment before it
 * Codes are text only: no SNOMED CT code is cited in docs/ with its source,
 * so none is used.  Resources refer to each other by urn:uuid full URLs,
 * derived from what they record, so the same record exports the same ids.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

#define SYSTEM_PATIENT	"urn:smplaser:patient-id"
#define SYSTEM_UNIT	"urn:smplaser:unit-serial"
#define SYSTEM_OPERATOR	"urn:smplaser:operator-uid"
#define SYSTEM_RECORD	"urn:smplaser:record"
#define UCUM		"http://unitsofmeasure.org"

/* A stable urn:uuid for @kind/@patient/@id (RFC 9562 version 8: our own hash). */
static void urn(char *buf, size_t len, const char *kind, const char *patient, const char *id)
{
	uint64_t h[2] = { 0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL };
	const char *parts[3] = { kind, patient, id };

	for (int k = 0; k < 2; k++)
		for (int p = 0; p < 3; p++) {
			for (const unsigned char *c = (const unsigned char *)parts[p]; *c; c++) {
				h[k] ^= *c;
				h[k] *= 0x100000001b3ULL;
			}
			h[k] ^= 0xff;
			h[k] *= 0x100000001b3ULL + (uint64_t)k * 2;
		}
	h[0] = (h[0] & ~0xf000ULL) | 0x8000ULL;			/* version 8 */
	h[1] = (h[1] & ~(3ULL << 62)) | (2ULL << 62);		/* variant 10 */
	snprintf(buf, len, "urn:uuid:%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64
		 "-%012" PRIx64, h[0] >> 32, (h[0] >> 16) & 0xffff, h[0] & 0xffff, h[1] >> 48,
		 (uint64_t)(h[1] & 0xffffffffffffULL));
}

/* FHIR dateTime / instant: "2026-12-06T10:45:58Z". */
static json_object *datetime(uint64_t usec)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_object_new_string(buf);
}

static json_object *text_concept(const char *text)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "text", json_object_new_string(text));
	return o;
}

static json_object *ref(const char *url)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "reference", json_object_new_string(url));
	return o;
}

static json_object *identifier(const char *system, const char *value)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "system", json_object_new_string(system));
	json_object_object_add(o, "value", json_object_new_string(value));
	return o;
}

static json_object *one(json_object *item)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, item);
	return a;
}

static json_object *note(const char *text)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "text", json_object_new_string(text));
	return one(o);
}

struct bundle {
	json_object *entries;
	const char *patient;
	char patient_url[64];
};

static void add(struct bundle *b, const char *url, json_object *resource)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "fullUrl", json_object_new_string(url));
	json_object_object_add(e, "resource", resource);
	json_object_array_add(b->entries, e);
}

static bool has_url(struct bundle *b, const char *url)
{
	for (size_t i = 0; i < json_object_array_length(b->entries); i++)
		if (strcmp(j_str(json_object_array_get_idx(b->entries, i), "fullUrl"), url) == 0)
			return true;
	return false;
}

static json_object *resource(const char *type)
{
	json_object *r = json_object_new_object();

	json_object_object_add(r, "resourceType", json_object_new_string(type));
	return r;
}

static json_object *record_id(const char *kind, int64_t id)
{
	char v[48];

	snprintf(v, sizeof(v), "%s-%" PRId64, kind, id);
	return one(identifier(SYSTEM_RECORD, v));
}

/* The unit's Device, once. */
static void device(struct bundle *b, const char *serial, char *url, size_t len)
{
	json_object *r, *name;

	urn(url, len, "device", "", serial);
	if (has_url(b, url))
		return;
	r = resource("Device");
	json_object_object_add(r, "identifier", one(identifier(SYSTEM_UNIT, serial)));
	json_object_object_add(r, "serialNumber", json_object_new_string(serial));
	name = json_object_new_object();
	json_object_object_add(name, "name", json_object_new_string("smplaser laser unit"));
	json_object_object_add(name, "type", json_object_new_string("user-friendly-name"));
	json_object_object_add(r, "deviceName", one(name));
	json_object_object_add(r, "type", text_concept("Q-switched or picosecond laser for "
						       "tattoo and micropigmentation removal"));
	add(b, url, r);
}

/* The operator's Practitioner, once. */
static void practitioner(struct bundle *b, uint64_t uid, const char *name, char *url,
			 size_t len)
{
	json_object *r, *n;
	char v[24];

	snprintf(v, sizeof(v), "%" PRIu64, uid);
	urn(url, len, "practitioner", "", v);
	if (has_url(b, url))
		return;
	r = resource("Practitioner");
	json_object_object_add(r, "identifier", one(identifier(SYSTEM_OPERATOR, v)));
	if (name && *name) {
		n = json_object_new_object();
		json_object_object_add(n, "text", json_object_new_string(name));
		json_object_object_add(r, "name", one(n));
	}
	add(b, url, r);
}

static const char *procedure_status(json_object *t)
{
	const char *o = j_str(t, "outcome");

	if (!j_bool(t, "emitted"))
		return strcmp(o, "open") == 0 ? "in-progress" : "not-done";
	if (strcmp(o, "completed") == 0 || strcmp(o, "reconciled") == 0)
		return "completed";
	if (strcmp(o, "interrupted") == 0 || strcmp(o, "fault") == 0)
		return "stopped";
	return strcmp(o, "open") == 0 ? "in-progress" : "unknown";
}

static void procedure(struct bundle *b, json_object *p, json_object *t, char *url, size_t len)
{
	json_object *r = resource("Procedure"), *period = json_object_new_object(), *perf;
	char dev[64], prac[64], id[24], params[256];

	snprintf(id, sizeof(id), "%" PRId64, j_i64(t, "id"));
	urn(url, len, "procedure", b->patient, id);
	device(b, j_str(t, "unit"), dev, sizeof(dev));
	practitioner(b, j_u64(t, "operator_uid"), j_str(t, "operator"), prac, sizeof(prac));
	json_object_object_add(r, "identifier", record_id("treatment", j_i64(t, "id")));
	json_object_object_add(r, "status", json_object_new_string(procedure_status(t)));
	if (!j_bool(t, "emitted"))
		json_object_object_add(r, "statusReason",
				       text_concept("armed, but the laser fired no pulse"));
	json_object_object_add(r, "code", text_concept("Laser removal of scalp "
						       "micropigmentation"));
	json_object_object_add(r, "subject", ref(b->patient_url));
	json_object_object_add(period, "start", datetime(j_u64(t, "armed_usec")));
	if (j_u64(t, "end_usec"))
		json_object_object_add(period, "end", datetime(j_u64(t, "end_usec")));
	json_object_object_add(r, "performedPeriod", period);
	perf = json_object_new_object();
	json_object_object_add(perf, "actor", ref(prac));
	json_object_object_add(r, "performer", one(perf));
	json_object_object_add(r, "bodySite", one(text_concept(j_str(p, "label"))));
	json_object_object_add(r, "usedReference", one(ref(dev)));
	snprintf(params, sizeof(params), "%" PRIu64 " nm, fluence %.1f J/cm2, spot %.1f mm, pulse "
		 "%.1f ns, %.1f Hz; %" PRIu64 " pulses, %.3f J delivered; outcome %s",
		 j_u64(t, "wavelength_nm"), j_u64(t, "fluence_mj_cm2") / 1000.0,
		 j_u64(t, "spot_um") / 1000.0, j_u64(t, "pulse_ps") / 1000.0,
		 j_u64(t, "rate_mhz") / 1000.0, j_u64(t, "pulses"), j_u64(t, "energy_uj") / 1e6,
		 j_str(t, "outcome"));
	json_object_object_add(r, "note", note(params));
	add(b, url, r);
}

static json_object *observation(struct bundle *b, json_object *p, const char *code,
				uint64_t when, const char *note_text, const char *performer)
{
	json_object *r = resource("Observation");

	json_object_object_add(r, "status", json_object_new_string("final"));
	json_object_object_add(r, "code", text_concept(code));
	json_object_object_add(r, "subject", ref(b->patient_url));
	json_object_object_add(r, "effectiveDateTime", datetime(when));
	if (performer)
		json_object_object_add(r, "performer", one(ref(performer)));
	json_object_object_add(r, "bodySite", text_concept(j_str(p, "label")));
	if (note_text && *note_text)
		json_object_object_add(r, "note", note(note_text));
	return r;
}

static void endpoint(struct bundle *b, json_object *p, json_object *e)
{
	char url[64], proc[64], prac[64], id[24];
	json_object *r;

	snprintf(id, sizeof(id), "%" PRId64, j_i64(e, "treatment"));
	urn(proc, sizeof(proc), "procedure", b->patient, id);
	snprintf(id, sizeof(id), "%" PRId64, j_i64(e, "id"));
	urn(url, sizeof(url), "endpoint", b->patient, id);
	practitioner(b, j_u64(e, "operator_uid"), j_str(e, "operator"), prac, sizeof(prac));
	r = observation(b, p, "Tissue response at the end of the laser treatment (endpoint)",
			j_u64(e, "time_usec"), j_str(e, "note"), prac);
	json_object_object_add(r, "identifier", record_id("endpoint", j_i64(e, "id")));
	json_object_object_add(r, "partOf", one(ref(proc)));
	json_object_object_add(r, "valueCodeableConcept", text_concept(j_str(e, "endpoint")));
	add(b, url, r);
}

/* The patch's last treatment that emitted before @usec: an adverse event's suspect. */
static bool suspect(struct bundle *b, json_object *p, uint64_t usec, char *url, size_t len)
{
	json_object *l = NULL, *found = NULL;
	char id[24];

	json_object_object_get_ex(p, "treatments", &l);
	for (size_t i = 0; l && i < json_object_array_length(l); i++) {
		json_object *t = json_object_array_get_idx(l, i);

		if (j_bool(t, "emitted") && j_u64(t, "armed_usec") < usec)
			found = t;
	}
	if (!found)
		return false;
	snprintf(id, sizeof(id), "%" PRId64, j_i64(found, "id"));
	urn(url, len, "procedure", b->patient, id);
	return true;
}

static void follow_up(struct bundle *b, json_object *p, json_object *f)
{
	json_object *v = NULL, *adverse = NULL, *r;
	char url[64], prac[64], id[48], proc[64];
	uint64_t when = j_u64(f, "time_usec");

	practitioner(b, j_u64(f, "operator_uid"), j_str(f, "operator"), prac, sizeof(prac));
	if (json_object_object_get_ex(f, "pigment_remaining_pct", &v)) {
		json_object *q = json_object_new_object();

		snprintf(id, sizeof(id), "%" PRId64 "-pigment", j_i64(f, "id"));
		urn(url, sizeof(url), "follow-up", b->patient, id);
		r = observation(b, p, "Pigment remaining on the patch at follow-up", when,
				j_str(f, "note"), prac);
		json_object_object_add(r, "identifier", record_id("follow-up", j_i64(f, "id")));
		json_object_object_add(q, "value", json_object_new_int64(
			(int64_t)j_u64(f, "pigment_remaining_pct")));
		json_object_object_add(q, "unit", json_object_new_string("%"));
		json_object_object_add(q, "system", json_object_new_string(UCUM));
		json_object_object_add(q, "code", json_object_new_string("%"));
		json_object_object_add(r, "valueQuantity", q);
		add(b, url, r);
	}
	if (json_object_object_get_ex(f, "redness_resolved", &v)) {
		snprintf(id, sizeof(id), "%" PRId64 "-redness", j_i64(f, "id"));
		urn(url, sizeof(url), "follow-up", b->patient, id);
		r = observation(b, p, "Redness resolved at follow-up", when, j_str(f, "note"),
				prac);
		json_object_object_add(r, "identifier", record_id("follow-up", j_i64(f, "id")));
		json_object_object_add(r, "valueBoolean",
				       json_object_new_boolean(j_bool(f, "redness_resolved")));
		add(b, url, r);
	}
	json_object_object_get_ex(f, "adverse", &adverse);
	for (size_t i = 0; adverse && i < json_object_array_length(adverse); i++) {
		const char *kind = json_object_get_string(json_object_array_get_idx(adverse, i));
		json_object *holding = NULL;
		bool holds = false;
		char event[256];

		json_object_object_get_ex(f, "holding", &holding);
		for (size_t k = 0; holding && k < json_object_array_length(holding); k++)
			holds |= strcmp(json_object_get_string(json_object_array_get_idx(holding, k)),
					kind) == 0;
		snprintf(id, sizeof(id), "%" PRId64 "-%s", j_i64(f, "id"), kind);
		urn(url, sizeof(url), "adverse-event", b->patient, id);
		r = resource("AdverseEvent");
		json_object_object_add(r, "identifier", identifier(SYSTEM_RECORD, id));
		json_object_object_add(r, "actuality", json_object_new_string("actual"));
		snprintf(event, sizeof(event), "%s on %s after laser treatment%s", kind,
			 j_str(p, "label"), holds ? "; the patch is held until a review" : "");
		json_object_object_add(r, "event", text_concept(event));
		json_object_object_add(r, "subject", ref(b->patient_url));
		json_object_object_add(r, "date", datetime(when));
		json_object_object_add(r, "recorder", ref(prac));
		if (suspect(b, p, when, proc, sizeof(proc))) {
			json_object *s = json_object_new_object();

			json_object_object_add(s, "instance", ref(proc));
			json_object_object_add(r, "suspectEntity", one(s));
		}
		add(b, url, r);
	}
}

json_object *fhir_bundle(const char *patient, const char *clinic, json_object *course,
			 uint64_t now)
{
	struct bundle b = { .entries = json_object_new_array(), .patient = patient };
	json_object *bundle = resource("Bundle"), *pr;
	char id[64], when[24];

	(void)clinic;
	urn(b.patient_url, sizeof(b.patient_url), "patient", patient, "");
	pr = resource("Patient");
	json_object_object_add(pr, "identifier", one(identifier(SYSTEM_PATIENT, patient)));
	add(&b, b.patient_url, pr);
	for (size_t i = 0; i < json_object_array_length(course); i++) {
		json_object *p = json_object_array_get_idx(course, i), *l = NULL;
		char url[64];

		json_object_object_get_ex(p, "treatments", &l);
		for (size_t k = 0; l && k < json_object_array_length(l); k++)
			procedure(&b, p, json_object_array_get_idx(l, k), url, sizeof(url));
		json_object_object_get_ex(p, "endpoints", &l);
		for (size_t k = 0; l && k < json_object_array_length(l); k++)
			endpoint(&b, p, json_object_array_get_idx(l, k));
		json_object_object_get_ex(p, "follow_ups", &l);
		for (size_t k = 0; l && k < json_object_array_length(l); k++)
			follow_up(&b, p, json_object_array_get_idx(l, k));
	}
	snprintf(when, sizeof(when), "%" PRIu64, now);
	urn(id, sizeof(id), "bundle", patient, when);
	json_object_object_add(bundle, "id", json_object_new_string(id + strlen("urn:uuid:")));
	json_object_object_add(bundle, "type", json_object_new_string("collection"));
	json_object_object_add(bundle, "timestamp", datetime(now));
	json_object_object_add(bundle, "entry", b.entries);
	return bundle;
}
