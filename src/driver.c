/*
 * driver.c
 *		Chooses the driver for a backend, and runs a request synchronously in
 *		the calling backend with query cancel and statement_timeout honoured.
 */
#include "driver.h"

#include "gcloud.h"
#include "live.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#define SB_MAX_WAIT_FDS 8

bool		sb_driver_nonblocking = false;

/* sb_driver_for returns the driver of a backend: one line per backend. */
const SbDriver *
sb_driver_for(SbBackend backend)
{
	switch (backend)
	{
		case SB_BACKEND_LOCAL:
			return &sb_local_driver;
		case SB_BACKEND_CLOUDRUN:
			return &sb_cloudrun_driver;
	}
	elog(ERROR, "unknown backend %d", (int) backend);
	return NULL;
}

/*
 * run_until launches a request and waits for its result, sleeping on the
 * run's descriptors and the latch.  A query cancel, statement_timeout or
 * termination cancels the run (killing its sandbox) before the error goes on.
 * If the run has not finished by deadline it is cancelled with an error.
 */
static char *
run_until(const SbDriver *driver, const char *session, int64 id, const char *request,
		  const SbPayload *upload, TimestampTz deadline, size_t *len, SbPayload *payloads,
		  int *npayloads)
{
	bool		cloud = driver == &sb_cloudrun_driver;
	SbRun	   *volatile run = driver->launch(session, id, request, upload);
	WaitEventSet *volatile set = NULL;
	char	   *result;

	PG_TRY();
	{
		int			fds[SB_MAX_WAIT_FDS];
		int			nfds = -1;

		while (!driver->step(run))
		{
			int			cur[SB_MAX_WAIT_FDS];
			int			n = driver->wait_fds(run, cur, SB_MAX_WAIT_FDS);
			WaitEvent	events[SB_MAX_WAIT_FDS + 2];
			long		timeout;

			/* Rebuild the wait set only when the descriptors change. */
			if (set == NULL || n != nfds || memcmp(cur, fds, sizeof(int) * n) != 0)
			{
				if (set)
				{
					FreeWaitEventSet(set);
					set = NULL;
				}
				set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
				AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
				AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
				for (int i = 0; i < n; i++)
					AddWaitEventToSet(set, WL_SOCKET_READABLE, cur[i], NULL, NULL);
				memcpy(fds, cur, sizeof(int) * n);
				nfds = n;
			}
			/* With nothing to watch, the driver polls (a cloud run): briefly. */
			timeout = n > 0 ? 1000 : 5;
			/* A streamed exec looks for new output often (live.c). */
			if (sb_stream_active != NULL)
				timeout = Min(timeout, 100);
			(void) WaitEventSetWait(set, timeout, events, lengthof(events),
									PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			sb_stream_poll();
			if (GetCurrentTimestamp() > deadline)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("the sandbox did not answer in time"),
						 cloud ? errdetail("The Cloud Run execution did not report a result "
										   "within the command's timeout and grace period "
										   "plus cloudrun_sandbox.cloud_margin.")
						 : errdetail("The executor did not report a result after the "
									 "command's timeout and grace period.")));
		}
	}
	PG_CATCH();
	{
		/* The wait set holds an epoll descriptor that an error would leak. */
		if (set)
			FreeWaitEventSet(set);
		driver->cancel(run);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (set)
		FreeWaitEventSet(set);
	result = driver->finish(run, len);
	if (npayloads != NULL)
		*npayloads = payloads != NULL && driver->payloads != NULL ?
			driver->payloads(run, payloads, 2) : 0;
	return result;
}

/*
 * sb_run_sync runs a request in this backend (see run_until), ending it by
 * hard_deadline.  A cloud run ends earlier: by the end of the command's
 * timeout and grace period plus cloudrun_sandbox.cloud_margin (not the
 * driver's slack, which is the execution's own), a limit every request of
 * the run is held to.
 */
char *
sb_run_sync(const SbDriver *driver, const char *session, int64 id, const char *request,
			const SbPayload *upload, TimestampTz hard_deadline, size_t *len,
			SbPayload *payloads, int *npayloads)
{
	if (driver == &sb_cloudrun_driver)
	{
		sb_gc_call_until(hard_deadline - (TimestampTz) driver->slack_ms * 1000);
		hard_deadline = Min(hard_deadline, sb_gc_call_end());
	}
	Assert(upload == NULL || driver->binary_frames);
	return run_until(driver, session, id, request, upload, hard_deadline, len, payloads,
					 npayloads);
}

/*
 * Work deferred to the end of the transaction: what a driver cannot take back
 * (deleting a session's files) waits for the commit; what it did and can undo
 * (moving them aside) is undone if the transaction, or the subtransaction that
 * did it, rolls back.
 */
typedef struct SbPending
{
	SbPendingFn on_commit;
	SbPendingFn on_abort;
	char	   *arg;
	SubTransactionId subid;		/* InvalidSubTransactionId once its subtransaction ended */
	bool		aborted;		/* its subtransaction rolled back: on_abort at the end */
} SbPending;

/* action_of is what an entry runs at the end of the transaction (NULL: nothing). */
static SbPendingFn
action_of(SbPending *p, bool commit)
{
	if (p->aborted)
		return p->on_abort;
	if (p->subid == InvalidSubTransactionId)
		return NULL;
	return commit ? p->on_commit : p->on_abort;
}

/* ran_before says whether an entry before upto ran the same action on the same argument. */
static bool
ran_before(List *list, SbPending *upto, bool commit)
{
	SbPendingFn fn = action_of(upto, commit);
	ListCell   *lc;

	foreach(lc, list)
	{
		SbPending  *q = lfirst(lc);

		if (q == upto)
			return false;
		if (action_of(q, commit) == fn && strcmp(q->arg, upto->arg) == 0)
			return true;
	}
	return false;
}

static List *pending = NIL;		/* in TopMemoryContext */

/*
 * Each deferred action starts a process (reaper.c): at most this many per
 * transaction, so that no transaction can fill the server's worker slots.
 */
#define MAX_PENDING_ACTIONS 16
static bool pending_registered = false;

/* pending_xact_callback runs the commit or abort actions at the end of the transaction. */
static void
pending_xact_callback(XactEvent event, void *arg)
{
	bool		commit = event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT;
	ListCell   *lc;
	volatile int done = 0;

	if (pending == NIL || (!commit && event != XACT_EVENT_ABORT &&
						   event != XACT_EVENT_PARALLEL_ABORT))
		return;
	/* The work is a cloud call of its own, with the limit of one without a timeout. */
	sb_gc_call_start();
	foreach(lc, pending)
	{
		SbPending  *p = lfirst(lc);
		SbPendingFn volatile fn = action_of(p, commit);

		if (fn != NULL && ++done > MAX_PENDING_ACTIONS)
		{
			elog(LOG, "cloudrun_sandbox: %d deferred actions of a transaction left undone; "
				 "the most one transaction starts is %d", list_length(pending) - MAX_PENDING_ACTIONS,
				 MAX_PENDING_ACTIONS);
			break;
		}

		/*
		 * What a rolled-back subtransaction left to undo is done now, with the
		 * rest, whatever the transaction's outcome; and each action once per
		 * argument: a loop of savepoints rolled back must not start a process
		 * per iteration.
		 */
		if (fn == NULL || ran_before(pending, p, commit))
			continue;
		PG_TRY();
		{
			fn(p->arg);
		}
		PG_CATCH();
		{
			/* The transaction has ended: report, never raise. */
			FlushErrorState();
			elog(WARNING, "cloudrun_sandbox: could not finish deferred work on \"%s\"", p->arg);
		}
		PG_END_TRY();
	}
	foreach(lc, pending)
		pfree(((SbPending *) lfirst(lc))->arg);
	list_free_deep(pending);
	pending = NIL;
}

/* pending_subxact_callback undoes, or hands to the parent, a subtransaction's deferred work. */
static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		SbPending  *p = lfirst(lc);

		if (p->subid != mySubid)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			p->subid = parentSubid;
		else if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			/* Undone at the end of the transaction (pending_xact_callback), once. */
			p->aborted = p->on_abort != NULL;
			p->subid = InvalidSubTransactionId;
		}
	}
}

void
sb_at_end_of_xact(SbPendingFn on_commit, SbPendingFn on_abort, const char *arg)
{
	MemoryContext old;
	SbPending  *p;
	ListCell   *lc;

	if (!pending_registered)
	{
		RegisterXactCallback(pending_xact_callback, NULL);
		RegisterSubXactCallback(pending_subxact_callback, NULL);
		pending_registered = true;
	}
	/* Once is enough: the same action of the same subtransaction is not added twice. */
	foreach(lc, pending)
	{
		SbPending  *q = lfirst(lc);

		if (q->on_commit == on_commit && q->on_abort == on_abort && strcmp(q->arg, arg) == 0 &&
			(q->subid == GetCurrentSubTransactionId() || (q->aborted && on_commit == NULL)))
			return;				/* (an aborted one's undo runs at the end anyway) */
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	p = palloc(sizeof(SbPending));
	p->on_commit = on_commit;
	p->on_abort = on_abort;
	p->arg = pstrdup(arg);
	p->subid = GetCurrentSubTransactionId();
	p->aborted = false;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
}
