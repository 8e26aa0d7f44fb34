/*
 * flight.h
 *		One execution the background worker has claimed, and the state
 *		machine that moves it from claimed to finished (see flight.c).
 */
#ifndef SB_WORKER_FLIGHT_H
#define SB_WORKER_FLIGHT_H

#include "driver.h"

#include "access/htup.h"
#include "access/tupdesc.h"

/*
 * FlightState is where a flight is.  flight_advance() moves a flight along
 * the steps it can take by itself; the steps that need a transaction or a
 * batch of flights (STAGED, LAUNCHED, FINISHED) wait for the loop, which
 * takes every flight in that state at once.
 *
 *	 CLAIMED ─► STAGED ─► LAUNCHING ─► LAUNCHED ─► RUNNING ─► COLLECTING ─► FINISHED
 *	    └──────────────────────┘ (drivers without batching)
 *
 * Any step may fail or be cancelled: the flight goes to FINISHED with its
 * failure (or cancelled) set, and is recorded like any other.  A commit that
 * finds the flight's rows locked by another transaction (a user's) is not
 * waited for: the flight stays in its state (LAUNCHED, FINISHED) and the
 * commit is tried again SB_RETRY_LOCKED_MS later.
 */
typedef enum FlightState
{
	FLIGHT_CLAIMED,				/* committed 'launching'; its request not written yet */
	FLIGHT_STAGED,				/* request written, run staged: waits for a batch launch */
	FLIGHT_LAUNCHING,			/* the driver's launch in progress (uploads, run request) */
	FLIGHT_LAUNCHED,			/* launched, stepped: 'running' and its remote name not committed yet */
	FLIGHT_RUNNING,				/* committed 'running': stepped until the run has ended */
	FLIGHT_COLLECTING,			/* the run ended: its result being collected */
	FLIGHT_FINISHED				/* outcome in memory (result, failure or cancel): to record */
} FlightState;

/* WorkerFlight is one execution the worker has claimed. */
typedef struct WorkerFlight
{
	FlightState state;
	int64		id;
	int64		run_id;			/* names this attempt's request and result (a retry's own) */
	int			retries;		/* the row's retry policy has any (0: never retried) */
	bool		requeued;		/* recorded as an attempt to retry: queued again */
	int64		session_id;		/* the session's identity */
	char	   *session;		/* its name */
	char	   *key;			/* its storage key, what the driver takes */
	Oid			owner;
	SbBackend	backend;
	bool		fresh;			/* the session has never run anything */
	char	   *command;
	int64		timeout_ms;
	json_t	   *call_env;
	Oid			callback;
	SbCallInput input;			/* its stdin and its own directory */
	const SbDriver *driver;
	SbRun	   *run;
	SbState		sstate;			/* the session's state the request was made from */
	MemoryContext cxt;			/* everything of this flight */
	TimestampTz started_at;
	TimestampTz deadline;
	bool		cancelled;
	char	   *failure;		/* set when the flight failed in the worker */
	char	   *result;
	size_t		result_len;
	SbPayload	payloads[2];	/* the result frame's payloads (stdout, stderr) */
	int			npayloads;
	TimestampTz retry_at;		/* FINISHED: when to try recording it again */
	TimestampTz next_poll;		/* runs without descriptors: when to look again */
	int			poll_ms;		/* and the current interval, doubling to a second */
	int64		live_notified[2];	/* local: the output offsets NOTIFY sandbox_output told */
} WorkerFlight;

/* The flights in progress (in WorkerContext). */
extern List *flights;

extern WorkerFlight *new_flight(HeapTuple tup, TupleDesc desc);
extern void flight_error(WorkerFlight *f, const char *message);
extern void flight_cancel(WorkerFlight *f);
extern void flight_attached(WorkerFlight *f);
extern void flight_advance(WorkerFlight *f);
extern void flights_advance(List *list);
extern bool flight_due(WorkerFlight *f, TimestampTz now);
extern void flights_forget(List *done);
extern bool flights_any_finished(void);
extern int	flights_busy(void);
extern void flights_count(void);
extern void flights_notify_output(void);

#endif							/* SB_WORKER_FLIGHT_H */
