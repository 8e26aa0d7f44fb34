/*
 * claim.h
 *		Claiming queued executions for the background worker (see claim.c).
 */
#ifndef SB_WORKER_CLAIM_H
#define SB_WORKER_CLAIM_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* Set when a claim skipped a session that a synchronous exec held: retry soon. */
extern bool sessions_blocked;

extern void claim(List **claimed);

#endif							/* SB_WORKER_CLAIM_H */
