/* SPDX-License-Identifier: MIT */
/*
 * libpq, loaded when the clinic's PostgreSQL records are configured, and not
 * before (systemd's pattern for optional libraries): a workstation that keeps
 * its records in SQLite never maps libpq and what it pulls in (OpenSSL,
 * Kerberos, LDAP, GnuTLS: 6 MiB of the daemon's resident memory).
 *
 * The PostgreSQL code calls sym_PQ...(): each is NULL until pq_dlopen() has
 * succeeded, which every entry point of store-pg.c calls first.
 */
#ifndef SMPLASER_PQ_DLOPEN_H
#define SMPLASER_PQ_DLOPEN_H

#include <stddef.h>

#include <libpq-fe.h>

#define PQ_SYMBOLS(X) \
	X(PQclear) X(PQcmdTuples) X(PQconnectdb) X(PQconnectdbParams) X(PQconninfoFree) \
	X(PQconninfoParse) X(PQconsumeInput) X(PQerrorMessage) X(PQexecParams) X(PQfinish) \
	X(PQfreemem) X(PQgetResult) X(PQgetisnull) X(PQgetvalue) X(PQisBusy) X(PQntuples) \
	X(PQresultErrorField) X(PQresultStatus) X(PQsendQuery) X(PQsendQueryParams) \
	X(PQsocket) X(PQstatus) X(PQtransactionStatus)

#define PQ_DECLARE_SYMBOL(name) extern __typeof__(name) *sym_##name;
PQ_SYMBOLS(PQ_DECLARE_SYMBOL)
#undef PQ_DECLARE_SYMBOL

/* The library's file name, as the Debian package libpq5 installs it. */
#define PQ_LIBRARY "libpq.so.5"

/*
 * Loads libpq once (thread-safe); 0, or a negative errno with the reason in
 * @msg (the library is missing: "install libpq5").
 */
int pq_dlopen(char *msg, size_t msg_len);

#endif
