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

#endif							/* SB_WORKER_COMPLETE_H */
