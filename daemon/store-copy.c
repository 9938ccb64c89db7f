// SPDX-License-Identifier: MIT
/*
 * Backups and exports of the records in steps, from one snapshot: see
 * store-copy.h.  The backup writes through a small SQLite VFS over the
 * caller's descriptor ("smpl-fd"), so that neither a path nor a temporary
 * copy on the records' own disk is involved.
 */
#include "store-copy.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS		250
#define OUT_CAP			(128 * 1024)
#define OUT_FLUSH_AT		(64 * 1024)

enum phase {
	PHASE_HEADER,
	PHASE_TREATMENTS,
	PHASE_AUDIT,
	PHASE_TRAILER,
	PHASE_DONE,
};

struct store_copy {
	int fd;
	sqlite3 *src;
	char msg[STORE_MSG_MAX];
	struct store_copy_info info;
	bool done;
	/* backup */
	sqlite3 *dst;
	sqlite3_backup *backup;
	/* export */
	bool is_export;
	enum store_export_format format;
	int64_t since_ms;
	enum phase phase;
	sqlite3_stmt *rows;
	char *out;
	size_t out_len;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct store_copy *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return err;
}

static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
		return -EACCES;
	default:
		return -EIO;
	}
}

static void copy_msg(char *msg, size_t len, const char *text)
{
	if (msg && len)
		snprintf(msg, len, "%s", text);
}

/* ---- a VFS over one descriptor ---------------------------------------------------- */

struct fd_file {
	sqlite3_file base;
	int fd;
};

static int fd_close(sqlite3_file *f)
{
	(void)f;		/* the descriptor is the copy's */
	return SQLITE_OK;
}

static int fd_read(sqlite3_file *f, void *buf, int amount, sqlite3_int64 off)
{
	int fd = ((struct fd_file *)f)->fd;
	size_t got = 0;

	while (got < (size_t)amount) {
		ssize_t n = pread(fd, (char *)buf + got, (size_t)amount - got, off + (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return SQLITE_IOERR_READ;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got < (size_t)amount) {
		memset((char *)buf + got, 0, (size_t)amount - got);
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int fd_write(sqlite3_file *f, const void *buf, int amount, sqlite3_int64 off)
{
	int fd = ((struct fd_file *)f)->fd;
	size_t put = 0;

	while (put < (size_t)amount) {
		ssize_t n = pwrite(fd, (const char *)buf + put, (size_t)amount - put,
				   off + (off_t)put);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ENOSPC || errno == EDQUOT ? SQLITE_FULL : SQLITE_IOERR_WRITE;
		put += (size_t)n;
	}
	return SQLITE_OK;
}

static int fd_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return ftruncate(((struct fd_file *)f)->fd, (off_t)size) < 0 ? SQLITE_IOERR_TRUNCATE
								      : SQLITE_OK;
}

static int fd_sync(sqlite3_file *f, int flags)
{
	(void)flags;
	return fsync(((struct fd_file *)f)->fd) < 0 ? SQLITE_IOERR_FSYNC : SQLITE_OK;
}

static int fd_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct stat sb;

	if (fstat(((struct fd_file *)f)->fd, &sb) < 0)
		return SQLITE_IOERR_FSTAT;
	*size = sb.st_size;
	return SQLITE_OK;
}

/* One writer, the copy: no locks needed on a file nobody else has yet. */
static int fd_lock(sqlite3_file *f, int level)
{
	(void)f, (void)level;
	return SQLITE_OK;
}

static int fd_check_reserved(sqlite3_file *f, int *out)
{
	(void)f;
	*out = 0;
	return SQLITE_OK;
}

static int fd_control(sqlite3_file *f, int op, void *arg)
{
	(void)f, (void)op, (void)arg;
	return SQLITE_NOTFOUND;
}

static int fd_sector(sqlite3_file *f)
{
	(void)f;
	return 4096;
}

static int fd_characteristics(sqlite3_file *f)
{
	(void)f;
	return 0;
}

static const sqlite3_io_methods fd_io = {
	.iVersion = 1,
	.xClose = fd_close,
	.xRead = fd_read,
	.xWrite = fd_write,
	.xTruncate = fd_truncate,
	.xSync = fd_sync,
	.xFileSize = fd_size,
	.xLock = fd_lock,
	.xUnlock = fd_lock,
	.xCheckReservedLock = fd_check_reserved,
	.xFileControl = fd_control,
	.xSectorSize = fd_sector,
	.xDeviceCharacteristics = fd_characteristics,
};

/* Only the main database, named "file:smplaser-copy?fd=N": no journal, no temp file. */
static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	struct fd_file *ff = (struct fd_file *)f;
	sqlite3_int64 fd;

	(void)vfs;
	f->pMethods = NULL;
	if (!name || !(flags & SQLITE_OPEN_MAIN_DB))
		return SQLITE_CANTOPEN;
	fd = sqlite3_uri_int64(name, "fd", -1);
	if (fd < 0 || fd > INT32_MAX)
		return SQLITE_CANTOPEN;
	ff->fd = (int)fd;
	f->pMethods = &fd_io;
	if (out)
		*out = flags;
	return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs, (void)name, (void)sync_dir;
	return SQLITE_OK;	/* nothing but the main file is ever made */
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs, (void)name, (void)flags;
	*out = 0;		/* no journal, no log: never a hot one */
	return SQLITE_OK;
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	if ((int)strlen(name) >= n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, strlen(name) + 1);
	return SQLITE_OK;
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	sqlite3_vfs *def = vfs->pAppData;

	return def->xRandomness(def, n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int usec)
{
	sqlite3_vfs *def = vfs->pAppData;

	return def->xSleep(def, usec);
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
	sqlite3_vfs *def = vfs->pAppData;

	return def->xCurrentTime(def, out);
}

static int vfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs, (void)n, (void)out;
	return 0;
}

#define FD_VFS_NAME	"smpl-fd"

static sqlite3_vfs fd_vfs = {
	.iVersion = 1,
	.szOsFile = sizeof(struct fd_file),
	.mxPathname = 512,
	.zName = FD_VFS_NAME,
	.xOpen = vfs_open,
	.xDelete = vfs_delete,
	.xAccess = vfs_access,
	.xFullPathname = vfs_full_pathname,
	.xRandomness = vfs_randomness,
	.xSleep = vfs_sleep,
	.xCurrentTime = vfs_current_time,
	.xGetLastError = vfs_last_error,
};

static pthread_once_t fd_vfs_once = PTHREAD_ONCE_INIT;
static int fd_vfs_rc = SQLITE_ERROR;

static void fd_vfs_register(void)
{
	fd_vfs.pAppData = sqlite3_vfs_find(NULL);
	if (fd_vfs.pAppData)
		fd_vfs_rc = sqlite3_vfs_register(&fd_vfs, 0);
}

/* ---- both ------------------------------------------------------------------------- */

static struct store_copy *copy_new(int fd, char *msg, size_t msg_len, int *err)
{
	struct store_copy *c = calloc(1, sizeof(*c));

	*err = 0;
	if (!c) {
		copy_msg(msg, msg_len, "out of memory");
		*err = -ENOMEM;
		return NULL;
	}
	c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (c->fd < 0) {
		*err = fail(c, -errno, "cannot use the descriptor given: %s", strerror(errno));
		copy_msg(msg, msg_len, c->msg);
		free(c);
		return NULL;
	}
	return c;
}

/* The snapshot: a read-only connection in one read transaction. */
static int open_snapshot(struct store_copy *c, const char *state_dir)
{
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", state_dir, STORE_DB_NAME);
	rc = sqlite3_open_v2(path, &c->src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL);
	if (rc != SQLITE_OK)
		return fail(c, sqlite_errno(rc), "cannot open %s: %s", path,
			    c->src ? sqlite3_errmsg(c->src) : sqlite3_errstr(rc));
	sqlite3_busy_timeout(c->src, BUSY_TIMEOUT_MS);
	rc = sqlite3_exec(c->src, "BEGIN; SELECT count(*) FROM sqlite_schema;", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail(c, sqlite_errno(rc), "cannot read %s: %s", path,
			    sqlite3_errmsg(c->src));
	rc = store_chain_read_head(c->src, &c->info.head, c->msg, sizeof(c->msg));
	return rc == -ENOENT ? 0 : rc;
}

static int finish_begin(struct store_copy *c, int err, struct store_copy **out,
			char *msg, size_t msg_len)
{
	if (err) {
		copy_msg(msg, msg_len, c->msg);
		store_copy_free(c);
		return err;
	}
	*out = c;
	return 0;
}

/* ---- backup ----------------------------------------------------------------------- */

static int check_backup_file(struct store_copy *c)
{
	struct stat sb;
	int fl = fcntl(c->fd, F_GETFL);

	if (fstat(c->fd, &sb) < 0)
		return fail(c, -errno, "cannot use the file given: %s", strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return fail(c, -EINVAL, "a backup goes into a regular file");
	if (sb.st_size != 0)
		return fail(c, -EEXIST, "the backup file is not empty: a backup never overwrites");
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		return fail(c, -EBADF, "the backup file must be open for reading and writing");
	return 0;
}

/*
 * Into the records' own file system, the backup must leave them room to
 * grow: a full disk there fails the records writer (every unit disarms).
 */
static int check_room(struct store_copy *c, const char *state_dir)
{
	struct stat file, dir;
	struct statvfs vfs;
	int64_t pages, page_size;
	uint64_t need, avail;
	sqlite3_stmt *stmt;

	if (fstat(c->fd, &file) < 0 || stat(state_dir, &dir) < 0 || file.st_dev != dir.st_dev ||
	    fstatvfs(c->fd, &vfs) < 0)
		return 0;
	if (sqlite3_prepare_v2(c->src, "SELECT page_count, page_size FROM pragma_page_count,"
			       " pragma_page_size", -1, &stmt, NULL) != SQLITE_OK)
		return fail(c, -EIO, "cannot read the records' size: %s", sqlite3_errmsg(c->src));
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return fail(c, -EIO, "cannot read the records' size: %s", sqlite3_errmsg(c->src));
	}
	pages = sqlite3_column_int64(stmt, 0);
	page_size = sqlite3_column_int64(stmt, 1);
	sqlite3_finalize(stmt);
	need = (uint64_t)(pages * page_size) + ((uint64_t)STORE_BACKUP_RESERVE_MIB << 20);
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= need)
		return 0;
	return fail(c, -ENOSPC, "no room for a backup on the records' file system: it needs "
		    "%" PRIu64 " KiB and must leave %d MiB for the records, %" PRIu64 " KiB are "
		    "free; back up to another disk", (uint64_t)(pages * page_size) >> 10,
		    STORE_BACKUP_RESERVE_MIB, avail >> 10);
}

int store_backup_begin(const char *state_dir, int fd, struct store_copy **out,
		       char *msg, size_t msg_len)
{
	char uri[64];
	int rc, err;
	struct store_copy *c = copy_new(fd, msg, msg_len, &err);

	if (!c)
		return err;
	pthread_once(&fd_vfs_once, fd_vfs_register);
	err = check_backup_file(c);
	if (!err && fd_vfs_rc != SQLITE_OK)
		err = fail(c, -EIO, "cannot register the backup's file access");
	if (!err)
		err = open_snapshot(c, state_dir);
	if (!err)
		err = check_room(c, state_dir);
	if (!err) {
		snprintf(uri, sizeof(uri), "file:smplaser-copy?fd=%d", c->fd);
		rc = sqlite3_open_v2(uri, &c->dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_URI, FD_VFS_NAME);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->dst, "PRAGMA journal_mode = OFF;"
					  "PRAGMA temp_store = MEMORY;", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			err = fail(c, sqlite_errno(rc), "cannot write the backup: %s",
				   c->dst ? sqlite3_errmsg(c->dst) : sqlite3_errstr(rc));
	}
	if (!err) {
		c->backup = sqlite3_backup_init(c->dst, "main", c->src, "main");
		if (!c->backup)
			err = fail(c, -EIO, "cannot start the backup: %s", sqlite3_errmsg(c->dst));
	}
	return finish_begin(c, err, out, msg, msg_len);
}

/* The copy as an ordinary database: rollback journal (header bytes 18, 19 = 1). */
static int backup_done(struct store_copy *c)
{
	static const unsigned char legacy[2] = { 1, 1 };
	sqlite3_stmt *stmt;
	struct stat sb;
	int rc;

	c->info.pages = sqlite3_backup_pagecount(c->backup);
	rc = sqlite3_backup_finish(c->backup);
	c->backup = NULL;
	if (rc != SQLITE_OK)
		return fail(c, sqlite_errno(rc), "the backup failed: %s", sqlite3_errmsg(c->dst));
	if (sqlite3_prepare_v2(c->src, "PRAGMA page_size", -1, &stmt, NULL) == SQLITE_OK) {
		if (sqlite3_step(stmt) == SQLITE_ROW)
			c->info.page_size = sqlite3_column_int64(stmt, 0);
		sqlite3_finalize(stmt);
	}
	rc = sqlite3_close(c->dst);
	c->dst = NULL;
	if (rc != SQLITE_OK)
		return fail(c, -EIO, "the backup failed: %s", sqlite3_errstr(rc));
	if (pwrite(c->fd, legacy, sizeof(legacy), 18) != (ssize_t)sizeof(legacy) ||
	    fsync(c->fd) < 0 || fstat(c->fd, &sb) < 0)
		return fail(c, -errno, "cannot write the backup: %s", strerror(errno));
	c->info.bytes = sb.st_size;
	c->done = true;
	return 1;
}

static int backup_step(struct store_copy *c, int pages)
{
	int rc = sqlite3_backup_step(c->backup, pages > 0 ? pages : 1);

	switch (rc) {
	case SQLITE_DONE:
		return backup_done(c);
	case SQLITE_OK:
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		c->info.pages = sqlite3_backup_pagecount(c->backup) -
				sqlite3_backup_remaining(c->backup);
		return 0;
	default:
		return fail(c, sqlite_errno(rc), "the backup failed: %s",
			    rc == SQLITE_FULL ? "no space left for the backup"
					      : sqlite3_errmsg(c->dst));
	}
}

/* ---- export: output -------------------------------------------------------------------- */

static int out_flush(struct store_copy *c)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n = write(c->fd, c->out + off, c->out_len - off);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			struct pollfd p = { .fd = c->fd, .events = POLLOUT };
			int r = poll(&p, 1, STORE_EXPORT_STALL_MS);

			if (r < 0 && errno != EINTR)
				return fail(c, -errno, "cannot write the export: %s", strerror(errno));
			if (r == 0)
				return fail(c, -ETIMEDOUT, "the export's reader stopped reading for "
					    "%d s", STORE_EXPORT_STALL_MS / 1000);
			continue;
		}
		return fail(c, -errno, errno == EPIPE ? "the export's reader went away"
						      : "cannot write the export: %s",
			    strerror(errno));
	}
	c->info.bytes += (int64_t)off;
	c->out_len = 0;
	return 0;
}

/* Room for @n more bytes (flushing first when needed); @n < OUT_CAP - OUT_FLUSH_AT. */
static int out_room(struct store_copy *c, size_t n)
{
	return c->out_len + n > OUT_CAP ? out_flush(c) : 0;
}

static int out_bytes(struct store_copy *c, const char *s, size_t n)
{
	while (n) {
		size_t room, chunk;
		int err = c->out_len == OUT_CAP ? out_flush(c) : 0;

		if (err)
			return err;
		room = OUT_CAP - c->out_len;
		chunk = n < room ? n : room;
		memcpy(c->out + c->out_len, s, chunk);
		c->out_len += chunk;
		s += chunk;
		n -= chunk;
	}
	return 0;
}

static int out_str(struct store_copy *c, const char *s)
{
	return out_bytes(c, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static int out_fmt(struct store_copy *c, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return out_bytes(c, buf, n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Length of the valid UTF-8 sequence at @s (0: invalid). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* A JSON string (RFC 8259); bytes that are not UTF-8 become U+FFFD. */
static int out_json_string(struct store_copy *c, const unsigned char *s, size_t len)
{
	int err = out_bytes(c, "\"", 1);

	for (size_t i = 0; !err && i < len; ) {
		size_t n = utf8_len(s + i, len - i);
		char esc[8];

		if (n == 0) {
			err = out_str(c, "\\ufffd");
			i++;
		} else if (s[i] == '"' || s[i] == '\\') {
			esc[0] = '\\', esc[1] = (char)s[i];
			err = out_bytes(c, esc, 2);
			i++;
		} else if (s[i] < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
			err = out_str(c, esc);
			i++;
		} else {
			err = out_bytes(c, (const char *)s + i, n);
			i += n;
		}
	}
	return err ? err : out_bytes(c, "\"", 1);
}

/*
 * A CSV field (RFC 4180).  Text a spreadsheet would take for a formula
 * (starting with = + - @, a tab or a carriage return) gets a leading '; bytes
 * that are not UTF-8 become U+FFFD.
 */
static int out_csv_text(struct store_copy *c, const unsigned char *s, size_t len)
{
	bool quote = false, formula = len && strchr("=+-@\t\r", s[0]);
	int err = 0;

	for (size_t i = 0; i < len && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (quote)
		err = out_bytes(c, "\"", 1);
	if (!err && formula)
		err = out_bytes(c, "'", 1);
	for (size_t i = 0; !err && i < len; ) {
		size_t n = utf8_len(s + i, len - i);

		if (n == 0)
			err = out_str(c, "\xef\xbf\xbd");	/* U+FFFD: the file stays UTF-8 */
		else
			err = s[i] == '"' ? out_bytes(c, "\"\"", 2)
					  : out_bytes(c, (const char *)s + i, n);
		i += n ? n : 1;
	}
	if (!err && quote)
		err = out_bytes(c, "\"", 1);
	return err;
}

/* "2026-01-01T00:00:00.000Z" */
static void utc(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char day[32];

	if (!gmtime_r(&s, &tm) || !strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(buf, len, "%" PRId64 " ms", ms);
	else
		snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000 + 1000) % 1000);
}

/* ---- export: fields --------------------------------------------------------------------- */

enum field_kind {
	F_INT,		/* integer or null */
	F_TEXT,		/* text or null */
	F_TIME,		/* milliseconds since the epoch as UTC text, or null */
	F_MEAN,		/* energy_sum_uj / pulses_recorded (the columns @col and @col + 1) */
};

struct field {
	const char *name;
	enum field_kind kind;
	int col;
};

#define TREATMENT_SQL \
	"SELECT id, session_id, unit_serial, operator_uid, operator_name, patient, patch," \
	" unit_firmware, outcome, armed_ms, end_ms, emitting_ms, wavelength_nm," \
	" fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, shot_at_arm," \
	" shot_at_end, pulse_count, pulses_recorded, energy_min_uj, energy_max_uj," \
	" energy_sum_uj, pulses_recorded FROM treatments WHERE armed_ms >= ?1 ORDER BY id"

static const struct field treatment_fields[] = {
	{ "id", F_INT, 0 }, { "session", F_INT, 1 }, { "unit", F_TEXT, 2 },
	{ "operator_uid", F_INT, 3 }, { "operator", F_TEXT, 4 }, { "patient", F_TEXT, 5 },
	{ "patch", F_TEXT, 6 }, { "firmware", F_TEXT, 7 }, { "outcome", F_TEXT, 8 },
	{ "armed_utc", F_TIME, 9 }, { "ended_utc", F_TIME, 10 },
	{ "first_emission_utc", F_TIME, 11 }, { "wavelength_nm", F_INT, 12 },
	{ "fluence_mj_cm2", F_INT, 13 }, { "spot_um", F_INT, 14 }, { "pulse_ps", F_INT, 15 },
	{ "rate_mhz", F_INT, 16 }, { "set_energy_uj", F_INT, 17 },
	{ "shot_at_arm", F_INT, 18 }, { "shot_at_end", F_INT, 19 }, { "pulses", F_INT, 20 },
	{ "pulses_recorded", F_INT, 21 }, { "energy_min_uj", F_INT, 22 },
	{ "energy_max_uj", F_INT, 23 }, { "energy_mean_uj", F_MEAN, 24 },
};

#define AUDIT_SQL \
	"SELECT id, session_id, unit_serial, operator_uid, operator_name, time_ms, kind," \
	" reason, detail FROM audit WHERE time_ms >= ?1 ORDER BY id"

static const struct field audit_fields[] = {
	{ "id", F_INT, 0 }, { "session", F_INT, 1 }, { "unit", F_TEXT, 2 },
	{ "operator_uid", F_INT, 3 }, { "operator", F_TEXT, 4 }, { "time_utc", F_TIME, 5 },
	{ "kind", F_TEXT, 6 }, { "reason", F_TEXT, 7 }, { "detail", F_TEXT, 8 },
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The CSV's columns: "record" (treatment or audit), then every field of both. */
static const char *const csv_columns[] = {
	"record", "id", "session", "unit", "operator_uid", "operator", "patient", "patch",
	"firmware", "outcome", "armed_utc", "ended_utc", "first_emission_utc",
	"wavelength_nm", "fluence_mj_cm2", "spot_um", "pulse_ps", "rate_mhz", "set_energy_uj",
	"shot_at_arm", "shot_at_end", "pulses", "pulses_recorded", "energy_min_uj",
	"energy_max_uj", "energy_mean_uj", "time_utc", "kind", "reason", "detail",
};

static const struct field *field_named(const struct field *fields, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(fields[i].name, name) == 0)
			return &fields[i];
	return NULL;
}

/* One field's value, in the export's format (JSON: null; CSV: empty for none). */
static int out_value(struct store_copy *c, sqlite3_stmt *s, const struct field *f)
{
	bool json = c->format == STORE_EXPORT_JSON;
	char buf[48];

	if (sqlite3_column_type(s, f->col) == SQLITE_NULL ||
	    (f->kind == F_MEAN && sqlite3_column_int64(s, f->col + 1) <= 0))
		return json ? out_str(c, "null") : 0;
	switch (f->kind) {
	case F_INT:
		return out_fmt(c, "%lld", (long long)sqlite3_column_int64(s, f->col));
	case F_MEAN:
		return out_fmt(c, "%lld", (long long)(sqlite3_column_int64(s, f->col) /
						      sqlite3_column_int64(s, f->col + 1)));
	case F_TIME:
		utc(sqlite3_column_int64(s, f->col), buf, sizeof(buf));
		return json ? out_json_string(c, (const unsigned char *)buf, strlen(buf))
			    : out_str(c, buf);
	case F_TEXT:
	default: {
		const unsigned char *t = sqlite3_column_text(s, f->col);
		size_t len = (size_t)sqlite3_column_bytes(s, f->col);

		return json ? out_json_string(c, t, len) : out_csv_text(c, t, len);
	}
	}
}

static int out_row(struct store_copy *c, sqlite3_stmt *s, const char *record,
		   const struct field *fields, size_t n, bool first)
{
	int err = 0;

	if (c->format == STORE_EXPORT_JSON) {
		err = out_str(c, first ? "\n{" : ",\n{");
		for (size_t i = 0; !err && i < n; i++) {
			err = out_fmt(c, "%s\"%s\":", i ? "," : "", fields[i].name);
			if (!err)
				err = out_value(c, s, &fields[i]);
		}
		return err ? err : out_str(c, "}");
	}
	for (size_t i = 0; !err && i < N_ELEMS(csv_columns); i++) {
		const struct field *f = field_named(fields, n, csv_columns[i]);

		if (i)
			err = out_str(c, ",");
		if (!err && i == 0)
			err = out_str(c, record);
		else if (!err && f)
			err = out_value(c, s, f);
	}
	return err ? err : out_str(c, "\r\n");
}

/* ---- export: the phases ------------------------------------------------------------------ */

static int export_header(struct store_copy *c)
{
	char since[48], hex[STORE_CHAIN_HEX_LEN + 1];
	int err = 0;

	if (c->format == STORE_EXPORT_CSV) {
		for (size_t i = 0; !err && i < N_ELEMS(csv_columns); i++)
			err = out_fmt(c, "%s%s", i ? "," : "", csv_columns[i]);
		return err ? err : out_str(c, "\r\n");
	}
	utc(c->since_ms, since, sizeof(since));
	store_chain_hex(c->info.head.hash, hex);
	return out_fmt(c, "{\"export\":{\"format\":\"smplaser-records-1\",\"since_utc\":\"%s\","
		       "\"chain_head\":{\"seq\":%lld,\"hash\":\"%s\"}},\n\"treatments\":[",
		       since, (long long)c->info.head.seq, hex);
}

static int start_rows(struct store_copy *c, const char *sql)
{
	int rc;

	sqlite3_finalize(c->rows);
	c->rows = NULL;
	rc = sqlite3_prepare_v2(c->src, sql, -1, &c->rows, NULL);
	if (rc != SQLITE_OK)
		return fail(c, sqlite_errno(rc), "cannot read the records: %s",
			    sqlite3_errmsg(c->src));
	sqlite3_bind_int64(c->rows, 1, c->since_ms);
	return 0;
}

/* Up to @amount rows of the current query; *end once it has none left. */
static int export_rows(struct store_copy *c, int amount, bool *end)
{
	bool treatments = c->phase == PHASE_TREATMENTS;
	int64_t *count = treatments ? &c->info.treatments : &c->info.audit;
	int rc = SQLITE_ROW, err = 0;

	*end = false;
	for (int i = 0; !err && i < amount && (rc = sqlite3_step(c->rows)) == SQLITE_ROW; i++) {
		err = out_room(c, OUT_CAP - OUT_FLUSH_AT);
		if (!err)
			err = treatments ? out_row(c, c->rows, "treatment", treatment_fields,
						   N_ELEMS(treatment_fields), *count == 0)
					 : out_row(c, c->rows, "audit", audit_fields,
						   N_ELEMS(audit_fields), *count == 0);
		(*count)++;
	}
	if (err)
		return err;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(c, sqlite_errno(rc), "cannot read the records: %s",
			    sqlite3_errmsg(c->src));
	*end = rc == SQLITE_DONE;
	return 0;
}

static int export_step(struct store_copy *c, int amount)
{
	bool end = false;
	int err = 0;

	switch (c->phase) {
	case PHASE_HEADER:
		err = export_header(c);
		if (!err)
			err = start_rows(c, TREATMENT_SQL);
		c->phase = PHASE_TREATMENTS;
		break;
	case PHASE_TREATMENTS:
		err = export_rows(c, amount, &end);
		if (!err && end) {
			if (c->format == STORE_EXPORT_JSON)
				err = out_str(c, "\n],\n\"audit\":[");
			if (!err)
				err = start_rows(c, AUDIT_SQL);
			c->phase = PHASE_AUDIT;
		}
		break;
	case PHASE_AUDIT:
		err = export_rows(c, amount, &end);
		if (!err && end)
			c->phase = PHASE_TRAILER;
		break;
	case PHASE_TRAILER:
		if (c->format == STORE_EXPORT_JSON)
			err = out_str(c, "\n]}\n");
		if (!err)
			err = out_flush(c);
		if (!err && fsync(c->fd) < 0 && errno != EINVAL && errno != EROFS)
			err = fail(c, -errno, "cannot write the export: %s", strerror(errno));
		c->phase = PHASE_DONE;
		c->done = !err;
		return err ? err : 1;
	case PHASE_DONE:
		return 1;
	}
	if (!err && c->out_len >= OUT_FLUSH_AT)
		err = out_flush(c);
	return err;
}

int store_export_begin(const char *state_dir, int fd, int64_t since_ms,
		       enum store_export_format format, struct store_copy **out,
		       char *msg, size_t msg_len)
{
	int fl, err;
	struct store_copy *c = copy_new(fd, msg, msg_len, &err);

	if (!c)
		return err;
	c->is_export = true;
	c->format = format;
	c->since_ms = since_ms;
	c->out = malloc(OUT_CAP);
	if (!c->out)
		err = fail(c, -ENOMEM, "out of memory");
	fl = err ? 0 : fcntl(c->fd, F_GETFL);
	if (!err && (fl < 0 || ((fl & O_ACCMODE) != O_WRONLY && (fl & O_ACCMODE) != O_RDWR)))
		err = fail(c, -EBADF, "the export's descriptor is not open for writing");
	if (!err && fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		err = fail(c, -errno, "cannot use the export's descriptor: %s", strerror(errno));
	if (!err && format != STORE_EXPORT_CSV && format != STORE_EXPORT_JSON)
		err = fail(c, -EINVAL, "no such export format");
	if (!err)
		err = open_snapshot(c, state_dir);
	return finish_begin(c, err, out, msg, msg_len);
}

/* ---- steps --------------------------------------------------------------------------------- */

int store_copy_step(struct store_copy *c, int amount)
{
	if (c->done)
		return 1;
	return c->is_export ? export_step(c, amount > 0 ? amount : 1) : backup_step(c, amount);
}

void store_copy_info(const struct store_copy *c, struct store_copy_info *info)
{
	*info = c->info;
}

const char *store_copy_errmsg(const struct store_copy *c)
{
	return c ? c->msg : "no copy";
}

void store_copy_free(struct store_copy *c)
{
	if (!c)
		return;
	if (c->backup)
		sqlite3_backup_finish(c->backup);
	sqlite3_close(c->dst);
	sqlite3_finalize(c->rows);
	if (c->src) {
		sqlite3_exec(c->src, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(c->src);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	free(c);
}
