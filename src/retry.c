/*
 * retry.c
 *		The retry policy of a queued command: submit's retries, retry_delay
 *		and retry_on arguments (and submit_trigger's options of the same
 *		names), checked and kept in the execution's row for the worker.
 *
 * An attempt that ends in 'error' (the sandbox or the cloud failed), or with
 * retry_on 'failure' also in 'failed' (non-zero exit) or 'timed_out', is run
 * again after retry_delay, doubled for each next retry (capped at a day), up
 * to retries times.  The worker does it when it records the attempt
 * (src/worker/complete.c): the attempt goes to sandbox.retried_attempts and
 * the row is queued again, due at next_attempt_at.
 */
#include "retry.h"

#include "catalog/pg_type.h"
#include "cloudrun_sandbox.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* check_policy raises a clear error for a policy out of bounds. */
static void
check_policy(bool has_retries, int64 retries, bool has_delay, int64 delay_ms, const char *on,
			 SbRetryPolicy *policy)
{
	memset(policy, 0, sizeof(*policy));
	policy->delay_ms = SB_RETRY_DEFAULT_DELAY_MS;
	if (!has_retries && (has_delay || on != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_delay and retry_on need retries"),
				 errhint("Pass retries => n (1 to %d) to have a failed attempt run again.",
						 SB_RETRY_MAX)));
	if (!has_retries)
		return;
	if (retries < 0 || retries > SB_RETRY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retries must be between 0 and %d, not " INT64_FORMAT, SB_RETRY_MAX, retries),
				 errhint("retries is how many times a failed attempt is run again.")));
	if (has_delay && (delay_ms <= 0 || delay_ms > SB_RETRY_MAX_DELAY_MS))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_delay must be positive and at most a day"),
				 errhint("It is the delay before the first retry; it doubles for each next one.")));
	if (on != NULL && strcmp(on, "error") != 0 && strcmp(on, "failure") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_on must be 'error' or 'failure', not \"%s\"", on),
				 errhint("'error' retries an attempt the sandbox or the cloud failed; 'failure' also "
						 "one that exited non-zero or timed out.")));
	policy->retries = (int) retries;
	if (has_delay)
		policy->delay_ms = delay_ms;
	policy->on_failure = on != NULL && strcmp(on, "failure") == 0;
}

/* interval_ms returns an interval in milliseconds (a month as 30 days), saturated. */
static int64
interval_ms(const Interval *iv)
{
	double		ms = (double) iv->time / 1000.0 + (double) iv->day * SECS_PER_DAY * 1000.0 +
		(double) iv->month * DAYS_PER_MONTH * SECS_PER_DAY * 1000.0;

	if (ms > (double) PG_INT64_MAX / 2)
		return PG_INT64_MAX / 2;
	if (ms < (double) PG_INT64_MIN / 2)
		return PG_INT64_MIN / 2;
	/* A positive delay under a millisecond is still positive. */
	if (ms > 0 && ms < 1)
		return 1;
	return (int64) ms;
}

/*
 * sb_retry_policy_args reads arguments first (retries integer), first + 1
 * (retry_delay interval) and first + 2 (retry_on text) into *policy.
 */
void
sb_retry_policy_args(FunctionCallInfo fcinfo, int first, SbRetryPolicy *policy)
{
	bool		has_delay = !PG_ARGISNULL(first + 1);

	check_policy(!PG_ARGISNULL(first), PG_ARGISNULL(first) ? 0 : PG_GETARG_INT32(first),
				 has_delay, has_delay ? interval_ms(PG_GETARG_INTERVAL_P(first + 1)) : 0,
				 PG_ARGISNULL(first + 2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(first + 2)),
				 policy);
}

/*
 * sb_retry_policy_strings reads submit_trigger's options (each NULL or ''
 * for none) into *policy.
 */
void
sb_retry_policy_strings(const char *retries, const char *delay, const char *on, SbRetryPolicy *policy)
{
	bool		has_retries = retries != NULL && retries[0] != '\0';
	bool		has_delay = delay != NULL && delay[0] != '\0';
	int64		n = 0;
	int64		ms = 0;

	if (has_retries)
	{
		char	   *end;

		errno = 0;
		n = strtoll(retries, &end, 10);
		if (errno != 0 || end == retries || *end != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the retries option of submit_trigger must be a number, not \"%s\"", retries),
					 errhint("Give it as the trigger's fifth argument, e.g. '3'.")));
	}
	if (has_delay)
		ms = interval_ms(DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(delay),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1))));
	check_policy(has_retries, n, has_delay, ms, on != NULL && on[0] != '\0' ? on : NULL, policy);
}

/*
 * sb_execution_set_retry keeps a queued execution's retry policy in its row
 * (just inserted by this transaction), for the worker; none: nothing to do.
 */
void
sb_execution_set_retry(int64 id, const SbRetryPolicy *policy)
{
	Oid			types[4] = {INT8OID, INT4OID, INTERVALOID, TEXTOID};
	Datum		values[4];
	Interval   *delay = palloc0(sizeof(Interval));

	if (policy->retries <= 0)
		return;
	delay->time = policy->delay_ms * 1000;
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(policy->retries);
	values[2] = IntervalPGetDatum(delay);
	values[3] = CStringGetTextDatum(policy->on_failure ? "failure" : "error");
	sb_spi_begin_owner();
	if (SPI_execute_with_args("UPDATE sandbox.executions SET retries = $2, retry_delay = $3, "
							  "retry_on = $4 WHERE id = $1", 4, types, values, NULL, false, 0)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not keep the retry policy of execution " INT64_FORMAT, id);
	sb_spi_end_owner();
}
