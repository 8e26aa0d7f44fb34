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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gcloud.h"
#include "worker/flight.h"
#include "worker/xact.h"

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
 * (Background processes are recovered by bg_recover(), bgwatch.c.)
 */
void
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
}

