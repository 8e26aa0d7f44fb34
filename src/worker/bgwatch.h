/*
 * bgwatch.h
 *		The background processes the worker starts and watches (see
 *		bgwatch.c); the SQL functions for them are in src/background.c.
 */
#ifndef SB_WORKER_BGWATCH_H
#define SB_WORKER_BGWATCH_H

#include "cloudrun_sandbox.h"

#include "storage/latch.h"

extern bool bg_start(void);
extern void bg_reap(void);
extern void bg_recover(void);
extern void bg_stop_all(void);
extern void bg_wait_events(WaitEventSet *set, int *nfds, int max_fds, long *timeout);

#endif							/* SB_WORKER_BGWATCH_H */
