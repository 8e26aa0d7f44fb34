/*
 * complete.c
 *		Completion of flights: applying requested cancels, and recording a
 *		finished flight (its history row, the session's state and mirror, a
 *		NOTIFY); after the commit, releasing its session and waking waiters.
 */
#include "worker/complete.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "shared.h"
#include "worker/callback.h"
#include "worker/claim.h"
#include "worker/xact.h"

/* apply_cancels cancels in-flight executions whose cancel was requested. */
void
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

			if (f->id == id)
				flight_cancel(f);
		}
	}
}

/*
 * lock_rows takes, without waiting, the rows that recording f updates: its
 * executions row and its session's row.  false if another transaction holds
 * one of them (a user's open transaction that called submit(), exec() or
 * cancel(), say): the flight is recorded later.  A row that is gone (a
 * dropped session's) needs no lock; whether one that could not be locked is
 * there is asked only then, so that the common case is one statement.
 */
static bool
lock_rows(WorkerFlight *f)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_exist = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		v[2];
	bool		isnull;
	int64		locked_e;
	int64		locked_s;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT (SELECT count(*) FROM (SELECT FROM sandbox.executions "
						   "    WHERE id = $1 FOR UPDATE SKIP LOCKED) e), "
						   "  (SELECT count(*) FROM (SELECT FROM sandbox.sessions "
						   "    WHERE id = $2 FOR NO KEY UPDATE SKIP LOCKED) s)", 2, types);
		SPI_keepplan(plan);
		plan_exist = SPI_prepare("SELECT (SELECT count(*) FROM sandbox.executions WHERE id = $1), "
								 "  (SELECT count(*) FROM sandbox.sessions WHERE id = $2)", 2, types);
		SPI_keepplan(plan_exist);
	}
	v[0] = Int64GetDatum(f->id);
	v[1] = Int64GetDatum(f->session_id);
	if (SPI_execute_plan(plan, v, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not lock the rows of execution " INT64_FORMAT, f->id);
	locked_e = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	locked_s = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (locked_e == 1 && locked_s == 1)
		return true;
	/* Not locked: held by another transaction, or not there. */
	if (SPI_execute_plan(plan_exist, v, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look up the rows of execution " INT64_FORMAT, f->id);
	return locked_e == DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		locked_s == DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/*
 * requeue_flight records a finished attempt whose status its row's retry
 * policy retries (and whose cancel nobody asked for) in
 * sandbox.retried_attempts and queues its execution again, due after the
 * delay (doubled for each retry, capped at a day), with a new run_id for its
 * objects; its stdin and directory stay.  v and n are record_flight's
 * parameters.  false if the row's policy does not retry it (no retries left,
 * another status, a cancel requested, its session dropped): then it is
 * recorded as final.
 */
static bool
requeue_flight(WorkerFlight *f, Datum *v, const char *n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[11] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, BOOLOID, BOOLOID,
	TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	bool		isnull;
	Datum		due;

	if (plan == NULL)
	{
		plan = SPI_prepare("WITH a AS (INSERT INTO sandbox.retried_attempts (execution_id, attempt, owner, "
						   "  status, exit_code, stdout, stderr, stdout_truncated, stderr_truncated, cwd, error, "
						   "  remote_name, started_at, finished_at, duration) "
						   "  SELECT id, attempt, owner, $2, $3, $4, $5, $6, $7, $8, $9, "
						   "    COALESCE($11, remote_name), started_at, $10, $10 - started_at "
						   "  FROM sandbox.executions WHERE id = $1 AND NOT cancel_requested "
						   "    AND attempt <= retries "
						   "    AND EXISTS (SELECT FROM sandbox.sessions s WHERE s.id = session_id) "
						   "    AND ($2 = 'error' OR (retry_on = 'failure' AND $2 IN ('failed', 'timed_out'))) "
						   "  RETURNING execution_id, bytes) "
						   "UPDATE sandbox.executions e SET status = 'queued', attempt = e.attempt + 1, "
						   "  exit_code = NULL, stdout = NULL, stderr = NULL, stdout_truncated = false, "
						   "  stderr_truncated = false, cwd = NULL, error = NULL, remote_name = NULL, "
						   "  started_at = NULL, finished_at = NULL, duration = NULL, "
						   "  run_id = nextval(pg_get_serial_sequence('sandbox.executions', 'id')), "
						   "  next_attempt_at = $10 + make_interval(secs => LEAST(86400, "
						   "    extract(epoch FROM COALESCE(e.retry_delay, interval '1 second'))::float8 "
						   "    * power(2::float8, LEAST(e.attempt - 1, 100)))), "
						   "  attempts_bytes = e.attempts_bytes + a.bytes "
						   "FROM a WHERE e.id = a.execution_id RETURNING e.next_attempt_at",
						   11, types);
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, v, n, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not queue execution " INT64_FORMAT " again", f->id);
	if (SPI_processed != 1)
		return false;
	due = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && (retry_due_at == 0 || DatumGetTimestampTz(due) < retry_due_at))
		retry_due_at = DatumGetTimestampTz(due);
	f->requeued = true;
	return true;
}

/*
 * record_flight records one finished flight whose rows are locked: history
 * row, state, mirror, NOTIFY; or, for an attempt its policy retries, the
 * attempt and its execution queued again (no NOTIFY, no callback: those
 * come after the last attempt).  false if a lock wait timed out on the way
 * (lock_timeout, the safety net): then nothing of it may be kept.
 */
static bool
record_flight(WorkerFlight *f)
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
	volatile int code = 0;

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
			sb_decode_result(&outcome, f->result, f->result_len, f->payloads, f->npayloads);
			sb_apply_state(&session, f->driver, &outcome, &f->sstate);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			int			c;

			error = caught_code(cxt, &c);
			code = c;
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			memset(r, 0, sizeof(*r));
			r->status = SB_STATUS_ERROR;
		}
		PG_END_TRY();
		if (code == ERRCODE_LOCK_NOT_AVAILABLE)
			return false;
		status = sb_status_name(r->status);
		if (r->error != NULL && error == NULL)
			error = r->error;
	}
	if (plan == NULL)
	{
		plan = SPI_prepare("UPDATE sandbox.executions SET status = $2, exit_code = $3, stdout = $4, "
						   "stderr = $5, stdout_truncated = $6, stderr_truncated = $7, cwd = $8, "
						   "error = $9, finished_at = $10, duration = $10 - started_at, stdin = NULL, "
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
	n[3] = r->stdout_data ? ' ' : 'n';
	v[3] = r->stdout_data ? PointerGetDatum(sb_outcome_text(&outcome, false)) : (Datum) 0;
	n[4] = r->stderr_data ? ' ' : 'n';
	v[4] = r->stderr_data ? PointerGetDatum(sb_outcome_text(&outcome, true)) : (Datum) 0;
	v[5] = BoolGetDatum(r->stdout_truncated);
	v[6] = BoolGetDatum(r->stderr_truncated);
	v[7] = r->has_state ? CStringGetTextDatum(r->cwd) : (Datum) 0;
	n[7] = r->has_state ? ' ' : 'n';
	v[8] = error ? CStringGetTextDatum(error) : (Datum) 0;
	n[8] = error ? ' ' : 'n';
	v[9] = TimestampTzGetDatum(GetCurrentTimestamp());
	v[10] = (Datum) 0;
	n[10] = 'n';
	f->requeued = false;
	if (f->retries > 0 && !f->cancelled &&
		(strcmp(status, "error") == 0 || strcmp(status, "failed") == 0 ||
		 strcmp(status, "timed_out") == 0) && requeue_flight(f, v, n))
		return true;
	if (SPI_execute_plan(plan, v, n, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record execution " INT64_FORMAT, f->id);
	Async_Notify("sandbox_executions", psprintf(INT64_FORMAT, f->id));
	return true;
}

/*
 * complete_flight records one finished flight, in a subtransaction, without
 * waiting for a lock: false (nothing recorded, the flight unchanged, to try
 * again at its retry_at) when a user's transaction holds one of its rows.
 * Its result stays in the worker's memory meanwhile, and its session stays
 * locked against other runs.
 */
static bool
complete_flight(WorkerFlight *f)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int64		generation = f->sstate.generation;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		done = lock_rows(f) && record_flight(f);
		if (done)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		int			code;
		char	   *msg = caught_code(cxt, &code);

		RollbackAndReleaseCurrentSubTransaction();
		if (code != ERRCODE_LOCK_NOT_AVAILABLE)
		{
			/* Recorded as an error next time, without what could not be stored. */
			ereport(WARNING,
					(errmsg("cloudrun_sandbox: could not record execution " INT64_FORMAT ": %s",
							f->id, msg)));
			f->failure = MemoryContextStrdup(f->cxt, msg);
			f->result = NULL;
			f->npayloads = 0;
		}
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (!done)
	{
		f->sstate.generation = generation;
		f->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SB_RETRY_LOCKED_MS);
	}
	return done;
}

/*
 * complete_finished records the finished flights that are due, in the
 * caller's transaction, appending those recorded to *done; they stay in
 * flights until after_commit(), so that a transaction that fails loses none.
 */
void
complete_finished(List **done)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, flights)
	{
		WorkerFlight *f = lfirst(lc);

		if (flight_due(f, now) && complete_flight(f))
			*done = keep_list(*done, f);
	}
}

static void history_after_completions(List *done);

/*
 * after_commit releases finished flights' sessions and wakes waiters; their
 * callbacks, queued in their rows, run in processes of their own (callback.c).
 */
void
after_commit(List *done)
{
	static TimestampTz last_prune = 0;
	ListCell   *lc;
	int			n;

	if (done == NIL)
		return;
	flights_forget(done);
	foreach(lc, done)
	{
		WorkerFlight *f = lfirst(lc);

		if (f->session_id != 0 && f->key != NULL)
			(void) session_lock(f->session_id, false);
	}
	n = 0;
	foreach(lc, done)
		n += !((WorkerFlight *) lfirst(lc))->requeued;
	SpinLockAcquire(&sb_shared->mutex);
	sb_shared->completed += n;
	SpinLockRelease(&sb_shared->mutex);
	ConditionVariableBroadcast(&sb_shared->completion_cv);
	history_after_completions(done);
	foreach(lc, done)
	{
		WorkerFlight *f = lfirst(lc);

		if (OidIsValid(f->callback) && !f->cancelled && !f->requeued)
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
 * The worker bounds the history bytes of the roles whose executions it just
 * finished, in the turn that finished them (so an idle worker issues no
 * query): a role once it has added 1/64 of the bound since its last prune, by
 * an estimate of its rows' bytes (command, result, environment, 256 a row),
 * as a backend does for its exec rows (sb_execution_prune).  So a role's
 * history passes the bound by at most that 1/64 between prunes.
 */
typedef struct HistoryRole
{
	Oid			owner;			/* the hash key */
	int64		bytes;			/* added since its last prune (estimated) */
} HistoryRole;

static HTAB *history_roles = NULL;

/* env_bytes estimates the bytes of a call's environment: its names and string values. */
static int64
env_bytes(json_t *env)
{
	const char *name;
	json_t	   *value;
	int64		n = 0;

	if (env == NULL || !json_is_object(env))
		return 0;
	json_object_foreach(env, name, value)
		n += strlen(name) + (json_is_string(value) ? json_string_length(value) : 0);
	return n;
}

/*
 * history_after_completions prunes, one batch each, the roles of done that are
 * due (see above).  It waits for no lock (the deletes skip locked rows); a
 * failure is logged, and the role is due again at its next completion.
 */
static void
history_after_completions(List *done)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		step = Max((int64) sb_history_max_kb * 1024 / 64, 1);
	List	   *volatile due = NIL;
	ListCell   *lc;

	if (sb_history_max_kb <= 0)
		return;
	if (history_roles == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(HistoryRole);
		history_roles = hash_create("cloudrun_sandbox history roles", 64, &ctl,
									HASH_ELEM | HASH_BLOBS);
	}
	foreach(lc, done)
	{
		WorkerFlight *f = lfirst(lc);
		bool		found;
		HistoryRole *r = hash_search(history_roles, &f->owner, HASH_ENTER, &found);

		if (!found)
			r->bytes = 0;
		r->bytes += 256 + (f->command ? strlen(f->command) : 0) + f->result_len +
			(f->npayloads > 0 ? f->payloads[0].len : 0) + (f->npayloads > 1 ? f->payloads[1].len : 0) +
			(f->failure ? strlen(f->failure) : 0) + env_bytes(f->call_env);
		if (r->bytes >= step)
		{
			r->bytes = 0;
			due = list_append_unique_oid(due, f->owner);
		}
	}
	if (due == NIL)
		return;
	begin("cloudrun_sandbox: history bytes");
	PG_TRY();
	{
		foreach(lc, due)
			(void) sb_history_prune_role(lfirst_oid(lc));
		commit();
	}
	PG_CATCH();
	{
		char	   *msg = caught(cxt);

		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		foreach(lc, due)
		{
			HistoryRole *r = hash_search(history_roles, &lfirst_oid(lc), HASH_FIND, NULL);

			if (r != NULL)
				r->bytes = step;	/* due again at its next completion */
		}
		ereport(WARNING,
				(errmsg("cloudrun_sandbox: could not bound history bytes; trying again at the next completion: %s",
						msg)));
	}
	PG_END_TRY();
	list_free(due);
}
