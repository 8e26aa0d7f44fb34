/*
 * bgwatch.c
 *		The background processes the worker starts (sandbox.start_background
 *		commits a 'starting' row; a cloud one stays 'starting' until its
 *		jobs:run, made without waiting, has happened), watches (a pidfd
 *		locally; the exit object of a cloud one, every few seconds) and
 *		records the end of; after a restart it watches again those a
 *		previous worker started, and stops those of a dropped extension.
 */
#include "worker/bgwatch.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "driver.h"
#include "gcloud.h"
#include "shared.h"
#include "worker/xact.h"

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
	bool		ended;			/* its end is known, not yet recorded (its row was locked) */
	const char *end_status;		/* and how it ended (static strings) */
	bool		end_has_code;
	int			end_code;
	const char *end_error;
	char		end_message[256];	/* what end_error may point to */
} BgProc;

#define BG_CLOUD_POLL_MS 2000
/* How often the launches under way are driven when no answer wakes the worker (their backoff). */
#define BG_LAUNCH_POLL_MS 250

/*
 * BgLaunch is a cloud background process whose launch is under way (its
 * row stays 'starting'), or whose outcome waits to be recorded (its row was
 * locked).
 */
typedef struct BgLaunch
{
	int64		handle;
	char	   *session;
	Oid			owner;
	bool		over;			/* its launch ended: */
	char	   *execution;		/* started, or */
	char	   *error;			/* refused */
} BgLaunch;

static List *bgprocs = NIL;		/* in WorkerContext */
static List *bglaunches = NIL;	/* in WorkerContext */
static void bg_stop_untracked(void);
static void bg_launches_drive(void);

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

/*
 * bg_record_end records a background process's end: exited (or killed, if it
 * was).  Never waits for its row: false if another transaction holds it (a
 * user's kill_background_process() or drop_session() not yet committed).
 */
static bool
bg_record_end(int64 handle, const char *status, bool has_code, int code, const char *error)
{
	Oid			types[4] = {INT8OID, TEXTOID, INT4OID, TEXTOID};
	Datum		v[4];
	char		n[4] = {' ', ' ', has_code ? ' ' : 'n', error ? ' ' : 'n'};
	bool		isnull;

	v[0] = Int64GetDatum(handle);
	v[1] = CStringGetTextDatum(status);
	v[2] = Int32GetDatum(code);
	v[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (SPI_execute_with_args("WITH u AS (UPDATE sandbox.background_processes SET "
							  "  status = CASE WHEN status = 'killed' THEN 'killed' ELSE $2 END, "
							  "  exit_code = $3, error = $4, ended_at = COALESCE(ended_at, now()), stdin = NULL "
							  "  WHERE pid = (SELECT pid FROM sandbox.background_processes WHERE pid = $1 "
							  "    FOR UPDATE SKIP LOCKED) RETURNING pid) "
							  "SELECT EXISTS (SELECT FROM u) OR NOT EXISTS "
							  "  (SELECT FROM sandbox.background_processes WHERE pid = $1)",
							  4, types, v, n, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record the end of background process " INT64_FORMAT, handle);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* bg_ended notes how a watched process ended, to record (once) by bg_reap. */
static void
bg_ended(BgProc *b, const char *status, bool has_code, int code, const char *error)
{
	b->ended = true;
	b->end_status = status;
	b->end_has_code = has_code;
	b->end_code = code;
	b->end_error = error;
	if (b->pidfd >= 0)
		close(b->pidfd);
	b->pidfd = -1;
}

/* bg_local_ended finds out how a local background process that is gone ended. */
static void
bg_local_ended(BgProc *b)
{
	int			code;
	int			ws = 0;
	bool		reaped = false;
	bool		server_stopped, quota_exceeded;

	if (b->bwrap_pid > 0)
		reaped = waitpid(b->bwrap_pid, &ws, 0) == b->bwrap_pid;
	b->bwrap_pid = 0;
	if (sb_local_background_exit(b->session, b->handle, &code, &server_stopped, &quota_exceeded))
	{
		if (quota_exceeded)
			snprintf(b->end_message, sizeof(b->end_message),
					 "stopped: the session's disk quota of " INT64_FORMAT " kB is full "
					 "(cloudrun_sandbox.local_disk_quota); delete files in /workspace, /tmp or "
					 "/run/background (background processes' logs) to free space", sb_local_driver.disk_quota_kb(b->session));
		bg_ended(b, server_stopped ? "failed" : quota_exceeded ? "quota_exceeded" : "exited", true,
				 code, server_stopped ? "stopped with the database server"
				 : quota_exceeded ? b->end_message : NULL);
	}
	else if (reaped)
		bg_ended(b, "exited", true, WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws), NULL);
	else
		bg_ended(b, "failed", false, 0,
				 "the process ended while the worker was down; its exit code is unknown");
}

/*
 * bg_reap records the background processes that have ended; one whose row
 * another transaction holds stays watched, its end known, and is recorded at
 * a later turn.
 */
void
bg_reap(void)
{
	List	   *keep = NIL;
	List	   *ended = NIL;
	ListCell   *lc;

	bg_launches_drive();
	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);
		int			code = 0;

		if (b->ended)
			ended = keep_list(ended, b);
		else if (b->execution != NULL)
		{
			int			r = bg_cloud_ended(b, &code);

			if (r == 0)
				keep = keep_list(keep, b);
			else
			{
				if (r == 1)
					bg_ended(b, "exited", true, code, NULL);
				else
					bg_ended(b, "failed", false, 0,
							 "the Cloud Run execution ended without an exit code");
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

		if (!b->ended)
			bg_local_ended(b);
		/* Recorded: forgotten below.  Locked: watched again, recorded later. */
		if (bg_record_end(b->handle, b->end_status, b->end_has_code, b->end_code, b->end_error))
			b->end_status = NULL;
	}
	commit();
	foreach(lc, ended)
	{
		BgProc	   *b = lfirst(lc);

		if (b->end_status == NULL)
			bg_free(b);
		else
			bgprocs = keep_list(bgprocs, b);
	}
	list_free(ended);
}

/* bg_pending says whether an ended process or a launch waits to be recorded (the loop retries soon). */
static bool
bg_pending(void)
{
	ListCell   *lc;

	foreach(lc, bglaunches)
	{
		if (((BgLaunch *) lfirst(lc))->over)
			return true;
	}
	foreach(lc, bgprocs)
	{
		if (((BgProc *) lfirst(lc))->ended)
			return true;
	}
	return false;
}

/* bg_launch_track notes a cloud background process whose launch is under way. */
static void
bg_launch_track(int64 handle, const char *session, Oid owner)
{
	MemoryContext old = MemoryContextSwitchTo(WorkerContext);
	BgLaunch   *l = palloc0(sizeof(BgLaunch));

	l->handle = handle;
	l->session = pstrdup(session);
	l->owner = owner;
	bglaunches = lappend(bglaunches, l);
	MemoryContextSwitchTo(old);
}

/*
 * bg_launch_record records a launch's outcome: running with its execution,
 * or failed with the reason.  Never waits for the row: false if another
 * transaction holds it.  A row no longer 'starting' (killed, dropped) gets
 * no execution: the one started for it is cancelled.
 */
static bool
bg_launch_record(BgLaunch *l)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		v[2];
	bool		isnull;
	int			r;

	if (l->execution == NULL)
		return bg_record_end(l->handle, "failed", false, 0, l->error);
	v[0] = Int64GetDatum(l->handle);
	v[1] = CStringGetTextDatum(l->execution);
	if (SPI_execute_with_args("WITH u AS (UPDATE sandbox.background_processes SET status = 'running', "
							  "  remote_name = $2, started_at = now(), stdin = NULL "
							  "  WHERE pid = (SELECT pid FROM sandbox.background_processes "
							  "    WHERE pid = $1 AND status = 'starting' FOR UPDATE SKIP LOCKED) "
							  "  RETURNING pid) "
							  "SELECT CASE WHEN EXISTS (SELECT FROM u) THEN 1 "
							  "  WHEN EXISTS (SELECT FROM sandbox.background_processes "
							  "    WHERE pid = $1 AND status = 'starting') THEN 0 ELSE -1 END",
							  2, types, v, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record the start of background process " INT64_FORMAT, l->handle);
	r = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (r == 1)
		bg_track(l->handle, l->session, l->owner, 0, 0, -1, l->execution);
	else if (r == -1)
		sb_cloud_bg_abandon(l->execution);
	return r != 0;
}

/*
 * bg_launches_drive makes progress on the cloud launches under way, without
 * waiting, and records those that are over (a locked row: at a later turn).
 */
static void
bg_launches_drive(void)
{
	ListCell   *lc;
	volatile bool any = false;

	foreach(lc, bglaunches)
	{
		BgLaunch   *l = lfirst(lc);
		MemoryContext cxt = CurrentMemoryContext;

		if (l->over)
		{
			any = true;
			continue;
		}
		PG_TRY();
		{
			char	   *name;

			sb_gc_use_role(l->owner);
			name = sb_cloud_bg_start(l->session, l->handle, NULL);
			if (name != NULL)
			{
				l->execution = MemoryContextStrdup(WorkerContext, name);
				l->over = true;
			}
		}
		PG_CATCH();
		{
			char	   *msg = caught(cxt);

			l->error = MemoryContextStrdup(WorkerContext, msg);
			l->over = true;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		any |= l->over;
	}
	if (!any)
		return;
	begin("cloudrun_sandbox: background started");
	foreach(lc, bglaunches)
	{
		BgLaunch   *l = lfirst(lc);

		if (l->over && bg_launch_record(l))
		{
			pfree(l->session);
			if (l->execution)
				pfree(l->execution);
			if (l->error)
				pfree(l->error);
			pfree(l);
			bglaunches = foreach_delete_current(bglaunches, lc);
		}
	}
	commit();
}

/*
 * bg_start starts the background processes whose starting transaction has
 * committed; true if there may be more than it took.
 */
bool
bg_start(void)
{
	int			ret;
	bool		more;
	SPITupleTable *rows;
	uint64		nrows;
	Datum	   *under_way = palloc(sizeof(Datum) * (list_length(bglaunches) + 1));
	int			n_under_way = 0;
	Oid			argtype = INT8ARRAYOID;
	Datum		arg;
	ListCell   *lc;
	MemoryContext outer, rowcxt;

	foreach(lc, bglaunches)
		under_way[n_under_way++] = Int64GetDatum(((BgLaunch *) lfirst(lc))->handle);
	begin("cloudrun_sandbox: background start");
	/* Not those whose launch is under way: they stay 'starting' until it is over. */
	arg = PointerGetDatum(construct_array(under_way, n_under_way, INT8OID, sizeof(int64),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_with_args("SELECT b.pid, s.storage_key, b.owner, b.command, s.backend, s.id, "
								"b.session, b.stdin, b.stdin_open FROM sandbox.background_processes b "
								"JOIN sandbox.sessions s ON s.id = b.session_id "
								"WHERE b.status = 'starting' AND b.pid <> ALL ($1) "
								"ORDER BY b.pid LIMIT 32 FOR UPDATE OF b SKIP LOCKED",
								1, &argtype, &arg, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read background processes to start");
	/* Kept: each start's UPDATE below replaces SPI_tuptable and SPI_processed. */
	rows = SPI_tuptable;
	nrows = SPI_processed;
	/* Each start's memory (its stdin, up to max_stdin_bytes) goes before the next. */
	outer = CurrentMemoryContext;
	rowcxt = AllocSetContextCreate(outer, "cloudrun_sandbox background start",
								   ALLOCSET_DEFAULT_SIZES);
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	tup = rows->vals[i];
		TupleDesc	desc = rows->tupdesc;
		bool		isnull;
		int64		handle = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		SbSession	session = {.key = SPI_getvalue(tup, desc, 2),
			.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull)),
			.backend = sb_backend_parse(SPI_getvalue(tup, desc, 5)),
			.id = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull)),
		.name = SPI_getvalue(tup, desc, 7)};
		char	   *command = SPI_getvalue(tup, desc, 4);
		MemoryContext cxt = rowcxt;
		Oid			types[4] = {INT8OID, INT4OID, INT8OID, TEXTOID};
		Datum		v[4];
		char		n[4] = {' ', ' ', ' ', ' '};

		MemoryContextSwitchTo(rowcxt);
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
			SbCallInput in = {0};
			Datum		d = SPI_getbinval(tup, desc, 8, &isnull);
			char	   *request;

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(d);

				in.has_stdin = true;
				in.stdin_data = VARDATA_ANY(b);
				in.stdin_len = VARSIZE_ANY_EXHDR(b);
			}
			in.stdin_open = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
			request = sb_prepare_exec_ex(&session, sb_driver_for(session.backend), false, handle,
										 command, NULL, 0, &in, &state);
			if (session.backend == SB_BACKEND_CLOUDRUN)
				execution = sb_cloud_bg_start(session.key, handle, request);
			else
				bwrap = sb_local_background_spawn(session.key, handle, request, &in, &init_pid,
												  &init_start);
			if (session.backend == SB_BACKEND_CLOUDRUN && execution == NULL)
			{
				/* Under way, its row 'starting': bg_launches_drive() goes on with it. */
				bg_launch_track(handle, session.key, session.owner);
				ReleaseCurrentSubTransaction();
			}
			else
			{
			v[1] = Int32GetDatum(init_pid);
			n[1] = init_pid ? ' ' : 'n';
			v[2] = Int64GetDatum(init_start);
			n[2] = init_start >= 0 ? ' ' : 'n';
			v[3] = execution ? CStringGetTextDatum(execution) : (Datum) 0;
			n[3] = execution ? ' ' : 'n';
			SPI_execute_with_args("UPDATE sandbox.background_processes SET status = 'running', "
								  "host_pid = $2, host_start_time = $3, remote_name = $4, "
								  "started_at = now(), stdin = NULL WHERE pid = $1", 4, types, v, n, false, 0);
			bg_track(handle, session.key, session.owner, bwrap, init_pid, init_start, execution);
			ReleaseCurrentSubTransaction();
			}
		}
		PG_CATCH();
		{
			char	   *msg = caught(cxt);

			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			(void) bg_record_end(handle, "failed", false, 0, msg);	/* its row is ours */
		}
		PG_END_TRY();
		MemoryContextSwitchTo(outer);
		MemoryContextReset(rowcxt);
	}
	more = nrows == 32;
	commit();
	return more;
}

/* bg_recover watches again the background processes a previous worker started. */
void
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
void
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
	/* Cloud launches under way are forgotten too (the driver drops them unused). */
	list_free_deep(bglaunches);
	bglaunches = NIL;
}

/*
 * bg_wait_events adds what the watched background processes wait on to the
 * loop's wait: their pidfds, and the time of the next look at a cloud one.
 */
void
bg_wait_events(WaitEventSet *set, int *nfds, int max_fds, long *timeout)
{
	ListCell   *lc;

	if (bg_pending())
		*timeout = *timeout < 0 ? SB_RETRY_LOCKED_MS : Min(*timeout, SB_RETRY_LOCKED_MS);
	if (bglaunches != NIL)
		*timeout = *timeout < 0 ? BG_LAUNCH_POLL_MS : Min(*timeout, BG_LAUNCH_POLL_MS);
	foreach(lc, bgprocs)
	{
		BgProc	   *b = lfirst(lc);

		if (b->ended)
			continue;
		if (b->execution != NULL)
		{
			long		due = Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), b->next_poll));

			*timeout = *timeout < 0 ? due : Min(*timeout, due);
		}
		if (b->pidfd >= 0 && *nfds < max_fds)
		{
			AddWaitEventToSet(set, WL_SOCKET_READABLE, b->pidfd, NULL, NULL);
			(*nfds)++;
		}
	}
}
