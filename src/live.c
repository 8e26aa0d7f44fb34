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
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

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

	if (fd < 0)
		return (bytea *) cstring_to_text_with_len("", 0);
	/* The executor writes no more than max_output_bytes; never read more. */
	max = Min(max, Max((int64) sb_max_output_bytes - offset, 0));
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
 * are its session's; owner its role (for the cloud's credentials).
 */
bytea *
sb_live_output(SbBackend backend, const char *key, Oid owner, int64 id, int stream,
			   int64 offset, int64 max)
{
	if (backend == SB_BACKEND_LOCAL)
		return local_read(key, id, stream, offset, max);
	else
	{
		size_t		len;
		char	   *data;

		sb_gc_use_role(owner);
		data = sb_cloud_live_read(key, id, stream, &len);
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
							  "  s.storage_key, s.backend "
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
				sb_live_output(backend, key, owner, id, i, off[i], READ_OUTPUT_MAX) :
				slice("", 0, 0, 0);
	}
	v[0] = PointerGetDatum(out[0]);
	v[1] = PointerGetDatum(out[1]);
	v[2] = Int64GetDatum(off[0] + (int64) VARSIZE(out[0]) - VARHDRSZ);
	v[3] = Int64GetDatum(off[1] + (int64) VARSIZE(out[1]) - VARHDRSZ);
	v[4] = BoolGetDatum(finished && !more);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, n)));
}
