/*
 * shared.h
 *		State shared between backends and the background worker: where to wake
 *		the worker, what it is doing, the last errors (each role's own), and a
 *		condition variable that waiters of sandbox.wait() sleep on.
 */
#ifndef SB_SHARED_H
#define SB_SHARED_H

#include "cloudrun_sandbox.h"

#include "storage/condition_variable.h"
#include "storage/spin.h"

/* One recorded error: whose it is (InvalidOid: the worker's own), when, what. */
typedef struct SbRoleError
{
	Oid			role;
	TimestampTz at;
	char		message[256];
} SbRoleError;

/* How many roles' last errors are kept; the role whose error is oldest makes room. */
#define SB_ROLE_ERRORS 32

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
	SbRoleError last_error;		/* the newest error of all: what a superuser sees */
	SbRoleError role_errors[SB_ROLE_ERRORS];	/* each role's newest: what that role sees */
	ConditionVariable completion_cv;	/* broadcast after each batch of completions */
	TimestampTz last_retention_prune;	/* history_retention's last prune, by anyone */
} SbShared;

extern SbShared *sb_shared;
extern bool sb_preloaded;

extern void sb_shared_init_hooks(void);
extern void sb_require_worker_library(void);
extern void sb_wake_worker_at_commit(void);
extern void sb_cancel_at_commit(void);
extern void sb_roles_changed_at_commit(void);
extern void sb_wake_worker(void);
extern void sb_set_worker_latch(void);
extern void sb_shared_set_error(const char *message);
extern void sb_shared_set_role_error(Oid role, const char *message);
extern bool sb_shared_get_error(Oid viewer, bool all, SbRoleError *error);
extern void sb_register_worker(void);

struct BackgroundWorker;
extern void sb_dynamic_worker(struct BackgroundWorker *w, const char *function, const char *type,
							  const void *extra, size_t extra_len);

#endif							/* SB_SHARED_H */
