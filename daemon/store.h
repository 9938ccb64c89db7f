/* SPDX-License-Identifier: MIT */
/*
 * smplaserd's durable treatment records (DESIGN S2, S3, S6, S8; section 6).
 *
 * One SQLite database, <state_dir>/records.db (created 0600), in WAL mode with
 * synchronous=FULL and foreign keys on; schema-versioned (PRAGMA user_version)
 * with migrations.  An unreadable, foreign or newer-version database, or one
 * whose header or schema is damaged, is refused at open with a negative errno
 * and a message; it is never recreated or modified.  The whole file's
 * integrity (PRAGMA quick_check, which reads every page: seconds for a
 * clinic's ten years) is checked by store_quick_check(), which the daemon
 * runs in the background once it is ready, refusing to arm if it fails.
 *
 * Every query the daemon makes uses an index (tests/unit/test_store.c checks
 * the plans), so that its cost grows with the log of the records, not with
 * them; each connection's page cache is bounded (512 KiB, no mmap).
 *
 * Conventions
 * - Every function returns 0 (or a documented count / flag >= 0) on success and
 *   a negative errno on failure.  store_errmsg() then says what went wrong.
 * - Host times are UTC milliseconds since the Unix epoch ("_ms").  Unit RTC
 *   times are the unit's battery-backed clock in seconds ("_rtc_s").
 * - Strings passed in are copied; strings handed to callbacks point into the
 *   store and are valid only during the callback.
 * - A struct store is used by one thread at a time.  Several connections to
 *   the same database may live in one process (say a writer thread's
 *   store_open() and the event loop's store_open_reader()), and other
 *   processes may share it: SQLite's WAL locking orders them.
 *
 * S3 contract: store_treatment_begin() returns only after the treatment row is
 * committed and fsync'd.  The daemon arms the unit only after it returned 0.
 * Pulses are buffered by store_add_pulse() and committed by store_flush()
 * (the daemon calls it at least every 100 ms and at every disarm); a failed
 * flush keeps the batch for the next try and the daemon must disarm.
 */
#ifndef SMPLASER_STORE_H
#define SMPLASER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_DB_NAME		"records.db"
/*
 * 4: issue 12's indexes; 5: the hash chain (store-chain.h); 6: counter
 * epochs, one row a shot; 7: empty (databases of main b77a065 are at 7 with
 * steps 1-6 only); 8: the clinical record (store-clinical.h)
 */
#define STORE_SCHEMA_VERSION	10
#define STORE_MSG_MAX		256	/* a good size for message buffers */
#define STORE_PULSE_BATCH_MAX	65536	/* store_add_pulse() -ENOBUFS beyond */
#define STORE_NAME_MAX		255	/* bytes in a serial, patient id, patch, name */
#define STORE_TEXT_MAX		4096	/* notes and audit texts are cut here */

struct store;

/* ---- open / close ------------------------------------------------------ */

/*
 * Open (or create) <state_dir>/records.db and migrate it to
 * STORE_SCHEMA_VERSION.  state_dir is created (0700) if it does not exist;
 * its parent must.  Reads only the header and the schema, not the whole file
 * (see store_quick_check()).  On failure returns a negative errno, leaves
 * *out NULL and writes a one-line reason into msg:
 *   -EUCLEAN           not a database, or its header or schema corrupt
 *                      (file left untouched)
 *   -EMEDIUMTYPE       an SQLite database that is not ours
 *   -EPROTONOSUPPORT   written by a newer smplaserd (schema version too high)
 *   -EBUSY             locked by another process (for longer than 250 ms)
 *   -EACCES, -EISDIR, -ENOENT, -EIO, ...   cannot read or create it
 */
int store_open(struct store **out, const char *state_dir, char *msg, size_t msg_len);

/*
 * A read-only connection to <state_dir>/records.db, which must exist and be
 * at STORE_SCHEMA_VERSION (store_open() has migrated it; -ESTALE otherwise):
 * for the queries (store_patch_facts, store_patient_history,
 * store_newest_record_ms, store_get_*, ...) while another connection (of
 * another thread, say) writes.  No migration, no integrity check; the file
 * is not opened outside SQLite (that would drop the process's locks).  Every write on it fails (-EROFS); it sees
 * each write of the other connections once committed.  Errors as
 * store_open()'s.
 */
int store_open_reader(struct store **out, const char *state_dir, char *msg, size_t msg_len);

/*
 * PRAGMA quick_check of the whole <state_dir>/records.db on a read-only
 * connection of its own (any thread; the file and its log are never
 * written).  0 if it is sound; -EUCLEAN with the first problem in msg if it
 * is corrupt; -ECANCELED if store_quick_check_cancel(true) stopped it;
 * another negative errno (and msg) if it could not be checked.
 */
int store_quick_check(const char *state_dir, char *msg, size_t msg_len);

/*
 * true: every running store_quick_check() stops at once (within about 10,000
 * SQLite instructions) with -ECANCELED, and so does every later one until
 * store_quick_check_cancel(false).  Safe from any thread.
 */
void store_quick_check_cancel(bool cancel);

/* Flushes pending pulses (best effort), then closes.  NULL is fine. */
void store_close(struct store *st);

/* The reason for the last failure on st ("" if none). */
const char *store_errmsg(const struct store *st);

/* Full path of the database file. */
const char *store_path(const struct store *st);

/* The connection's settings, read back from SQLite (for the start-up log). */
struct store_settings {
	char journal_mode[16];		/* "wal" */
	int synchronous;		/* 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA */
	bool foreign_keys;
	int schema_version;		/* PRAGMA user_version */
	int64_t cache_size;		/* PRAGMA cache_size: pages, or -KiB */
	int64_t mmap_size;		/* PRAGMA mmap_size: 0, no mmap */
};
int store_get_settings(struct store *st, struct store_settings *out);

/* ---- units ------------------------------------------------------------- */

/* Insert the unit, or update its model, firmware and last_seen. */
int store_unit_seen(struct store *st, const char *serial, const char *model,
		    const char *firmware, int64_t now_ms);

struct store_unit {
	const char *serial, *model, *firmware;
	int64_t first_seen_ms, last_seen_ms;
};
typedef int (*store_unit_cb)(const struct store_unit *u, void *ctx);

/* Read one unit.  -ENOENT if unknown. */
int store_get_unit(struct store *st, const char *serial, store_unit_cb cb, void *ctx);

/* ---- operators --------------------------------------------------------- */

/* Who acted: the caller's uid and a display name (user name). */
struct store_operator {
	uint32_t uid;
	const char *name;
};

/* ---- sessions ---------------------------------------------------------- */

enum store_session_state {
	STORE_SESSION_OPEN = 0,
	STORE_SESSION_ENDED,
	STORE_SESSION_INTERRUPTED,
};

/* Open a session for an opaque patient id on a known unit (store_unit_seen). */
int store_session_begin(struct store *st, const char *patient, const char *unit_serial,
			const struct store_operator *op, int64_t now_ms, int64_t *session_id);

/*
 * The same, with the unit's shot counter read as the session began (NULL:
 * not known).  Shots the records miss that the counter already showed then
 * are never counted on this session (store_records_missing_check).
 */
int store_session_begin_at(struct store *st, const char *patient, const char *unit_serial,
			   const struct store_operator *op, int64_t now_ms,
			   const uint32_t *start_counter, int64_t *session_id);

/*
 * Close an open session: state ENDED or INTERRUPTED; notes may be NULL.
 * -ENOENT unknown id, -EALREADY already closed.
 */
int store_session_end(struct store *st, int64_t session_id, enum store_session_state state,
		      const char *notes, int64_t now_ms);

/*
 * At start-up: mark every session still open (left by a crash) INTERRUPTED.
 * Returns how many.
 */
int store_sessions_interrupt_open(struct store *st, int64_t now_ms);

struct store_session {
	int64_t id;
	const char *patient, *unit_serial;
	struct store_operator op;
	enum store_session_state state;
	int64_t start_ms, end_ms;	/* end_ms 0 while open */
	const char *notes;		/* NULL if none */
};
typedef int (*store_session_cb)(const struct store_session *s, void *ctx);

/* Read one session.  -ENOENT if unknown. */
int store_get_session(struct store *st, int64_t session_id, store_session_cb cb, void *ctx);

/* ---- treatments -------------------------------------------------------- */

enum store_outcome {
	STORE_OUTCOME_OPEN = 0,		/* armed, not ended yet (or crash) */
	STORE_OUTCOME_COMPLETED,	/* normal disarm */
	STORE_OUTCOME_INTERRUPTED,	/* interlock, unplug, client left, limit */
	STORE_OUTCOME_FAULT,		/* unit fault, energy out of tolerance */
	STORE_OUTCOME_RECONCILED,	/* closed after a crash from the shot counter */
	STORE_OUTCOME_UNKNOWN,		/* left open, could not be reconciled */
};
const char *store_outcome_name(enum store_outcome o);

/* Parameters set on the unit for a treatment (wire units, see proto.h). */
struct store_params {
	uint16_t wavelength_nm;
	uint32_t fluence_mj_cm2;
	uint16_t spot_um;
	uint32_t pulse_ps;
	uint32_t rate_mhz;
	uint32_t set_energy_uj;
};

/*
 * What the records say of one patient's patch, for the rules (DESIGN S2).
 * A patient is one patient whatever the letter case of the id.  The
 * treatments of the given session on this patch are one visit, so they are
 * left out of the history and counted in session_patch_pulses instead.
 */
struct store_patch_facts {
	bool patch_emitted;		/* the patch emitted before (other sessions) */
	int64_t patch_last_emission_ms;
	uint32_t patient_treatments;	/* the patient's treatments that emitted */
	int64_t patient_first_emission_ms;
	uint32_t session_patch_pulses;	/* fired on this patch in this session */
	/* The clinical record (issue 16, store-clinical.h): see struct smpl_patch_facts. */
	bool on_hold;
	int64_t hold_since_ms;
	char hold_events[96];		/* "follicle-damage, blistering" */
	bool pigment_assessed;
	uint32_t pigment_pct;
	int64_t pigment_ms;
};

/* @session_id 0: every session counts as history (CheckPatch). */
int store_patch_facts(struct store *st, const char *patient, const char *patch,
		      int64_t session_id, struct store_patch_facts *out);

/*
 * The rules' verdict inside the arming transaction: 0 allows, -EAGAIN
 * refuses with a message in @why (CooldownActive), another negative errno
 * fails the arming.
 */
typedef int (*store_decide_fn)(const struct store_patch_facts *facts, int64_t armed_ms,
			       void *ctx, char *why, size_t why_len);

struct store_treatment_start {
	int64_t session_id;		/* an OPEN session; patient and unit come from it */
	const char *patch;
	const char *unit_firmware;
	struct store_operator op;	/* who armed */
	struct store_params params;
	int64_t armed_ms;		/* host time of arming */
	int64_t armed_rtc_s;		/* unit RTC at arming */
	uint32_t shot_at_arm;		/* unit shot counter before the first pulse */
	/*
	 * Defence in depth for S2 across processes sharing the store: in the
	 * same transaction as the insert, refuse (-EAGAIN) if this patient's
	 * patch has an emission (store_last_emission) in ANOTHER session later
	 * than armed_ms - cooldown_ms.  Must be > 0.
	 */
	int64_t cooldown_ms;
	/*
	 * S2: the whole rule set, decided inside the arming transaction at
	 * armed_ms on the records as they are then (store_patch_facts for
	 * this session).  NULL: the cooldown check above only.
	 */
	store_decide_fn decide;
	void *decide_ctx;
};

/*
 * Record a treatment about to be armed and commit it durably (first flushing
 * any pending pulses).  The daemon arms only if this returns 0.  In the same
 * transaction, the unit's earlier treatments whose end counter is unknown
 * are settled from shot_at_arm.
 *   -EINVAL   bad arguments (empty patch, cooldown_ms <= 0, ...)
 *   -ENOENT   no such session            -ESTALE  session not open
 *   -EBUSY    the unit already has an OPEN treatment (one a crash left:
 *             reconcile it, or if that fails end it UNKNOWN, which still
 *             counts it as emitted but frees the unit)
 *   -ERANGE   shot_at_arm is below what the records hold for the unit and
 *             no counter reset accepted it (message "counter-went-back: ...")
 *   -EAGAIN   the patch is not eligible: its cooldown, or the rules of
 *             t->decide (message says why and until when)
 */
int store_treatment_begin(struct store *st, const struct store_treatment_start *t,
			  int64_t *treatment_id);

struct store_treatment_finish {
	enum store_outcome outcome;	/* COMPLETED, INTERRUPTED, FAULT or UNKNOWN */
	int64_t end_ms;
	int64_t end_rtc_s;		/* unit RTC; 0 if unknown */
	bool shot_at_end_known;		/* false: unit gone, counter unread */
	uint32_t shot_at_end;		/* pulse count = shot_at_end - shot_at_arm */
	/*
	 * The unit's counter leapt past the pulses it reported while armed (a
	 * faulty unit): shot_at_end keeps what it said, the pulse count is the
	 * pulses recorded (reported) when it ends.
	 */
	bool count_reported;
};

/*
 * Flush pending pulses, then close an OPEN treatment.
 * -ENOENT unknown id, -EALREADY not open, -EINVAL bad outcome,
 * -ERANGE shot_at_end < shot_at_arm.
 */
int store_treatment_end(struct store *st, int64_t treatment_id,
			const struct store_treatment_finish *f);

/*
 * Settle a treatment from its unit's shot counter: one left OPEN or UNKNOWN
 * (a crash, the unit gone) is closed RECONCILED with end_ms = now_ms; one
 * closed with its end counter unread gets it (its outcome stays).  Either
 * way shot_at_end = shot_count_now and the pulse count is the shots since
 * arming; if its unit was armed again since, the counter at that arming
 * is used instead.  Appends a RECONCILE audit record in the same transaction.
 * -ENOENT unknown id, -EALREADY settled already,
 * -ERANGE the counter is below the treatment's arming or below what the
 *         records hold for the unit ("counter-went-back: ..."): not believed,
 *         left as is (OPEN: end it UNKNOWN; it counts as emitted),
 * -ESTALE the treatment was armed in an earlier counter epoch of its unit
 *         (before a counter reset was accepted): a counter of the new epoch
 *         never settles it; left as is (it stays UNKNOWN, counted emitted).
 */
int store_reconcile_treatment(struct store *st, int64_t treatment_id,
			      uint32_t shot_count_now, int64_t now_ms);

/*
 * The unit's first sign of emission for an open treatment (its first pulse,
 * or the unit EMITTING): committed at once with the pulses pending, so that
 * a count lost later can never free the patch.  Set once.
 */
int store_treatment_mark_emitting(struct store *st, int64_t treatment_id, int64_t when_ms);

/*
 * S3: is @counter at or above every shot the records hold for the unit in
 * its current counter epoch?  0 yes (or no records), -ERANGE no
 * ("counter-went-back: ..."), another negative errno on failure.
 */
int store_counter_check(struct store *st, const char *unit_serial, uint32_t counter);

/*
 * An authorized user accepts the unit's counter below the records (after a
 * reflash, say): a new counter epoch of the unit begins at @counter.  Its
 * shot numbers may repeat those of earlier epochs (each pulse keeps its row
 * in its own treatment); later checks compare with this epoch's records
 * only, and @counter is their floor.  In the same transaction the unit's
 * treatments still OPEN end UNKNOWN: no counter of the new epoch settles a
 * treatment of an earlier one (RECONCILE audit, reason "counter-reset").
 * -EALREADY if the counter is not below.  The caller audits who.
 */
int store_counter_reset(struct store *st, const char *unit_serial, uint32_t counter,
			const struct store_operator *op, int64_t now_ms);

/* ---- pulses ------------------------------------------------------------ */

struct store_pulse {
	int64_t treatment_id;
	int64_t host_ms;
	uint32_t shot;			/* unit shot counter after this pulse */
	uint32_t measured_uj;
	uint32_t set_uj;
};

/*
 * Append a pulse to the in-memory batch (not durable until store_flush).
 * -ENOENT unknown treatment, -ENOBUFS batch full (flush keeps failing).
 */
int store_add_pulse(struct store *st, const struct store_pulse *p);

/*
 * Commit the batch in one transaction.  Pulses are unique per (treatment,
 * shot): one already recorded for the same treatment is a repeated report
 * and is skipped; one whose shot another treatment of the unit's same
 * counter epoch holds (the unit reused a shot number without an accepted
 * reset) keeps its row, counts in its treatment's summary, and the audit
 * trail says so (FAULT, reason "shot-number-reused").  On failure the batch is kept entire and the
 * error returned.  Returns 0 (also when the batch was empty).
 */
int store_flush(struct store *st);

/* Pulses waiting for store_flush(). */
size_t store_pending_pulses(const struct store *st);
/* Forgets the pulses waiting for store_flush() (they are kept elsewhere). */
void store_drop_pending(struct store *st);
/* The pulses waiting for store_flush(), in order (to keep them elsewhere). */
int store_visit_pending(const struct store *st,
			int (*cb)(const struct store_pulse *p, void *ctx), void *ctx);

/* A treatment's committed pulses in shot order.  Returns how many visited. */
typedef int (*store_pulse_cb)(const struct store_pulse *p, void *ctx);
int store_treatment_pulses(struct store *st, int64_t treatment_id,
			   store_pulse_cb cb, void *ctx);

/* ---- queries ----------------------------------------------------------- */

/* A treatment as read back; strings valid only during the callback. */
struct store_treatment {
	int64_t id, session_id;
	const char *patient, *patch, *unit_serial, *unit_firmware;
	struct store_operator op;
	struct store_params params;
	enum store_outcome outcome;
	int64_t armed_ms, armed_rtc_s;
	int64_t end_ms, end_rtc_s;	/* 0 while open */
	uint32_t shot_at_arm;
	bool shot_at_end_known;
	uint32_t shot_at_end;
	bool pulse_count_known;
	uint32_t pulse_count;		/* shots by the unit's counter */
	uint32_t pulses_recorded;	/* pulses recorded (see store_flush) */
	uint32_t energy_min_uj, energy_max_uj;	/* 0 if no pulse recorded */
	uint64_t energy_sum_uj;
	int64_t last_pulse_ms;		/* 0 if no pulse recorded */
	int64_t emitting_ms;		/* first sign of emission; 0 if none */
	int64_t emission_ms;		/* the time it counts for cooldown; 0 if it emitted nothing */
	const char *workstation;	/* PostgreSQL (store-pg.h): who armed it; NULL here */
};

/* Return non-zero to stop the iteration. */
typedef int (*store_treatment_cb)(const struct store_treatment *t, void *ctx);

/*
 * Last recorded emission of a patient's patch, for the cooldown (S2).  The
 * patient id matches whatever its letter case (here and in every query by
 * patient).  A treatment counts as emitted unless its shot counter says 0
 * shots, no pulse was recorded and the unit was never seen emitting for it.  Its time: OPEN/UNKNOWN (crash) -> its arming time
 * (DESIGN section 6), or its last recorded pulse if that is later (never
 * shorter); COMPLETED/INTERRUPTED/FAULT -> end_ms (the disarm, or a later
 * pulse reported after it); RECONCILED -> the latest of arming time and last
 * recorded pulse.
 * Returns 1 and sets *when_ms, 0 if never emitted, or a negative errno.
 */
int store_last_emission(struct store *st, const char *patient, const char *patch,
			int64_t *when_ms);

/* For the test-spot rule: what a patient has had (counting as above). */
struct store_patient_summary {
	uint32_t treatments;		/* treatments that emitted (or may have) */
	int64_t first_emission_ms;	/* 0 if none */
	int64_t last_emission_ms;	/* 0 if none */
};
int store_patient_summary(struct store *st, const char *patient,
			  struct store_patient_summary *out);

/* A patient's treatments, oldest first.  Returns how many were visited. */
int store_patient_history(struct store *st, const char *patient,
			  store_treatment_cb cb, void *ctx);

/*
 * Treatments to settle from the unit's counter (store_reconcile_treatment):
 * left OPEN or UNKNOWN (crash, unit gone), or closed with the end counter
 * unread, armed in the unit's current counter epoch; oldest first; unit_serial NULL means every unit.  Returns how
 * many were visited.
 */
int store_unsettled_treatments(struct store *st, const char *unit_serial,
			       store_treatment_cb cb, void *ctx);

/* Read one treatment.  -ENOENT if there is none. */
int store_get_treatment(struct store *st, int64_t treatment_id,
			store_treatment_cb cb, void *ctx);

/*
 * The newest arming's host time (S8: a clock earlier than this is
 * unreliable).  Only armings witness the clock: each was allowed with the
 * host clock within rtc_max_skew_s of the unit's RTC.  The other records
 * are written while the clock is wrong too (a probe, a refusal, the disarm
 * by the clock check), and a jump forward would then lock arming out until
 * the true time caught up with them.  Returns 1 and sets *when_ms, 0 if
 * nothing was ever armed.
 */
int store_newest_record_ms(struct store *st, int64_t *when_ms);

/* ---- audit trail (S6) -------------------------------------------------- */

enum store_audit_kind {
	STORE_AUDIT_ARM = 0,
	STORE_AUDIT_DISARM,		/* reason: why */
	STORE_AUDIT_FAULT,
	STORE_AUDIT_ACK_FAULT,
	STORE_AUDIT_INTERLOCK,
	STORE_AUDIT_CONFIG_LOAD,
	STORE_AUDIT_CLOCK_ANOMALY,
	STORE_AUDIT_REFUSED,		/* reason: the D-Bus error name or why */
	STORE_AUDIT_SESSION,		/* session start / end */
	STORE_AUDIT_RECONCILE,
	STORE_AUDIT_PATCH,		/* SelectPatch: detail the patch */
	STORE_AUDIT_EYEWEAR,		/* ConfirmEyewear */
	STORE_AUDIT_PARAMETERS,		/* SetParameters accepted: detail the values */
	STORE_AUDIT_RECORDS,		/* a backup or an export of the records (reason says) */
	STORE_AUDIT_ENDPOINT,		/* a treatment's endpoint recorded (issue 16) */
	STORE_AUDIT_FOLLOW_UP,		/* a follow-up recorded */
	STORE_AUDIT_HOLD,		/* an adverse event holds a patch */
	STORE_AUDIT_REVIEW,		/* an authorized review cleared a hold */
	STORE_AUDIT__COUNT,
};
const char *store_audit_kind_name(enum store_audit_kind k);

struct store_audit {
	int64_t time_ms;
	enum store_audit_kind kind;
	bool has_operator;		/* false: the daemon or the unit acted */
	struct store_operator op;
	const char *unit_serial;	/* NULL if none */
	int64_t session_id;		/* 0 if none (not checked against sessions) */
	const char *reason;		/* NULL if none */
	const char *detail;		/* free text, NULL if none */
};

/* Append and commit one audit record. */
int store_audit(struct store *st, const struct store_audit *a);
/*
 * The same, unless an identical record (time, kind, operator, unit, session,
 * reason, detail) is there already: for records replayed after a crash, which
 * may have reached the store before it.  1 if it was there, 0 if appended.
 */
int store_audit_once(struct store *st, const struct store_audit *a);

/* Audit records read back, oldest first; strings valid during the callback. */
typedef int (*store_audit_cb)(int64_t id, const struct store_audit *a, void *ctx);
int store_audit_list(struct store *st, int64_t since_ms, store_audit_cb cb, void *ctx);

/* ---- testing ----------------------------------------------------------- */

/*
 * For the test that every query uses an index: EXPLAIN QUERY PLAN of each
 * statement st has run so far (each is prepared once and kept), one call of
 * cb per line of each plan (@plan: SQLite's "SEARCH treatments USING INDEX
 * ...", "SCAN pulses", ...); non-zero from cb goes on to the next statement.
 * Returns how many statements were explained.
 */
typedef int (*store_plan_cb)(const char *sql, const char *plan, void *ctx);
int store_query_plans(struct store *st, store_plan_cb cb, void *ctx);

/*
 * For the test that the work of a query does not grow with the records: the
 * SQLite instructions each statement ran since the last reset (@reset: and
 * start counting again).  cb may be NULL; non-zero from cb stops.  Returns
 * how many statements there are.
 */
typedef int (*store_steps_cb)(const char *sql, uint64_t steps, void *ctx);
int store_query_steps(struct store *st, bool reset, store_steps_cb cb, void *ctx);

/*
 * For tests of migrations only: create <state_dir>/records.db at an older
 * schema version (1 .. STORE_SCHEMA_VERSION) without migrating further.
 */
int store_create_at_version(const char *state_dir, int version, char *msg, size_t msg_len);

#include "store-clinical.h"	/* the clinical record (issue 16) */

#endif /* SMPLASER_STORE_H */
