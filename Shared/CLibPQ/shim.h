#ifndef CANDLECAST_CLIBPQ_SHIM_H
#define CANDLECAST_CLIBPQ_SHIM_H

#include <libpq-fe.h>

// Character-literal macros from postgres_ext.h do not import into Swift.
static const int CANDLECAST_PG_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int CANDLECAST_PG_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int CANDLECAST_PG_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;

// Keeps NOTICE and WARNING messages off stderr: services log what matters themselves.
static void candlecast_pq_ignore_notice(void *arg, const char *message) { (void)arg; (void)message; }
static inline void candlecast_pq_silence_notices(PGconn *connection) {
    PQsetNoticeProcessor(connection, candlecast_pq_ignore_notice, 0);
}

#endif
