/* SPDX-License-Identifier: MIT */
/*
 * smplaserd's journal fields (daemon/log.c): no empty field, the operator's
 * uid as SMPL_OPERATOR_UID=, a MESSAGE_ID= for the events an operator or IT
 * acts on, and a journal catalog entry (data/smplaser.catalog) for each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

#define MAX_FIELDS 16

static struct captured {
	size_t n;
	char field[MAX_FIELDS][512];
} cap;

static void sink(const struct iovec *iov, size_t n, void *userdata)
{
	(void)userdata;
	assert_true(n <= MAX_FIELDS);
	cap.n = n;
	for (size_t i = 0; i < n; i++) {
		size_t len = iov[i].iov_len < 511 ? iov[i].iov_len : 511;

		memcpy(cap.field[i], iov[i].iov_base, len);
		cap.field[i][len] = '\0';
	}
}

/* The value of NAME in the captured entry, or NULL when it has no such field. */
static const char *field(const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < cap.n; i++)
		if (strncmp(cap.field[i], name, len) == 0 && cap.field[i][len] == '=')
			return cap.field[i] + len + 1;
	return NULL;
}

static void no_empty_field(void)
{
	for (size_t i = 0; i < cap.n; i++) {
		const char *eq = strchr(cap.field[i], '=');

		assert_non_null(eq);
		if (eq[1] == '\0')
			fail_msg("empty field %s", cap.field[i]);
	}
}

static int setup(void **state)
{
	(void)state;
	memset(&cap, 0, sizeof(cap));
	smpl_log_set_sink(sink, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	smpl_log_set_sink(NULL, NULL);
	return 0;
}

/* unit-ops.c's arm line, as it is written there. */
static void test_arm_fields(void **state)
{
	(void)state;
	smpl_log(LOG_NOTICE, "SN0001", "/org/smplaser/Laser1/session/3", "arm",
		 "armed by uid %u for patch %s (treatment %d)", 1000u, "crown", 7);
	no_empty_field();
	assert_string_equal(field("MESSAGE"), "armed by uid 1000 for patch crown (treatment 7)");
	assert_string_equal(field("PRIORITY"), "5");
	assert_string_equal(field("SYSLOG_IDENTIFIER"), "smplaserd");
	assert_string_equal(field("SMPL_UNIT"), "SN0001");
	assert_string_equal(field("SMPL_SESSION"), "/org/smplaser/Laser1/session/3");
	assert_string_equal(field("SMPL_EVENT"), "arm");
	assert_string_equal(field("SMPL_OPERATOR_UID"), "1000");
	assert_string_equal(field("MESSAGE_ID"), SMPL_MID_ARM);
}

static void test_empty_fields_omitted(void **state)
{
	(void)state;
	smpl_log(LOG_INFO, NULL, NULL, NULL, "%s", "plain");
	no_empty_field();
	assert_int_equal(cap.n, 3);	/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER */
	assert_null(field("SMPL_UNIT"));
	assert_null(field("SMPL_SESSION"));
	assert_null(field("SMPL_EVENT"));
	assert_null(field("SMPL_OPERATOR_UID"));
	assert_null(field("MESSAGE_ID"));

	smpl_log(LOG_INFO, "", "", "", "%s", "empty strings too");
	no_empty_field();
	assert_int_equal(cap.n, 3);
}

/* Each event an operator or IT acts on has its own MESSAGE_ID. */
static void test_message_ids(void **state)
{
	static const struct {
		const char *event;
		int prio;
		const char *fmt;
		const char *id;
		const char *uid;
	} cases[] = {
		{ "disarm", LOG_NOTICE, "disarmed: disarm requested by uid 1001", SMPL_MID_DISARM, "1001" },
		{ "fault", LOG_ERR, "fault, disarmed: energy 31%% off", SMPL_MID_FAULT, NULL },
		{ "acknowledge", LOG_NOTICE, "fault energy acknowledged by uid 1002",
		  SMPL_MID_ACKNOWLEDGE, "1002" },
		{ "refused", LOG_NOTICE, "refused for uid 1003: crown in cooldown",
		  SMPL_MID_REFUSED, "1003" },
		{ "not-authorized", LOG_NOTICE,
		  "Not authorized: action org.smplaser.treat for uid 1004: denied",
		  SMPL_MID_NOT_AUTHORIZED, "1004" },
		{ "clock", LOG_WARNING, "host clock 400 s off the unit's RTC", SMPL_MID_CLOCK_BAD, NULL },
		{ "clock", LOG_NOTICE, "the host clock is right again", SMPL_MID_CLOCK_OK, NULL },
		{ "disarm-failed", LOG_CRIT, "DISARM failed (-5)", SMPL_MID_DISARM_FAILED, NULL },
		{ "config", LOG_INFO, "configuration in force: ...", SMPL_MID_CONFIG, NULL },
		{ "config-refused", LOG_ERR, "configuration refused: x:3: bad", SMPL_MID_CONFIG_REFUSED, NULL },
		{ "session-start", LOG_INFO, "session 3 started by uid 1005", NULL, "1005" },
		{ "probed", LOG_INFO, "probed", NULL, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&cap, 0, sizeof(cap));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		smpl_log(cases[i].prio, "SN0001", NULL, cases[i].event, cases[i].fmt);
#pragma GCC diagnostic pop
		no_empty_field();
		if (cases[i].id)
			assert_string_equal(field("MESSAGE_ID"), cases[i].id);
		else
			assert_null(field("MESSAGE_ID"));
		if (cases[i].uid)
			assert_string_equal(field("SMPL_OPERATOR_UID"), cases[i].uid);
		else
			assert_null(field("SMPL_OPERATOR_UID"));
	}
}

/* The first "by/for uid N" is the daemon's: text after it may come from a caller. */
static void test_operator_of(void **state)
{
	uid_t uid = 0;

	(void)state;
	assert_true(smpl_log_operator_of("refused for uid 42: note says by uid 0", &uid));
	assert_int_equal(uid, 42);
	assert_true(smpl_log_operator_of("armed by uid 7 for patch crown", &uid));
	assert_int_equal(uid, 7);
	assert_false(smpl_log_operator_of("nothing here", &uid));
	assert_false(smpl_log_operator_of("by uid x", &uid));
	assert_false(smpl_log_operator_of("by uid 12abc", &uid));
	assert_false(smpl_log_operator_of("by uid 99999999999999999999", &uid));
	assert_false(smpl_log_operator_of("by uid 4294967295", &uid));	/* (uid_t)-1 */
}

static void test_explicit_uid_wins(void **state)
{
	uid_t uid = 55;

	(void)state;
	smpl_log_uid(LOG_NOTICE, NULL, NULL, "not-authorized", &uid, "%s",
		     "Not authorized: action org.smplaser.treat for uid 9: x");
	assert_string_equal(field("SMPL_OPERATOR_UID"), "55");
	uid = 0;
	smpl_log_uid(LOG_NOTICE, NULL, NULL, "not-authorized", &uid, "%s", "root");
	assert_string_equal(field("SMPL_OPERATOR_UID"), "0");
}

/* data/smplaser.catalog explains each MESSAGE_ID, and only those. */
static void test_catalog(void **state)
{
	const char *src = getenv("SMPL_SRCDIR");
	char path[512], line[1024];
	char seen[32][33];
	size_t n_seen = 0, n_ids = 0;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/data/smplaser.catalog", src ? src : ".");
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char id[33];

		if (strncmp(line, "-- ", 3) != 0)
			continue;
		assert_int_equal(sscanf(line + 3, "%32[0-9a-f]", id), 1);
		assert_int_equal(strlen(id), 32);
		assert_true(n_seen < 32);
		for (size_t i = 0; i < n_seen; i++)
			if (strcmp(seen[i], id) == 0)
				fail_msg("catalog: %s twice", id);
		strcpy(seen[n_seen++], id);
		/* Every entry is one of ours. */
		bool ours = false;

		for (size_t i = 0; smpl_log_message_ids[i]; i++)
			ours = ours || strcmp(smpl_log_message_ids[i], id) == 0;
		if (!ours)
			fail_msg("catalog: %s is no MESSAGE_ID of log.c", id);
	}
	fclose(f);
	for (size_t i = 0; smpl_log_message_ids[i]; i++, n_ids++) {
		bool found = false;

		for (size_t j = 0; j < n_seen; j++)
			found = found || strcmp(seen[j], smpl_log_message_ids[i]) == 0;
		if (!found)
			fail_msg("catalog: no entry for %s", smpl_log_message_ids[i]);
	}
	assert_int_equal(n_seen, n_ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_arm_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_fields_omitted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_operator_of, setup, teardown),
		cmocka_unit_test_setup_teardown(test_explicit_uid_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog, setup, teardown),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
