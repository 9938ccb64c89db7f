// SPDX-License-Identifier: MIT
/*
 * smplaserctl records: backup FILE, verify [FILE], export --since DATE
 * (issue 15.11-15.13).
 *
 * The daemon writes backups and exports into a descriptor passed with the
 * call (org.smplaser.Laser1.Records): the file is opened here, as the user
 * who asked, never by the daemon.  Verifying reads a copy locally with the
 * store's own checker (daemon/store-chain.h): no daemon, no authorization.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ctl.h"
#include "store.h"
#include "store-chain.h"

#define SMPL_RECORDS_IFACE	"org.smplaser.Laser1.Records"
#define APPLICATION_ID		0x534d504c	/* "SMPL", daemon/store.c */
#define COPY_TIMEOUT_USEC	(24ULL * 3600 * 1000000)	/* a big copy on a slow disk */

static int usage(struct ctl *c, const char *msg)
{
	return ctl_error(c, CTL_EXIT_USAGE, NULL, "%s (see '%s --help')", msg, c->prog);
}

/* ---- calls with a descriptor --------------------------------------------------- */

struct reply_state {
	bool done;
	sd_bus_message *reply;
	sd_bus_error error;
};

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct reply_state *s = userdata;

	(void)ret_error;
	s->done = true;
	if (sd_bus_message_is_method_error(m, NULL))
		sd_bus_error_copy(&s->error, sd_bus_message_get_error(m));
	else
		s->reply = sd_bus_message_ref(m);
	return 1;
}

static int report_error(struct ctl *c, const sd_bus_error *e, int r)
{
	int code = e->name ? ctl_exit_for_error(e->name) : CTL_EXIT_FAILED;

	if (e->name && (strcmp(e->name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0 ||
			strcmp(e->name, "org.freedesktop.DBus.Error.NameHasNoOwner") == 0))
		return ctl_error(c, code, e->name, "smplaserd is not running (%s is not on the "
				 "%s bus)", SMPL_BUS_NAME, c->user_bus ? "session" : "system");
	if (e->name)
		return ctl_error(c, code, e->name, "%s",
				 e->message && *e->message ? e->message : e->name);
	return ctl_error(c, CTL_EXIT_FAILED, NULL, "D-Bus call failed: %s", strerror(-r));
}

/*
 * Sends @m and drops it (with its copies of the descriptors: the pipe ends
 * only when the daemon's copy closes), then copies @from to stdout until it
 * ends (@from < 0: nothing to copy), then waits for the answer.
 */
static int call_copying(struct ctl *c, sd_bus_message *m, int from, sd_bus_message **reply)
{
	struct reply_state s = { .error = SD_BUS_ERROR_NULL };
	sd_bus_slot *slot = NULL;
	char buf[65536];
	int r, code = CTL_EXIT_DONE;

	r = sd_bus_call_async(c->bus, &slot, m, on_reply, &s, COPY_TIMEOUT_USEC);
	sd_bus_message_unref(m);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot call smplaserd: %s",
				 strerror(-r));
	r = sd_bus_flush(c->bus);
	while (from >= 0 && !ctl_interrupted) {
		ssize_t n = read(from, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n; ) {
			ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR && !ctl_interrupted)
				continue;
			if (w < 0) {
				code = ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write the "
						 "export: %s", strerror(errno));
				from = -1;	/* the daemon sees the pipe closed */
				break;
			}
			off += w;
		}
	}
	while (!s.done && !ctl_interrupted && r >= 0) {
		r = sd_bus_process(c->bus, NULL);
		if (r == 0)
			r = sd_bus_wait(c->bus, UINT64_MAX);
	}
	sd_bus_slot_unref(slot);
	if (ctl_interrupted && !s.done)
		code = ctl_error(c, CTL_EXIT_FAILED, NULL, "interrupted");
	else if (r < 0 && !s.done)
		code = ctl_error(c, CTL_EXIT_FAILED, NULL, "lost smplaserd: %s", strerror(-r));
	else if (sd_bus_error_is_set(&s.error))
		code = report_error(c, &s.error, -EIO);
	else if (!code && reply)
		*reply = sd_bus_message_ref(s.reply);
	sd_bus_message_unref(s.reply);
	sd_bus_error_free(&s.error);
	return code;
}

/* The a{sv} answer of Backup and Export as JSON. */
static json_object *reply_info(sd_bus_message *reply)
{
	json_object *info = NULL;

	if (ctl_read_json(reply, &info) < 0 || !info)
		info = json_object_new_object();
	return info;
}

static int backup_into(struct ctl *c, int fd, json_object **info)
{
	sd_bus_message *m = NULL, *reply = NULL;
	int r, code;

	r = sd_bus_message_new_method_call(c->bus, &m, SMPL_BUS_NAME, SMPL_MANAGER_PATH,
					   SMPL_RECORDS_IFACE, "Backup");
	if (r >= 0)
		r = sd_bus_message_append(m, "h", fd);
	if (r < 0) {
		sd_bus_message_unref(m);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot build the call: %s",
				 strerror(-r));
	}
	code = call_copying(c, m, -1, &reply);
	if (!code)
		*info = reply_info(reply);
	sd_bus_message_unref(reply);
	return code;
}

/* ---- verify ------------------------------------------------------------------------- */

static int64_t pragma(sqlite3 *db, const char *sql, bool *ok)
{
	sqlite3_stmt *stmt;
	int64_t v = 0;

	*ok = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
	      sqlite3_step(stmt) == SQLITE_ROW;
	if (*ok)
		v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

/* "ok", or the first thing PRAGMA integrity_check found (into @buf). */
static bool integrity_ok(sqlite3 *db, char *buf, size_t len)
{
	sqlite3_stmt *stmt;
	bool ok = false;

	snprintf(buf, len, "%s", "cannot check it");
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW) {
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(stmt, 0));
		ok = strcmp(buf, "ok") == 0;
	} else {
		snprintf(buf, len, "%s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(stmt);
	return ok;
}

/* file: URI of @path, read-only, as it is (no lock, no log): "immutable". */
static void immutable_uri(const char *path, char *uri, size_t len)
{
	static const char keep[] = "-._~/";
	size_t n = (size_t)snprintf(uri, len, "file:");

	for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < len; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr(keep, *p))
			uri[n++] = (char)*p;
		else
			n += (size_t)snprintf(uri + n, len - n, "%%%02X", *p);
	}
	snprintf(uri + n, len - n, "?immutable=1");
}

/*
 * Opens a copy of the records read-only: an ordinary file (a backup), or
 * one in WAL mode that nobody writes (a copy of records.db made while the
 * daemon was stopped).
 */
static int open_copy(const char *path, sqlite3 **db, char *why, size_t len)
{
	char uri[8192];
	bool ok;

	if (access(path, R_OK) < 0) {
		snprintf(why, len, "%s", strerror(errno));
		return -1;
	}
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		(void)pragma(*db, "SELECT count(*) FROM sqlite_schema", &ok);
		if (ok)
			return 0;
	}
	sqlite3_close(*db);
	immutable_uri(path, uri, sizeof(uri));
	if (sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) == SQLITE_OK) {
		(void)pragma(*db, "SELECT count(*) FROM sqlite_schema", &ok);
		if (ok)
			return 0;
	}
	snprintf(why, len, "%s", *db ? sqlite3_errmsg(*db) : "cannot open it");
	sqlite3_close(*db);
	*db = NULL;
	return -1;
}

struct verdict {
	bool verified;
	char failure[512];		/* why it could not be checked at all */
	int64_t schema;
	char integrity[256];
	struct store_chain_report rep;
};

static void check_copy(const char *path, const struct store_chain_head *anchor,
		       struct verdict *v)
{
	sqlite3 *db = NULL;
	char why[256];
	bool ok;
	int r;

	memset(v, 0, sizeof(*v));
	if (open_copy(path, &db, why, sizeof(why)) < 0) {
		snprintf(v->failure, sizeof(v->failure), "cannot open %s: %s", path, why);
		return;
	}
	if (pragma(db, "PRAGMA application_id", &ok) != APPLICATION_ID || !ok) {
		snprintf(v->failure, sizeof(v->failure), "%s is not smplaser's records", path);
		goto out;
	}
	v->schema = pragma(db, "PRAGMA user_version", &ok);
	if (!integrity_ok(db, v->integrity, sizeof(v->integrity))) {
		snprintf(v->failure, sizeof(v->failure), "%s is damaged (integrity check: %s)",
			 path, v->integrity);
		goto out;
	}
	if (store_chain_register(db) != SQLITE_OK) {
		snprintf(v->failure, sizeof(v->failure), "cannot check %s: %s", path,
			 sqlite3_errmsg(db));
		goto out;
	}
	r = store_chain_verify(db, anchor, &v->rep, why, sizeof(why));
	if (r == -ENOENT)
		snprintf(v->failure, sizeof(v->failure), "%s has no hash chain (schema version "
			 "%" PRId64 ", written before smplaser records had one)", path, v->schema);
	else if (r < 0)
		snprintf(v->failure, sizeof(v->failure), "cannot check %s: %s", path, why);
	else
		v->verified = r == 0;
out:
	sqlite3_close(db);
}

static json_object *head_json(const struct store_chain_head *h)
{
	json_object *o = json_object_new_object();
	char hex[STORE_CHAIN_HEX_LEN + 1];

	store_chain_hex(h->hash, hex);
	json_object_object_add(o, "seq", json_object_new_int64(h->seq));
	json_object_object_add(o, "hash", json_object_new_string(hex));
	return o;
}

static json_object *verdict_json(const char *name, const struct verdict *v)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();

	json_object_object_add(o, "file", json_object_new_string(name));
	json_object_object_add(o, "verified", json_object_new_boolean(v->verified));
	if (v->failure[0])
		json_object_object_add(o, "error", json_object_new_string(v->failure));
	json_object_object_add(o, "schema", json_object_new_int64(v->schema));
	json_object_object_add(o, "entries", json_object_new_int64(v->rep.entries));
	json_object_object_add(o, "audit_rows", json_object_new_int64(v->rep.audit_rows));
	json_object_object_add(o, "treatment_rows",
			       json_object_new_int64(v->rep.treatment_rows));
	json_object_object_add(o, "clinical_rows",
			       json_object_new_int64(v->rep.clinical_rows));
	json_object_object_add(o, "head", head_json(&v->rep.head));
	json_object_object_add(o, "problem_count", json_object_new_int64(v->rep.problems));
	for (size_t i = 0; i < v->rep.shown; i++) {
		json_object *p = json_object_new_object();

		json_object_object_add(p, "entry", json_object_new_int64(v->rep.problem[i].position));
		json_object_object_add(p, "text", json_object_new_string(v->rep.problem[i].text));
		json_object_array_add(list, p);
	}
	json_object_object_add(o, "problems", list);
	return o;
}

static void print_verdict(struct ctl *c, const char *name, const struct verdict *v,
			  const struct store_chain_head *anchor)
{
	char hex[STORE_CHAIN_HEX_LEN + 1];

	if (v->failure[0])
		return;
	store_chain_hex(v->rep.head.hash, hex);
	printf("%s: schema %" PRId64 ", %" PRId64 " treatments, %" PRId64 " audit records, "
	       "%" PRId64 " clinical records, %" PRId64 " chain entries, head %" PRId64 ":%s\n",
	       name, v->schema, v->rep.treatment_rows, v->rep.audit_rows, v->rep.clinical_rows,
	       v->rep.entries, v->rep.head.seq, hex);
	if (v->verified) {
		printf("%sVerified:%s every record is as it was chained; none changed, deleted or "
		       "inserted out of order.\n", col(c, SGR_GREEN), col(c, SGR_RESET));
		if (anchor)
			printf("The head %" PRId64 " logged earlier is in the chain, unchanged.\n",
			       anchor->seq);
		return;
	}
	printf("%sNOT VERIFIED:%s %" PRId64 " problem%s; the first:\n", col(c, SGR_RED),
	       col(c, SGR_RESET), v->rep.problems, v->rep.problems == 1 ? "" : "s");
	for (size_t i = 0; i < v->rep.shown; i++)
		printf("  %s\n", v->rep.problem[i].text);
	if ((int64_t)v->rep.shown < v->rep.problems)
		printf("  ... and %" PRId64 " more\n", v->rep.problems - (int64_t)v->rep.shown);
}

/* Verifies @path (shown as @name); the exit code. */
static int verify_path(struct ctl *c, const char *path, const char *name, json_object *extra)
{
	struct store_chain_head anchor, *a = NULL;
	struct verdict *v = calloc(1, sizeof(*v));
	int code;

	if (!v)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "out of memory");
	if (c->head) {
		if (store_chain_parse_head(c->head, &anchor) < 0) {
			free(v);
			return usage(c, "--head takes SEQ:HASH as logged (records chain head ...)");
		}
		a = &anchor;
	}
	check_copy(path, a, v);
	code = v->verified ? CTL_EXIT_DONE : CTL_EXIT_FAILED;
	if (c->json) {
		json_object *o = verdict_json(name, v);

		if (extra)
			json_object_object_add(o, "backup", json_object_get(extra));
		out_json(o, false);
		json_object_put(o);
	} else if (v->failure[0]) {
		ctl_error(c, code, NULL, "%s", v->failure);
	} else {
		print_verdict(c, name, v, a);
	}
	free(v);
	return code;
}

/* ---- the sub-verbs -------------------------------------------------------------------- */

static int records_backup(struct ctl *c, const char *file)
{
	json_object *info = NULL;
	char hex_note[160];
	int fd, code;

	fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot create %s: %s%s", file,
				 strerror(errno), errno == EEXIST ? " (a backup never overwrites)" : "");
	code = backup_into(c, fd, &info);
	close(fd);
	if (code) {
		unlink(file);
		return code;
	}
	snprintf(hex_note, sizeof(hex_note), "%s", j_str(info, "chain_head"));
	if (!c->json)
		printf("Backed up the records into %s (%" PRIu64 " bytes, chain head %" PRIu64
		       ":%s).\n", file, j_u64(info, "bytes"), j_u64(info, "chain_seq"), hex_note);
	code = verify_path(c, file, file, info);
	json_object_put(info);
	return code;
}

/* No FILE: the live records, through a backup into a temporary file. */
static int records_verify_live(struct ctl *c)
{
	const char *tmp = getenv("TMPDIR");
	json_object *info = NULL;
	char path[4096];
	int fd, code;

	snprintf(path, sizeof(path), "%s/smplaser-verify.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot make a temporary file %s: %s",
				 path, strerror(errno));
	code = backup_into(c, fd, &info);
	close(fd);
	if (!code)
		code = verify_path(c, path, "the records of smplaserd", info);
	unlink(path);
	json_object_put(info);
	return code;
}

/* "2026-01-01", "2026-01-01T10:00", "2026-01-01 10:00:00Z": UTC. */
static int parse_since(const char *s, uint64_t *usec)
{
	static const char *const formats[] = {
		"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
		"%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
	};

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm = { 0 };
		const char *end = strptime(s, formats[i], &tm);
		time_t t;

		if (!end || *end)
			continue;
		t = timegm(&tm);
		if (t < 0)
			return -EINVAL;
		*usec = (uint64_t)t * 1000000;
		return 0;
	}
	return -EINVAL;
}

static int records_export(struct ctl *c)
{
	sd_bus_message *m = NULL, *reply = NULL;
	uint64_t since;
	int p[2], r, code;

	if (c->json && c->csv)
		return usage(c, "export: --json or --csv, not both");
	if (!c->since)
		return usage(c, "export needs --since DATE (UTC, e.g. 2026-01-01)");
	if (parse_since(c->since, &since) < 0)
		return usage(c, "--since takes a UTC date: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]");
	if (pipe2(p, O_CLOEXEC) < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "pipe: %s", strerror(errno));
	r = sd_bus_message_new_method_call(c->bus, &m, SMPL_BUS_NAME, SMPL_MANAGER_PATH,
					   SMPL_RECORDS_IFACE, "Export");
	if (r >= 0)
		r = sd_bus_message_append(m, "hts", p[1], since, c->json ? "json" : "csv");
	close(p[1]);			/* the message holds its own */
	if (r < 0) {
		close(p[0]);
		sd_bus_message_unref(m);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot build the call: %s",
				 strerror(-r));
	}
	code = call_copying(c, m, p[0], &reply);
	close(p[0]);
	if (!code && isatty(STDERR_FILENO)) {
		json_object *info = reply_info(reply);

		fprintf(stderr, "Exported %" PRIu64 " treatments and %" PRIu64 " audit records "
			"(chain head %" PRIu64 ").\n", j_u64(info, "treatments"),
			j_u64(info, "audit"), j_u64(info, "chain_seq"));
		json_object_put(info);
	}
	sd_bus_message_unref(reply);
	return code;
}

bool records_offline(int argc, char **argv)
{
	return argc == 2 && strcmp(argv[0], "verify") == 0;
}

int verb_records(struct ctl *c, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";

	if (strcmp(sub, "backup") == 0 && argc == 2)
		return records_backup(c, argv[1]);
	if (strcmp(sub, "verify") == 0 && argc == 2)
		return verify_path(c, argv[1], argv[1], NULL);
	if (strcmp(sub, "verify") == 0 && argc == 1)
		return records_verify_live(c);
	if (strcmp(sub, "export") == 0 && argc == 1)
		return records_export(c);
	return usage(c, "usage: records backup FILE | records verify [FILE] [--head SEQ:HASH] | "
		     "records export --since DATE [--json|--csv]");
}
