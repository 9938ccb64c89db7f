// SPDX-License-Identifier: MIT
/* libpq loaded on demand: see pq-dlopen.h. */
#include "pq-dlopen.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#define PQ_DEFINE_SYMBOL(name) __typeof__(name) *sym_##name;
PQ_SYMBOLS(PQ_DEFINE_SYMBOL)
#undef PQ_DEFINE_SYMBOL

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_error;
static char load_why[256];

/* Every symbol or none: a partial set is never published. */
static int resolve(void *dl)
{
	const char *missing = NULL;

#define PQ_RESOLVE(name) \
	if (!missing && !dlsym(dl, #name)) \
		missing = #name;
	PQ_SYMBOLS(PQ_RESOLVE)
#undef PQ_RESOLVE
	if (missing) {
		snprintf(load_why, sizeof(load_why), "%s has no %s (too old a libpq?)",
			 PQ_LIBRARY, missing);
		return -ELIBBAD;
	}
#define PQ_PUBLISH(name) sym_##name = (__typeof__(name) *)dlsym(dl, #name);
	PQ_SYMBOLS(PQ_PUBLISH)
#undef PQ_PUBLISH
	return 0;
}

static void load(void)
{
	void *dl = dlopen(PQ_LIBRARY, RTLD_NOW | RTLD_NODELETE);

	if (!dl) {
		snprintf(load_why, sizeof(load_why),
			 "the PostgreSQL records need %s, which cannot be loaded (install the "
			 "libpq5 package): %s", PQ_LIBRARY, dlerror());
		load_error = -ELIBACC;
		return;
	}
	load_error = resolve(dl);
	if (load_error)
		dlclose(dl);
}

int pq_dlopen(char *msg, size_t msg_len)
{
	pthread_once(&load_once, load);
	if (load_error && msg && msg_len)
		snprintf(msg, msg_len, "%s", load_why);
	return load_error;
}
