/*
 * flight.c
 *		The state machine of one flight (an execution the worker claimed):
 *		one enum (FlightState, flight.h) and one switch (flight_advance).
 *
 * A flight is driven without blocking: each call of flight_advance() takes
 * the steps its state allows now and returns.  The steps that belong to many
 * flights at once are done here too, over a list: the batch launch of staged
 * flights (one remote execution for many requests) and the commit of
 * launched flights as 'running' with their remote names.
 */
#include "worker/flight.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gcloud.h"
#include "local/quota.h"
#include "shared.h"
#include "worker/xact.h"

#define FIRST_POLL_MS 5
#define MAX_POLL_MS 1000

List	   *flights = NIL;

/* new_flight makes a flight (CLAIMED) from a claimed row's columns. */
WorkerFlight *
new_flight(HeapTuple tup, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox flight",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	WorkerFlight *f = palloc0(sizeof(WorkerFlight));
	bool		isnull;
	Datum		d;

	f->cxt = cxt;
	f->state = FLIGHT_CLAIMED;
	f->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	/* A retry's attempt has objects of its own (results are create-only). */
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "run_id"), &isnull);
	f->run_id = isnull ? f->id : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "retries"), &isnull);
	f->retries = isnull ? 0 : DatumGetInt32(d);
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
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "stdin"), &isnull);
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPCopy(d);

		f->input.has_stdin = true;
		f->input.stdin_data = VARDATA(b);
		f->input.stdin_len = VARSIZE(b) - VARHDRSZ;
	}
	f->input.cwd = SPI_getvalue(tup, desc, SPI_fnumber(desc, "call_cwd"));
	f->driver = sb_driver_for(f->backend);
	/* Read (in this transaction) its owner's job and prefix, for the launch after it. */
	if (f->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(f->owner);
	else
		sb_quota_read_role(f->owner);	/* its quota, should the launch make its storage */
	MemoryContextSwitchTo(old);
	return f;
}

/* flight_error remembers why a flight failed in the worker (not in the sandbox): FINISHED. */
void
flight_error(WorkerFlight *f, const char *message)
{
	MemoryContext old = MemoryContextSwitchTo(f->cxt);

	f->failure = pstrdup(message);
	f->state = FLIGHT_FINISHED;
	MemoryContextSwitchTo(old);
	sb_shared_set_role_error(f->owner, message);
}

/* flight_cancel stops a flight whose cancel was requested: FINISHED, cancelled. */
void
flight_cancel(WorkerFlight *f)
{
	if (f->state == FLIGHT_FINISHED)
		return;
	if (f->run != NULL)
		f->driver->cancel(f->run);
	f->cancelled = true;
	f->state = FLIGHT_FINISHED;
}

/* flight_attached makes a flight re-attached after a restart RUNNING again. */
void
flight_attached(WorkerFlight *f)
{
	f->state = FLIGHT_RUNNING;
	f->started_at = GetCurrentTimestamp();
	f->deadline = sb_exec_deadline(f->driver, f->started_at, f->timeout_ms);
}

/*
 * flight_release_input frees the flight's copy of its stdin (up to
 * max_stdin_bytes) once its request is sent: a flight may run for an hour,
 * and a role may have max_concurrent of them.  A retry reads it again from
 * its row.
 */
static void
flight_release_input(WorkerFlight *f)
{
	if (f->input.stdin_data == NULL || f->run == NULL ||
		(f->driver->request_sent != NULL && !f->driver->request_sent(f->run)))
		return;
	pfree((char *) f->input.stdin_data - VARHDRSZ);	/* the bytea new_flight copied */
	f->input.stdin_data = NULL;
	f->input.stdin_len = 0;
}

/*
 * flight_start writes a claimed flight's request and stages its run
 * (batching drivers: STAGED) or launches it (LAUNCHED).
 */
static void
flight_start(WorkerFlight *f)
{
	SbSession	session = {.id = f->session_id, .name = f->session, .key = f->key,
	.owner = f->owner, .backend = f->backend};

	if (f->failure != NULL)
	{
		f->state = FLIGHT_FINISHED;
		return;
	}
	PG_TRY();
	{
		char	   *request = sb_prepare_exec_ex(&session, f->driver, f->fresh, f->run_id, f->command,
												 f->call_env, f->timeout_ms, &f->input,
												 &f->sstate);
		SbPayload	stdin_payload;

		f->started_at = GetCurrentTimestamp();
		f->deadline = sb_exec_deadline(f->driver, f->started_at, f->timeout_ms);
		if (f->driver->stage != NULL)
		{
			f->run = f->driver->stage(f->key, f->run_id, request);	/* see flights_launch_staged() */
			f->state = FLIGHT_STAGED;
		}
		else
		{
			f->run = f->driver->launch(f->key, f->run_id, request,
									   sb_call_input_payload(f->driver, &f->input,
															 &stdin_payload));
			f->state = FLIGHT_LAUNCHED;
		}
		flight_release_input(f);
	}
	PG_CATCH();
	{
		char	   *msg = caught(f->cxt);

		flight_error(f, msg);
	}
	PG_END_TRY();
}

/* flight_abandon ends a flight whose step raised: its run cancelled, the error kept. */
static void
flight_abandon(WorkerFlight *f)
{
	char	   *msg = caught(f->cxt);

	if (f->driver->cancel)
		f->driver->cancel(f->run);
	flight_error(f, msg);
}

/*
 * flight_step drives a RUNNING flight's run without blocking: COLLECTING once
 * it has ended; FINISHED (cancelled, failed) past its deadline or on an error.
 */
static void
flight_step(WorkerFlight *f)
{
	int			fds[8];
	bool		polled;

	flight_release_input(f);
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
	PG_TRY();
	{
		if (f->driver->step(f->run))
			f->state = FLIGHT_COLLECTING;
		else if (GetCurrentTimestamp() > f->deadline)
		{
			f->driver->cancel(f->run);
			flight_error(f, "the sandbox did not answer in time");
		}
	}
	PG_CATCH();
	{
		flight_abandon(f);
	}
	PG_END_TRY();
}

/* flight_collect reads the result of a run that has ended: FINISHED. */
static void
flight_collect(WorkerFlight *f)
{
	PG_TRY();
	{
		f->result = f->driver->finish(f->run, &f->result_len);
		f->npayloads = f->driver->payloads ? f->driver->payloads(f->run, f->payloads, 2) : 0;
		f->state = FLIGHT_FINISHED;
	}
	PG_CATCH();
	{
		flight_abandon(f);
	}
	PG_END_TRY();
}

/*
 * flight_advance takes every step a flight can take by itself now, without
 * blocking: the one switch over its states.
 */
void
flight_advance(WorkerFlight *f)
{
	MemoryContext old = MemoryContextSwitchTo(f->cxt);
	FlightState before;

	do
	{
		before = f->state;
		switch (f->state)
		{
			case FLIGHT_CLAIMED:
				flight_start(f);
				break;
			case FLIGHT_STAGED:
				/* Waits for flights_launch_staged(), which launches a batch. */
				break;
			case FLIGHT_LAUNCHING:

				/*
				 * A driver whose launch is asynchronous (uploads, the run
				 * request in flight) keeps its flight here, stepped, until
				 * the launch has happened and its remote name is known.
				 */
				flight_step(f);
				if (f->state == FLIGHT_LAUNCHING && f->driver->launched(f->run))
					f->state = FLIGHT_LAUNCHED;
				break;
			case FLIGHT_LAUNCHED:
				/* Runs while flights_record_running() commits it. */
			case FLIGHT_RUNNING:
				flight_step(f);
				break;
			case FLIGHT_COLLECTING:
				flight_collect(f);
				break;
			case FLIGHT_FINISHED:
				/* Waits for the loop to record it (complete.c). */
				break;
		}
	} while (f->state != before);
	MemoryContextSwitchTo(old);
}

/*
 * launch_batch starts n staged flights as one batch (LAUNCHED, or LAUNCHING
 * while the driver's launch goes on); a failure fails them all.
 */
static void
launch_batch(WorkerFlight **batch, SbRun **runs, int n)
{
	MemoryContext old = CurrentMemoryContext;

	PG_TRY();
	{
		batch[0]->driver->launch_batch(runs, n);
		for (int i = 0; i < n; i++)
			batch[i]->state = batch[i]->driver->launched ? FLIGHT_LAUNCHING : FLIGHT_LAUNCHED;
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
 * flights_launch_staged starts the STAGED flights of a list in batches of up
 * to cloudrun_sandbox.max_batch: one remote execution carries many requests,
 * which is what Cloud Run's quota on job runs calls for.
 */
static void
flights_launch_staged(List *list)
{
	SbRun	  **runs = palloc(sizeof(SbRun *) * Max(list_length(list), 1));
	WorkerFlight **batch = palloc(sizeof(WorkerFlight *) * Max(list_length(list), 1));
	bool	   *taken = palloc0(sizeof(bool) * Max(list_length(list), 1));
	bool		more = true;

	/* Each pass takes the flights whose batch key is the first left's (its job). */
	while (more)
	{
		const char *key = NULL;
		int			n = 0;
		int			i = 0;
		ListCell   *lc;

		more = false;
		foreach(lc, list)
		{
			WorkerFlight *f = lfirst(lc);
			const char *k;

			if (taken[i++] || f->state != FLIGHT_STAGED)
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

/*
 * flights_record_running commits the LAUNCHED flights of a list as running,
 * with their remote names (RUNNING).  A row another transaction holds (a
 * user's cancel() not yet committed) is not waited for: its flight stays
 * LAUNCHED, stepped meanwhile, and is recorded at a later turn.
 */
static void
flights_record_running(List *list)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	bool		any = false;
	ListCell   *lc;

	foreach(lc, list)
		any |= ((WorkerFlight *) lfirst(lc))->state == FLIGHT_LAUNCHED;
	if (!any)
		return;
	begin("cloudrun_sandbox: running");
	if (plan == NULL)
	{
		/* locked: its row is launching and locked by someone else; try again. */
		plan = SPI_prepare("WITH u AS (UPDATE sandbox.executions SET status = 'running', remote_name = $2 "
						   "  WHERE id = (SELECT id FROM sandbox.executions WHERE id = $1 "
						   "    FOR UPDATE SKIP LOCKED) AND status = 'launching' RETURNING id) "
						   "SELECT NOT EXISTS (SELECT FROM u) AND EXISTS (SELECT FROM sandbox.executions "
						   "  WHERE id = $1 AND status = 'launching') AS locked", 2, types);
		SPI_keepplan(plan);
	}
	foreach(lc, list)
	{
		WorkerFlight *f = lfirst(lc);
		const char *remote;
		Datum		v[2];
		char		n[2];
		bool		isnull;

		/* A launch that failed has no run: it is recorded as an error, not running. */
		if (f->state != FLIGHT_LAUNCHED)
			continue;
		remote = f->driver->remote_name ? f->driver->remote_name(f->run) : NULL;
		v[0] = Int64GetDatum(f->id);
		v[1] = remote ? CStringGetTextDatum(remote) : (Datum) 0;
		n[0] = ' ';
		n[1] = remote ? ' ' : 'n';
		if (SPI_execute_plan(plan, v, n, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not mark execution " INT64_FORMAT " running", f->id);
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			f->state = FLIGHT_RUNNING;
	}
	commit();
}

/*
 * flights_advance advances every flight of a list, then takes the steps that
 * are done for many at once: batch launches and the commit of 'running'.
 */
void
flights_advance(List *list)
{
	ListCell   *lc;

	foreach(lc, list)
		flight_advance(lfirst(lc));
	flights_launch_staged(list);
	flights_record_running(list);
}

/* flight_due says whether a FINISHED flight is to be recorded now. */
bool
flight_due(WorkerFlight *f, TimestampTz now)
{
	return f->state == FLIGHT_FINISHED && f->retry_at <= now;
}

/* flights_forget removes flights (recorded, about to be freed) from the list. */
void
flights_forget(List *done)
{
	List	   *keep = NIL;
	ListCell   *lc;

	foreach(lc, flights)
	{
		WorkerFlight *f = lfirst(lc);

		if (!list_member_ptr(done, f))
			keep = keep_list(keep, f);
		else if (f->backend == SB_BACKEND_LOCAL && f->key != NULL)
			sb_local_live_forget(f->key, f->run_id);	/* its row has the output now */
	}
	list_free(flights);
	flights = keep;
}

/* flights_any_finished says whether a flight is due to be recorded. */
bool
flights_any_finished(void)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, flights)
	{
		if (flight_due(lfirst(lc), now))
			return true;
	}
	return false;
}

/*
 * flights_busy counts the flights that take a share of max_concurrent: all
 * but those FINISHED, whose work is done (one waiting for a user's lock
 * before it can be recorded takes nobody's place).
 */
int
flights_busy(void)
{
	int			n = 0;
	ListCell   *lc;

	foreach(lc, flights)
		n += ((WorkerFlight *) lfirst(lc))->state != FLIGHT_FINISHED;
	return n;
}

/* flights_count publishes how many executions each backend has in flight. */
void
flights_count(void)
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

/* NOTIFY sandbox_output is sent at most this often (coalesced). */
#define NOTIFY_OUTPUT_MS 500

/*
 * flights_notify_output tells followers that running local executions have
 * new output: one NOTIFY sandbox_output per execution whose live files grew,
 * payload "<id> <stdout offset> <stderr offset>" (the offsets read_output
 * would return as next), at most every NOTIFY_OUTPUT_MS, in one transaction.
 * It reads only file sizes (fstat on files the host made); a failure is
 * logged and the next turn tries again.
 */
void
flights_notify_output(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	List	   *news = NIL;
	ListCell   *lc;
	MemoryContext old = CurrentMemoryContext;

	if (now - last < NOTIFY_OUTPUT_MS * 1000)
		return;
	last = now;
	foreach(lc, flights)
	{
		WorkerFlight *f = lfirst(lc);
		int64		size[2] = {0, 0};

		if (f->state != FLIGHT_RUNNING || f->backend != SB_BACKEND_LOCAL || f->key == NULL)
			continue;
		for (int i = 0; i < 2; i++)
		{
			int			fd = sb_local_live_open(f->key, f->run_id, i, false);
			struct stat st;

			if (fd >= 0 && fstat(fd, &st) == 0)
				size[i] = Min((int64) st.st_size, (int64) sb_max_output_bytes);
			if (fd >= 0)
				close(fd);
		}
		if (size[0] == f->live_notified[0] && size[1] == f->live_notified[1])
			continue;
		f->live_notified[0] = size[0];
		f->live_notified[1] = size[1];
		news = lappend(news, psprintf(INT64_FORMAT " " INT64_FORMAT " " INT64_FORMAT,
									  f->id, size[0], size[1]));
	}
	if (news == NIL)
		return;
	PG_TRY();
	{
		begin("cloudrun_sandbox: output notifications");
		foreach(lc, news)
			Async_Notify("sandbox_output", lfirst(lc));
		commit();
	}
	PG_CATCH();
	{
		char	   *msg = caught(old);

		AbortCurrentTransaction();
		MemoryContextSwitchTo(old);
		elog(LOG, "cloudrun_sandbox: could not notify sandbox_output: %s", msg);
	}
	PG_END_TRY();
	list_free_deep(news);
}
