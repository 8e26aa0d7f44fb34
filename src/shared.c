/*
 * shared.c
 *		Shared memory of the extension (needs shared_preload_libraries) and
 *		waking the background worker when a transaction that queued work
 *		commits, so the worker never polls.
 */
#include "shared.h"
#include "local/warm.h"
#include "cloud/runners.h"

#include "access/xact.h"
#include "postmaster/bgworker.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"

SbShared   *sb_shared = NULL;
bool		sb_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_registered = false;
static bool wake_pending = false;
static bool cancel_pending = false;
static bool roles_pending = false;

/* shmem_request asks the postmaster for our shared memory. */
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SbShared)));
	sb_warm_shmem_request();
	sb_runners_shmem_request();
}

/* shmem_startup creates or attaches the shared state. */
static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sb_shared = ShmemInitStruct("cloudrun_sandbox", sizeof(SbShared), &found);
	if (!found)
	{
		memset(sb_shared, 0, sizeof(SbShared));
		SpinLockInit(&sb_shared->mutex);
		sb_shared->worker_pgprocno = -1;
		ConditionVariableInit(&sb_shared->completion_cv);
	}
	sb_warm_shmem_startup();
	sb_runners_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/* sb_shared_init_hooks installs the hooks; called from _PG_init while preloading. */
void
sb_shared_init_hooks(void)
{
	sb_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/* sb_require_worker_library raises a clear error when the library was not preloaded. */
void
sb_require_worker_library(void)
{
	if (sb_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cloudrun_sandbox background worker is not running"),
				 errdetail("sandbox.submit() and friends need the library in "
						   "shared_preload_libraries."),
				 errhint("Add cloudrun_sandbox to shared_preload_libraries in postgresql.conf "
						 "and restart the server.")));
}

/* set_worker_latch sets the worker's latch; with new_work, it also counts a wake-up. */
static void
set_worker_latch(bool new_work)
{
	int			procno;

	if (sb_shared == NULL)
		return;
	SpinLockAcquire(&sb_shared->mutex);
	procno = sb_shared->worker_pgprocno;
	if (new_work)
		sb_shared->wake_seq++;
	SpinLockRelease(&sb_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* sb_wake_worker sets the worker's latch now: there is new work. */
void
sb_wake_worker(void)
{
	set_worker_latch(true);
}

/*
 * sb_set_worker_latch sets the worker's latch without telling it of new
 * queued work (the warm pool's requests: src/local/warm_client.c).
 */
void
sb_set_worker_latch(void)
{
	set_worker_latch(false);
}

/* wake_xact_callback wakes the worker once the queuing transaction has committed. */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	if (!wake_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		/*
		 * Only now are the cancel flags visible: a worker that looked before
		 * must look again.
		 */
		if (cancel_pending || roles_pending)
		{
			SpinLockAcquire(&sb_shared->mutex);
			if (cancel_pending)
				sb_shared->cancel_seq++;
			if (roles_pending)
				sb_shared->roles_seq++;
			SpinLockRelease(&sb_shared->mutex);
		}
		sb_wake_worker();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = cancel_pending = roles_pending = false;
}

/* sb_wake_worker_at_commit arranges one wake-up at the end of this transaction, if it commits. */
void
sb_wake_worker_at_commit(void)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_registered = true;
	}
	wake_pending = true;
}

/* sb_cancel_at_commit tells the worker, once this transaction commits, to look for cancels. */
void
sb_cancel_at_commit(void)
{
	sb_wake_worker_at_commit();
	cancel_pending = true;
}

/* sb_roles_changed_at_commit tells the worker, once this transaction commits, that roles were dropped. */
void
sb_roles_changed_at_commit(void)
{
	sb_wake_worker_at_commit();
	roles_pending = true;
}

/*
 * sb_shared_set_error records an error of the worker's own, not of any role's
 * work, for sandbox.worker_status(): only superusers see it.
 */
void
sb_shared_set_error(const char *message)
{
	sb_shared_set_role_error(InvalidOid, message);
}

/*
 * sb_shared_set_role_error records an error of a role's work (an execution,
 * a callback) for sandbox.worker_status(): that role and superusers see it,
 * no other role does.
 */
void
sb_shared_set_role_error(Oid role, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();
	SbRoleError *slot = NULL;

	if (sb_shared == NULL)
		return;
	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->last_error.role = role;
	sb_shared->last_error.at = now;
	strlcpy(sb_shared->last_error.message, message, sizeof(sb_shared->last_error.message));
	if (OidIsValid(role))
	{
		/* The role's own slot, or else the one whose error is oldest. */
		for (int i = 0; i < SB_ROLE_ERRORS; i++)
		{
			SbRoleError *e = &sb_shared->role_errors[i];

			if (e->role == role)
			{
				slot = e;
				break;
			}
			if (slot == NULL || e->at < slot->at)
				slot = e;
		}
		slot->role = role;
		slot->at = now;
		strlcpy(slot->message, message, sizeof(slot->message));
	}
	SpinLockRelease(&sb_shared->mutex);
}

/*
 * sb_shared_get_error copies the newest error viewer may see: with all (a
 * superuser), the newest of all; otherwise viewer's own.  False if none.
 */
bool
sb_shared_get_error(Oid viewer, bool all, SbRoleError *error)
{
	bool		found = false;

	memset(error, 0, sizeof(*error));
	if (sb_shared == NULL)
		return false;
	SpinLockAcquire(&sb_shared->mutex);
	if (all)
	{
		*error = sb_shared->last_error;
		found = error->at != 0;
	}
	else if (OidIsValid(viewer))
	{
		for (int i = 0; i < SB_ROLE_ERRORS && !found; i++)
		{
			if (sb_shared->role_errors[i].role == viewer && sb_shared->role_errors[i].at != 0)
			{
				*error = sb_shared->role_errors[i];
				found = true;
			}
		}
	}
	SpinLockRelease(&sb_shared->mutex);
	return found;
}

/*
 * sb_dynamic_worker fills w for a short-lived process of this library with a
 * database connection (a callback, a reaper): never restarted, its
 * arguments in bgw_extra.
 */
void
sb_dynamic_worker(BackgroundWorker *w, const char *function, const char *type,
				  const void *extra, size_t extra_len)
{
	Assert(extra_len <= BGW_EXTRALEN);
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(w->bgw_library_name, "cloudrun_sandbox", BGW_MAXLEN);
	strlcpy(w->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(w->bgw_name, type, BGW_MAXLEN);
	strlcpy(w->bgw_type, type, BGW_MAXLEN);
	memcpy(w->bgw_extra, extra, extra_len);
}
