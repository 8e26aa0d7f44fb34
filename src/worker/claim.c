/*
 * claim.c
 *		Claiming queued executions: the oldest queued execution of each
 *		session with nothing in flight, up to the worker's free capacity,
 *		committed as 'launching' before anything is launched.
 *
 * Fair between roles: the free places go in turns, first to the roles with
 * the fewest executions in flight, so one role's many submits never keep
 * another role's command waiting behind all of them; a role uses all the
 * capacity only while no other role has anything queued.  Running commands
 * are never stopped to make room: a waiting role gets the next place free.
 */
#include "worker/claim.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/memutils.h"

#include "worker/flight.h"
#include "worker/xact.h"

bool		sessions_blocked = false;
TimestampTz retry_due_at = 0;

/*
 * note_retry_due reads when the earliest retry still waiting for its time is
 * due (an index lookup), so that the loop wakes then.
 */
static void
note_retry_due(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT min(next_attempt_at) FROM sandbox.executions "
						   "WHERE status = 'queued' AND next_attempt_at IS NOT NULL "
						   "AND next_attempt_at > now()", 0, NULL);
		SPI_keepplan(plan);
	}
	/* Not read-only: it must see the retries this transaction has just queued. */
	if (SPI_execute_plan(plan, NULL, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read when the next retry is due");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	retry_due_at = isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * full_owners returns the roles (oid[]) that hold max_concurrent flights
 * already, most of them finished and waiting for a lock the role's own open
 * transaction holds: they get no more until those are recorded, so that what
 * the worker keeps in memory for one role stays bounded.  The flights in
 * recorded (this transaction has just recorded them; they leave the list at
 * its commit) hold no place: counting them would keep their role from its
 * next commands with nothing left to wake the worker for them.
 */
static Datum
full_owners(List *recorded)
{
	ArrayBuildState *a = initArrayResult(OIDOID, CurrentMemoryContext, false);
	List	   *seen = NIL;
	ListCell   *lc;

	/* No role can hold max_concurrent flights while there are fewer in all. */
	if (list_length(flights) - list_length(recorded) < sb_max_concurrent)
		return makeArrayResult(a, CurrentMemoryContext);
	foreach(lc, flights)
	{
		Oid			owner = ((WorkerFlight *) lfirst(lc))->owner;
		int			n = 0;
		ListCell   *lc2;

		if (list_member_oid(seen, owner))
			continue;
		seen = lappend_oid(seen, owner);
		foreach(lc2, flights)
		{
			WorkerFlight *f = lfirst(lc2);

			n += f->owner == owner && !list_member_ptr(recorded, f);
		}
		if (n >= sb_max_concurrent)
			accumArrayResult(a, ObjectIdGetDatum(owner), false, OIDOID, CurrentMemoryContext);
	}
	list_free(seen);
	return makeArrayResult(a, CurrentMemoryContext);
}

/*
 * claim takes queued executions whose sessions have nothing in flight, one
 * per session, in turns between roles (oldest first within a role), up to
 * the free capacity, and marks them launching; a retry waits for its
 * next_attempt_at (and its session's later commands wait for it)
 * (committed with the caller's transaction).  A session a synchronous exec
 * holds is skipped for now.  Appends the new flights, CLAIMED, to *claimed
 * as it goes (whose session locks a caller whose transaction fails releases).
 * recorded lists the flights the caller's transaction has just recorded.
 */
void
claim(List **claimed, List *recorded)
{
	static SPIPlanPtr plan_claim = NULL;
	static SPIPlanPtr plan_launching = NULL;
	int			room = sb_max_concurrent - flights_busy();
	Datum		args[2];
	Oid			argtypes[2] = {INT4OID, OIDARRAYOID};
	ArrayBuildState *ids;
	List	   *mine = NIL;

	if (room <= 0)
		return;
	if (plan_claim == NULL)
	{
		plan_claim = SPI_prepare(
			/*
			 * Each session's oldest active execution (its head), read as a
			 * skip scan of executions_active_idx: one index probe per session
			 * with something active, however long the queues are.  A session
			 * has at most one execution in flight, always its head.
			 */
			"WITH RECURSIVE act AS ("
			"  (SELECT e.session_id, e.id, e.status, e.owner, e.next_attempt_at FROM sandbox.executions e "
			"    WHERE e.status IN ('queued', 'launching', 'running') AND e.session_id IS NOT NULL "
			"    ORDER BY e.session_id, e.id LIMIT 1) "
			"  UNION ALL "
			"  SELECT n.* FROM act a, LATERAL (SELECT e.session_id, e.id, e.status, e.owner, e.next_attempt_at "
			"    FROM sandbox.executions e WHERE e.status IN ('queued', 'launching', 'running') "
			"    AND e.session_id > a.session_id ORDER BY e.session_id, e.id LIMIT 1) n), "
			/* ...those queued are the candidates (a retry waits for its next_attempt_at)... */
			"heads AS (SELECT id, owner FROM act WHERE status = 'queued' AND owner::oid <> ALL($2) "
			"  AND (next_attempt_at IS NULL OR next_attempt_at <= now())), "
			/* ...taken in turns between roles: each role's n-th comes after its runs in flight. */
			"busy AS (SELECT owner, count(*) AS n FROM act WHERE status <> 'queued' GROUP BY owner), "
			"turns AS (SELECT h.id, COALESCE(b.n, 0) + row_number() OVER (PARTITION BY h.owner ORDER BY h.id) AS turn "
			"  FROM heads h LEFT JOIN busy b ON b.owner = h.owner), "
			"c AS (SELECT e.id FROM sandbox.executions e JOIN turns t ON t.id = e.id "
			"  ORDER BY t.turn, e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED) "
			"SELECT e.id, e.session, e.owner, e.command, e.timeout, e.call_env, e.callback, "
			"  s.backend, s.generation, e.session_id, s.storage_key, e.stdin, e.call_cwd, "
			"  COALESCE(e.run_id, e.id) AS run_id, e.retries "
			"FROM c JOIN sandbox.executions e ON e.id = c.id "
			"LEFT JOIN sandbox.sessions s ON s.id = e.session_id ORDER BY e.id",
			2, argtypes);
		SPI_keepplan(plan_claim);
	}
	args[0] = Int32GetDatum(room);
	args[1] = full_owners(recorded);
	if (SPI_execute_plan(plan_claim, args, NULL, false, 0) != SPI_OK_SELECT)
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
		*claimed = keep_list(*claimed, f);
		mine = lappend(mine, f);
		accumArrayResult(ids, Int64GetDatum(f->id), false, INT8OID, CurrentMemoryContext);
	}
	if (mine != NIL)
	{
		Oid			t = INT8ARRAYOID;
		Datum		a = makeArrayResult(ids, CurrentMemoryContext);
		ListCell   *lc;

		if (plan_launching == NULL)
		{
			/*
			 * Its own snapshot, taken with the rows locked: one a cancel (or a
			 * drop) changed after the claim's snapshot and before its lock is
			 * not queued any more, and is let go.
			 */
			plan_launching = SPI_prepare("UPDATE sandbox.executions SET status = 'launching', "
										 "started_at = now() WHERE id = ANY($1) AND status = 'queued' "
										 "RETURNING id", 1, &t);
			SPI_keepplan(plan_launching);
		}
		if (SPI_execute_plan(plan_launching, &a, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not mark executions launching");
		foreach(lc, mine)
		{
			WorkerFlight *f = lfirst(lc);
			bool		marked = false;

			for (uint64 i = 0; i < SPI_processed && !marked; i++)
			{
				bool		isnull;

				marked = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
													 1, &isnull)) == f->id;
			}
			if (!marked)
			{
				*claimed = list_delete_ptr(*claimed, f);
				if (f->failure == NULL)
					(void) session_lock(f->session_id, false);
				MemoryContextDelete(f->cxt);
			}
		}
	}
	list_free(mine);
	note_retry_due();
}
