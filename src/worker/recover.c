/*
 * recover.c
 *		Recovery after a crash or restart of the worker: local executions
 *		that died with it are failed (or queued again if they never started);
 *		cloud executions are re-attached by name, or by their request.
 */
#include "cloudrun_sandbox.h"

#include "worker/recover.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gcloud.h"
#include "worker/flight.h"
#include "worker/xact.h"

/*
 * The executions a previous worker left that are still to be resolved, by
 * id: local ones that had started (to fail) and launches that never happened
 * (to queue again).  Each is resolved once its row can be locked without
 * waiting: a user's open transaction that called cancel() holds it.
 */
static List *pending_fail = NIL;	/* of int64 ids, in WorkerContext */
static List *pending_requeue = NIL;

static List *pend(List *list, int64 id);

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
	List	   *volatile requeue = NIL;
	ListCell   *lc;
	int			ret;

	begin("cloudrun_sandbox: recover cloud");
	ret = SPI_execute("SELECT e.id, e.session, e.owner, e.command, e.timeout, e.call_env, e.callback, "
					  "s.backend, s.generation, e.status, e.remote_name, e.session_id, s.storage_key, "
					  "COALESCE(e.run_id, e.id) AS run_id, e.retries "
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
			f->run = f->driver->attach(f->key, f->run_id, remote);
		}
		PG_CATCH();
		{
			char	   *msg = caught(f->cxt);

			flight_error(f, msg);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
		if (f->state == FLIGHT_FINISHED)
		{
			/* Its attach failed: recorded as an error. */
			flights = keep_list(flights, f);
			continue;
		}
		if (f->run == NULL)
		{
			requeue = keep_list(requeue, f);
			continue;
		}
		flight_attached(f);
		flights = keep_list(flights, f);
	}
	foreach(lc, requeue)
	{
		WorkerFlight *f = lfirst(lc);

		pending_requeue = pend(pending_requeue, f->id);
		(void) session_lock(f->session_id, false);
		MemoryContextDelete(f->cxt);
	}
	(void) recover_pending();
	list_free(requeue);
	commit();
	recover_committed();
	if (flights != NIL)
		ereport(LOG, (errmsg("cloudrun_sandbox: re-attached %d cloud executions", list_length(flights))));
}

/* ids_datum makes an int8[] of a list of ids. */
static Datum
ids_datum(List *ids)
{
	ArrayBuildState *a = initArrayResult(INT8OID, CurrentMemoryContext, false);
	ListCell   *lc;

	foreach(lc, ids)
		accumArrayResult(a, Int64GetDatum(*(int64 *) lfirst(lc)), false, INT8OID,
						 CurrentMemoryContext);
	return makeArrayResult(a, CurrentMemoryContext);
}

/*
 * resolve runs sql (taking the array of ids it could lock) over the ids of a
 * list it can lock now, and returns the list of those it could not; with
 * what, it logs how many rows it changed.
 */
static List *
resolve(List *ids, const char *sql, const char *what)
{
	Oid			t = INT8ARRAYOID;
	Datum		a;
	List	   *left = NIL;
	ListCell   *lc;

	if (ids == NIL)
		return NIL;
	a = ids_datum(ids);
	if (SPI_execute_with_args("SELECT id FROM sandbox.executions WHERE id = ANY($1) "
							  "FOR UPDATE SKIP LOCKED", 1, &t, &a, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock executions to recover");
	{
		ArrayBuildState *got = initArrayResult(INT8OID, CurrentMemoryContext, false);
		uint64		n = SPI_processed;
		SPITupleTable *tt = SPI_tuptable;
		Datum		g;

		foreach(lc, ids)
		{
			int64		id = *(int64 *) lfirst(lc);
			bool		locked = false;

			for (uint64 i = 0; i < n && !locked; i++)
			{
				bool		isnull;

				locked = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull)) == id;
			}
			if (locked)
				accumArrayResult(got, Int64GetDatum(id), false, INT8OID, CurrentMemoryContext);
			else
				left = keep_list(left, lfirst(lc));
		}
		g = makeArrayResult(got, CurrentMemoryContext);
		if (SPI_execute_with_args(sql, 1, &t, &g, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not recover executions");
		if (SPI_processed > 0 && what != NULL)
			ereport(LOG, (errmsg("cloudrun_sandbox: %llu %s", (unsigned long long) SPI_processed,
								 what)));
	}
	return left;
}

/* What recover_pending() left, kept by recover_committed() once its transaction commits. */
static List *left_fail = NIL;
static List *left_requeue = NIL;

/*
 * recover_pending resolves what it can of the executions recovery left, in
 * the caller's transaction (recover_committed() after its commit); true
 * while some are left, to try again soon.
 */
bool
recover_pending(void)
{
	left_fail = resolve(pending_fail, "UPDATE sandbox.executions SET status = 'failed', "
						"error = 'worker restarted', finished_at = now(), stdin = NULL, "
						"duration = now() - started_at, "
						"callback_state = CASE WHEN callback IS NOT NULL THEN 'pending' END "
						"WHERE id = ANY($1) AND status = 'running'",
						"local executions failed: worker restarted");
	left_requeue = resolve(pending_requeue, "UPDATE sandbox.executions SET status = 'queued', "
						   "started_at = NULL WHERE id = ANY($1) AND status IN ('launching', 'running')",
						   NULL);
	return left_fail != NIL || left_requeue != NIL;
}

/* recover_committed keeps what recover_pending() left, now that what it did has committed. */
void
recover_committed(void)
{
	if (pending_fail == NIL && pending_requeue == NIL)
		return;
	list_free(pending_fail);
	list_free(pending_requeue);
	pending_fail = left_fail;
	pending_requeue = left_requeue;
	left_fail = left_requeue = NIL;
}

/* pend keeps an execution's id on a list of those to resolve. */
static List *
pend(List *list, int64 id)
{
	int64	   *p = MemoryContextAlloc(WorkerContext, sizeof(int64));

	*p = id;
	return keep_list(list, p);
}

/*
 * recover resolves what a previous worker left in flight.  Local executions
 * died with it: those that had started are failed with "worker restarted",
 * those that never started are queued again.  Cloud executions keep running
 * in Cloud Run; the driver re-attaches them by name and collects results.
 * (Background processes are recovered by bg_recover(), bgwatch.c.)  What it
 * cannot lock now, recover_pending() resolves later.
 */
void
recover(void)
{
	int			ret;

	begin("cloudrun_sandbox: recover");
	ret = SPI_execute("SELECT e.id, e.status = 'running' FROM sandbox.executions e "
					  "JOIN sandbox.sessions s ON s.id = e.session_id WHERE s.backend = 'local' "
					  "AND e.status IN ('running', 'launching')", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read local executions in flight");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			pending_fail = pend(pending_fail, id);
		else
			pending_requeue = pend(pending_requeue, id);
	}
	(void) recover_pending();
	commit();
	recover_committed();
	recover_cloud();
}
