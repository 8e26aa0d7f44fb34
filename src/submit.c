/*
 * submit.c
 *		The asynchronous SQL surface: sandbox.submit(), wait(), result(),
 *		cancel(), the submit_trigger() trigger function and worker_status().
 *		Queued executions are rows in sandbox.executions; the background worker
 *		(worker.c) runs them after the queuing transaction commits.
 */
#include "driver.h"
#include "cloud/runners.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "retry.h"
#include "shared.h"

PG_FUNCTION_INFO_V1(sandbox_submit);
PG_FUNCTION_INFO_V1(sandbox_wait);
PG_FUNCTION_INFO_V1(sandbox_result);
PG_FUNCTION_INFO_V1(sandbox_cancel);
PG_FUNCTION_INFO_V1(sandbox_submit_trigger);
PG_FUNCTION_INFO_V1(sandbox_worker_status);

/* How often a waiter re-reads the row even without a wake-up (a safety net). */
#define WAIT_RECHECK_MS 1000

/* require_worker_database raises an error outside the worker's database. */
static void
require_worker_database(void)
{
	char	   *db = get_database_name(MyDatabaseId);

	sb_require_worker_library();
	if (db == NULL || strcmp(db, sb_worker_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the background worker serves database \"%s\", not \"%s\"",
						sb_worker_database, db ? db : "?"),
				 errhint("Submit from database \"%s\", or set cloudrun_sandbox.database and "
						 "restart the server.", sb_worker_database)));
}

/* check_callback validates a callback: callable by the caller with one bigint argument. */
static void
check_callback(Oid fn)
{
	HeapTuple	tp;
	Form_pg_proc proc;
	bool		ok;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION), errmsg("callback %u does not exist", fn)));
	proc = (Form_pg_proc) GETSTRUCT(tp);
	ok = proc->pronargs == 1 && proc->proargtypes.values[0] == INT8OID && proc->prokind == PROKIND_FUNCTION;
	ReleaseSysCache(tp);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("callback %s must be a function taking one bigint", format_procedure(fn)),
				 errhint("The worker calls it with the execution id once the execution has finished.")));
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn))));
}

/*
 * queue checks, locks the session (creating it on first use) and queues one
 * execution (with its stdin, directory and retry policy, if any); env_what
 * names env in an error message.
 */
static int64
queue(const char *name, const char *command, int64 timeout_ms, Jsonb *env, const char *env_what,
	  Oid callback, const SbCallInput *in, const SbRetryPolicy *policy)
{
	SbSession  *session;
	int64		id;

	require_worker_database();
	sb_require_utf8();
	sb_check_command(command);
	if (env != NULL)
		(void) sb_jsonb_to_env(env, env_what);
	if (OidIsValid(callback))
		check_callback(callback);
	session = sb_session_lock_ext(name, true, (SbBackend) sb_default_backend, false, false);
	id = sb_execution_queue(session, command, timeout_ms, env, callback);
	if (in != NULL)
		sb_execution_set_input(id, in);
	if (policy != NULL)
		sb_execution_set_retry(id, policy);
	sb_wake_worker_at_commit();
	return id;
}

Datum
sandbox_submit(PG_FUNCTION_ARGS)
{
	char	   *command = text_arg(fcinfo, 0, "command");
	char	   *name = text_arg(fcinfo, 1, "session");
	int64		tmo = sb_timeout_ms(PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2));
	Jsonb	   *env = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	Oid			callback = PG_ARGISNULL(4) ? InvalidOid : PG_GETARG_OID(4);
	SbCallInput in;
	SbRetryPolicy policy;

	sb_call_input_args(fcinfo, 5, 10, 6, &in);
	sb_retry_policy_args(fcinfo, 7, &policy);
	PG_RETURN_INT64(queue(name, command, tmo, env, "env argument", callback, &in, &policy));
}

/* result_desc returns the row type of wait/result. */
static TupleDesc
result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function must return a composite type");
	return desc;
}

Datum
sandbox_result(PG_FUNCTION_ARGS)
{
	bool		finished, mine;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("id must not be null")));
	PG_RETURN_DATUM(sb_execution_row_live(PG_GETARG_INT64(0), result_desc(fcinfo), &finished, &mine,
										  true));
}

Datum
sandbox_wait(PG_FUNCTION_ARGS)
{
	int64		id;
	TupleDesc	desc = result_desc(fcinfo);
	TimestampTz deadline = 0;
	Datum		row;
	bool		finished, mine;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("id must not be null")));
	id = PG_GETARG_INT64(0);
	sb_require_worker_library();
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sandbox.wait cannot see executions finish in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errhint("Call it in a READ COMMITTED transaction.")));
	if (!PG_ARGISNULL(1))
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   sb_timeout_ms(PG_GETARG_INTERVAL_P(1)));

	ConditionVariablePrepareToSleep(&sb_shared->completion_cv);
	for (;;)
	{
		long		sleep_ms = WAIT_RECHECK_MS;

		row = sb_execution_row(id, desc, &finished, &mine);
		if (finished)
			break;
		if (mine)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("execution " INT64_FORMAT " was queued by this transaction", id),
					 errdetail("The worker runs it only after the transaction commits."),
					 errhint("Commit first, then call sandbox.wait().")));
		}
		if (deadline != 0)
		{
			long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

			if (left <= 0)
				break;
			sleep_ms = Min(sleep_ms, left);
		}
		(void) ConditionVariableTimedSleep(&sb_shared->completion_cv, sleep_ms, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_DATUM(row);
}

Datum
sandbox_cancel(PG_FUNCTION_ARGS)
{
	int64		id;
	bool		finished, mine;
	bool		did;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("id must not be null")));
	id = PG_GETARG_INT64(0);
	sb_require_worker_library();
	/* Raises a clear error for an unknown id or another role's execution. */
	(void) sb_execution_row(id, CreateTemplateTupleDesc(0), &finished, &mine);
	did = sb_execution_cancel(id);
	if (did)
		sb_cancel_at_commit();
	PG_RETURN_BOOL(did);
}

/* column_text returns the text of a row's column, or NULL; raises an error for an unknown column. */
static char *
column_text(TriggerData *td, const char *column)
{
	TupleDesc	desc = td->tg_relation->rd_att;
	int			attno = SPI_fnumber(desc, column);
	char	   *value;

	if (attno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of the submit_trigger arguments does not exist in table \"%s\"",
						column, RelationGetRelationName(td->tg_relation))));
	value = SPI_getvalue(td->tg_trigtuple, desc, attno);
	return value;
}

/*
 * expand_template turns "make test T={target}" into a command that reads the
 * row's values from the environment: make test T="${SANDBOX_ARG_target}".
 * The values never become shell syntax; they are passed in env.
 */
static char *
expand_template(TriggerData *td, const char *tmpl, JsonbParseState **ps, bool *any)
{
	StringInfoData out;
	const char *p = tmpl;

	initStringInfo(&out);
	while (*p)
	{
		const char *close;
		char	   *column;
		char	   *value;
		JsonbValue	k, v;

		if (*p != '{' || (close = strchr(p, '}')) == NULL)
		{
			appendStringInfoChar(&out, *p++);
			continue;
		}
		column = pnstrdup(p + 1, close - p - 1);
		if (!sb_env_name_valid(column))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("submit_trigger placeholder {%s} must name a column with a plain name", column)));
		value = column_text(td, column);
		appendStringInfo(&out, "\"${SANDBOX_ARG_%s}\"", column);
		k.type = jbvString;
		k.val.string.val = psprintf("SANDBOX_ARG_%s", column);
		k.val.string.len = strlen(k.val.string.val);
		v.type = jbvString;
		v.val.string.val = value ? value : "";
		v.val.string.len = strlen(v.val.string.val);
		(void) pushJsonbValue(ps, WJB_KEY, &k);
		(void) pushJsonbValue(ps, WJB_VALUE, &v);
		*any = true;
		p = close + 1;
	}
	return out.data;
}

Datum
sandbox_submit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	char	   *command;
	char	   *session = "default";
	int64		tmo;
	Oid			callback = InvalidOid;
	JsonbParseState *ps = NULL;
	JsonbValue *env_value;
	bool		any = false;
	Oid			user_role = get_role_oid("sandbox_user", true);
	SbRetryPolicy policy;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sandbox.submit_trigger() must be an AFTER INSERT ... FOR EACH ROW trigger")));
	if (!superuser() && (!OidIsValid(user_role) || !has_privs_of_role(GetUserId(), user_role)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to queue sandbox commands"),
				 errdetail("Inserting into \"%s\" queues a command as the inserting role.",
						   RelationGetRelationName(td->tg_relation)),
				 errhint("Grant sandbox_user to the role.")));
	tg = td->tg_trigger;
	if (tg->tgnargs < 1 || tg->tgnargs > 7)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sandbox.submit_trigger(command_column_or_template [, session [, timeout [, callback "
						"[, retries [, retry_delay [, retry_on]]]]]]) takes 1 to 7 arguments"),
				 errhint("Pass '' for an option left at its default.")));
	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	/*
	 * The first argument names a column of the table, or else is a command
	 * template: with {column} placeholders, or none ('make test').
	 */
	if (SPI_fnumber(td->tg_relation->rd_att, tg->tgargs[0]) <= 0)
		command = expand_template(td, tg->tgargs[0], &ps, &any);
	else
	{
		command = column_text(td, tg->tgargs[0]);
		if (command == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("column \"%s\" holds no command", tg->tgargs[0])));
	}
	env_value = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	if (tg->tgnargs >= 2)
	{
		const char *s = tg->tgargs[1];
		size_t		n = strlen(s);

		session = (n > 2 && s[0] == '{' && s[n - 1] == '}') ? column_text(td, pnstrdup(s + 1, n - 2))
			: (char *) s;
		if (session == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the session column \"%s\" is null", s)));
	}
	tmo = sb_timeout_ms(tg->tgnargs >= 3 && tg->tgargs[2][0] ?
						DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(tg->tgargs[2]),
															  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)))
						: NULL);
	if (tg->tgnargs >= 4 && tg->tgargs[3][0])
		callback = DatumGetObjectId(DirectFunctionCall1(regprocedurein, CStringGetDatum(tg->tgargs[3])));
	sb_retry_policy_strings(tg->tgnargs >= 5 ? tg->tgargs[4] : NULL,
							tg->tgnargs >= 6 ? tg->tgargs[5] : NULL,
							tg->tgnargs >= 7 ? tg->tgargs[6] : NULL, &policy);
	(void) queue(session, command, tmo, any ? JsonbValueToJsonb(env_value) : NULL,
				 "row values of the submit_trigger placeholders", callback, NULL, &policy);
	return PointerGetDatum(NULL);
}

Datum
sandbox_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc = result_desc(fcinfo);
	Datum		values[11];
	bool		nulls[11] = {0};
	int			procno = -1;
	pid_t		pid = 0;
	TimestampTz started_at = 0;
	int			in_flight[2] = {0, 0};
	int64		completed = 0;
	SbRoleError error;

	if (sb_shared != NULL)
	{
		SpinLockAcquire(&sb_shared->mutex);
		procno = sb_shared->worker_pgprocno;
		pid = sb_shared->worker_pid;
		started_at = sb_shared->worker_started_at;
		in_flight[0] = sb_shared->in_flight[0];
		in_flight[1] = sb_shared->in_flight[1];
		completed = sb_shared->completed;
		SpinLockRelease(&sb_shared->mutex);
	}
	/* Each role sees its own errors only; a superuser sees the newest of all. */
	(void) sb_shared_get_error(GetUserId(), superuser(), &error);
	values[0] = BoolGetDatum(procno >= 0);
	values[1] = Int32GetDatum(pid);
	nulls[1] = procno < 0;
	values[2] = CStringGetTextDatum(sb_worker_database);
	values[3] = TimestampTzGetDatum(started_at);
	nulls[3] = started_at == 0;
	values[4] = Int32GetDatum(in_flight[SB_BACKEND_LOCAL]);
	values[5] = Int32GetDatum(in_flight[SB_BACKEND_CLOUDRUN]);
	values[6] = Int64GetDatum(completed);
	values[7] = CStringGetTextDatum(error.message);
	nulls[7] = error.at == 0;
	values[8] = TimestampTzGetDatum(error.at);
	nulls[8] = error.at == 0;
	/* Before ALTER EXTENSION ... UPDATE to 0.4.0 the function has no limits column. */
	if (desc->natts > 9)
		values[9] = sb_limits_in_force();
	/* Before 0.8.0 it has no runners column. */
	if (desc->natts > 10)
		values[10] = Int32GetDatum(sb_runner_count(InvalidOid));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
