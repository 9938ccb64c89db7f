/* SPDX-License-Identifier: MIT */
/*
 * smplaser-gadget: the firmware model (sim/model.h) behind FunctionFS, so a
 * Linux USB host (dummy_hcd in the VM tests) sees a real smplaser unit.
 *
 *   gadget.c       main, options, the threads that move frames between the
 *                  endpoint files and the model
 *   gadget-usb.c   configfs gadget, functionfs mount, descriptors, UDC
 *   gadget-ctl.c   the test-control socket (server and --ctl client), nv file
 */
#ifndef SMPLASER_SIM_GADGET_H
#define SMPLASER_SIM_GADGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <smplaser/proto.h>
#include "model.h"

#define GADGET_REPLY_MAX	(SMPL_MAX_FRAME + 16)	/* room for OVERSIZE */
#define GADGET_QUEUE_LEN	8

/* One reply for bulk IN: a frame, or len < 0 to halt the endpoint. */
struct gadget_reply {
	int len;
	uint64_t send_at_ms;		/* not before (control "late") */
	uint8_t buf[GADGET_REPLY_MAX];
};

/*
 * A broken front end, below the model (control commands "reports" and
 * "disarm-request"; tests/vm/README.md).
 */
enum gadget_reports {
	GADGET_REPORTS_NORMAL,
	GADGET_REPORTS_SILENT,		/* the interrupt endpoint sends nothing */
	GADGET_REPORTS_GARBAGE,		/* every report with a bad CRC */
	GADGET_REPORTS_STALL,		/* halt the interrupt endpoint once */
};

enum gadget_disarm_request {
	GADGET_DISARM_NORMAL,		/* obeyed and acknowledged */
	GADGET_DISARM_STALL,		/* stalled, not obeyed */
	GADGET_DISARM_HANG,		/* never answered, not obeyed; ep0 wedged */
	GADGET_DISARM_IGNORE,		/* acknowledged, not obeyed */
};

struct gadget_usb {
	const char *name;		/* gadget, function instance: "smplaser" */
	const char *configfs;		/* "/sys/kernel/config" */
	const char *ffs_dir;		/* functionfs mount point */
	char udc[256];			/* UDC to bind to; "" = the first one */
	char gadget_dir[256];		/* <configfs>/usb_gadget/<name> */
	const char *serial;		/* USB iSerialNumber */
	bool mounted;
	int ep0, ep_out, ep_in, ep_int;	/* FunctionFS files, -1 if closed */
};

struct gadget {
	/* Options */
	const char *socket_path;
	const char *nv_path;
	bool verbose;
	struct smpl_model_config cfg;
	struct gadget_usb usb;

	/* Everything below is guarded by lock. */
	pthread_mutex_t lock;
	pthread_cond_t changed;		/* model or USB state changed */
	struct smpl_model *model;
	bool quit;
	bool powered;
	bool plugged;			/* bound to the UDC */
	bool enabled;			/* host configured us (FUNCTIONFS_ENABLE) */
	uint8_t last_state;
	uint64_t state_changed_ns;	/* CLOCK_MONOTONIC of the last state change */
	uint32_t saved_shots;		/* shot count last written to nv_path */
	struct gadget_reply queue[GADGET_QUEUE_LEN];
	unsigned int queue_head, queue_count;
	unsigned int queue_gen;		/* +1 on every flush */
	unsigned long commands, replies, stalls, reports, setups, disarms;
	unsigned long disconnects;	/* times the host went away */
	bool report_in_flight;		/* an interrupt IN write() the host has not read */

	/* Front-end misbehaviour, from the control socket. */
	uint32_t late_ms;		/* "late MS COUNT": replies sent late */
	unsigned int late_count;
	uint32_t slow_ms;		/* "slow MS COUNT": commands held back */
	unsigned int slow_count;
	unsigned int deaf_count;	/* "deaf COUNT": commands dropped */
	enum gadget_reports reports_mode;
	enum gadget_disarm_request disarm_mode;
	unsigned long commands_dropped;	/* by "deaf" */
	unsigned long disarm_requests;	/* SMPL_REQ_DISARM seen, obeyed or not */
};

/* Clocks */
uint64_t gadget_now_ms(void);
uint64_t gadget_now_ns(void);

/* Shutdown: set by "quit", SIGTERM or SIGINT. */
bool gadget_stopping(void);
void gadget_request_stop(void);

/* Unplug/replug the cable (unbind/bind the UDC), and power the unit off/on
 * (off also drops it off the bus).  0 or -errno. */
int gadget_set_plugged(struct gadget *g, bool plugged);
int gadget_set_power(struct gadget *g, bool on);

/* Call with lock held after anything that may change the model's state. */
void gadget_note_state(struct gadget *g);
/* Drop queued replies (bus reset, unplug).  Lock held. */
void gadget_flush_replies(struct gadget *g);

/* gadget-usb.c: setup and teardown; 0 or -errno, with a message on stderr. */
int gadget_usb_setup(struct gadget_usb *u);
int gadget_usb_open_endpoints(struct gadget_usb *u);
int gadget_usb_bind(struct gadget_usb *u);	/* write the UDC name */
int gadget_usb_unbind(struct gadget_usb *u);	/* write "" to UDC */
void gadget_usb_teardown(struct gadget_usb *u);

/* gadget-ctl.c */
/* @ts = CLOCK_MONOTONIC now + @ms: a deadline for g->changed. */
void gadget_deadline(struct timespec *ts, uint64_t ms);
int gadget_ctl_listen(const char *path);		/* fd or -1 */
void gadget_ctl_serve(struct gadget *g, int listen_fd);	/* until quit */
/* Run one control line (modified in place); the reply line, no newline. */
void gadget_ctl_run_line(struct gadget *g, char *line, char *out, size_t size);
int gadget_ctl_client(const char *path, int argc, char **argv);	/* exit status */
int gadget_nv_load(const char *path, struct smpl_model_nv *nv);
int gadget_nv_save(const char *path, const struct smpl_model_nv *nv);

#endif /* SMPLASER_SIM_GADGET_H */
