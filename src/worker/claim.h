/*
 * claim.h
 *		Claiming queued executions for the background worker (see claim.c).
 */
#ifndef SB_WORKER_CLAIM_H
#define SB_WORKER_CLAIM_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* Set when a claim skipped a session that a synchronous exec held: retry soon. */
extern bool sessions_blocked;
/* The earliest time a retry waits for (0: none known): the loop looks at the queue then. */
extern TimestampTz retry_due_at;

extern void claim(List **claimed, List *recorded);

#endif							/* SB_WORKER_CLAIM_H */
