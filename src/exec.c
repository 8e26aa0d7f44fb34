/*
 * exec.c
 *		sandbox.exec(): run one command synchronously in a session.
 */
#include "driver.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common/sbutil.h"
#include "gcloud.h"
#include "live.h"
#include "local/cgroup.h"
#include "local/quota.h"
#include "worker/reaper.h"

/* Extra time after a command's timeout before the sandbox itself is abandoned. */
#define SB_KILL_GRACE_MS 1000

PG_FUNCTION_INFO_V1(sandbox_exec);

/* sb_require_utf8 rejects databases whose encoding cannot hold command output. */
void
sb_require_utf8(void)
{
	if (GetDatabaseEncoding() != PG_UTF8)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cloudrun_sandbox requires a UTF8 database"),
				 errdetail("This database uses %s.", GetDatabaseEncodingName())));
}

/*
 * sb_timeout_cap_ms caps a timeout at cloudrun_sandbox.max_timeout.  Every
 * timeout goes through it: default_timeout is settable by any role, and a
 * queued command may have been submitted under a larger max_timeout.
 */
int64
sb_timeout_cap_ms(int64 ms)
{
	return Min(ms, (int64) sb_max_timeout_s * 1000);
}

/* sb_timeout_ms converts a timeout argument to milliseconds, with the limits checked. */
int64
sb_timeout_ms(Interval *iv)
{
	int64		ms;

	if (iv == NULL)
		return sb_timeout_cap_ms((int64) sb_default_timeout_s * 1000);
	ms = (iv->time / 1000) + ((int64) iv->day * SECS_PER_DAY * 1000) +
		((int64) iv->month * DAYS_PER_MONTH * SECS_PER_DAY * 1000);
	if (ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive")));
	if (ms > (int64) sb_max_timeout_s * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout exceeds cloudrun_sandbox.max_timeout (%d s)", sb_max_timeout_s),
				 errhint("Ask a superuser to raise cloudrun_sandbox.max_timeout.")));
	return ms;
}

/* text_arg returns a non-null text argument as a C string, or raises an error. */
char *
text_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * sb_check_command rejects an empty command, and one longer than
 * cloudrun_sandbox.max_command_bytes: a command travels in a request
 * document and a history row, and each copy costs the server its size.
 */
void
sb_check_command(const char *command)
{
	size_t		len = strlen(command);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("command must not be empty")));
	if (len > (size_t) sb_max_command_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("command is too long: %zu bytes", len),
				 errdetail("cloudrun_sandbox.max_command_bytes is %d.", sb_max_command_bytes),
				 errhint("Write a long script to a file with sandbox.file_write() and run the file.")));
}

/* sb_limits fills the resource limits from the settings. */
static void
sb_limits(SbLimits *l)
{
	l->nproc = sb_max_processes;
	l->memory_bytes = (long long) sb_memory_limit_mb * 1024 * 1024;
	l->fsize_bytes = (long long) sb_file_size_limit_mb * 1024 * 1024;
	l->cpu_seconds = sb_cpu_time_limit_s;
}

/*
 * sb_prepare_exec builds the request document for one command in a session
 * the caller has locked, and fills *state with the state it starts from
 * (empty when the executor reads the state itself, or the session is new).
 */
char *
sb_prepare_exec(const SbSession *session, const SbDriver *driver, bool fresh, int64 id,
				const char *command, json_t *call_env, int64 timeout_ms, SbState *state)
{
	return sb_prepare_exec_ex(session, driver, fresh, id, command, call_env, timeout_ms, NULL,
							  state);
}

/*
 * sb_prepare_exec_ex is sb_prepare_exec with the call's stdin and directory
 * (in, or NULL): stdin goes in the document (cloud) or is left to the frame's
 * payload 0, sb_call_input_payload (binary frames).
 */
char *
sb_prepare_exec_ex(const SbSession *session, const SbDriver *driver, bool fresh, int64 id,
				   const char *command, json_t *call_env, int64 timeout_ms,
				   const SbCallInput *in, SbState *state)
{
	SbExecRequest req;
	char	   *request;

	/* Cloud: the owner's job, prefix and isolation, also in the worker; the call's limit. */
	if (driver->executor_writes_state)
	{
		sb_gc_use_role(session->owner);
		sb_gc_call_until(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 timeout_ms + SB_KILL_GRACE_MS));
	}
	sb_cgroup_use_role(session->owner);	/* a local sandbox joins its owner's cgroup */
	sb_quota_owner = session->owner;	/* whose quota new storage gets */
	driver->prepare_session(session->key, fresh);
	sb_quota_owner = InvalidOid;
	if (driver->executor_writes_state || fresh || !driver->load_state(session->key, state))
	{
		memset(state, 0, sizeof(*state));
		state->cwd = SB_WORKSPACE;
		state->env = json_object();
	}
	memset(&req, 0, sizeof(req));
	req.id = id;
	if (driver->executor_writes_state)
	{
		req.session = session->key;
		req.prefix = sb_gc_prefix();
		req.isolation = sb_gc_isolation();
	}
	req.command = command;
	req.cwd = state->cwd;
	req.env = state->env;
	req.call_env = call_env;
	req.timeout_ms = timeout_ms;
	req.max_output_bytes = sb_max_output_bytes;
	req.kill_grace_ms = SB_KILL_GRACE_MS;
	sb_limits(&req.limits);
	if (driver->disk_quota_kb != NULL)
		req.disk_quota_bytes = driver->disk_quota_kb(session->key) * 1024;
	if (in != NULL)
	{
		req.call_cwd = in->cwd;
		req.has_stdin = in->has_stdin;
		req.stdin_open = in->stdin_open;
		req.stdin_in_frame = in->has_stdin && driver->binary_frames;
		req.stdin_data = in->stdin_data;
		req.stdin_len = in->stdin_len;
	}
	request = sb_request_encode(&req);
	if (request == NULL)
		elog(ERROR, "could not encode the sandbox request");
	return request;
}

/* sb_exec_deadline is when a run of this command is abandoned. */
TimestampTz
sb_exec_deadline(const SbDriver *driver, TimestampTz started, int64 timeout_ms)
{
	return TimestampTzPlusMilliseconds(started, timeout_ms + SB_KILL_GRACE_MS + driver->slack_ms);
}

/*
 * sb_payload_bytea makes a payload a bytea datum in place: the payload's
 * room before it takes the header.
 */
bytea *
sb_payload_bytea(SbPayload *p)
{
	bytea	   *b = (bytea *) (p->data - VARHDRSZ);

	if (p->len > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the sandbox returned a payload larger than allowed")));
	SET_VARSIZE(b, VARHDRSZ + p->len);
	return b;
}

/*
 * sb_payload_text makes a payload of output or file content a text datum.
 * The sandbox is not trusted to send valid text: when the payload is valid
 * UTF-8 without NUL bytes it becomes the datum in place; otherwise the datum
 * is a repaired copy (each invalid byte and NUL becomes U+FFFD, and with
 * truncated, a character cut at the end by a byte cap is dropped), *repaired
 * saying whether anything was replaced.
 */
text *
sb_payload_text(SbPayload *p, bool truncated, bool *repaired)
{
	char	   *fixed;
	size_t		n;
	text	   *t;

	*repaired = false;
	if (p->len > PG_INT32_MAX - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the sandbox returned a payload larger than allowed")));
	if (pg_encoding_verifymbstr(PG_UTF8, p->data, (int) p->len) == (int) p->len)
		return (text *) sb_payload_bytea(p);
	fixed = sb_utf8_repair(p->data, p->len, truncated, &n, repaired);
	if (fixed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	t = cstring_to_text_with_len(fixed, n);
	pfree(fixed);
	return t;
}

/*
 * sb_decode_result decodes a result document into outcome->result, or
 * raises an error.  A result whose output came as the frame's payloads
 * (npayloads of them) gets it from there, as text datums made in place where
 * the bytes are valid (outcome->stdout_text, stderr_text).
 */
void
sb_decode_result(SbOutcome *outcome, const char *text, size_t len, SbPayload *payloads,
				 int npayloads)
{
	SbExecResult *r = &outcome->result;
	char		errbuf[512];
	bool		in_frame = false;

	if (!sb_result_decode_ex(text, len, r, &in_frame, errbuf, sizeof(errbuf)))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("%s", errbuf)));
	if (in_frame && (payloads == NULL || npayloads != 2))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("The result says its output is in the frame, which has none.")));
	if (!in_frame)
	{
		for (int i = 0; i < npayloads; i++)
			if (payloads[i].len > 0)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("the sandbox returned a malformed result"),
						 errdetail("The result frame has output its document does not expect.")));
		return;
	}
	/* The executor caps each output at max_output_bytes: more is not its answer. */
	if (payloads[0].len > (size_t) sb_max_output_bytes ||
		payloads[1].len > (size_t) sb_max_output_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("The result frame's output is larger than cloudrun_sandbox.max_output_bytes.")));
	outcome->stdout_text = sb_payload_text(&payloads[0], r->stdout_truncated,
										   &r->stdout_repaired);
	outcome->stderr_text = sb_payload_text(&payloads[1], r->stderr_truncated,
										   &r->stderr_repaired);
	r->stdout_data = VARDATA(outcome->stdout_text);
	r->stdout_len = VARSIZE(outcome->stdout_text) - VARHDRSZ;
	r->stderr_data = VARDATA(outcome->stderr_text);
	r->stderr_len = VARSIZE(outcome->stderr_text) - VARHDRSZ;
}

/*
 * sb_outcome_text returns a decoded result's stdout (or, with err, stderr)
 * as a text datum: the one made from the payload, or a copy of the JSON's
 * (whose decoded string is freed: one copy at a time).
 */
text *
sb_outcome_text(SbOutcome *outcome, bool err)
{
	SbExecResult *r = &outcome->result;
	char	  **data = err ? &r->stderr_data : &r->stdout_data;
	text	   *t = err ? outcome->stderr_text : outcome->stdout_text;

	if (t == NULL)
	{
		t = cstring_to_text_with_len(*data ? *data : "", err ? r->stderr_len : r->stdout_len);
		sb_free(*data);
	}
	*data = NULL;
	return t;
}

/*
 * sb_apply_state commits the session's new state a result carries: the
 * extension stores it (local) or the executor already has (cloud); then the
 * mirror row follows.
 */
void
sb_apply_state(const SbSession *session, const SbDriver *driver, const SbOutcome *outcome,
			   SbState *state)
{
	const SbExecResult *r = &outcome->result;

	if (!r->has_state || (driver->executor_writes_state && r->state_generation <= 0))
		return;
	state->cwd = r->cwd;
	state->env = r->env;
	state->last_execution = outcome->id;
	if (driver->executor_writes_state)
		state->generation = r->state_generation;
	else
	{
		state->generation++;
		driver->store_state(session->key, state);
	}
	sb_session_update(session, state);
}

/*
 * sb_result_datum forms the row sandbox.exec, wait and result return.  The
 * sandbox's own error, if any, is appended to stderr.
 */
Datum
sb_result_datum(TupleDesc desc, int64 id, const char *status, bool has_exit_code, int exit_code,
				text *out, text *err, const char *error, const char *cwd, Interval *duration,
				bool out_truncated, bool err_truncated)
{
	Datum		values[9];
	bool		nulls[9] = {0};

	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(status);
	values[2] = Int32GetDatum(exit_code);
	nulls[2] = !has_exit_code;
	values[3] = PointerGetDatum(out);
	nulls[3] = out == NULL;
	if (error != NULL)
	{
		char	   *e = err ? text_to_cstring(err) : "";

		values[4] = CStringGetTextDatum(psprintf("%s%scloudrun-sandbox: %s", e, e[0] ? "\n" : "",
												 error));
	}
	else
	{
		values[4] = PointerGetDatum(err);
		nulls[4] = err == NULL;
	}
	values[5] = cwd ? CStringGetTextDatum(cwd) : (Datum) 0;
	nulls[5] = cwd == NULL;
	values[6] = IntervalPGetDatum(duration);
	nulls[6] = duration == NULL;
	values[7] = BoolGetDatum(out_truncated);
	values[8] = BoolGetDatum(err_truncated);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/*
 * sb_refuse_unbuilt refuses, for now, the arguments of issue 14 that are not
 * built yet (names[i] is argument first + i; NULL = built): the interface is
 * in place (0.6.0) before each part's behaviour.
 */
void
sb_refuse_unbuilt(FunctionCallInfo fcinfo, int first, const char *const *names, int n)
{
	for (int i = 0; i < n && first + i < PG_NARGS(); i++)
		if (names[i] != NULL && !PG_ARGISNULL(first + i))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the %s argument is not supported yet", names[i])));
}

Datum
sandbox_exec(PG_FUNCTION_ARGS)
{
	char	   *command = text_arg(fcinfo, 0, "command");
	char	   *name = text_arg(fcinfo, 1, "session");
	int64		tmo = sb_timeout_ms(PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2));
	json_t	   *call_env = PG_ARGISNULL(3) ? NULL :
		sb_jsonb_to_env(PG_GETARG_JSONB_P(3), "env argument");
	TupleDesc	desc;
	SbSession  *session;
	const SbDriver *driver;
	SbState		state;
	SbOutcome	outcome;
	SbExecResult *r = &outcome.result;
	char	   *request;
	char	   *text;
	size_t		len;
	Interval   *duration;
	struct varlena *out;		/* text; "text" names the result here */
	struct varlena *err;
	SbPayload	payloads[2];
	int			npayloads = 0;
	SbCallInput in;
	SbPayload	stdin_payload;
	bool		stream;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "sandbox.exec must return a composite type");
	stream = PG_NARGS() > 6 && !PG_ARGISNULL(6) ? PG_GETARG_BOOL(6) : sb_stream_output;
	sb_call_input_args(fcinfo, 4, 7, 5, &in);
	sb_require_utf8();
	sb_check_command(command);

	/* Lock the session (creating it on first use): one command at a time. */
	session = sb_session_lock(name, true, (SbBackend) sb_default_backend, false);
	driver = sb_driver_for(session->backend);
	memset(&outcome, 0, sizeof(outcome));
	outcome.id = sb_execution_next_id();
	request = sb_prepare_exec_ex(session, driver, session->created, outcome.id, command,
								 call_env, tmo, &in, &state);
	outcome.command = command;
	/* A command whose transaction rolled back changed the state: the mirror follows. */
	if (!driver->executor_writes_state && !session->created &&
		state.generation != session->generation)
		sb_session_update(session, &state);
	/* The command changes the session's state even if this transaction rolls back. */
	if (!session->created)
		sb_reaper_if_change_aborts(session);
	outcome.started_at = GetCurrentTimestamp();
	/* Streamed: each line as a NOTICE while it runs (live.c); ended with the statement. */
	if (stream)
		sb_stream_begin(session->backend == SB_BACKEND_CLOUDRUN, session->key, outcome.id,
						session->owner);
	text = sb_run_sync(driver, session->key, outcome.id, request,
					   sb_call_input_payload(driver, &in, &stdin_payload),
					   sb_exec_deadline(driver, outcome.started_at, tmo), &len, payloads,
					   &npayloads);
	outcome.finished_at = GetCurrentTimestamp();
	/* The request and the result's text are not needed once decoded (memory: issue 11). */
	pfree(request);
	sb_decode_result(&outcome, text, len, payloads, npayloads);
	pfree(text);
	if (stream)
	{
		sb_stream_finish(r->stdout_data, r->stdout_len, r->stderr_data, r->stderr_len);
		sb_stream_end();
	}

	/* History first, then the session's new state and its mirror. */
	sb_execution_insert(session, &outcome);
	sb_apply_state(session, driver, &outcome, &state);
	sb_execution_prune();

	duration = palloc0(sizeof(Interval));
	duration->time = (int64) (r->duration_ms * 1000.0);
	/* One copy of each output at a time: the row's. */
	out = sb_outcome_text(&outcome, false);
	err = sb_outcome_text(&outcome, true);
	PG_RETURN_DATUM(sb_result_datum(desc, outcome.id, sb_status_name(r->status),
									r->has_exit_code, r->exit_code, out, err,
									r->error, r->has_state ? r->cwd : state.cwd, duration,
									r->stdout_truncated, r->stderr_truncated));
}
