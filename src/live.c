/*
 * live.c
 *		Live output of queued executions (issue 14, part 4):
 *		sandbox.read_output(id, stdout_offset, stderr_offset) returns what an
 *		execution printed after the given byte offsets and the offsets to
 *		ask for next, so that a follower reads every byte once, in order.
 *
 * While the execution runs, its output so far is in storage: locally the
 * files the worker made in the session's host-only directory and handed
 * the executor as descriptors (local/bgfiles.c: sb_local_live_open); on
 * Cloud Run the objects live/<id>.out and .err under the session's prefix,
 * which the executor saves every second while the command runs.  Once it has
 * finished, the row has the output (the same bytes, within the same caps).
 * No table is written while it runs.
 */
#include "driver.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/guc.h"

#include "common/sbutil.h"
#include "gcloud.h"
#include "live.h"

PG_FUNCTION_INFO_V1(sandbox_read_output);

/* The most one call returns of each stream; a follower asks again for more. */
#define READ_OUTPUT_MAX ((int64) 1024 * 1024)

/* local_read reads up to max bytes of a local live file from offset; "" if there is none. */
static bytea *
local_read(const char *key, int64 id, int stream, int64 offset, int64 max)
{
	int			fd = sb_local_live_open(key, id, stream, false);
	bytea	   *b;
	ssize_t		n;
	struct stat st;

	if (fd < 0)
		return (bytea *) cstring_to_text_with_len("", 0);
	/* The executor writes no more than max_output_bytes; never read (or allocate) more. */
	max = Min(max, Max((int64) sb_max_output_bytes - offset, 0));
	if (fstat(fd, &st) == 0)
		max = Min(max, Max((int64) st.st_size - offset, 0));
	b = palloc(VARHDRSZ + max);
	do
		n = max > 0 ? pread(fd, VARDATA(b), (size_t) max, (off_t) offset) : 0;
	while (n < 0 && errno == EINTR);
	close(fd);
	SET_VARSIZE(b, VARHDRSZ + Max(n, 0));
	return b;
}

/* slice returns the bytes of data[offset, offset + max) (empty past its end). */
static bytea *
slice(const char *data, size_t len, int64 offset, int64 max)
{
	size_t		from = (size_t) Min(offset, (int64) len);
	size_t		n = Min(len - from, (size_t) max);
	bytea	   *b = palloc(VARHDRSZ + n);

	memcpy(VARDATA(b), data + from, n);
	SET_VARSIZE(b, VARHDRSZ + n);
	return b;
}

/*
 * sb_live_output returns execution id's output so far on one stream (0
 * stdout, 1 stderr) of a running execution, from offset, at most max bytes:
 * what the session's storage has (empty if nothing yet).  key and backend
 * are its session's; owner its role (for the cloud's credentials).  quiet:
 * storage that cannot be read gives "" instead of an error.
 */
bytea *
sb_live_output(SbBackend backend, const char *key, Oid owner, int64 id, int stream,
			   int64 offset, int64 max, bool quiet)
{
	if (backend == SB_BACKEND_LOCAL)
		return local_read(key, id, stream, offset, max);
	else
	{
		size_t		len;
		char	   *data;

		sb_gc_use_role(owner);
		data = sb_cloud_live_read(key, id, stream, quiet, &len);
		return slice(data, Min(len, (size_t) sb_max_output_bytes), offset, max);
	}
}

/* offset_arg reads a byte offset argument: not NULL, not negative. */
static int64
offset_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	int64		v;

	if (PG_ARGISNULL(n))
		return 0;
	v = PG_GETARG_INT64(n);
	if (v < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name),
				 errhint("Pass 0 to read from the start, or the next offset the last call returned.")));
	return v;
}

/*
 * sandbox_read_output is sandbox.read_output(id, stdout_offset,
 * stderr_offset): (stdout bytea, stderr bytea, next_stdout_offset,
 * next_stderr_offset, finished).  finished means the execution has ended
 * and what it returned is all there is after the offsets given (within one
 * call's share, READ_OUTPUT_MAX: a follower asks until it gets nothing).
 */
Datum
sandbox_read_output(PG_FUNCTION_ARGS)
{
	int64		id;
	int64		off[2];
	Oid			me = GetUserId();
	TupleDesc	desc;
	Datum		v[5];
	bool		n[5] = {false, false, false, false, false};
	bytea	   *out[2];
	char	   *status;
	char	   *key = NULL;
	SbBackend	backend = SB_BACKEND_LOCAL;
	Oid			owner;
	bool		finished;
	bool		more = false;
	MemoryContext outer = CurrentMemoryContext;
	Datum		arg;
	Oid			argtype = INT8OID;
	HeapTuple	tup;
	TupleDesc	td;
	bool		isnull;
	int64		run_id = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("id must not be null")));
	id = PG_GETARG_INT64(0);
	off[0] = offset_arg(fcinfo, 1, "stdout_offset");
	off[1] = offset_arg(fcinfo, 2, "stderr_offset");
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function must return a composite type");

	sb_spi_begin_owner();
	arg = Int64GetDatum(id);
	if (SPI_execute_with_args("SELECT e.owner, e.status, "
							  "  convert_to(e.stdout, 'UTF8'), convert_to(e.stderr, 'UTF8'), "
							  "  s.storage_key, s.backend, COALESCE(e.run_id, e.id) "
							  "FROM sandbox.executions e "
							  "LEFT JOIN sandbox.sessions s ON s.id = e.session_id WHERE e.id = $1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read execution " INT64_FORMAT, id);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("execution " INT64_FORMAT " does not exist", id),
				 errhint("It may have been removed by cloudrun_sandbox.history_retention "
						 "or cloudrun_sandbox.history_max_bytes_per_role.")));
	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	owner = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
	if (owner != me && !superuser_arg(me))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for execution " INT64_FORMAT, id),
				 errdetail("The execution belongs to another role.")));
	status = SPI_getvalue(tup, td, 2);
	finished = strcmp(status, "queued") != 0 && strcmp(status, "launching") != 0 &&
		strcmp(status, "running") != 0;
	if (finished)
	{
		MemoryContext spi = MemoryContextSwitchTo(outer);

		for (int i = 0; i < 2; i++)
		{
			Datum		d = SPI_getbinval(tup, td, 3 + i, &isnull);
			bytea	   *all = isnull ? NULL : DatumGetByteaPP(d);

			out[i] = all ? slice(VARDATA_ANY(all), VARSIZE_ANY_EXHDR(all), off[i], READ_OUTPUT_MAX)
				: slice("", 0, 0, 0);
			/* More left than one call returns: not finished for the follower yet. */
			if (all && off[i] + (int64) VARSIZE_ANY_EXHDR(out[i]) < (int64) VARSIZE_ANY_EXHDR(all))
				more = true;
		}
		MemoryContextSwitchTo(spi);
	}
	else
	{
		char	   *b = SPI_getvalue(tup, td, 6);

		key = SPI_getvalue(tup, td, 5);
		/* The live files of the attempt running now: a retry's are named by its run_id. */
		run_id = DatumGetInt64(SPI_getbinval(tup, td, 7, &isnull));
		if (b != NULL)
			backend = sb_backend_parse(b);
	}
	if (key != NULL)
		key = MemoryContextStrdup(outer, key);
	sb_spi_end_owner();

	if (!finished)
	{
		for (int i = 0; i < 2; i++)
			out[i] = strcmp(status, "running") == 0 && key != NULL ?
				sb_live_output(backend, key, owner, run_id, i, off[i], READ_OUTPUT_MAX, false) :
				slice("", 0, 0, 0);
	}
	v[0] = PointerGetDatum(out[0]);
	v[1] = PointerGetDatum(out[1]);
	v[2] = Int64GetDatum(off[0] + (int64) VARSIZE(out[0]) - VARHDRSZ);
	v[3] = Int64GetDatum(off[1] + (int64) VARSIZE(out[1]) - VARHDRSZ);
	v[4] = BoolGetDatum(finished && !more);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, n)));
}

/*
 * Live output of a synchronous exec (issue 14, part 3): with stream => true
 * (or cloudrun_sandbox.stream_output), each line the command prints is sent
 * to the client as a NOTICE as it arrives (stderr's prefixed "stderr: ").
 * The backend makes two memfds and hands them to the executor with the
 * request (driver_local.c); while it waits for the result (driver.c,
 * run_until) it reads what they gained.  Throttled: at most
 * SB_STREAM_LINES_PER_S lines and SB_STREAM_BYTES_PER_S bytes a second, then
 * one NOTICE saying how many lines were not shown; a line is cut at
 * SB_STREAM_LINE_MAX bytes.  The returned row has the whole output as ever.
 */
#define SB_STREAM_LINES_PER_S 100
#define SB_STREAM_BYTES_PER_S (64 * 1024)
#define SB_STREAM_LINE_MAX 4096
#define SB_STREAM_READ_MAX 65536

bool		sb_stream_output = false;
SbStream   *sb_stream_active = NULL;

struct SbStream
{
	bool		cloud;			/* the output so far is read from the session's objects */
	char	   *key;			/* cloud: the session's storage key, */
	int64		id;				/* the execution's id */
	Oid			owner;			/* and its role */
	TimestampTz next_poll;		/* cloud: when to read them again */
	int			fd[2];			/* local: the memfds: stdout's, stderr's */
	off_t		done[2];		/* bytes of each read */
	StringInfoData line[2];		/* a line not ended yet */
	bool		cut[2];			/* the line was too long: the rest is skipped */
	TimestampTz window;			/* the throttle's second */
	int			lines;
	int64		bytes;
	int64		dropped;		/* lines not shown in this second */
};

/* sb_live_guc_init defines cloudrun_sandbox.stream_output (from _PG_init). */
void
sb_live_guc_init(void)
{
	DefineCustomBoolVariable("cloudrun_sandbox.stream_output",
							 "Whether sandbox.exec sends each line of output to the client as a NOTICE as it arrives.",
							 "What exec's stream argument means when it is NULL.",
							 &sb_stream_output, false, PGC_USERSET, 0, NULL, NULL, NULL);
}

/* say_dropped sends the NOTICE about the lines the throttle held back. */
static void
say_dropped(SbStream *s)
{
	if (s->dropped > 0)
		ereport(NOTICE,
				(errmsg("%lld lines of output not shown", (long long) s->dropped),
				 errdetail("Streaming shows at most %d lines and %d bytes a second.",
						   SB_STREAM_LINES_PER_S, SB_STREAM_BYTES_PER_S),
				 errhint("The row that sandbox.exec returns has the whole output.")));
	s->dropped = 0;
}

/* emit_line sends one line of stream i as a NOTICE, unless the throttle holds it back. */
static void
emit_line(SbStream *s, int i, const char *data, size_t len, bool cut)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *fixed;
	size_t		n;
	bool		repaired;

	if (now - s->window >= USECS_PER_SEC)
	{
		say_dropped(s);
		s->window = now;
		s->lines = 0;
		s->bytes = 0;
	}
	if (s->lines >= SB_STREAM_LINES_PER_S || s->bytes + (int64) len > SB_STREAM_BYTES_PER_S)
	{
		s->dropped++;
		return;
	}
	s->lines++;
	s->bytes += len;
	fixed = sb_utf8_repair(data, len, cut, &n, &repaired);
	if (fixed == NULL)
		return;
	ereport(NOTICE, (errmsg_internal("%s%s%s", i == 1 ? "stderr: " : "", fixed, cut ? " [...]" : "")));
	pfree(fixed);
}

/* take_bytes splits new bytes of stream i into lines. */
static void
take_bytes(SbStream *s, int i, const char *p, size_t len)
{
	while (len > 0)
	{
		const char *nl = memchr(p, '\n', len);
		size_t		n = nl ? (size_t) (nl - p) : len;

		if (!s->cut[i])
		{
			size_t		room = SB_STREAM_LINE_MAX - s->line[i].len;

			appendBinaryStringInfo(&s->line[i], p, Min(n, room));
			if (n > room)
			{
				emit_line(s, i, s->line[i].data, s->line[i].len, true);
				resetStringInfo(&s->line[i]);
				s->cut[i] = true;
			}
		}
		if (nl == NULL)
			return;
		if (!s->cut[i])
			emit_line(s, i, s->line[i].data, s->line[i].len, false);
		resetStringInfo(&s->line[i]);
		s->cut[i] = false;
		p += n + 1;
		len -= n + 1;
	}
}

/* stream_reset ends a stream when its statement's memory goes (also after an error). */
static void
stream_reset(void *arg)
{
	SbStream   *s = arg;

	for (int i = 0; i < 2; i++)
		if (s->fd[i] >= 0)
			close(s->fd[i]), s->fd[i] = -1;
	if (sb_stream_active == s)
		sb_stream_active = NULL;
}

/*
 * sb_stream_begin starts streaming a synchronous exec's output: locally it
 * makes the memfds the executor gets; on Cloud Run (cloud) it reads the
 * objects live/<id>.out and .err of session key, which the executor saves
 * every second.  The stream ends with sb_stream_end, or with the memory of
 * the statement (an error).
 */
void
sb_stream_begin(bool cloud, const char *key, int64 id, Oid owner)
{
	SbStream   *s = palloc0(sizeof(SbStream));
	MemoryContextCallback *cb = palloc0(sizeof(MemoryContextCallback));

	s->fd[0] = s->fd[1] = -1;
	cb->func = stream_reset;
	cb->arg = s;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	s->cloud = cloud;
	s->key = pstrdup(key);
	s->id = id;
	s->owner = owner;
	for (int i = 0; i < 2; i++)
	{
		if (!cloud)
		{
			s->fd[i] = memfd_create(i == 0 ? "sandbox-stream-out" : "sandbox-stream-err", MFD_CLOEXEC);
			if (s->fd[i] < 0)
				ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a memfd: %m")));
		}
		initStringInfo(&s->line[i]);
	}
	s->window = GetCurrentTimestamp();
	s->next_poll = TimestampTzPlusMilliseconds(s->window, 1000);
	sb_stream_active = s;
}

/* cloud_poll reads the objects of the output so far, once a second, and sends what is new. */
static void
cloud_poll(SbStream *s)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now < s->next_poll)
		return;
	for (int i = 0; i < 2; i++)
	{
		size_t		len;
		char	   *data;

		sb_gc_use_role(s->owner);
		data = sb_cloud_live_read(s->key, s->id, i, true, &len);	/* a NOTICE less */
		len = Min(len, (size_t) sb_max_output_bytes);
		if ((off_t) len > s->done[i])
		{
			take_bytes(s, i, data + s->done[i], len - s->done[i]);
			s->done[i] = len;
		}
		pfree(data);
	}
	s->next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
}

/* local_poll reads what the memfds gained (all: to their end, else a share). */
static void
local_poll(SbStream *s, bool all)
{
	char	   *buf = palloc(SB_STREAM_READ_MAX);

	for (int i = 0; i < 2; i++)
	{
		for (;;)
		{
			ssize_t		n = pread(s->fd[i], buf, SB_STREAM_READ_MAX, s->done[i]);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			s->done[i] += n;
			take_bytes(s, i, buf, (size_t) n);
			/* The executor writes at most max_output_bytes; a poll reads a share. */
			if ((!all && n == SB_STREAM_READ_MAX) || s->done[i] >= (off_t) sb_max_output_bytes)
				break;
		}
	}
	pfree(buf);
}

/* sb_stream_poll sends what the command printed since the last poll. */
void
sb_stream_poll(void)
{
	SbStream   *s = sb_stream_active;

	if (s == NULL)
		return;
	if (s->cloud)
		cloud_poll(s);
	else
		local_poll(s, false);
}

/*
 * sb_stream_finish sends, from the command's whole output (the result's),
 * what the polls have not sent yet, the last line even if it has no newline,
 * and the NOTICE about lines the throttle held back.
 */
void
sb_stream_finish(const char *out, size_t out_len, const char *err, size_t err_len)
{
	SbStream   *s = sb_stream_active;
	const char *data[2] = {out, err};
	size_t		len[2] = {out_len, err_len};

	if (s == NULL)
		return;
	if (!s->cloud)
		local_poll(s, true);	/* the executor wrote it all before its result */
	for (int i = 0; i < 2; i++)
	{
		if (data[i] != NULL && (off_t) len[i] > s->done[i])
		{
			take_bytes(s, i, data[i] + s->done[i], len[i] - s->done[i]);
			s->done[i] = len[i];
		}
		if (s->line[i].len > 0 && !s->cut[i])
			emit_line(s, i, s->line[i].data, s->line[i].len, false);
		resetStringInfo(&s->line[i]);
	}
	say_dropped(s);
}

/* sb_stream_fds gives the memfds to hand the executor; false if no local exec streams. */
bool
sb_stream_fds(int fds[2])
{
	if (sb_stream_active == NULL || sb_stream_active->cloud)
		return false;
	fds[0] = sb_stream_active->fd[0];
	fds[1] = sb_stream_active->fd[1];
	return true;
}

/* sb_stream_end ends the stream (its memfds closed). */
void
sb_stream_end(void)
{
	if (sb_stream_active != NULL)
		stream_reset(sb_stream_active);
}

PG_FUNCTION_INFO_V1(sandbox_get_background_logs_from);

/*
 * sandbox_get_background_logs_from is sandbox.get_background_logs(pid,
 * log_offset, session): (output bytea, next_offset bigint, running boolean),
 * the bytes of a background process's log after log_offset (at most
 * READ_OUTPUT_MAX a call), so that a follower reads each byte once.
 */
Datum
sandbox_get_background_logs_from(PG_FUNCTION_ARGS)
{
	int64		handle;
	int64		off;
	Oid			me = GetUserId();
	Oid			argtype = INT8OID;
	Datum		arg;
	char	   *key;
	char	   *name;
	Oid			owner;
	bool		cloud, running, isnull;
	bytea	   *out;
	TupleDesc	desc;
	Datum		v[3];
	bool		n[3] = {false, false, false};
	MemoryContext outer = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("pid must not be null")));
	handle = PG_GETARG_INT64(0);
	off = offset_arg(fcinfo, 1, "log_offset");
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function must return a composite type");
	sb_spi_begin_owner();
	arg = Int64GetDatum(handle);
	if (SPI_execute_with_args("SELECT s.storage_key, b.owner, s.backend = 'cloudrun', b.session, "
							  "  b.status IN ('starting', 'running') "
							  "FROM sandbox.background_processes b "
							  "LEFT JOIN sandbox.sessions s ON s.id = b.session_id WHERE b.pid = $1",
							  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up a background process");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background process " INT64_FORMAT " does not exist", handle)));
	key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	key = key ? MemoryContextStrdup(outer, key) : NULL;
	name = MemoryContextStrdup(outer, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	cloud = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	cloud = cloud && !isnull;
	running = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	sb_spi_end_owner();
	if (owner != me && !superuser_arg(me))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for background process " INT64_FORMAT, handle),
				 errdetail("The process belongs to another role.")));
	if (!PG_ARGISNULL(2) && strcmp(text_to_cstring(PG_GETARG_TEXT_PP(2)), name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background process " INT64_FORMAT " is not in session \"%s\"", handle,
						text_to_cstring(PG_GETARG_TEXT_PP(2)))));
	if (key == NULL)
		out = slice("", 0, 0, 0);
	else if (cloud)
	{
		size_t		len;
		char	   *data;

		sb_gc_use_role(owner);
		data = sb_cloud_bg_logs(key, handle, (size_t) 64 * 1024 * 1024, &len);
		out = slice(data, len, off, READ_OUTPUT_MAX);
	}
	else
	{
		/* A regular file the host made, opened without following or waiting (bgfiles.c). */
		int			fd = sb_local_background_open_log(key, handle);
		ssize_t		got = 0;

		out = palloc(VARHDRSZ + READ_OUTPUT_MAX);
		if (fd >= 0)
		{
			do
				got = pread(fd, VARDATA(out), READ_OUTPUT_MAX, (off_t) off);
			while (got < 0 && errno == EINTR);
			close(fd);
		}
		SET_VARSIZE(out, VARHDRSZ + Max(got, 0));
	}
	v[0] = PointerGetDatum(out);
	v[1] = Int64GetDatum(off + (int64) VARSIZE(out) - VARHDRSZ);
	v[2] = BoolGetDatum(running);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, n)));
}
