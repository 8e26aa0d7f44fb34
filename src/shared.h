/*
 * shared.h
 *		State shared between backends and the background worker: where to wake
 *		the worker, what it is doing, and a condition variable that waiters of
 *		sandbox.wait() sleep on.
 */
#ifndef SB_SHARED_H
#define SB_SHARED_H

#include "cloudrun_sandbox.h"

#include "storage/condition_variable.h"
#include "storage/spin.h"

typedef struct SbShared
{
	slock_t		mutex;
	int			worker_pgprocno;	/* -1 when no worker runs */
	pid_t		worker_pid;
	TimestampTz worker_started_at;
	int			in_flight[2];	/* by SbBackend */
	int64		completed;
	int64		cancel_seq;		/* bumped when a sandbox.cancel() commits: the worker looks */
	int64		wake_seq;		/* bumped by every sb_wake_worker(): there is new work */
	int64		roles_seq;		/* bumped when a DROP ROLE commits: the worker sweeps */
	TimestampTz last_error_at;
	char		last_error[256];
	ConditionVariable completion_cv;	/* broadcast after each batch of completions */
} SbShared;

extern SbShared *sb_shared;
extern bool sb_preloaded;

extern void sb_shared_init_hooks(void);
extern void sb_require_worker_library(void);
extern void sb_wake_worker_at_commit(void);
extern void sb_cancel_at_commit(void);
extern void sb_roles_changed_at_commit(void);
extern void sb_wake_worker(void);
extern void sb_shared_set_error(const char *message);
extern void sb_register_worker(void);

#endif							/* SB_SHARED_H */
