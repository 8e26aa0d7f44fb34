/*
 * complete.h
 *		Recording finished flights (see complete.c).
 */
#ifndef SB_WORKER_COMPLETE_H
#define SB_WORKER_COMPLETE_H

#include "worker/flight.h"

extern void apply_cancels(void);
extern void complete_finished(List **done);
extern void after_commit(List *done);
extern long sb_history_tick(void);

#endif							/* SB_WORKER_COMPLETE_H */
