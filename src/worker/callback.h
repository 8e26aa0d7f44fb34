/*
 * callback.h
 *		Callbacks of finished executions, each run in a process of its own
 *		connected as its role (see callback.c).
 */
#ifndef SB_WORKER_CALLBACK_H
#define SB_WORKER_CALLBACK_H

#include "postgres.h"

#include "fmgr.h"

/* Settings: cloudrun_sandbox.callback_timeout and .max_callback_workers. */
extern int	sb_callback_timeout_s;
extern int	sb_max_callback_workers;
extern void sb_callbacks_define_settings(void);

/* In the background worker's loop; none of these waits for a callback. */
extern void sb_callbacks_wake(void);
extern void sb_callbacks_tick(void);
extern long sb_callbacks_due(void);

/* The callback process's entry point (bgw_function_name). */
extern PGDLLEXPORT void sb_callback_main(Datum arg);

#endif							/* SB_WORKER_CALLBACK_H */
