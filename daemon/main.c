/* SPDX-License-Identifier: MIT */
/*
 * smplaserd: the laser unit daemon.
 *
 *   smplaserd [--config FILE] [--state-dir DIR] [--sim[=N]] [--session]
 *   smplaserd --print-schema[=ROLE]
 *   smplaserd [--config FILE] [--state-dir DIR] --import-records[=DIR]
 *
 * Takes its bus name at once, then probes units in the background (the
 * Manager's State property says "probing", then "running").  sd_notify
 * READY=1 as soon as the name is ours; the systemd watchdog is kept by the
 * event loop.  The records' integrity is checked after READY, in the
 * background (a corrupt database then faults every unit and arms nothing).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/ioprio.h>
#include <systemd/sd-daemon.h>

#include "audit.h"
#include "bus.h"
#include "creds.h"
#include "discovery.h"
#include "errors.h"
#include "lifecycle.h"
#include "log.h"
#include "records.h"
#include "store-ops.h"
#include "store-pg.h"
#include "supervisor.h"

#define DEFAULT_STATE_DIR	"/var/lib/smplaser"

struct options {
	const char *config;
	const char *state_dir;
	bool session_bus;
	bool sim;
	unsigned int sim_units;
	const char *print_schema;	/* the role to grant to */
	bool import;
	const char *import_dir;		/* NULL: the state directory */
};

static void usage(FILE *f)
{
	fputs("Usage: smplaserd [OPTION]...\n"
	      "The smplaser laser unit daemon (D-Bus name " SMPL_BUS_NAME ").\n\n"
	      "  -c, --config=FILE     configuration (default " SMPL_CONFIG_PATH ")\n"
	      "  -s, --state-dir=DIR   records database directory\n"
	      "                        (default $STATE_DIRECTORY or " DEFAULT_STATE_DIR ")\n"
	      "      --sim[=N]         N simulated units (default 1)\n"
	      "      --session, --user, --bus=session\n"
	      "                        use the session bus (demo, tests)\n"
	      "      --system, --bus=system\n"
	      "                        use the system bus (default)\n"
	      "      --print-schema[=ROLE]\n"
	      "                        print the SQL that creates the clinic's records on\n"
	      "                        PostgreSQL, with the grants for ROLE (smplaserd)\n"
	      "      --import-records[=DIR]\n"
	      "                        import the SQLite records of DIR (default: the state\n"
	      "                        directory) into the clinic's records ([records]\n"
	      "                        backend = postgresql), once; exit 3 on conflicts\n"
	      "  -h, --help            this help\n"
	      "      --version         the version\n", f);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_SIM = 0x100, OPT_SESSION, OPT_SYSTEM, OPT_BUS, OPT_VERSION, OPT_SCHEMA,
	       OPT_IMPORT };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "sim", optional_argument, NULL, OPT_SIM },
		{ "session", no_argument, NULL, OPT_SESSION },
		{ "user", no_argument, NULL, OPT_SESSION },
		{ "system", no_argument, NULL, OPT_SYSTEM },
		{ "bus", required_argument, NULL, OPT_BUS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "print-schema", optional_argument, NULL, OPT_SCHEMA },
		{ "import-records", optional_argument, NULL, OPT_IMPORT },
		{ NULL, 0, NULL, 0 }
	};
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 's':
			o->state_dir = optarg;
			break;
		case OPT_SIM:
			o->sim = true;
			o->sim_units = 1;
			if (optarg) {
				unsigned long n = strtoul(optarg, &end, 10);

				if (*end || n < 1 || n > 64) {
					fprintf(stderr, "smplaserd: --sim=%s: give 1..64 units\n",
						optarg);
					return -EINVAL;
				}
				o->sim_units = (unsigned int)n;
			}
			break;
		case OPT_SESSION:
			o->session_bus = true;
			break;
		case OPT_SYSTEM:
			o->session_bus = false;
			break;
		case OPT_BUS:
			if (strcmp(optarg, "session") != 0 && strcmp(optarg, "system") != 0) {
				fprintf(stderr, "smplaserd: --bus=%s: give session or system\n",
					optarg);
				return -EINVAL;
			}
			o->session_bus = strcmp(optarg, "session") == 0;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			puts("smplaserd " SMPL_VERSION);
			return 0;
		case OPT_SCHEMA:
			o->print_schema = optarg && *optarg ? optarg : "smplaserd";
			break;
		case OPT_IMPORT:
			o->import = true;
			o->import_dir = optarg && *optarg ? optarg : NULL;
			break;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smplaserd: unexpected argument \"%s\"\n", argv[optind]);
		return -EINVAL;
	}
	return 1;
}

/* $STATE_DIRECTORY may list several directories, separated by ':'. */
static char *state_dir_of(const struct options *o)
{
	const char *env = getenv("STATE_DIRECTORY");

	if (o->state_dir)
		return strdup(o->state_dir);
	if (env && *env)
		return strndup(env, strcspn(env, ":"));
	return strdup(DEFAULT_STATE_DIR);
}

/* Where the configuration in force came from ("<path>: loaded", or not found). */
static char config_source[SMPL_CONFIG_MSG_MAX];

static int load_config(struct smpl_daemon *d, const struct options *o)
{
	char msg[SMPL_CONFIG_MSG_MAX] = "";
	int r = smpl_config_load(&d->cfg, o->config, msg, sizeof(msg));

	/* Simulated treatments must never reach the clinic's records. */
	if (r >= 0 && !o->session_bus)
		r = smpl_config_check_system_bus(&d->cfg, o->config, msg, sizeof(msg));
	if (r >= 0 && !o->session_bus && o->sim && !o->state_dir) {
		snprintf(msg, sizeof(msg), "--sim on the system bus needs its own --state-dir: "
			 "simulated treatments must not go into the clinical records");
		r = -EINVAL;
	}
	if (r < 0) {
		smpl_log(LOG_ERR, NULL, NULL, "config-refused", "configuration refused: %s", msg);
		return r;
	}
	snprintf(config_source, sizeof(config_source), "%s", msg);
	return 0;
}

/* The safety-relevant settings in force, to the journal and the audit trail. */
static void record_config(struct smpl_daemon *d)
{
	char settings[1024], detail[1536];

	smpl_config_describe(&d->cfg, settings, sizeof(settings));
	smpl_log(LOG_INFO, NULL, NULL, "config", "configuration in force (%s): %s",
		 config_source, settings);
	snprintf(detail, sizeof(detail), "smplaserd %s; %s; %s", SMPL_VERSION,
		 config_source, settings);
	smpl_audit(d, STORE_AUDIT_CONFIG_LOAD, NULL, NULL, 0, "start", detail);
}

static int open_records(struct smpl_daemon *d)
{
	char msg[STORE_MSG_MAX] = "";
	int r;

	r = smpl_records_open(d, msg, sizeof(msg));
	if (r < 0) {
		smpl_log(LOG_ERR, NULL, NULL, "store-refused",
			 "cannot open the records database in %s: %s", d->state_dir, msg);
		return r;
	}
	r = smpl_copies_start(d);
	if (r < 0) {
		smpl_log(LOG_ERR, NULL, NULL, "store-refused",
			 "cannot start the records' backups and exports: %s", strerror(-r));
		return r;
	}
	record_config(d);
	return 0;
}

/* --import-records: the workstation's SQLite records into the clinic's. */
static int import_records(struct smpl_daemon *d, const struct options *o)
{
	const struct store_pg_config c = {
		.conninfo = d->cfg.records.conninfo,
		.workstation = d->cfg.records.workstation,
		.clock_skew_ms = (int64_t)d->cfg.safety.rtc_max_skew_s * 1000,
		.cooldown_ms = (int64_t)d->cfg.rules.cooldown_days * SMPL_DAY_MS,
	};
	struct store_pg_import_result res = { 0 };
	char msg[STORE_MSG_MAX] = "";
	const char *dir = o->import_dir ? o->import_dir : d->state_dir;
	int r;

	if (d->cfg.records.backend != SMPL_RECORDS_POSTGRESQL) {
		fprintf(stderr, "smplaserd: --import-records: the configuration's [records] "
			"backend is not postgresql\n");
		return 2;
	}
	r = store_pg_import(&c, dir, stdout, &res, msg, sizeof(msg));
	if (r < 0) {
		fprintf(stderr, "smplaserd: --import-records: %s\n", msg);
		return 1;
	}
	printf("imported from %s as workstation %s: %u units, %u sessions, %u treatments, "
	       "%u pulses, %u clinical records, %u audit records; %u already there; "
	       "%u conflicts\n", dir, c.workstation, res.units, res.sessions, res.treatments,
	       res.pulses, res.clinical, res.audit, res.skipped, res.conflicts);
	return res.conflicts ? 3 : 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	(void)userdata;
	smpl_log(LOG_INFO, NULL, NULL, "stop", "signal %u: stopping", si->ssi_signo);
	return sd_event_exit(sd_event_source_get_event(s), 0);
}

/*
 * Signals whose default would end the daemon without the orderly disarm and
 * close: SIGHUP (a terminal closing, "systemctl reload" has no meaning here),
 * SIGUSR1/2.  They are logged and otherwise ignored; SIGPIPE is ignored
 * (a peer closing its end is an error on that call, never a stop).
 */
static int on_stray_signal(sd_event_source *s, const struct signalfd_siginfo *si,
			   void *userdata)
{
	(void)s, (void)userdata;
	smpl_log(LOG_NOTICE, NULL, NULL, "signal",
		 "signal %u ignored: the configuration is read at start only; "
		 "stop smplaserd with SIGTERM", si->ssi_signo);
	return 0;
}

static int on_flush(sd_event_source *s, uint64_t usec, void *userdata)
{
	smpl_records_flush(userdata);
	(void)usec;
	return sd_event_source_set_time_relative(s, SMPL_FLUSH_PERIOD_MS * 1000ULL);
}

static int setup_event(struct smpl_daemon *d)
{
	sigset_t mask;
	int r;

	r = sd_event_default(&d->event);
	if (r < 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	r = sd_event_add_signal(d->event, NULL, SIGTERM, on_signal, d);
	if (r >= 0)
		r = sd_event_add_signal(d->event, NULL, SIGINT, on_signal, d);
	if (r >= 0)
		r = sd_event_add_signal(d->event, NULL, SIGHUP, on_stray_signal, d);
	if (r >= 0)
		r = sd_event_add_signal(d->event, NULL, SIGUSR1, on_stray_signal, d);
	if (r >= 0)
		r = sd_event_add_signal(d->event, NULL, SIGUSR2, on_stray_signal, d);
	if (r >= 0)
		r = sd_event_set_watchdog(d->event, true);
	if (r >= 0)
		r = sd_event_add_time_relative(d->event, &d->flush_timer, CLOCK_MONOTONIC,
					       SMPL_FLUSH_PERIOD_MS * 1000ULL, 10 * 1000,
					       on_flush, d);
	if (r >= 0)
		r = sd_event_source_set_enabled(d->flush_timer, SD_EVENT_ON);
	return r;
}

/* A refused call is a record too (S6): who asked for what, and why not. */
static void on_polkit_denied(uid_t uid, const char *action, const char *message,
			     void *userdata)
{
	smpl_audit(userdata, STORE_AUDIT_REFUSED, &uid, NULL, 0, "NotAuthorized", message);
	(void)action;	/* named in @message */
}

static int setup_bus(struct smpl_daemon *d)
{
	int r;

	r = smpl_errors_register();
	if (r < 0)
		return r;
	r = d->session_bus ? sd_bus_open_user(&d->bus) : sd_bus_open_system(&d->bus);
	if (r < 0) {
		smpl_log(LOG_ERR, NULL, NULL, "bus", "cannot connect to the %s bus: %s",
			 d->session_bus ? "session" : "system", strerror(-r));
		return r;
	}
	/* Without its bus the daemon is useless: stop (disarming everything). */
	r = sd_bus_set_exit_on_disconnect(d->bus, true);
	if (r < 0)
		return r;
	r = smpl_creds_new(d->bus, &d->creds);
	if (r < 0)
		return r;
	r = smpl_polkit_new(d->bus, !d->session_bus, d->cfg.auth.allow_root,
			    d->cfg.auth.session_bus == SMPL_SESSION_BUS_SAME_UID, &d->polkit);
	if (r < 0)
		return r;
	smpl_polkit_on_denied(d->polkit, on_polkit_denied, d);
	smpl_polkit_set_timeout(d->polkit, d->cfg.auth.polkit_timeout_s);
	r = smpl_bus_setup(d);
	if (r < 0)
		smpl_log(LOG_ERR, NULL, NULL, "bus", "cannot own the name %s: %s",
			 SMPL_BUS_NAME, strerror(-r));
	return r;
}

/* --- real units: discovery's callbacks (daemon/discovery.h) --- */
static struct smpl_discovery *discovery;

static void *on_unit_found(void *userdata, const char *key, struct smpl_backend *b)
{
	struct smpl_daemon *d = userdata;
	struct smpl_unit *u = NULL;
	const char *base = strrchr(key, '/');
	char name[32];

	snprintf(name, sizeof(name), "usb-%s", base ? base + 1 : key);
	return smpl_unit_adopt(d, name, b, &u) < 0 ? NULL : u;
}

static void on_unit_gone(void *userdata, void *handle)
{
	(void)userdata;
	smpl_unit_drop(handle);
}

/* kmod and libusb units, as the config allows; hotplug from now on. */
static int start_discovery(struct smpl_daemon *d)
{
	static const struct smpl_discovery_callbacks cb = {
		.add = on_unit_found,
		.remove = on_unit_gone,
	};
	struct smpl_discovery_config cfg = {
		.kmod = d->cfg.backends.kmod,
		.libusb = d->cfg.backends.libusb,
	};
	int r;

	if (!cfg.kmod && !cfg.libusb)
		return 0;
	r = smpl_discovery_new(d->event, &cfg, &cb, d, &discovery);
	if (r < 0)
		smpl_log(LOG_ERR, NULL, NULL, "discovery", "cannot watch for units: %s",
			 strerror(-r));
	return r;
}

#define PROBE_TIMEOUT_USEC	(10 * 1000 * 1000ULL)

/* A unit that never finishes its self-test does not keep the daemon "probing". */
static int on_probe_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct smpl_daemon *d = userdata;

	(void)s, (void)usec;
	if (strcmp(d->state, "probing") != 0)
		return 0;
	smpl_log(LOG_WARNING, NULL, NULL, "probe",
		 "%u unit(s) still not answering after %llu s; running without them",
		 d->probing, PROBE_TIMEOUT_USEC / 1000000);
	d->state = "running";
	smpl_daemon_changed(d, "State");
	(void)sd_notify(false, "STATUS=Running (some units do not answer)");
	return 0;
}

static int add_units(struct smpl_daemon *d, const struct options *o)
{
	unsigned int n = o->sim ? o->sim_units : (d->cfg.backends.sim ? 1 : 0);
	int r;

	for (unsigned int i = 0; i < n; i++) {
		r = smpl_unit_add_sim(d, i + 1);
		if (r < 0) {
			smpl_log(LOG_ERR, NULL, NULL, "probe", "cannot add simulated unit %u: %s",
				 i + 1, strerror(-r));
			return r;
		}
	}
	if (!o->sim) {
		r = start_discovery(d);
		if (r < 0)
			return r;
	}
	d->state = d->probing ? "probing" : "running";
	if (d->probing)
		return sd_event_add_time_relative(d->event, NULL, CLOCK_MONOTONIC,
						  PROBE_TIMEOUT_USEC, 0, on_probe_timeout, d);
	return 0;
}

/*
 * The records' integrity check (PRAGMA quick_check: every page; seconds with
 * a clinic's ten years) runs after READY=1, in a thread of its own at the
 * lowest CPU and I/O priority, on its own read-only connection.  A failure
 * goes to the loop (smpl_records_corrupt): every unit faulted, nothing
 * arms.
 */
static pthread_t records_check;
static bool records_check_running;

static void *check_records(void *userdata)
{
	struct smpl_daemon *d = userdata;
	char msg[STORE_MSG_MAX] = "";
	struct timespec t0, t1;
	int r;

	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
	/* This thread only (0: the caller); glibc has no wrapper. */
	(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0,
		      IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = store_quick_check(d->state_dir, msg, sizeof(msg));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r == 0)
		smpl_log(LOG_INFO, NULL, NULL, "store-checked",
			 "the records database passed its integrity check (%.1f s)",
			 (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	else if (r != -ECANCELED)
		smpl_records_corrupt(d, msg);
	malloc_trim(0);		/* what the check's arena held goes back (RSS) */
	return NULL;
}

static void start_records_check(struct smpl_daemon *d)
{
	char why[STORE_MSG_MAX];
	int r;

	/* The clinic's database is checked by its server and administrator (amcheck). */
	if (smpl_records_remote(d)) {
		smpl_log(LOG_INFO, NULL, NULL, "store-checked", "the clinic's records on "
			 "PostgreSQL: no integrity check of records.db here (the server's)");
		return;
	}
	r = pthread_create(&records_check, NULL, check_records, d);
	records_check_running = r == 0;
	if (r == 0)
		return;
	snprintf(why, sizeof(why), "cannot start the integrity check of the records: %s",
		 strerror(r));
	smpl_records_corrupt(d, why);
}

static void stop_records_check(void)
{
	if (!records_check_running)
		return;
	store_quick_check_cancel(true);
	pthread_join(records_check, NULL);
	records_check_running = false;
}

static void shutdown_daemon(struct smpl_daemon *d)
{
	stop_records_check();
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Stopping: disarming every unit");
	smpl_daemon_stop(d);
	smpl_discovery_free(discovery);
	smpl_daemon_free(d);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct smpl_daemon d = { .state = "starting" };
	int r;

	smpl_log_init();
	smpl_daemon_setup(&d);
	r = parse_options(argc, argv, &o);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	if (o.print_schema) {
		store_pg_print_schema(stdout, o.print_schema);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	d.session_bus = o.session_bus;
	d.state_dir = state_dir_of(&o);
	if (!d.state_dir)
		return 1;
	if (load_config(&d, &o) < 0) {
		free(d.state_dir);
		return 1;
	}
	if (o.import) {
		r = import_records(&d, &o);
		free(d.state_dir);
		return r;
	}
	r = setup_event(&d);
	if (r >= 0)
		r = smpl_records_watch_check(&d);
	if (r >= 0)
		r = open_records(&d);
	if (r < 0) {
		smpl_daemon_free(&d);
		return 1;
	}
	r = setup_bus(&d);
	if (r >= 0)
		r = add_units(&d, &o);
	if (r < 0) {
		shutdown_daemon(&d);
		return 1;
	}
	smpl_log(LOG_INFO, NULL, NULL, "start", "smplaserd %s on the %s bus, records in %s%s",
		 SMPL_VERSION, d.session_bus ? "session" : "system",
		 smpl_records_remote(&d) ? "the clinic's database as workstation " : "",
		 d.rec_ops->where(d.rec_w));
	(void)sd_notifyf(false, "READY=1\nSTATUS=%s",
			 d.probing ? "Probing units..." : "Running");
	start_records_check(&d);
	r = sd_event_loop(d.event);	/* the exit code: 0 on a signal, 1 if the bus went away */
	shutdown_daemon(&d);
	return r < 0 ? 1 : r;
}
