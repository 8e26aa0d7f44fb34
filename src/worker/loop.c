/*
 * loop.c
 *		The background worker's loop: runs queued executions (sandbox.submit)
 *		on either backend, many sessions at once, one execution per session at
 *		a time in submission order, and survives crashes and restarts.
 *
 * One loop, woken by its latch (set when a transaction that queued or
 * cancelled work commits), by the pipes of local sandboxes, by the sockets of
 * the cloud result lookups in progress (curl multi, see driver_cloudrun.c),
 * or by a timer (the next lookup of a cloud result, an idle warm sandbox to
 * stop); with nothing queued it sleeps and issues no queries.  Each turn
 * advances every flight (flight.c's state machine), records those that
 * finished and claims new ones (complete.c, claim.c) in one short
 * transaction, starts and reaps background processes (bgwatch.c), and ticks
 * the callbacks (callback.c).  Each state change is its own short
 * transaction: queued -> launching (committed before any launch) -> running
 * (committed after it, with the remote execution's name) -> finished.  No
 * transaction is held across I/O.  While an execution is in flight the
 * worker holds its session's advisory lock at session level, which
 * sandbox.exec() also takes, so a session never runs two things at once.
 */
#include "cloudrun_sandbox.h"
#include "local/warm.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "local/cgroup.h"
#include "roles.h"
#include "shared.h"
#include "worker/bgwatch.h"
#include "worker/callback.h"
#include "worker/reaper.h"
#include "worker/claim.h"
#include "worker/complete.h"
#include "worker/flight.h"
#include "worker/recover.h"
#include "worker/xact.h"

PGDLLEXPORT void sb_worker_main(Datum arg);

/* Retry a claim this soon when a session was busy with a synchronous exec. */
#define BLOCKED_RETRY_MS 200
#define MAX_WAIT_FDS 256

/*
 * The extension the worker serves (its OID), to notice it being dropped or
 * dropped and made again; and whether, without it, its background
 * processes have been stopped.
 */
static Oid	served_extension = InvalidOid;
static bool stopped_without_extension = false;
static object_access_hook_type prev_object_access_hook = NULL;

/*
 * Set when someone woke the worker (a transaction queued, cancelled or
 * started something: sb_shared->wake_seq moved) and at start: only then, or
 * when a flight finished, can there be anything new to claim or start, so
 * only then does the loop look at the queue.
 */
static bool woken = true;
static int64 wake_seen = -1;

/* note_wakes sets woken if sb_wake_worker() was called since the last look. */
static void
note_wakes(void)
{
	int64		seq;

	SpinLockAcquire(&sb_shared->mutex);
	seq = sb_shared->wake_seq;
	SpinLockRelease(&sb_shared->mutex);
	if (seq != wake_seen)
		woken = true;
	wake_seen = seq;
}

static MemoryContext LoopContext = NULL;

/* Recovery left executions whose rows were locked; a step failed: look again soon. */
static bool recovery_left = false;
static bool retry_soon = false;

/*
 * extension_oid returns the extension's OID in the worker's database, or
 * InvalidOid; *ready says whether it is at the version this library serves
 * (an older one waits for ALTER EXTENSION ... UPDATE; the worker says so once).
 */
static Oid
extension_oid(bool *ready)
{
	static bool warned = false;
	Oid			ext;
	MemoryContext cxt = CurrentMemoryContext;

	*ready = false;
	StartTransactionCommand();
	ext = get_extension_oid("cloudrun_sandbox", true);
	if (OidIsValid(ext))
	{
		char	   *version = NULL;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
						"WHERE extname = 'cloudrun_sandbox'", true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		*ready = version != NULL && strcmp(version, SB_EXTENSION_VERSION) == 0;
		if (!*ready && !warned)
			ereport(LOG,
					(errmsg("cloudrun_sandbox worker waits: the extension is at version %s, "
							"this library serves %s", version ? version : "?",
							SB_EXTENSION_VERSION),
					 errhint("Run ALTER EXTENSION cloudrun_sandbox UPDATE.")));
		warned = !*ready;
		PopActiveSnapshot();
		SPI_finish();
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return ext;
}

/* A sweep of dropped roles' sessions that found one locked is tried again this much later. */
#define SWEEP_RETRY_MS 5000
static TimestampTz sweep_retry_at = 0;	/* 0: no sweep to try again */

/*
 * sweep_roles removes the sessions of dropped roles once a DROP ROLE has
 * committed (and at start).  It waits for no lock (a transaction of the
 * dropped role may still be open): a failure is logged and tried again a few
 * seconds later.
 */
static void
sweep_roles(void)
{
	static int64 roles_seen = -1;
	int64		seq;
	MemoryContext cxt = CurrentMemoryContext;

	SpinLockAcquire(&sb_shared->mutex);
	seq = sb_shared->roles_seq;
	SpinLockRelease(&sb_shared->mutex);
	if (seq == roles_seen || GetCurrentTimestamp() < sweep_retry_at)
		return;
	roles_seen = seq;
	begin("cloudrun_sandbox: sessions of dropped roles");
	PG_TRY();
	{
		/* Its row locks are taken as if with NOWAIT (roles.c waits otherwise). */
		(void) set_config_option("lock_timeout", "1", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		(void) sb_sweep_dropped_roles();
		commit();
		sweep_retry_at = 0;
	}
	PG_CATCH();
	{
		char	   *msg = caught(cxt);

		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(WARNING,
				(errmsg("cloudrun_sandbox: could not remove the sessions of dropped roles; "
						"trying again in a few seconds: %s", msg)));
		roles_seen = -1;
		sweep_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SWEEP_RETRY_MS);
	}
	PG_END_TRY();
}

/* wait_for_work sleeps until the latch, a sandbox's pipe or a timer wakes us. */
static void
wait_for_work(void)
{
	WaitEventSet *set;
	WaitEvent	events[MAX_WAIT_FDS + 2];
	int			nfds = 0;
	long		timeout = -1;
	bool		any_polled = false;
	long		poll_due = -1;
	long		warm_due;
	long		callback_due;
	ListCell   *lc;

	set = CreateWaitEventSet(CurrentMemoryContext, MAX_WAIT_FDS + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	foreach(lc, flights)
	{
		WorkerFlight *f = lfirst(lc);
		int			fds[8];
		int			n;

		if (f->state == FLIGHT_FINISHED)
		{
			/* Due now, or waiting for a user's lock: try again soon. */
			long		due = Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), f->retry_at));

			timeout = timeout < 0 ? due : Min(timeout, due);
			continue;
		}
		if (f->state == FLIGHT_LAUNCHED)
			timeout = timeout < 0 ? SB_RETRY_LOCKED_MS : Min(timeout, SB_RETRY_LOCKED_MS);
		if (f->state != FLIGHT_RUNNING && f->state != FLIGHT_LAUNCHED &&
			f->state != FLIGHT_LAUNCHING)
			continue;
		n = f->driver->wait_fds(f->run, fds, lengthof(fds));
		if (n == 0)
		{
			long		due = Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), f->next_poll));

			any_polled = true;
			poll_due = poll_due < 0 ? due : Min(poll_due, due);
		}
		for (int i = 0; i < n && nfds < MAX_WAIT_FDS; i++, nfds++)
			AddWaitEventToSet(set, WL_SOCKET_READABLE, fds[i], NULL, NULL);
		if (nfds >= MAX_WAIT_FDS)
			any_polled = true;
	}
	bg_wait_events(set, &nfds, MAX_WAIT_FDS, &timeout);
	if (flights != NIL && timeout != 0)
	{
		long		due = any_polled ? Max(poll_due, 1) : 1000;

		timeout = timeout < 0 ? due : Min(timeout, due);
	}
	if (sessions_blocked && (timeout < 0 || timeout > BLOCKED_RETRY_MS))
		timeout = BLOCKED_RETRY_MS;
	if ((recovery_left || retry_soon) && (timeout < 0 || timeout > SB_RETRY_LOCKED_MS))
		timeout = SB_RETRY_LOCKED_MS;
	/* A retry waiting for its time (claim.c): the queue is looked at then. */
	if (retry_due_at != 0)
	{
		long		due = Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), retry_due_at));

		timeout = timeout < 0 ? due : Min(timeout, due);
	}
	if (sweep_retry_at != 0)
	{
		long		due = Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), sweep_retry_at));

		timeout = timeout < 0 ? due : Min(timeout, due);
	}
	retry_soon = false;
	/* The sockets of the cloud result lookups in progress. */
	{
		SbHttpWaitFd hfds[MAX_WAIT_FDS];
		long		http_due = -1;
		int			n = sb_cloud_wait_fds(hfds, MAX_WAIT_FDS - nfds, &http_due);

		for (int i = 0; i < n; i++, nfds++)
			AddWaitEventToSet(set, (hfds[i].readable ? WL_SOCKET_READABLE : 0) |
							  (hfds[i].writable ? WL_SOCKET_WRITEABLE : 0),
							  hfds[i].fd, NULL, NULL);
		if (http_due >= 0 && (timeout < 0 || http_due < timeout))
			timeout = http_due;
	}
	/* Idle warm sandboxes are stopped on time; with none, no timer. */
	warm_due = sb_warm_owner_tick();
	if (warm_due >= 0 && (timeout < 0 || warm_due < timeout))
		timeout = warm_due;
	callback_due = sb_callbacks_due();
	if (callback_due >= 0 && (timeout < 0 || callback_due < timeout))
		timeout = callback_due;

	/*
	 * A wake-up that came after this turn's note_wakes() may have had its
	 * latch reset already (by a lock wait of one of our queries, say): the
	 * counter still shows it, so do not sleep on it.
	 */
	SpinLockAcquire(&sb_shared->mutex);
	if (sb_shared->wake_seq != wake_seen)
		timeout = 0;
	SpinLockRelease(&sb_shared->mutex);
	/* This turn left something to look at (see the loop): no sleep. */
	if (woken)
		timeout = 0;
	(void) WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	ResetLatch(MyLatch);
}

/*
 * finish_and_claim is one transaction: requested cancels, what recovery left,
 * the finished flights that are due and (with claimed) new flights, appended
 * to *claimed.  Returns the flights it recorded, for after_commit().  Any
 * error in it (a lock wait that timed out: the safety net) rolls it all back
 * and is tried again at a later turn: the finished flights stay in memory,
 * the claimed ones are let go (their rows are queued again by the rollback).
 */
static List *
finish_and_claim(bool claiming, List **claimed)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile done = NIL;
	List	   *volatile took = NIL;

	PG_TRY();
	{
		List	   *d = NIL;
		List	   *c = NIL;

		begin(claiming ? "cloudrun_sandbox: finish and claim" : "cloudrun_sandbox: finish");
		apply_cancels();
		recovery_left = recover_pending();
		PG_TRY();
		{
			complete_finished(&d);
			if (claiming)
				claim(&c, d);
		}
		PG_FINALLY();
		{
			done = d;
			took = c;
		}
		PG_END_TRY();
		commit();
		recover_committed();
	}
	PG_CATCH();
	{
		char	   *msg = caught(cxt);
		ListCell   *lc;

		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		ereport(WARNING,
				(errmsg("cloudrun_sandbox worker: could not record finished executions; "
						"trying again: %s", msg)));
		foreach(lc, took)
		{
			WorkerFlight *f = lfirst(lc);

			if (f->failure == NULL)
				(void) session_lock(f->session_id, false);
			MemoryContextDelete(f->cxt);
		}
		list_free(took);
		list_free(done);
		done = took = NIL;
		retry_soon = true;
		woken = true;			/* what it let go is queued again */
	}
	PG_END_TRY();
	if (claimed != NULL)
		*claimed = took;
	return done;
}

/* worker_exit clears the worker's entry in shared memory. */
static void
worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->worker_pgprocno = -1;
	sb_shared->worker_pid = 0;
	sb_shared->in_flight[0] = sb_shared->in_flight[1] = 0;
	SpinLockRelease(&sb_shared->mutex);
	sb_warm_owner_stop();
}

void
sb_worker_main(Datum arg)
{
	bool		recovered = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(sb_worker_database, NULL, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "cloudrun_sandbox worker", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("cloudrun_sandbox worker");
	/*
	 * The worker never waits for a lock a user can hold: every statement that
	 * could skips the row and comes back to it.  A short lock_timeout is the
	 * safety net: a wait missed anyway becomes an error, and the step that
	 * failed is tried again later, its flights kept in memory.
	 */
	SetConfigOption("lock_timeout", "500", PGC_SUSET, PGC_S_OVERRIDE);
	sb_driver_nonblocking = true;
	WorkerContext = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox worker",
										  ALLOCSET_DEFAULT_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox worker loop",
										ALLOCSET_DEFAULT_SIZES);

	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->worker_pgprocno = MyProc->pgprocno;
	sb_shared->worker_pid = MyProcPid;
	sb_shared->worker_started_at = GetCurrentTimestamp();
	SpinLockRelease(&sb_shared->mutex);
	on_shmem_exit(worker_exit, (Datum) 0);
	/* The warm pool: its sandboxes are our children (src/local/warm.c). */
	sb_warm_owner_start();
	ereport(LOG, (errmsg("cloudrun_sandbox worker started in database \"%s\"", sb_worker_database)));
	sb_cgroup_log_if_changed();

	for (;;)
	{
		List	   *claimed;
		List	   *done;
		ListCell   *lc;
		bool		any_done;
		bool		look;
		Oid			ext;
		bool		ready;

		/* What one turn of the loop allocates goes at the next turn. */
		MemoryContextSwitchTo(LoopContext);
		MemoryContextReset(LoopContext);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			sb_cgroup_log_if_changed();
			sb_warm_owner_settings_changed();
		}
		ext = extension_oid(&ready);
		if (OidIsValid(served_extension) && ext != served_extension)
		{
			/* Dropped (perhaps made again): nothing may run on untracked. */
			bg_stop_all();
			stopped_without_extension = true;
			served_extension = InvalidOid;
			recovered = false;
		}
		if (!OidIsValid(ext))
		{
			/* Dropped while no worker watched: its host-side files name what still runs. */
			if (!stopped_without_extension)
				bg_stop_all();
			stopped_without_extension = true;
			/* Nothing to do until the extension exists and someone queues work. */
			recovered = false;
			note_wakes();
			wait_for_work();
			continue;
		}
		stopped_without_extension = false;
		served_extension = ext;
		if (!ready)
		{
			/* An older version: nothing runs until ALTER EXTENSION ... UPDATE. */
			recovered = false;
			note_wakes();
			wait_for_work();
			continue;
		}
		if (!recovered)
		{
			recover();
			bg_recover();
			recovered = true;
			woken = true;		/* recovery may have queued work again */
			sb_callbacks_wake();	/* and callbacks */
		}
		sb_cloud_drive();
		flights_advance(flights);
		any_done = flights_any_finished();
		bg_reap();
		sweep_roles();
		sb_reaper_tick();
		note_wakes();
		if (retry_due_at != 0 && GetCurrentTimestamp() >= retry_due_at)
		{
			retry_due_at = 0;	/* the claim reads the next one */
			woken = true;
		}
		look = woken || sessions_blocked;
		woken = false;
		if (look && bg_start())
			woken = true;

		/* One transaction: cancels, what finished, and what to start next. */
		claimed = NIL;
		if (look || any_done || recovery_left)
		{
			done = finish_and_claim(true, &claimed);
			after_commit(done);
		}

		if (claimed != NIL)
		{
			flights_advance(claimed);
			foreach(lc, claimed)
				flights = keep_list(flights, lfirst(lc));
			list_free(claimed);
			/*
			 * Launches that failed at once, and warm sandboxes that answered
			 * already, are recorded now.  Nothing is claimed in this
			 * transaction: their sessions' next commands are, at the next turn.
			 */
			done = finish_and_claim(false, NULL);
			if (done != NIL)
				woken = true;
			after_commit(done);
		}
		flights_count();
		flights_notify_output();
		/* Last before waiting: its processes' ends set the latch. */
		sb_callbacks_tick();
		wait_for_work();
	}
}

/*
 * worker_object_access wakes the worker when a transaction that drops an
 * extension commits: if it was this one, the worker stops the background
 * processes it started (see bg_stop_all), which nothing could reach after.
 */
static void
worker_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == ExtensionRelationId)
		sb_wake_worker_at_commit();
}

/*
 * sb_register_worker registers the static background worker, and the hook
 * that tells it about DROP EXTENSION (from _PG_init).
 */
void
sb_register_worker(void)
{
	BackgroundWorker worker;

	prev_object_access_hook = object_access_hook;
	object_access_hook = worker_object_access;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "cloudrun_sandbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "sb_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "cloudrun_sandbox worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "cloudrun_sandbox worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}
