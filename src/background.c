/*
 * background.c
 *		Background processes: sandbox.start_background(),
 *		list_background_processes(), kill_background_process() and
 *		get_background_logs().
 *
 * A background process is a row of sandbox.background_processes.  The
 * background worker starts it after the starting transaction commits, in the
 * session's sandbox, and reaps it (worker.c); it is not a child of any SQL
 * connection, so it outlives the one that started it.  Killing is done here,
 * in the caller's backend, after checking that the recorded process is still
 * the one that was started (pid and start time), never by pid alone.
 */
#include "driver.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "gcloud.h"
#include "shared.h"

PG_FUNCTION_INFO_V1(sandbox_start_background);
PG_FUNCTION_INFO_V1(sandbox_start_background_writable);
PG_FUNCTION_INFO_V1(sandbox_list_background_processes);
PG_FUNCTION_INFO_V1(sandbox_kill_background_process);
PG_FUNCTION_INFO_V1(sandbox_get_background_logs);

/* Grace between SIGTERM and SIGKILL; the executor passes SIGTERM on to the sandbox. */
#define KILL_GRACE_MS 3000

/*
 * check_role_cap refuses a new background process to a role that has
 * cloudrun_sandbox.max_background_per_role of them starting or running.  A
 * lock on the role's count (an advisory tag no SQL caller can take, held to
 * the end of the transaction) makes concurrent starts of one role count one
 * after another; it never makes anyone else, or the worker, wait.  Runs as
 * the tables' owner.
 */
static SPIPlanPtr plan_count = NULL;

static void
check_role_cap(Oid role)
{
	LOCKTAG		tag;
	Oid			type = REGROLEOID;
	Datum		value = ObjectIdGetDatum(role);
	bool		isnull;
	int64		live;

	if (sb_max_background_per_role <= 0)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) role, SB_ROLE_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	/*
	 * Counted with a snapshot taken after the lock: one taken before it (the
	 * caller's, under REPEATABLE READ) misses the starts committed meanwhile.
	 */
	if (plan_count == NULL)
	{
		plan_count = SPI_prepare("SELECT count(*) FROM sandbox.background_processes "
								 "WHERE owner = $1 AND status IN ('starting', 'running') "
								 "AND ended_at IS NULL", 1, &type);
		if (plan_count == NULL || SPI_keepplan(plan_count) != 0)
			elog(ERROR, "could not prepare the count of background processes");
	}
	if (SPI_execute_snapshot(plan_count, &value, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count background processes");
	live = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (live >= sb_max_background_per_role)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" already has %lld background processes starting or running",
						GetUserNameFromId(role, false), (long long) live),
				 errdetail("cloudrun_sandbox.max_background_per_role is %d.",
						   sb_max_background_per_role),
				 errhint("Stop some with sandbox.kill_background_process(), or ask an "
						 "administrator to raise the limit.")));
}

/*
 * prune_ended deletes the role's ended background processes beyond
 * cloudrun_sandbox.history_max_bytes_per_role (their command and error, and
 * 256 bytes a row; the newest kept) and older than history_retention, at most
 * a batch at each start, skipping rows someone holds locked.  Without it
 * every start would keep up to max_command_bytes for as long as the session.
 * Runs as the tables' owner, in SPI.
 */
static void
prune_ended(Oid role)
{
	Oid			types[3] = {REGROLEOID, INT8OID, INT4OID};
	Datum		values[3];
	int64		bound = (int64) sb_history_max_kb * 1024;

	values[0] = ObjectIdGetDatum(role);
	values[1] = Int64GetDatum(bound > 0 ? bound : PG_INT64_MAX);
	values[2] = Int32GetDatum(sb_history_retention_s);
	if (SPI_execute_with_args("DELETE FROM sandbox.background_processes WHERE pid IN ("
							  "SELECT b.pid FROM sandbox.background_processes b WHERE b.pid IN ("
							  "SELECT pid FROM (SELECT pid, ended_at, "
							  "sum(pg_catalog.octet_length(command) + "
							  "COALESCE(pg_catalog.octet_length(error), 0) + 256) "
							  "OVER (ORDER BY ended_at DESC, pid DESC ROWS UNBOUNDED PRECEDING) AS newer "
							  "FROM sandbox.background_processes "
							  "WHERE owner = $1 AND ended_at IS NOT NULL) q "
							  "WHERE newer > $2 OR ($3 > 0 AND ended_at < "
							  "pg_catalog.now() - pg_catalog.make_interval(secs => $3)) "
							  "LIMIT " CppAsString2(SB_HISTORY_PRUNE_BATCH) ") "
							  "FOR UPDATE OF b SKIP LOCKED)",
							  3, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune ended background processes");
}

/*
 * start_background records a background process for the worker to start:
 * with writable (start_background_writable) its stdin stays a pipe that
 * write_background_stdin writes to; otherwise its stdin bytes, if any, are
 * fed to it and then it reads EOF (without them, /dev/null).
 */
static Datum
start_background(FunctionCallInfo fcinfo, bool writable)
{
	char	   *command = text_arg(fcinfo, 0, "command");
	char	   *name = text_arg(fcinfo, 1, "session");
	SbSession  *session;
	Oid			types[6] = {TEXTOID, REGROLEOID, TEXTOID, INT8OID, BYTEAOID, BOOLOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', 'n', ' '};
	bool		isnull;
	int64		handle;
	SbCallInput in;

	sb_call_input_args(fcinfo, 2, 3, -1, &in);
	sb_require_worker_library();
	sb_require_utf8();
	sb_check_command(command);
	session = sb_session_lock_ext(name, true, (SbBackend) sb_default_backend, false, false);
	if (writable && session->backend != SB_BACKEND_LOCAL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("start_background_writable is not supported on the %s backend yet",
						sb_driver_for(session->backend)->name),
				 errhint("Give the process its whole stdin with sandbox.start_background(..., stdin => ...).")));
	/* The owner is the caller: read before becoming the tables' owner. */
	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(session->owner);
	values[2] = CStringGetTextDatum(command);
	values[3] = Int64GetDatum(session->id);
	if (in.has_stdin)
	{
		values[4] = PointerGetDatum(sb_call_input_bytea(&in));
		nulls[4] = ' ';
	}
	values[5] = BoolGetDatum(writable);
	sb_spi_begin_owner();
	check_role_cap(session->owner);
	prune_ended(session->owner);
	if (SPI_execute_with_args("INSERT INTO sandbox.background_processes (session, owner, command, "
							  "session_id, stdin, stdin_open) VALUES ($1, $2, $3, $4, $5, $6) "
							  "RETURNING pid",
							  6, types, values, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not record a background process");
	handle = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	sb_spi_end_owner();
	sb_wake_worker_at_commit();
	PG_RETURN_INT64(handle);
}

Datum
sandbox_start_background(PG_FUNCTION_ARGS)
{
	return start_background(fcinfo, false);
}

Datum
sandbox_start_background_writable(PG_FUNCTION_ARGS)
{
	return start_background(fcinfo, true);
}

Datum
sandbox_list_background_processes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			types[2] = {REGROLEOID, INT8OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	InitMaterializedSRF(fcinfo, 0);
	if (!PG_ARGISNULL(0))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

		/* An explicit session must be one of the caller's. */
		values[1] = Int64GetDatum(sb_session_lock_ext(name, false, SB_BACKEND_LOCAL, false,
													  false)->id);
	}
	else
		nulls[1] = 'n';
	values[0] = ObjectIdGetDatum(superuser() ? InvalidOid : GetUserId());
	sb_spi_begin_owner();
	if (SPI_execute_with_args("SELECT pid, session, command, status IN ('starting', 'running'), "
							  "status, exit_code, started_at, ended_at "
							  "FROM sandbox.background_processes "
							  "WHERE ($1 = 0 OR owner = $1) AND ($2 IS NULL OR session_id = $2) "
							  "ORDER BY pid",
							  2, types, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list background processes");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		v[8];
		bool		n[8];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, v, n);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	sb_spi_end_owner();
	return (Datum) 0;
}

/* alive says whether the recorded process still runs (same pid, same start time). */
static bool
alive(pid_t pid, int64 start)
{
	return pid > 0 && start >= 0 && sb_process_start_time(pid) == start;
}

/*
 * sb_stop_processes stops processes identified by pid and start time:
 * SIGTERM, a grace period, then SIGKILL to what is left.  Those that ended,
 * or whose pid now belongs to another process, are left alone.
 */
void
sb_stop_processes(const pid_t *pids, const int64 *starts, int n)
{
	TimestampTz deadline;

	for (int i = 0; i < n; i++)
		if (alive(pids[i], starts[i]))
			kill(pids[i], SIGTERM);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), KILL_GRACE_MS);
	for (;;)
	{
		bool		any = false;

		for (int i = 0; i < n; i++)
			any |= alive(pids[i], starts[i]);
		if (!any)
			break;
		if (GetCurrentTimestamp() > deadline)
		{
			for (int i = 0; i < n; i++)
				if (alive(pids[i], starts[i]))
					kill(pids[i], SIGKILL);
			break;
		}
		pg_usleep(20000);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * sb_background_kill stops the caller's live background processes matching a
 * handle, a session and/or a regular expression on the command: SIGTERM to the
 * sandbox, SIGKILL after a grace period.  Returns how many; their handles are
 * accumulated in *killed.
 */
int
sb_background_kill(int64 handle, int64 session_id, const char *pattern,
				   ArrayBuildState **killed)
{
	Oid			types[4] = {REGROLEOID, INT8OID, INT8OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			n;
	pid_t	   *pids;
	int64	   *starts;
	int64	   *handles;
	char	  **remotes;
	char	  **sessions;
	Oid		   *owners;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = ObjectIdGetDatum(superuser() ? InvalidOid : GetUserId());
	values[1] = Int64GetDatum(handle);
	nulls[1] = handle ? ' ' : 'n';
	values[2] = Int64GetDatum(session_id);
	nulls[2] = session_id ? ' ' : 'n';
	values[3] = pattern ? CStringGetTextDatum(pattern) : (Datum) 0;
	nulls[3] = pattern ? ' ' : 'n';
	sb_spi_begin_owner();
	if (SPI_execute_with_args("UPDATE sandbox.background_processes SET status = 'killed', "
							  "ended_at = CASE WHEN status = 'starting' THEN now() END "
							  "WHERE status IN ('starting', 'running') AND ($1 = 0 OR owner = $1) "
							  "AND ($2 IS NULL OR pid = $2) AND ($3 IS NULL OR session_id = $3) "
							  "AND ($4 IS NULL OR command ~ $4) "
							  "RETURNING pid, host_pid, host_start_time, remote_name, "
							  "(SELECT s.storage_key FROM sandbox.sessions s WHERE s.id = session_id), "
							  "owner",
							  4, types, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not select background processes to kill");
	n = (int) SPI_processed;
	pids = MemoryContextAllocZero(outer, sizeof(pid_t) * (n + 1));
	starts = MemoryContextAllocZero(outer, sizeof(int64) * (n + 1));
	handles = MemoryContextAllocZero(outer, sizeof(int64) * (n + 1));
	remotes = MemoryContextAllocZero(outer, sizeof(char *) * (n + 1));
	sessions = MemoryContextAllocZero(outer, sizeof(char *) * (n + 1));
	owners = MemoryContextAllocZero(outer, sizeof(Oid) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		*killed = accumArrayResult(*killed, SPI_getbinval(tup, desc, 1, &isnull), false, INT8OID,
								   outer);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		pids[i] = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		starts[i] = isnull ? -1 : DatumGetInt64(d);
		handles[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (SPI_getvalue(tup, desc, 4) != NULL)
			remotes[i] = MemoryContextStrdup(outer, SPI_getvalue(tup, desc, 4));
		if (SPI_getvalue(tup, desc, 5) != NULL)
			sessions[i] = MemoryContextStrdup(outer, SPI_getvalue(tup, desc, 5));
		owners[i] = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
	}
	sb_spi_end_owner();

	/* Cloud processes: their supervisor stops them, then the execution is cancelled. */
	for (int i = 0; i < n; i++)
		if (remotes[i] != NULL && sessions[i] != NULL)
		{
			sb_gc_use_role(owners[i]);	/* its objects are under its owner's prefix */
			sb_cloud_bg_kill(sessions[i], handles[i], remotes[i]);
		}

	sb_stop_processes(pids, starts, n);
	if (n > 0)
		sb_wake_worker_at_commit();
	return n;
}

Datum
sandbox_kill_background_process(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	ArrayBuildState *killed = NULL;
	int64		handle = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	char	   *session = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *pattern = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	int64		session_id = 0;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			n;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function must return a composite type");
	if (handle == 0 && session == NULL && pattern == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("give a process handle, a session or a pattern"),
				 errhint("To stop every process of a session, pass session => 'name'.")));
	if (session != NULL)
		session_id = sb_session_lock_ext(session, false, SB_BACKEND_LOCAL, false, false)->id;
	if (pattern != NULL)
		(void) DirectFunctionCall2Coll(textregexeq, DEFAULT_COLLATION_OID, CStringGetTextDatum(""),
								   CStringGetTextDatum(pattern));	/* a bad regex fails here */
	n = sb_background_kill(handle, session_id, pattern, &killed);
	values[0] = Int32GetDatum(n);
	values[1] = killed ? makeArrayResult(killed, CurrentMemoryContext)
		: PointerGetDatum(construct_empty_array(INT8OID));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

Datum
sandbox_get_background_logs(PG_FUNCTION_ARGS)
{
	int64		handle;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *session;
	char	   *name;
	Oid			owner;
	bool		isnull;
	int			fd;
	struct stat st;
	off_t		from = 0;
	long		max = sb_max_output_bytes;
	char	   *data;
	size_t		len;
	size_t		fixed_len;
	bool		repaired;
	char	   *out;
	bool		cloud;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("pid must not be null")));
	handle = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(handle);
	sb_spi_begin_owner();
	if (SPI_execute_with_args("SELECT s.storage_key, b.owner, s.backend = 'cloudrun', b.session "
							  "FROM sandbox.background_processes b "
							  "LEFT JOIN sandbox.sessions s ON s.id = b.session_id WHERE b.pid = $1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up a background process");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background process " INT64_FORMAT " does not exist", handle)));
	/* The storage key (NULL once the session is gone) and the name it was started in. */
	session = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (session != NULL)
		session = MemoryContextStrdup(TopTransactionContext, session);
	name = MemoryContextStrdup(TopTransactionContext,
							   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	cloud = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	cloud = cloud && !isnull;
	sb_spi_end_owner();
	if (owner != GetUserId() && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for background process " INT64_FORMAT, handle)));
	if (!PG_ARGISNULL(1) && strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background process " INT64_FORMAT " is not in session \"%s\"", handle,
						text_to_cstring(PG_GETARG_TEXT_PP(1)))));

	/* The last max_output_bytes of the log, cut to whole lines when tail_lines asks. */
	if (session == NULL)
		PG_RETURN_TEXT_P(cstring_to_text(""));
	if (cloud)
	{
		sb_gc_use_role(owner);
		data = sb_cloud_bg_logs(session, handle, max, &len);
	}
	else
	{
		ssize_t		n = 0;

		/* A regular file the host made, opened without following or waiting (driver_local.c). */
		fd = sb_local_background_open_log(session, handle);
		if (fd < 0)
			PG_RETURN_TEXT_P(cstring_to_text(""));
		if (fstat(fd, &st) == 0 && st.st_size > max)
			from = st.st_size - max;
		data = palloc(max + 1);
		len = 0;
		while (len < (size_t) max)
		{
			n = pread(fd, data + len, max - len, from + len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += n;
		}
		close(fd);
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the log of background process " INT64_FORMAT ": %m",
							handle)));
	}
	if (!PG_ARGISNULL(2))
	{
		int			want = PG_GETARG_INT32(2);
		size_t		start = len;
		int			lines = 0;

		if (want < 0)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("tail_lines must not be negative")));
		if (start > 0 && data[start - 1] == '\n')
			start--;
		while (start > 0 && lines < want)
		{
			start--;
			if (data[start] == '\n' && ++lines == want)
			{
				start++;
				break;
			}
		}
		if (want == 0)
			start = len;
		data += start;
		len -= start;
	}
	out = sb_utf8_repair(data, len, false, &fixed_len, &repaired);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, fixed_len));
}
