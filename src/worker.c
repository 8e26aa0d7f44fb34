/*
 * worker.c
 *		The background worker: runs queued executions (sandbox.submit) on
 *		either backend, many sessions at once, one execution per session at a
 *		time in submission order, and survives crashes and restarts.
 *
 * One loop, woken by its latch (set when a transaction that queued or
 * cancelled work commits), by the pipes of local sandboxes, by the sockets of
 * the cloud result lookups in progress (curl multi, see driver_cloudrun.c),
 * or by a timer (the next lookup of a cloud result, an idle warm sandbox to
 * stop); with nothing queued it sleeps and issues no queries.  Each state change is its own short transaction:
 * queued -> launching (committed before any launch) -> running (committed
 * after it, with the remote execution's name) -> finished.  No transaction is
 * held across I/O.  While an execution is in flight the worker holds its
 * session's advisory lock at session level, which sandbox.exec() also takes,
 * so a session never runs two things at once.
 */
#include "driver.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
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
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "gcloud.h"
#include "roles.h"
#include "shared.h"
#include "worker/callback.h"
#include "worker/reaper.h"

PGDLLEXPORT void sb_worker_main(Datum arg);

/* Retry a claim this soon when a session was busy with a synchronous exec. */
#define BLOCKED_RETRY_MS 200
#define MAX_WAIT_FDS 256

/* WorkerFlight is one execution the worker has claimed. */
typedef struct WorkerFlight
{
	int64		id;
	int64		session_id;		/* the session's identity */
	char	   *session;		/* its name */
	char	   *key;			/* its storage key, what the driver takes */
	Oid			owner;
	SbBackend	backend;
	bool		fresh;			/* the session has never run anything */
	char	   *command;
	int64		timeout_ms;
	json_t	   *call_env;
	Oid			callback;
	const SbDriver *driver;
	SbRun	   *run;
	SbState		state;
	MemoryContext cxt;			/* everything of this flight */
	TimestampTz started_at;
	TimestampTz deadline;
	bool		launched;
	bool		done;
	bool		cancelled;
	char	   *failure;		/* set when the flight failed in the worker */
	char	   *result;
	size_t		result_len;
	TimestampTz next_poll;		/* runs without descriptors: when to look again */
	int			poll_ms;		/* and the current interval, doubling to a second */
} WorkerFlight;

#define FIRST_POLL_MS 5
#define MAX_POLL_MS 1000

/* BgProc is a background process the worker watches. */
typedef struct BgProc
{
	int64		handle;
	char	   *session;
	Oid			owner;			/* cloud: whose job and prefix it uses */
	pid_t		bwrap_pid;		/* our child, or 0 after a restart */
	pid_t		init_pid;		/* the sandbox's first process */
	int64		init_start;
	int			pidfd;			/* readable once init_pid has exited, or -1 */
	char	   *execution;		/* cloud: the Cloud Run execution that runs it */
	TimestampTz next_poll;		/* cloud: when to look for its exit object */
	int			polls;
} BgProc;

#define BG_CLOUD_POLL_MS 2000

static List *bgprocs = NIL;		/* in WorkerContext */
static void bg_recover(void);
static void bg_stop_untracked(void);
static void bg_stop_all(void);

/*
 * The extension the worker serves (its OID), to notice it being dropped or
 * dropped and made again; and whether, without it, its background
 * processes have been stopped.
 */
static Oid	served_extension = InvalidOid;
static bool stopped_without_extension = false;
static object_access_hook_type prev_object_access_hook = NULL;
static List *flights = NIL;		/* in WorkerContext */
static bool sessions_blocked = false;

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

/* Long-lived lists of the worker live here; per-flight data in each flight's context. */
static MemoryContext WorkerContext = NULL;
static MemoryContext LoopContext = NULL;

/* keep_list appends to a list kept in WorkerContext. */
static List *
keep_list(List *list, void *item)
{
	MemoryContext old = MemoryContextSwitchTo(WorkerContext);

	list = lappend(list, item);
	MemoryContextSwitchTo(old);
	return list;
}

/*
 * session_lock takes (without waiting) or releases a session's lock at
 * session level: held while one of its executions is in flight.
 */
static bool
session_lock(int64 session_id, bool take)
{
	if (take)
		return sb_session_lock_id(session_id, true, false);
	sb_session_unlock_id(session_id);
	return true;
}

/* The memory context begin() was called in; commit() returns to it. */
static MemoryContext outer_cxt = NULL;

/* begin starts a transaction for one step of the loop. */
static void
begin(const char *what)
{
	outer_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

/* commit ends it. */
static void
commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* Committing leaves TopMemoryContext current: go back, or the loop leaks there. */
	MemoryContextSwitchTo(outer_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static char *caught(MemoryContext cxt);

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

/*
 * sweep_roles removes the sessions of dropped roles once a DROP ROLE has
 * committed (and at start); a failure is logged and tried at the next one.
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
	if (seq == roles_seen)
		return;
	roles_seen = seq;
	begin("cloudrun_sandbox: sessions of dropped roles");
	PG_TRY();
	{
		(void) sb_sweep_dropped_roles();
		commit();
	}
	PG_CATCH();
	{
		char	   *msg = caught(cxt);

		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(WARNING,
				(errmsg("cloudrun_sandbox: could not remove the sessions of dropped roles: %s",
						msg)));
	}
	PG_END_TRY();
}

/* flight_error remembers why a flight failed in the worker (not in the sandbox). */
static void
flight_error(WorkerFlight *f, const char *message)
{
	MemoryContext old = MemoryContextSwitchTo(f->cxt);

	f->failure = pstrdup(message);
	f->done = true;
	MemoryContextSwitchTo(old);
	sb_shared_set_role_error(f->owner, message);
}

/* caught copies the current error's message and clears the error state. */
static char *
caught(MemoryContext cxt)
{
	ErrorData  *ed;
	char	   *msg;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	msg = ed->detail ? psprintf("%s: %s", ed->message, ed->detail) : pstrdup(ed->message);
	FreeErrorData(ed);
	return msg;
}

/* count_in_flight publishes how many executions each backend has in flight. */
static void
count_in_flight(void)
{
	int			n[2] = {0, 0};
	ListCell   *lc;

	foreach(lc, flights)
		n[((WorkerFlight *) lfirst(lc))->backend]++;
	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->in_flight[0] = n[0];
	sb_shared->in_flight[1] = n[1];
	SpinLockRelease(&sb_shared->mutex);
}

/* new_flight makes a flight from a claimed row's columns. */
static WorkerFlight *
new_flight(HeapTuple tup, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox flight",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	WorkerFlight *f = palloc0(sizeof(WorkerFlight));
	bool		isnull;
	Datum		d;

	f->cxt = cxt;
	f->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	f->session = SPI_getvalue(tup, desc, 2);
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "session_id"), &isnull);
	f->session_id = isnull ? 0 : DatumGetInt64(d);
	f->key = SPI_getvalue(tup, desc, SPI_fnumber(desc, "storage_key"));
	f->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	f->command = SPI_getvalue(tup, desc, 4);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	f->timeout_ms = sb_timeout_cap_ms(isnull ? (int64) sb_default_timeout_s * 1000
		: DatumGetIntervalP(d)->time / 1000 + (int64) DatumGetIntervalP(d)->day * 86400000);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	if (!isnull)
		f->call_env = sb_jsonb_to_env(DatumGetJsonbP(d), "env");
	d = SPI_getbinval(tup, desc, 7, &isnull);
	f->callback = isnull ? InvalidOid : DatumGetObjectId(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	if (isnull || f->key == NULL)
		f->failure = pstrdup("the session was dropped before the execution started");
	else
		f->backend = sb_backend_parse(TextDatumGetCString(d));
	d = SPI_getbinval(tup, desc, 9, &isnull);
	f->fresh = isnull || DatumGetInt64(d) == 0;
	f->driver = sb_driver_for(f->backend);
	/* Read (in this transaction) its owner's job and prefix, for the launch after it. */
	if (f->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(f->owner);
	MemoryContextSwitchTo(old);
	return f;
}

/*
 * claim takes queued executions whose sessions have nothing in flight, oldest
 * first, one per session, up to the free capacity, and commits them as
 * launching.  A session a synchronous exec holds is skipped for now.
 */
static List *
claim(void)
{
	static SPIPlanPtr plan_claim = NULL;
	static SPIPlanPtr plan_launching = NULL;
	int			room = sb_max_concurrent - list_length(flights);
	List	   *claimed = NIL;
	Datum		arg;
	Oid			argtype = INT4OID;
	ArrayBuildState *ids;

	if (room <= 0)
		return NIL;
	if (plan_claim == NULL)
	{
		plan_claim = SPI_prepare(
			"WITH c AS (SELECT e.id FROM sandbox.executions e "
			"  WHERE e.status = 'queued' AND e.id = (SELECT min(q.id) FROM sandbox.executions q "
			"    WHERE q.session_id = e.session_id AND q.status IN ('queued', 'launching', 'running')) "
			"  ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED) "
			"SELECT e.id, e.session, e.owner, e.command, e.timeout, e.call_env, e.callback, "
			"  s.backend, s.generation, e.session_id, s.storage_key "
			"FROM c JOIN sandbox.executions e ON e.id = c.id "
			"LEFT JOIN sandbox.sessions s ON s.id = e.session_id ORDER BY e.id",
			1, &argtype);
		SPI_keepplan(plan_claim);
	}
	arg = Int32GetDatum(room);
	if (SPI_execute_plan(plan_claim, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim queued executions");
	sessions_blocked = false;
	ids = initArrayResult(INT8OID, CurrentMemoryContext, false);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		WorkerFlight *f = new_flight(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);

		if (f->failure == NULL && !session_lock(f->session_id, true))
		{
			/* A synchronous exec has the session: try again shortly. */
			sessions_blocked = true;
			MemoryContextDelete(f->cxt);
			continue;
		}
		claimed = keep_list(claimed, f);
		accumArrayResult(ids, Int64GetDatum(f->id), false, INT8OID, CurrentMemoryContext);
	}
	if (claimed != NIL)
	{
		Oid			t = INT8ARRAYOID;
		Datum		a = makeArrayResult(ids, CurrentMemoryContext);

		if (plan_launching == NULL)
		{
			plan_launching = SPI_prepare("UPDATE sandbox.executions SET status = 'launching', "
										 "started_at = now() WHERE id = ANY($1)", 1, &t);
			SPI_keepplan(plan_launching);
		}
		if (SPI_execute_plan(plan_launching, &a, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not mark executions launching");
	}
	return claimed;
}

/* launch starts one claimed flight; failures are kept on the flight. */
static void
launch(WorkerFlight *f)
{
	MemoryContext old = MemoryContextSwitchTo(f->cxt);
	SbSession	session = {.id = f->session_id, .name = f->session, .key = f->key,
	.owner = f->owner, .backend = f->backend};

	if (f->failure != NULL)
	{
		f->done = true;
		MemoryContextSwitchTo(old);
		return;
	}
	PG_TRY();
	{
		char	   *request = sb_prepare_exec(&session, f->driver, f->fresh, f->id, f->command,
											  f->call_env, f->timeout_ms, &f->state);

		f->started_at = GetCurrentTimestamp();
		f->deadline = sb_exec_deadline(f->driver, f->started_at, f->timeout_ms);
		if (f->driver->stage != NULL)
			f->run = f->driver->stage(f->key, f->id, request);	/* started by launch_staged() */
		else
		{
			f->run = f->driver->launch(f->key, f->id, request);
			f->launched = true;
		}
	}
	PG_CATCH();
	{
		char	   *msg = caught(f->cxt);

		flight_error(f, msg);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/* launch_batch starts n staged flights as one batch; a failure fails them all. */
static void
launch_batch(WorkerFlight **batch, SbRun **runs, int n)
{
	MemoryContext old = CurrentMemoryContext;

	PG_TRY();
	{
		batch[0]->driver->launch_batch(runs, n);
		for (int i = 0; i < n; i++)
			batch[i]->launched = true;
	}
	PG_CATCH();
	{
		char	   *msg = caught(old);

		for (int i = 0; i < n; i++)
			flight_error(batch[i], msg);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/*
 * launch_staged starts the staged flights of batching drivers in batches of
 * up to cloudrun_sandbox.max_batch: one remote execution carries many
 * requests, which is what Cloud Run's quota on job runs calls for.
 */
static void
launch_staged(List *claimed)
{
	SbRun	  **runs = palloc(sizeof(SbRun *) * Max(list_length(claimed), 1));
	WorkerFlight **batch = palloc(sizeof(WorkerFlight *) * Max(list_length(claimed), 1));
	bool	   *taken = palloc0(sizeof(bool) * Max(list_length(claimed), 1));
	bool		more = true;

	/* Each pass takes the flights whose batch key is the first left's (its job). */
	while (more)
	{
		const char *key = NULL;
		int			n = 0;
		int			i = 0;
		ListCell   *lc;

		more = false;
		foreach(lc, claimed)
		{
			WorkerFlight *f = lfirst(lc);
			const char *k;

			if (taken[i++] || f->launched || f->done || f->run == NULL ||
				f->driver->launch_batch == NULL)
				continue;
			k = f->driver->batch_key ? f->driver->batch_key(f->run) : "";
			if (key == NULL)
				key = k;
			else if (strcmp(k, key) != 0)
			{
				more = true;
				continue;
			}
			taken[i - 1] = true;
			runs[n] = f->run;
			batch[n++] = f;
			if (n == sb_max_batch)
			{
				launch_batch(batch, runs, n);
				n = 0;
			}
		}
		if (n > 0)
			launch_batch(batch, runs, n);
	}
}

/* mark_running commits the launched flights as running, with their remote names. */
static void
mark_running(List *launched)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	ListCell   *lc;

	begin("cloudrun_sandbox: running");
	if (plan == NULL)
	{
		plan = SPI_prepare("UPDATE sandbox.executions SET status = 'running', remote_name = $2 "
						   "WHERE id = $1 AND status = 'launching'", 2, types);
		SPI_keepplan(plan);
	}
	foreach(lc, launched)
	{
		WorkerFlight *f = lfirst(lc);
		const char *remote;
		Datum		v[2];
		char		n[2];

		/* A launch that failed has no run: it is recorded as an error, not running. */
		if (!f->launched || f->done || f->run == NULL)
			continue;
		remote = f->driver->remote_name ? f->driver->remote_name(f->run) : NULL;
		v[0] = Int64GetDatum(f->id);
		v[1] = remote ? CStringGetTextDatum(remote) : (Datum) 0;
		n[0] = ' ';
		n[1] = remote ? ' ' : 'n';
		SPI_execute_plan(plan, v, n, false, 0);
	}
	commit();
}

/* step_flight drives one flight without blocking; notes when it is done. */
static void
step_flight(WorkerFlight *f)
{
	MemoryContext old;
	int			fds[8];
	bool		polled;

	if (f->done || f->run == NULL)
		return;
	polled = f->driver->wait_fds(f->run, fds, lengthof(fds)) == 0;
	/* An answer that has arrived is read now, whatever the polling pace. */
	if (polled && !(f->driver->ready != NULL && f->driver->ready(f->run)))
	{
		TimestampTz now = GetCurrentTimestamp();

		if (now < f->next_poll)
			return;
		f->poll_ms = f->poll_ms == 0 ? FIRST_POLL_MS : Min(f->poll_ms * 2, MAX_POLL_MS);
		f->next_poll = TimestampTzPlusMilliseconds(now, f->poll_ms);
	}
	old = MemoryContextSwitchTo(f->cxt);
	PG_TRY();
	{
		if (f->driver->step(f->run))
		{
			f->result = f->driver->finish(f->run, &f->result_len);
			f->done = true;
		}
		else if (GetCurrentTimestamp() > f->deadline)
		{
			f->driver->cancel(f->run);
			flight_error(f, "the sandbox did not answer in time");
		}
	}
	PG_CATCH();
	{
		char	   *msg = caught(f->cxt);

		if (f->driver->cancel)
			f->driver->cancel(f->run);
		flight_error(f, msg);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/* apply_cancels cancels in-flight executions whose cancel was requested. */
static void
apply_cancels(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			t = INT8ARRAYOID;
	ArrayBuildState *ids;
	Datum		a;
	ListCell   *lc;

	static int64 seen = 0;
	int64		seq;

	SpinLockAcquire(&sb_shared->mutex);
	seq = sb_shared->cancel_seq;
	SpinLockRelease(&sb_shared->mutex);
	if (flights == NIL || seq == seen)
		return;
	seen = seq;
	ids = initArrayResult(INT8OID, CurrentMemoryContext, false);
	foreach(lc, flights)
		accumArrayResult(ids, Int64GetDatum(((WorkerFlight *) lfirst(lc))->id), false, INT8OID,
						 CurrentMemoryContext);
	a = makeArrayResult(ids, CurrentMemoryContext);
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT id FROM sandbox.executions WHERE id = ANY($1) AND cancel_requested",
						   1, &t);
		SPI_keepplan(plan);
	}
	SPI_execute_plan(plan, &a, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		foreach(lc, flights)
		{
			WorkerFlight *f = lfirst(lc);

			if (f->id != id || f->done)
				continue;
			if (f->run != NULL)
				f->driver->cancel(f->run);
			f->cancelled = true;
			f->done = true;
		}
	}
}

/* finish_flight records one finished flight: history row, state, mirror, NOTIFY. */
static void
finish_flight(WorkerFlight *f)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[11] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, BOOLOID, BOOLOID,
	TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		v[11];
	char		n[11];
	SbOutcome	outcome;
	SbExecResult *r = &outcome.result;
	SbSession	session = {.id = f->session_id, .name = f->session, .key = f->key,
	.owner = f->owner, .backend = f->backend};
	const char *status;
	const char *volatile error = f->failure;

	memset(&outcome, 0, sizeof(outcome));
	memset(n, ' ', sizeof(n));
	outcome.id = f->id;
	if (f->cancelled)
	{
		status = "cancelled";
		error = "cancelled by sandbox.cancel()";
	}
	else if (f->failure != NULL || f->result == NULL)
	{
		status = "error";
		if (error == NULL)
			error = "the sandbox returned no result";
	}
	else
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;

		/* A subtransaction, so that a failure here undoes only this flight's work. */
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			sb_decode_result(&outcome, f->result, f->result_len);
			sb_apply_state(&session, f->driver, &outcome, &f->state);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			error = caught(cxt);
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			memset(r, 0, sizeof(*r));
			r->status = SB_STATUS_ERROR;
		}
		PG_END_TRY();
		status = sb_status_name(r->status);
		if (r->error != NULL && error == NULL)
			error = r->error;
	}
	if (plan == NULL)
	{
		plan = SPI_prepare("UPDATE sandbox.executions SET status = $2, exit_code = $3, stdout = $4, "
						   "stderr = $5, stdout_truncated = $6, stderr_truncated = $7, cwd = $8, "
						   "error = $9, finished_at = $10, duration = $10 - started_at, "
						   "remote_name = COALESCE($11, remote_name), "
						   "callback_state = CASE WHEN callback IS NOT NULL AND $2 <> 'cancelled' "
						   "THEN 'pending' END WHERE id = $1",
						   11, types);
		SPI_keepplan(plan);
	}
	v[0] = Int64GetDatum(f->id);
	v[1] = CStringGetTextDatum(status);
	v[2] = Int32GetDatum(r->exit_code);
	n[2] = r->has_exit_code ? ' ' : 'n';
	v[3] = r->stdout_data ? PointerGetDatum(cstring_to_text_with_len(r->stdout_data, r->stdout_len)) : (Datum) 0;
	n[3] = r->stdout_data ? ' ' : 'n';
	v[4] = r->stderr_data ? PointerGetDatum(cstring_to_text_with_len(r->stderr_data, r->stderr_len)) : (Datum) 0;
	n[4] = r->stderr_data ? ' ' : 'n';
	v[5] = BoolGetDatum(r->stdout_truncated);
	v[6] = BoolGetDatum(r->stderr_truncated);
	v[7] = r->has_state ? CStringGetTextDatum(r->cwd) : (Datum) 0;
	n[7] = r->has_state ? ' ' : 'n';
	v[8] = error ? CStringGetTextDatum(error) : (Datum) 0;
	n[8] = error ? ' ' : 'n';
	v[9] = TimestampTzGetDatum(GetCurrentTimestamp());
	v[10] = (Datum) 0;
	n[10] = 'n';
	SPI_execute_plan(plan, v, n, false, 0);
	Async_Notify("sandbox_executions", psprintf(INT64_FORMAT, f->id));
}

/* take_done removes the finished flights from the list and returns them. */
static List *
take_done(void)
{
	List	   *done = NIL;
	List	   *keep = NIL;
	ListCell   *lc;

	foreach(lc, flights)
	{
		WorkerFlight *f = lfirst(lc);

		if (f->done)
			done = keep_list(done, f);
		else
			keep = keep_list(keep, f);
	}
	list_free(flights);
	flights = keep;
	return done;
}

/*
 * after_commit releases finished flights' sessions and wakes waiters; their
 * callbacks, queued in their rows, run in processes of their own (callback.c).
 */
static void
after_commit(List *done)
{
	static TimestampTz last_prune = 0;
	ListCell   *lc;

	if (done == NIL)
		return;
	foreach(lc, done)
	{
		WorkerFlight *f = lfirst(lc);

		if (f->session_id != 0 && f->key != NULL)
			(void) session_lock(f->session_id, false);
	}
	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->completed += list_length(done);
	SpinLockRelease(&sb_shared->mutex);
	ConditionVariableBroadcast(&sb_shared->completion_cv);
	foreach(lc, done)
	{
		WorkerFlight *f = lfirst(lc);

		if (OidIsValid(f->callback) && !f->cancelled)
			sb_callbacks_wake();
		MemoryContextDelete(f->cxt);
	}
	list_free(done);
	/* History goes in small batches, only when there was work. */
	if (TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), 10000))
	{
		last_prune = GetCurrentTimestamp();
		begin("cloudrun_sandbox: prune");
		sb_execution_prune();
		commit();
	}
}

/*
 * recover_cloud re-attaches cloud executions a previous worker left in
 * flight: running ones by their execution's name; launching ones by the
 * driver's search for a run of their request (a result object, or an
 * execution whose arguments name the request).  A launch that never reached
 * Cloud Run is queued again.
 */
static void
recover_cloud(void)
{
	static SPIPlanPtr plan_requeue = NULL;
	Oid			t = INT8OID;
	List	   *volatile requeue = NIL;
	ListCell   *lc;
	int			ret;

	begin("cloudrun_sandbox: recover cloud");
	ret = SPI_execute("SELECT e.id, e.session, e.owner, e.command, e.timeout, e.call_env, e.callback, "
					  "s.backend, s.generation, e.status, e.remote_name, e.session_id, s.storage_key "
					  "FROM sandbox.executions e JOIN sandbox.sessions s ON s.id = e.session_id "
					  "WHERE s.backend = 'cloudrun' AND e.status IN ('launching', 'running') "
					  "ORDER BY e.id", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read cloud executions in flight");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WorkerFlight *f = new_flight(tup, desc);
		char	   *remote = SPI_getvalue(tup, desc, 11);
		MemoryContext old = MemoryContextSwitchTo(f->cxt);

		(void) session_lock(f->session_id, true);
		PG_TRY();
		{
			sb_gc_use_role(f->owner);	/* its owner's job and prefix */
			f->run = f->driver->attach(f->key, f->id, remote);
		}
		PG_CATCH();
		{
			char	   *msg = caught(f->cxt);

			flight_error(f, msg);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
		if (f->run == NULL && !f->done)
		{
			requeue = keep_list(requeue, f);
			continue;
		}
		f->launched = true;
		f->started_at = GetCurrentTimestamp();
		f->deadline = sb_exec_deadline(f->driver, f->started_at, f->timeout_ms);
		flights = keep_list(flights, f);
	}
	if (plan_requeue == NULL)
	{
		plan_requeue = SPI_prepare("UPDATE sandbox.executions SET status = 'queued', started_at = NULL "
								   "WHERE id = $1", 1, &t);
		SPI_keepplan(plan_requeue);
	}
	foreach(lc, requeue)
	{
		WorkerFlight *f = lfirst(lc);
		Datum		v = Int64GetDatum(f->id);

		SPI_execute_plan(plan_requeue, &v, NULL, false, 0);
		(void) session_lock(f->session_id, false);
		MemoryContextDelete(f->cxt);
	}
	list_free(requeue);
	commit();
	if (flights != NIL)
		ereport(LOG, (errmsg("cloudrun_sandbox: re-attached %d cloud executions", list_length(flights))));
}

/*
 * recover resolves what a previous worker left in flight.  Local executions
 * died with it: those that had started are failed with "worker restarted",
 * those that never started are queued again.  Cloud executions keep running
 * in Cloud Run; the driver re-attaches them by name and collects results.
 */
static void
recover(void)
{
	int			ret;

	begin("cloudrun_sandbox: recover");
	ret = SPI_execute("UPDATE sandbox.executions e SET status = 'failed', error = 'worker restarted', "
					  "finished_at = now(), duration = now() - started_at, "
					  "callback_state = CASE WHEN e.callback IS NOT NULL THEN 'pending' END "
					  "FROM sandbox.sessions s WHERE s.id = e.session_id AND s.backend = 'local' "
					  "AND e.status = 'running'", false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not recover running executions");
	if (SPI_processed > 0)
		ereport(LOG, (errmsg("cloudrun_sandbox: %llu local executions failed: worker restarted",
							 (unsigned long long) SPI_processed)));
	ret = SPI_execute("UPDATE sandbox.executions e SET status = 'queued', started_at = NULL "
					  "FROM sandbox.sessions s WHERE s.id = e.session_id AND s.backend = 'local' "
					  "AND e.status = 'launching'", false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not requeue launching executions");
	commit();
	recover_cloud();
	bg_recover();
}

/* bg_free forgets a background process whose end is recorded, or that the worker stops watching. */
static void
bg_free(BgProc *b)
{
	if (b->execution == NULL)
		sb_local_background_forget(b->session, b->handle);
	pfree(b->session);
	if (b->execution)
		pfree(b->execution);
	pfree(b);
}

/* bg_track starts watching a background process. */
static void
bg_track(int64 handle, const char *session, Oid owner, pid_t bwrap_pid, pid_t init_pid,
		 int64 init_start, const char *execution)
{
	MemoryContext old = MemoryContextSwitchTo(WorkerContext);
	BgProc	   *b = palloc0(sizeof(BgProc));

	/* Read the owner's job and prefix now: polls happen outside transactions. */
	if (execution != NULL)
		sb_gc_use_role(owner);
	b->owner = owner;
	b->execution = execution ? pstrdup(execution) : NULL;
	b->handle = handle;
	b->session = pstrdup(session);
	b->bwrap_pid = bwrap_pid;
	b->init_pid = init_pid;
	b->init_start = init_start;
	b->pidfd = init_pid > 0 ? (int) syscall(SYS_pidfd_open, init_pid, 0) : -1;
	bgprocs = lappend(bgprocs, b);
	MemoryContextSwitchTo(old);
}

/* bg_alive says whether a watched local process still runs (same pid, same start time). */
static bool
bg_alive(BgProc *b)
{
	return b->init_pid > 0 && b->init_start >= 0 &&
		sb_process_start_time(b->init_pid) == b->init_start;
}

/*
 * bg_cloud_ended looks, every few seconds, whether a cloud background process
 * has ended: 1 with its exit code, -1 without one, 0 while it runs.
 */
static int
bg_cloud_ended(BgProc *b, int *code)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			r = 0;

	if (GetCurrentTimestamp() < b->next_poll)
		return 0;
	b->next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BG_CLOUD_POLL_MS);
	PG_TRY();
	{
		sb_gc_use_role(b->owner);
		r = sb_cloud_bg_poll(b->session, b->handle, b->execution, ++b->polls % 5 == 0, code);
	}
	PG_CATCH();
	{
		char	   *msg = caught(cxt);

		sb_shared_set_error(msg);
		r = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return r;
}

/* bg_record_end records a background process's end: exited (or killed, if it was). */
static void
bg_record_end(int64 handle, const char *status, bool has_code, int code, const char *error)
{
	Oid			types[4] = {INT8OID, TEXTOID, INT4OID, TEXTOID};
	Datum		v[4];
	char		n[4] = {' ', ' ', has_code ? ' ' : 'n', error ? ' ' : 'n'};

	v[0] = Int64GetDatum(handle);
	v[1] = CStringGetTextDatum(status);
	v[2] = Int32GetDatum(code);
	v[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	SPI_execute_with_args("UPDATE sandbox.background_processes SET "
						  "status = CASE WHEN status = 'killed' THEN 'killed' ELSE $2 END, "
						  "exit_code = $3, error = $4, ended_at = COALESCE(ended_at, now()) "
						  "WHERE pid = $1", 4, types, v, n, false, 0);
}

/* bg_reap records the background processes that have ended. */
static void
bg_reap(void)
{
	List	   *keep = NIL;
	List	   *ended = NIL;
	ListCell   *lc;

	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);
		int			code = 0;

		if (b->execution != NULL)
		{
			int			r = bg_cloud_ended(b, &code);

			if (r == 0)
				keep = keep_list(keep, b);
			else
			{
				b->init_start = r;	/* reused below: 1 = exit code known */
				b->init_pid = code;
				ended = keep_list(ended, b);
			}
		}
		else if (bg_alive(b))
			keep = keep_list(keep, b);
		else
			ended = keep_list(ended, b);
	}
	if (ended == NIL)
	{
		list_free(keep);
		return;
	}
	list_free(bgprocs);
	bgprocs = keep;
	begin("cloudrun_sandbox: background ended");
	foreach(lc, ended)
	{
		BgProc	   *b = lfirst(lc);
		int			code;
		int			ws = 0;
		bool		reaped = false;
		bool		server_stopped;

		if (b->execution != NULL)
		{
			if (b->init_start == 1)
				bg_record_end(b->handle, "exited", true, b->init_pid, NULL);
			else
				bg_record_end(b->handle, "failed", false, 0,
							  "the Cloud Run execution ended without an exit code");
			continue;
		}
		if (b->bwrap_pid > 0)
			reaped = waitpid(b->bwrap_pid, &ws, 0) == b->bwrap_pid;
		if (sb_local_background_exit(b->session, b->handle, &code, &server_stopped))
			bg_record_end(b->handle, server_stopped ? "failed" : "exited", true, code,
						  server_stopped ? "stopped with the database server" : NULL);
		else if (reaped)
			bg_record_end(b->handle, "exited", true,
						  WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws), NULL);
		else
			bg_record_end(b->handle, "failed", false, 0,
						  "the process ended while the worker was down; its exit code is unknown");
		if (b->pidfd >= 0)
			close(b->pidfd);
	}
	commit();
	foreach(lc, ended)
	{
		BgProc	   *b = lfirst(lc);

		bg_free(b);
	}
	list_free(ended);
}

/*
 * bg_start starts the background processes whose starting transaction has
 * committed; true if there may be more than it took.
 */
static bool
bg_start(void)
{
	int			ret;
	bool		more;

	begin("cloudrun_sandbox: background start");
	ret = SPI_execute("SELECT b.pid, s.storage_key, b.owner, b.command, s.backend, s.id, b.session "
					  "FROM sandbox.background_processes b "
					  "JOIN sandbox.sessions s ON s.id = b.session_id "
					  "WHERE b.status = 'starting' ORDER BY b.pid LIMIT 32 FOR UPDATE OF b SKIP LOCKED",
					  false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read background processes to start");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		handle = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		SbSession	session = {.key = SPI_getvalue(tup, desc, 2),
			.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull)),
			.backend = sb_backend_parse(SPI_getvalue(tup, desc, 5)),
			.id = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull)),
		.name = SPI_getvalue(tup, desc, 7)};
		char	   *command = SPI_getvalue(tup, desc, 4);
		MemoryContext cxt = CurrentMemoryContext;
		Oid			types[4] = {INT8OID, INT4OID, INT8OID, TEXTOID};
		Datum		v[4];
		char		n[4] = {' ', ' ', ' ', ' '};

		v[0] = Int64GetDatum(handle);
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			SbState		state;
			pid_t		init_pid = 0;
			int64		init_start = -1;
			pid_t		bwrap = 0;
			char	   *execution = NULL;
			char	   *request = sb_prepare_exec(&session, sb_driver_for(session.backend), false,
												  handle, command, NULL, 0, &state);

			if (session.backend == SB_BACKEND_CLOUDRUN)
				execution = sb_cloud_bg_start(session.key, handle, request);
			else
				bwrap = sb_local_background_spawn(session.key, handle, request, &init_pid,
												  &init_start);
			v[1] = Int32GetDatum(init_pid);
			n[1] = init_pid ? ' ' : 'n';
			v[2] = Int64GetDatum(init_start);
			n[2] = init_start >= 0 ? ' ' : 'n';
			v[3] = execution ? CStringGetTextDatum(execution) : (Datum) 0;
			n[3] = execution ? ' ' : 'n';
			SPI_execute_with_args("UPDATE sandbox.background_processes SET status = 'running', "
								  "host_pid = $2, host_start_time = $3, remote_name = $4, "
								  "started_at = now() WHERE pid = $1", 4, types, v, n, false, 0);
			bg_track(handle, session.key, session.owner, bwrap, init_pid, init_start, execution);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			char	   *msg = caught(cxt);

			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			bg_record_end(handle, "failed", false, 0, msg);
		}
		PG_END_TRY();
	}
	more = SPI_processed == 32;
	commit();
	return more;
}

/* bg_recover watches again the background processes a previous worker started. */
static void
bg_recover(void)
{
	int			ret;

	begin("cloudrun_sandbox: background recover");
	ret = SPI_execute("SELECT b.pid, COALESCE(s.storage_key, b.session), b.host_pid, "
					  "b.host_start_time, b.remote_name, b.owner "
					  "FROM sandbox.background_processes b "
					  "LEFT JOIN sandbox.sessions s ON s.id = b.session_id "
					  "WHERE b.status IN ('running', 'killed') AND b.ended_at IS NULL", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read background processes");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		null1, null2, isnull;
		int64		handle = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		Datum		p = SPI_getbinval(tup, desc, 3, &null1);
		Datum		st = SPI_getbinval(tup, desc, 4, &null2);

		bg_track(handle, SPI_getvalue(tup, desc, 2),
				 DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull)), 0,
				 null1 ? 0 : DatumGetInt32(p), null2 ? -1 : DatumGetInt64(st),
				 SPI_getvalue(tup, desc, 5));
	}
	commit();
	bg_stop_untracked();
	bg_reap();
}

/*
 * bg_stop_untracked stops the local background sandboxes that run, according
 * to their host-side files, but that no row tracks: those of an extension
 * that was dropped (and perhaps created again) while no worker watched.
 */
static void
bg_stop_untracked(void)
{
	List	   *live = sb_local_background_live();
	pid_t	   *pids = palloc(sizeof(pid_t) * (list_length(live) + 1));
	int64	   *starts = palloc(sizeof(int64) * (list_length(live) + 1));
	int			n = 0;
	List	   *stopped = NIL;
	ListCell   *lc, *lc2;

	foreach(lc, live)
	{
		SbBgLive   *l = lfirst(lc);
		bool		tracked = false;

		foreach(lc2, bgprocs)
		{
			BgProc	   *b = lfirst(lc2);

			tracked |= b->execution == NULL && b->init_pid == l->pid && b->init_start == l->start;
		}
		if (!tracked)
		{
			pids[n] = l->pid;
			starts[n++] = l->start;
			stopped = lappend(stopped, l);
		}
	}
	if (n == 0)
		return;
	ereport(LOG,
			(errmsg("cloudrun_sandbox: stopping %d background processes that no row tracks", n),
			 errdetail("Their extension was dropped while no worker ran, or a worker stopped before "
					   "it recorded their start.")));
	sb_stop_processes(pids, starts, n);
	foreach(lc, stopped)
	{
		SbBgLive   *l = lfirst(lc);

		sb_local_background_forget(l->session, l->handle);
	}
}

/*
 * bg_stop_all stops every local background sandbox of the database, those
 * the worker watches and those its host-side files name, and forgets them:
 * the extension that tracked them was dropped.  Cloud background executions
 * are forgotten; they end by themselves (at their task timeout).
 */
static void
bg_stop_all(void)
{
	List	   *live = sb_local_background_live();
	int			max = list_length(live) + list_length(bgprocs) + 1;
	pid_t	   *pids = palloc(sizeof(pid_t) * max);
	int64	   *starts = palloc(sizeof(int64) * max);
	int			n = 0;
	int			running;
	ListCell   *lc;

	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);

		if (b->execution == NULL)
		{
			pids[n] = b->init_pid;
			starts[n++] = b->init_start;
		}
	}
	foreach(lc, live)
	{
		SbBgLive   *l = lfirst(lc);

		pids[n] = l->pid;
		starts[n++] = l->start;
	}
	running = list_length(live);
	if (n > 0)
		sb_stop_processes(pids, starts, n);
	foreach(lc, live)
	{
		SbBgLive   *l = lfirst(lc);

		sb_local_background_forget(l->session, l->handle);
	}
	if (running > 0)
		ereport(LOG,
				(errmsg("cloudrun_sandbox: stopped %d background processes: the extension was dropped",
						running)));
	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);

		/* bwrap exits right after the sandbox's first process: collect it. */
		for (int i = 0; b->bwrap_pid > 0 && i < 100; i++)
		{
			if (waitpid(b->bwrap_pid, NULL, WNOHANG) != 0)
				break;
			pg_usleep(10000);
		}
		if (b->pidfd >= 0)
			close(b->pidfd);
		bg_free(b);
	}
	list_free(bgprocs);
	bgprocs = NIL;
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

		if (f->done)
		{
			timeout = 0;
			continue;
		}
		if (f->run == NULL)
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
	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);

		if (b->execution != NULL)
		{
			long		due = Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), b->next_poll));

			timeout = timeout < 0 ? due : Min(timeout, due);
		}
		if (b->pidfd >= 0 && nfds < MAX_WAIT_FDS)
		{
			AddWaitEventToSet(set, WL_SOCKET_READABLE, b->pidfd, NULL, NULL);
			nfds++;
		}
	}
	if (flights != NIL && timeout != 0)
		timeout = any_polled ? Max(poll_due, 1) : 1000;
	if (sessions_blocked && (timeout < 0 || timeout > BLOCKED_RETRY_MS))
		timeout = BLOCKED_RETRY_MS;
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
	warm_due = sb_local_warm_tick();
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
	(void) WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	ResetLatch(MyLatch);
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
	sb_driver_nonblocking = true;
	sb_local_warm = true;
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
	ereport(LOG, (errmsg("cloudrun_sandbox worker started in database \"%s\"", sb_worker_database)));

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
			recovered = true;
			woken = true;		/* recovery may have queued work again */
			sb_callbacks_wake();	/* and callbacks */
		}
		sb_cloud_drive();
		any_done = false;
		foreach(lc, flights)
		{
			step_flight(lfirst(lc));
			any_done |= ((WorkerFlight *) lfirst(lc))->done;
		}
		bg_reap();
		sweep_roles();
		sb_reaper_tick();
		note_wakes();
		look = woken || sessions_blocked;
		woken = false;
		if (look && bg_start())
			woken = true;

		/* One transaction: cancels, what finished, and what to start next. */
		claimed = NIL;
		if (look || any_done)
		{
			begin("cloudrun_sandbox: finish and claim");
			apply_cancels();
			done = take_done();
			foreach(lc, done)
				finish_flight(lfirst(lc));
			claimed = claim();
			commit();
			after_commit(done);
		}

		if (claimed != NIL)
		{
			foreach(lc, claimed)
				launch(lfirst(lc));
			launch_staged(claimed);
			mark_running(claimed);
			foreach(lc, claimed)
				flights = keep_list(flights, lfirst(lc));
			list_free(claimed);
			/* Launches that failed at once are recorded now. */
			begin("cloudrun_sandbox: finish");
			done = take_done();
			foreach(lc, done)
				finish_flight(lfirst(lc));
			commit();
			after_commit(done);
		}
		count_in_flight();
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
