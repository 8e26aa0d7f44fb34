/*
 * stdin.c
 *		A call's stdin and its own working directory (issue 14): the
 *		arguments of exec, submit and start_background, their limits
 *		(cloudrun_sandbox.max_stdin_bytes), and write_background_stdin().
 *
 * stdin travels with the request: as the request frame's raw payload 0 on
 * the local backend, in base64 inside the request document on Cloud Run
 * (the one object the executor reads).  A queued command's stdin waits in
 * its row (sandbox.executions.stdin, counted in its bytes) until the worker
 * runs it, and is cleared when the row is finished.
 */
#include "driver.h"

#include <sys/socket.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/guc.h"

int			sb_max_stdin_bytes = 16 * 1024 * 1024;

PG_FUNCTION_INFO_V1(sandbox_write_background_stdin);

/* sb_stdin_init defines this module's settings; called from _PG_init. */
void
sb_stdin_init(void)
{
	/* At most 32 MB: in base64 it still fits the Cloud Run executor's 64 MB request. */
	DefineCustomIntVariable("cloudrun_sandbox.max_stdin_bytes",
							"Largest stdin of one call (exec, submit, start_background, "
							"write_background_stdin).",
							NULL, &sb_max_stdin_bytes, 16 * 1024 * 1024, 0, 32 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* sb_check_stdin_size rejects stdin larger than cloudrun_sandbox.max_stdin_bytes. */
void
sb_check_stdin_size(size_t len)
{
	if (len > (size_t) sb_max_stdin_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stdin is too large: %zu bytes", len),
				 errdetail("cloudrun_sandbox.max_stdin_bytes is %d.", sb_max_stdin_bytes),
				 errhint("Upload large input with sandbox.file_upload() and redirect it "
						 "(command < file), or ask a superuser to raise "
						 "cloudrun_sandbox.max_stdin_bytes.")));
}

/*
 * sb_require_args refuses a call through SQL definitions older than this
 * library (a database not yet at ALTER EXTENSION ... UPDATE): the function
 * was declared with fewer than n arguments, and reading the missing ones
 * would read past the call's argument array.
 */
void
sb_require_args(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() < n)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cloudrun_sandbox extension in this database is older than its library"),
				 errdetail("The function was declared with %d arguments; this library reads %d.",
						   PG_NARGS(), n),
				 errhint("Run ALTER EXTENSION cloudrun_sandbox UPDATE.")));
}

/*
 * sb_call_input_args reads a call's stdin (text argument stdin_arg, bytea
 * argument bytes_arg: at most one of them) and its directory (cwd_arg, or
 * -1 for none) into *in, with their limits checked.
 */
void
sb_call_input_args(FunctionCallInfo fcinfo, int stdin_arg, int bytes_arg, int cwd_arg,
				   SbCallInput *in)
{
	sb_require_args(fcinfo, Max(Max(stdin_arg, bytes_arg), cwd_arg) + 1);
	memset(in, 0, sizeof(*in));
	if (!PG_ARGISNULL(stdin_arg) && !PG_ARGISNULL(bytes_arg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stdin and stdin_bytes cannot both be given"),
				 errhint("Pass text as stdin, or binary data as stdin_bytes.")));
	if (!PG_ARGISNULL(stdin_arg) || !PG_ARGISNULL(bytes_arg))
	{
		struct varlena *v = PG_GETARG_VARLENA_PP(PG_ARGISNULL(stdin_arg) ? bytes_arg : stdin_arg);

		in->has_stdin = true;
		in->stdin_data = VARDATA_ANY(v);
		in->stdin_len = VARSIZE_ANY_EXHDR(v);
		sb_check_stdin_size(in->stdin_len);
	}
	if (cwd_arg >= 0 && !PG_ARGISNULL(cwd_arg))
	{
		char	   *cwd = text_to_cstring(PG_GETARG_TEXT_PP(cwd_arg));

		if (cwd[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cwd must not be empty"),
					 errhint("Leave cwd NULL to run in the session's working directory.")));
		if (strlen(cwd) >= SB_MAX_CWD_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cwd is too long: %zu bytes", strlen(cwd)),
					 errdetail("A working directory has fewer than %d bytes.", SB_MAX_CWD_BYTES)));
		in->cwd = cwd;
	}
}

/* sb_call_input_payload is a call's stdin as the request frame's payload 0 (or NULL). */
const SbPayload *
sb_call_input_payload(const SbDriver *driver, const SbCallInput *in, SbPayload *p)
{
	if (in == NULL || !in->has_stdin || !driver->binary_frames)
		return NULL;
	p->data = (char *) in->stdin_data;
	p->len = in->stdin_len;
	return p;
}

/* sb_call_input_bytea is a call's stdin as a bytea datum, to keep in a row. */
bytea *
sb_call_input_bytea(const SbCallInput *in)
{
	bytea	   *b = palloc(VARHDRSZ + in->stdin_len);

	SET_VARSIZE(b, VARHDRSZ + in->stdin_len);
	memcpy(VARDATA(b), in->stdin_data, in->stdin_len);
	return b;
}

/*
 * sb_execution_set_input keeps a queued execution's stdin and directory in
 * its row (just inserted by this transaction), for the worker.
 */
void
sb_execution_set_input(int64 id, const SbCallInput *in)
{
	Oid			types[3] = {INT8OID, BYTEAOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', 'n', 'n'};

	if (!in->has_stdin && in->cwd == NULL)
		return;
	values[0] = Int64GetDatum(id);
	if (in->has_stdin)
	{
		values[1] = PointerGetDatum(sb_call_input_bytea(in));
		nulls[1] = ' ';
	}
	if (in->cwd != NULL)
	{
		values[2] = CStringGetTextDatum(in->cwd);
		nulls[2] = ' ';
	}
	sb_spi_begin_owner();
	if (SPI_execute_with_args("UPDATE sandbox.executions SET stdin = $2, call_cwd = $3 "
							  "WHERE id = $1", 3, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not keep the stdin of execution " INT64_FORMAT, id);
	sb_spi_end_owner();
}

/*
 * wait_sock waits until sock is ready for events (WL_SOCKET_READABLE or
 * WL_SOCKET_WRITEABLE), honouring query cancel, statement_timeout and
 * termination: the writer of a process that does not read waits, never
 * anyone else.
 */
static void
wait_sock(int sock, int events)
{
	(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT | events,
							 sock, 1000, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * send_stdin sends one write to a writable process's executor and reads its
 * answer: "W <length> <close>\n" and the bytes; "ok", "closed", or nothing
 * (the process ended meanwhile) comes back.  Returns the answer (palloc'd).
 */
static char *
send_stdin(int sock, const char *data, size_t len, bool close_it)
{
	char		hdr[64];
	size_t		hdr_len = snprintf(hdr, sizeof(hdr), "W %zu %d\n", len, close_it ? 1 : 0);
	size_t		off = 0;
	char		answer[32];
	size_t		got = 0;

	while (off < hdr_len + len)
	{
		const char *p = off < hdr_len ? hdr + off : data + (off - hdr_len);
		size_t		n = off < hdr_len ? hdr_len - off : len - (off - hdr_len);
		ssize_t		w = send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0)
			off += w;
		else if (w < 0 && (errno == EAGAIN || errno == EINTR))
			wait_sock(sock, WL_SOCKET_WRITEABLE);
		else
			return pstrdup("");
	}
	while (got < sizeof(answer) - 1 && memchr(answer, '\n', got) == NULL)
	{
		ssize_t		r = recv(sock, answer + got, sizeof(answer) - 1 - got, MSG_DONTWAIT);

		if (r > 0)
			got += r;
		else if (r < 0 && (errno == EAGAIN || errno == EINTR))
			wait_sock(sock, WL_SOCKET_READABLE);
		else
			break;
	}
	answer[got] = '\0';
	return pstrdup(answer);
}

/* not_running raises the error of a write to a process that is not running. */
static void
not_running(int64 handle, const char *status)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("background process " INT64_FORMAT " is not running", handle),
			 status ? errdetail("Its status is %s.", status) : 0,
			 status && strcmp(status, "starting") == 0 ?
			 errhint("The worker starts it after the transaction that started it commits; "
					 "try again in a moment.") : 0));
}

Datum
sandbox_write_background_stdin(PG_FUNCTION_ARGS)
{
	int64		handle;
	struct varlena *data;
	bool		close_it = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	char	   *key, *status;
	char	   *volatile answer = NULL;
	Oid			owner;
	bool		writable;
	int			sock;
	size_t		len;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "pid" : "data")));
	handle = PG_GETARG_INT64(0);
	data = PG_GETARG_VARLENA_PP(1);
	len = VARSIZE_ANY_EXHDR(data);
	sb_check_stdin_size(len);
	values[0] = Int64GetDatum(handle);
	sb_spi_begin_owner();
	if (SPI_execute_with_args("SELECT s.storage_key, b.owner, b.status, b.stdin_open "
							  "FROM sandbox.background_processes b "
							  "LEFT JOIN sandbox.sessions s ON s.id = b.session_id WHERE b.pid = $1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up a background process");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background process " INT64_FORMAT " does not exist", handle)));
	key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	key = key ? MemoryContextStrdup(TopTransactionContext, key) : NULL;
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	status = MemoryContextStrdup(TopTransactionContext,
								 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
	writable = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	sb_spi_end_owner();
	if (owner != GetUserId() && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for background process " INT64_FORMAT, handle)));
	if (!writable)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("background process " INT64_FORMAT " was not started to be written to",
						handle),
				 errdetail("A process of sandbox.start_background() reads the stdin it was "
						   "given, then EOF."),
				 errhint("Start it with sandbox.start_background_writable().")));
	if (strcmp(status, "running") != 0 || key == NULL)
		not_running(handle, status);
	sock = sb_local_background_stdin_connect(key, handle);
	if (sock < 0)
		not_running(handle, NULL);
	PG_TRY();
	{
		answer = send_stdin(sock, VARDATA_ANY(data), len, close_it);
	}
	PG_FINALLY();
	{
		close(sock);
	}
	PG_END_TRY();
	if (strcmp(answer, "closed\n") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the stdin of background process " INT64_FORMAT " is closed", handle),
				 errdetail("It was closed by write_background_stdin(..., close => true), or "
						   "the process closed it.")));
	if (strcmp(answer, "ok\n") != 0)
		not_running(handle, NULL);
	PG_RETURN_INT64((int64) len);
}
