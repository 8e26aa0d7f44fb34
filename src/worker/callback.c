/*
 * callback.c
 *		Callbacks of finished executions (the callback argument of
 *		sandbox.submit() and of submit_trigger()), each run in a fresh process
 *		connected as the execution's owner, never in the background worker's
 *		own session, and never waited for by it.
 *
 * The worker's completion of an execution with a callback marks its row
 * callback_state = 'pending' in the same transaction, so a callback is queued
 * durably.  sb_callbacks_tick(), called by the worker's loop, reaps callback
 * processes that have ended, claims pending rows (fairly between roles, at most
 * cloudrun_sandbox.max_callback_workers running at once), marks them 'running',
 * commits, and registers one dynamic background worker per callback; it never
 * waits for one to start or to end.  The postmaster sets the worker's latch
 * when one has ended (bgw_notify_pid).
 *
 * The callback process connects as the execution's owner: a new session with
 * that role's own settings, nothing of any other role's.  It sets
 * statement_timeout and lock_timeout from cloudrun_sandbox.callback_timeout
 * and search_path to the role's own with pg_temp explicitly last, and then, in
 * one transaction, marks the row 'done' and calls the function with the
 * execution id.  The mark commits with the callback's work, and holds the
 * row's lock meanwhile, so a callback commits at most once; one whose process
 * ended before committing is left 'running' with no lock.  A failure is
 * recorded in the row ('failed', callback_error), in the server log with the
 * role named, and in worker_status() for that role only.  A callback process
 * that ended without recording anything (terminated, or past the hard
 * deadline) is recorded as failed by the worker.  'running' rows that no
 * process of this worker has and that nobody locks (a previous worker's, after
 * a restart) are queued again.
 */
#include "cloudrun_sandbox.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "shared.h"
#include "worker/callback.h"

/* With no background worker slot free, try again this soon. */
#define CALLBACK_RETRY_MS 1000
/* A callback still running this long past callback_timeout is ended with its process. */
#define CALLBACK_GRACE_MS 5000

int			sb_callback_timeout_s = 60;
int			sb_max_callback_workers = 4;

/* What the worker hands a callback process (in bgw_extra). */
typedef struct CallbackArgs
{
	int64		id;
	Oid			owner;
	Oid			database;
} CallbackArgs;

/* A callback process the worker started and has not seen end. */
typedef struct RunningCallback
{
	int64		id;
	BackgroundWorkerHandle *handle;
} RunningCallback;

static MemoryContext CallbackContext = NULL;
static List *running = NIL;		/* of RunningCallback, in CallbackContext */
static bool maybe_pending = true;	/* there may be pending callbacks to start */
static TimestampTz retry_at = 0;	/* no slot was free: when to try again */
static bool ticked = false;		/* sb_callbacks_tick() ran this turn */
static bool no_slot_logged = false;

/* sb_callbacks_define_settings defines this module's settings; called from _PG_init. */
void
sb_callbacks_define_settings(void)
{
	DefineCustomIntVariable("cloudrun_sandbox.callback_timeout",
							"Longest a callback may run: its statement_timeout and lock_timeout.",
							"A callback that is still running a few seconds later is ended with its process.",
							&sb_callback_timeout_s, 60, 1, INT_MAX / 1000 - CALLBACK_GRACE_MS / 1000,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_callback_workers",
							"Callbacks that run at once, each in a background worker process of its own.",
							"Each takes one of max_worker_processes while it runs; more wait, queued in their rows.",
							&sb_max_callback_workers, 4, 1, 1024, PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* sb_callbacks_wake notes that a callback may have been queued (or requeued). */
void
sb_callbacks_wake(void)
{
	maybe_pending = true;
}

/* role_name names a role for messages, also one that was dropped. */
static char *
role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? psprintf("\"%s\"", name) : psprintf("with OID %u (dropped)", role);
}

/* callback_label is "callback f(bigint) of execution N", for messages. */
static char *
callback_label(Oid callback, int64 id)
{
	if (!OidIsValid(callback))
		return psprintf("callback of execution " INT64_FORMAT, id);
	return psprintf("callback %s of execution " INT64_FORMAT, format_procedure_qualified(callback), id);
}

/*
 * report logs what became of a callback, with its role (named by role_name())
 * named, and shows it to that role.
 */
static void
report(Oid owner, const char *role, const char *label, const char *outcome, const char *reason)
{
	ereport(LOG,
			(errmsg("cloudrun_sandbox: %s of role %s %s: %s", label, role, outcome, reason)));
	sb_shared_set_role_error(owner, psprintf("%s %s: %s", label, outcome, reason));
}

/* xact_begin starts one short transaction of the worker's callback bookkeeping. */
static void
xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "cloudrun_sandbox: callbacks");
}

/* xact_commit commits it and returns to cxt. */
static void
xact_commit(MemoryContext cxt)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* id_array makes an int8[] of the ids of a list of RunningCallback (or of CallbackArgs). */
static Datum
id_array(List *items, bool args)
{
	ArrayBuildState *ids = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ListCell   *lc;

	foreach(lc, items)
	{
		int64		id = args ? ((CallbackArgs *) lfirst(lc))->id : ((RunningCallback *) lfirst(lc))->id;

		accumArrayResult(ids, Int64GetDatum(id), false, INT8OID, CurrentMemoryContext);
	}
	return makeArrayResult(ids, CurrentMemoryContext);
}

/*
 * record_ended marks failed the callbacks whose process ended while their
 * row still says 'running': it was terminated, ran past the hard deadline, or
 * could not connect.  Rows someone still locks are left alone.
 */
static void
record_ended(List *ended)
{
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	const char *reason = "its process ended before the callback finished (it could not connect as "
		"its role, was terminated, or ran past cloudrun_sandbox.callback_timeout)";
	Datum		v[2] = {id_array(ended, false), CStringGetTextDatum(reason)};

	if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'failed', callback_error = $2 "
							  "WHERE id IN (SELECT id FROM sandbox.executions WHERE id = ANY($1) "
							  "AND callback_state = 'running' FOR UPDATE SKIP LOCKED) "
							  "RETURNING id, owner, callback", 2, types, v, NULL, false, 0)
		!= SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record ended callbacks");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		Oid			owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		cb = SPI_getbinval(tup, desc, 3, &isnull);

		report(owner, role_name(owner), callback_label(isnull ? InvalidOid : DatumGetObjectId(cb), id),
			   "failed", reason);
	}
}

/*
 * refusal says why a callback must not start (its role was dropped, lost
 * sandbox_user, or cannot log in), or NULL.  Catalog lookups only: no lock a
 * user can hold.
 */
static char *
refusal(Oid owner)
{
	HeapTuple	tp = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	Oid			user_role = get_role_oid("sandbox_user", true);
	char	   *name;
	bool		can_login;

	if (!HeapTupleIsValid(tp))
		return psprintf("its role (OID %u) no longer exists", owner);
	name = pstrdup(NameStr(((Form_pg_authid) GETSTRUCT(tp))->rolname));
	can_login = ((Form_pg_authid) GETSTRUCT(tp))->rolcanlogin;
	ReleaseSysCache(tp);
	if (!OidIsValid(user_role) || !has_privs_of_role(owner, user_role))
		return psprintf("role \"%s\" no longer has sandbox_user", name);
	if (!can_login)
		return psprintf("role \"%s\" cannot log in, and a callback runs in a connection of its own as its role",
						name);
	return NULL;
}

/*
 * claim_pending requeues the 'running' rows no process has (a previous
 * worker's), then claims up to room pending callbacks, marks them running and
 * returns those that may start (as CallbackArgs in cxt); those that may not
 * are recorded as failed.  Roles take turns: a role's n-th callback, counting
 * those it has running, goes after every other role's (n-1)-th.
 */
static List *
claim_pending(int room, MemoryContext cxt)
{
	Oid			t_live = INT8ARRAYOID;
	Datum		live = id_array(running, false);
	Oid			t_room = INT4OID;
	Datum		v_room = Int32GetDatum(room);
	List	   *start = NIL;
	List	   *refused = NIL;
	ListCell   *lc;
	uint64		n;
	typedef struct Refused
	{
		int64		id;
		char	   *why;
	} Refused;

	if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'pending' "
							  "WHERE id IN (SELECT id FROM sandbox.executions WHERE callback_state = 'running' "
							  "AND id <> ALL($1) FOR UPDATE SKIP LOCKED)", 1, &t_live, &live, NULL, false, 0)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not requeue callbacks");
	if (SPI_processed > 0)
		ereport(LOG, (errmsg("cloudrun_sandbox: queued again %llu callbacks that a previous worker had started",
							 (unsigned long long) SPI_processed)));
	if (SPI_execute_with_args(
							  "WITH busy AS (SELECT owner, count(*) AS n FROM sandbox.executions "
							  "  WHERE callback_state = 'running' GROUP BY owner), "
							  "cand AS (SELECT c.id, c.rn + coalesce(b.n, 0) AS turn "
							  "  FROM (SELECT DISTINCT owner FROM sandbox.executions WHERE callback_state = 'pending') o "
							  "  CROSS JOIN LATERAL (SELECT q.id, row_number() OVER (ORDER BY q.id) AS rn "
							  "    FROM sandbox.executions q WHERE q.callback_state = 'pending' AND q.owner = o.owner "
							  "    ORDER BY q.id LIMIT $1) c "
							  "  LEFT JOIN busy b ON b.owner = o.owner) "
							  "UPDATE sandbox.executions SET callback_state = 'running' "
							  "WHERE id IN (SELECT e.id FROM sandbox.executions e "
							  "  WHERE e.id IN (SELECT id FROM cand ORDER BY turn, id LIMIT $1) "
							  "  AND e.callback_state = 'pending' FOR UPDATE OF e SKIP LOCKED) "
							  "RETURNING id, owner, callback",
							  1, &t_room, &v_room, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim pending callbacks");
	n = SPI_processed;
	/* Fewer than asked: nothing more is pending (or the rest is locked, and comes back). */
	maybe_pending = n >= (uint64) room;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CallbackArgs *a = palloc0(sizeof(CallbackArgs));
		Datum		cb;
		char	   *why;

		a->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		a->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		a->database = MyDatabaseId;
		MemoryContextSwitchTo(old);
		cb = SPI_getbinval(tup, desc, 3, &isnull);
		why = refusal(a->owner);
		if (why == NULL)
		{
			start = lappend(start, a);
			continue;
		}
		report(a->owner, role_name(a->owner), callback_label(isnull ? InvalidOid : DatumGetObjectId(cb), a->id),
			   "was not run", why);
		{
			Refused    *r = palloc(sizeof(Refused));

			r->id = a->id;
			r->why = psprintf("not run: %s", why);
			refused = lappend(refused, r);
		}
	}
	foreach(lc, refused)
	{
		Refused    *r = lfirst(lc);
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		v[2] = {Int64GetDatum(r->id), CStringGetTextDatum(r->why)};

		if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'failed', callback_error = $2 "
								  "WHERE id = $1", 2, types, v, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record a refused callback");
	}
	return start;
}

/* start_one registers the background worker of one callback; false if no slot was free. */
static bool
start_one(const CallbackArgs *a)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	StaticAssertStmt(sizeof(CallbackArgs) <= BGW_EXTRALEN, "callback arguments do not fit bgw_extra");
	sb_dynamic_worker(&w, "sb_callback_main", "cloudrun_sandbox callback", a, sizeof(CallbackArgs));
	snprintf(w.bgw_name, BGW_MAXLEN, "cloudrun_sandbox callback of execution " INT64_FORMAT, a->id);
	w.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(CallbackContext);
	ok = RegisterDynamicBackgroundWorker(&w, &handle);
	if (ok)
	{
		RunningCallback *r = palloc0(sizeof(RunningCallback));

		r->id = a->id;
		r->handle = handle;
		running = lappend(running, r);
	}
	MemoryContextSwitchTo(old);
	return ok;
}

/* start registers the claimed callbacks' processes; those without a slot are queued again. */
static void
start(List *claimed)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *unstarted = NIL;
	ListCell   *lc;

	foreach(lc, claimed)
	{
		if (!start_one(lfirst(lc)))
			unstarted = lappend(unstarted, lfirst(lc));
	}
	if (unstarted == NIL)
	{
		if (claimed != NIL)
			no_slot_logged = false;
		return;
	}
	if (!no_slot_logged)
		ereport(LOG,
				(errmsg("cloudrun_sandbox: no background worker slot is free for a callback; it waits"),
				 errhint("Raise max_worker_processes: it must leave room for cloudrun_sandbox.max_callback_workers.")));
	no_slot_logged = true;
	xact_begin();
	{
		Oid			t = INT8ARRAYOID;
		Datum		v = id_array(unstarted, true);

		if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'pending' "
								  "WHERE id IN (SELECT id FROM sandbox.executions WHERE id = ANY($1) "
								  "AND callback_state = 'running' FOR UPDATE SKIP LOCKED)",
								  1, &t, &v, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not queue callbacks again");
	}
	xact_commit(cxt);
	retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CALLBACK_RETRY_MS);
}

/*
 * sb_callbacks_tick does the worker's callback bookkeeping for one turn of
 * its loop: records the callback processes that have ended, and starts
 * pending callbacks while there is room.  It waits for no callback.
 */
void
sb_callbacks_tick(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *ended = NIL;
	List	   *keep = NIL;
	List	   *claimed = NIL;
	int			room;
	ListCell   *lc;

	ticked = true;
	if (CallbackContext == NULL)
		CallbackContext = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox callbacks",
												ALLOCSET_SMALL_SIZES);
	foreach(lc, running)
	{
		RunningCallback *r = lfirst(lc);
		pid_t		pid;
		BgwHandleStatus st = GetBackgroundWorkerPid(r->handle, &pid);

		if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
		{
			MemoryContext old = MemoryContextSwitchTo(CallbackContext);

			keep = lappend(keep, r);
			MemoryContextSwitchTo(old);
		}
		else
			ended = lappend(ended, r);
	}
	list_free(running);
	running = keep;
	if (ended != NIL)
		maybe_pending = true;	/* a slot is free again */
	if (retry_at != 0 && GetCurrentTimestamp() >= retry_at)
	{
		retry_at = 0;
		maybe_pending = true;
	}
	room = sb_max_callback_workers - list_length(running);
	if (ended == NIL && (!maybe_pending || room <= 0 || retry_at != 0))
		return;

	xact_begin();
	if (ended != NIL)
		record_ended(ended);
	if (maybe_pending && room > 0 && retry_at == 0)
		claimed = claim_pending(room, cxt);
	xact_commit(cxt);
	foreach(lc, ended)
	{
		RunningCallback *r = lfirst(lc);

		pfree(r->handle);
		pfree(r);
	}
	list_free(ended);
	start(claimed);
}

/*
 * sb_callbacks_due returns how soon the worker's loop must turn again for its
 * callbacks (0: a callback process has ended; a retry's delay), or -1: the
 * postmaster's notice of a process that ends sets the latch.  Called once per
 * wait; nothing when sb_callbacks_tick() did not run in this turn.
 */
long
sb_callbacks_due(void)
{
	ListCell   *lc;

	if (!ticked)
		return -1;
	ticked = false;
	foreach(lc, running)
	{
		pid_t		pid;
		BgwHandleStatus st = GetBackgroundWorkerPid(((RunningCallback *) lfirst(lc))->handle, &pid);

		if (st != BGWH_STARTED && st != BGWH_NOT_YET_STARTED)
			return 0;
	}
	if (retry_at != 0)
		return Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), retry_at));
	return -1;
}

/* ---- The callback process ---- */

/* callback_deadline ends a callback that outlived its statement timeout (it caught the cancel). */
static void
callback_deadline(void)
{
	ProcDiePending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/* callback_search_path is the role's own search_path with pg_temp moved, explicitly, to the end. */
static char *
callback_search_path(void)
{
	char	   *raw = pstrdup(namespace_search_path ? namespace_search_path : "");
	List	   *names;
	StringInfoData out;
	ListCell   *lc;

	initStringInfo(&out);
	if (!SplitIdentifierString(raw, ',', &names))
		names = list_make2(pstrdup("$user"), pstrdup("public"));
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strcmp(name, "pg_temp") == 0)
			continue;
		appendStringInfo(&out, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&out, "pg_temp");
	return out.data;
}

/*
 * claim_row marks the execution's callback done in this transaction (as the
 * tables' owner) and returns the function to call, or InvalidOid when it is
 * not this process's to run (another ran it, or it is no longer running).
 */
static Oid
claim_row(const CallbackArgs *a)
{
	Oid			types[2] = {INT8OID, REGROLEOID};
	Datum		v[2] = {Int64GetDatum(a->id), ObjectIdGetDatum(a->owner)};
	Oid			callback = InvalidOid;

	/* The bookkeeping is ours: written whatever the role's default_transaction_read_only. */
	XactReadOnly = false;
	sb_spi_begin_owner();
	if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'done', callback_error = NULL "
							  "WHERE id = $1 AND owner = $2 AND callback_state = 'running' RETURNING callback",
							  2, types, v, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not mark the callback of execution " INT64_FORMAT " done", a->id);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			callback = DatumGetObjectId(d);
	}
	sb_spi_end_owner();
	XactReadOnly = DefaultXactReadOnly;
	return callback;
}

/* check_allowed raises an error unless this role may still run callback. */
static void
check_allowed(Oid callback)
{
	Oid			user_role = get_role_oid("sandbox_user", true);

	if (!OidIsValid(user_role) || !has_privs_of_role(GetUserId(), user_role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" no longer has sandbox_user", GetUserNameFromId(GetUserId(), false))));
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(callback)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the callback function (OID %u) no longer exists", callback)));
	if (pg_proc_aclcheck(callback, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(callback))));
}

/* invoke calls the callback with the execution id (it may return void, that is, null). */
static void
invoke(Oid callback, int64 id)
{
	LOCAL_FCINFO(fcinfo, 1);
	FmgrInfo	flinfo;

	fmgr_info(callback, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = Int64GetDatum(id);
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/*
 * record_failure records why the callback failed: in its row, the log and
 * worker_status().  Outside a transaction: role and label were made earlier.
 */
static void
record_failure(const CallbackArgs *a, const char *role, const char *label, const char *reason)
{
	MemoryContext cxt = CurrentMemoryContext;

	disable_timeout(STATEMENT_TIMEOUT, false);
	report(a->owner, role, label, "failed", reason);
	PG_TRY();
	{
		Oid			types[3] = {INT8OID, REGROLEOID, TEXTOID};
		Datum		v[3] = {Int64GetDatum(a->id), ObjectIdGetDatum(a->owner), CStringGetTextDatum(reason)};

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		XactReadOnly = false;
		PushActiveSnapshot(GetTransactionSnapshot());
		sb_spi_begin_owner();
		if (SPI_execute_with_args("UPDATE sandbox.executions SET callback_state = 'failed', callback_error = $3 "
								  "WHERE id = $1 AND owner = $2 AND callback_state = 'running'",
								  3, types, v, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record the failure");
		sb_spi_end_owner();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("cloudrun_sandbox: could not record the failure of the callback of execution "
						INT64_FORMAT ": %s", a->id, ed->message)));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/* run_callback runs one callback in its own transaction and records a failure. */
static void
run_callback(const CallbackArgs *a)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox callback",
											  ALLOCSET_DEFAULT_SIZES);
	char	   *volatile label;
	char	   *role;

	MemoryContextSwitchTo(cxt);
	label = callback_label(InvalidOid, a->id);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	role = MemoryContextStrdup(cxt, role_name(a->owner));
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, label);
	PG_TRY();
	{
		Oid			callback = claim_row(a);

		if (OidIsValid(callback))
		{
			label = MemoryContextStrdup(cxt, callback_label(callback, a->id));
			check_allowed(callback);
			invoke(callback, a->id);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		char	   *reason;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		reason = ed->detail ? psprintf("%s: %s", ed->message, ed->detail) : pstrdup(ed->message);
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		record_failure(a, role, label, reason);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * sb_callback_main is the callback process: a new session of the execution's
 * owner that runs its callback once, bounded by callback_timeout, and exits.
 */
void
sb_callback_main(Datum arg)
{
	CallbackArgs a;
	int			ms;
	char		buf[32];

	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(a));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Connected as the role: its settings, its temporary schema, nobody else's session. */
	BackgroundWorkerInitializeConnectionByOid(a.database, a.owner, 0);
	SetConfigOption("application_name", "cloudrun_sandbox callback", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("cloudrun_sandbox callback");

	ms = sb_callback_timeout_s * 1000;
	snprintf(buf, sizeof(buf), "%d", StatementTimeout > 0 && StatementTimeout < ms ? StatementTimeout : ms);
	SetConfigOption("statement_timeout", buf, PGC_SUSET, PGC_S_SESSION);
	snprintf(buf, sizeof(buf), "%d", LockTimeout > 0 && LockTimeout < ms ? LockTimeout : ms);
	SetConfigOption("lock_timeout", buf, PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("search_path", callback_search_path(), PGC_USERSET, PGC_S_SESSION);

	/*
	 * Nothing arms statement_timeout outside a client's statement, so arm it
	 * here, once for the whole callback; a SET inside cannot lift it.  A
	 * callback that catches the cancel and goes on is ended a little later.
	 */
	enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
	enable_timeout_after(RegisterTimeout(USER_TIMEOUT, callback_deadline), ms + CALLBACK_GRACE_MS);
	run_callback(&a);
	proc_exit(0);
}
