/*
 * retry.h
 *		The retry policy of a queued command (submit's retries, retry_delay
 *		and retry_on; submit_trigger's options), see retry.c.
 */
#ifndef SB_RETRY_H
#define SB_RETRY_H

#include "postgres.h"

#include "fmgr.h"

/* The most retries one execution may ask for, and the longest first delay. */
#define SB_RETRY_MAX 100
#define SB_RETRY_MAX_DELAY_MS ((int64) 86400000)
#define SB_RETRY_DEFAULT_DELAY_MS 1000

/* SbRetryPolicy is what a queued command asks for when an attempt fails. */
typedef struct SbRetryPolicy
{
	int			retries;		/* 0: never retried */
	int64		delay_ms;		/* before the first retry; doubles for each next one */
	bool		on_failure;		/* retry_on 'failure' (else 'error') */
} SbRetryPolicy;

extern void sb_retry_policy_args(FunctionCallInfo fcinfo, int first, SbRetryPolicy *policy);
extern void sb_retry_policy_strings(const char *retries, const char *delay, const char *on,
									SbRetryPolicy *policy);
extern void sb_execution_set_retry(int64 id, const SbRetryPolicy *policy);

#endif							/* SB_RETRY_H */
