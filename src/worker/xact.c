/*
 * xact.c
 *		The background worker's transaction steps: each state change of the
 *		loop is one short transaction (begin .. commit), never held across
 *		I/O; errors caught in the loop are turned into messages (caught).
 */
#include "worker/xact.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

MemoryContext WorkerContext = NULL;

/* The memory context begin() was called in; commit() returns to it. */
static MemoryContext outer_cxt = NULL;

/* keep_list appends to a list kept in WorkerContext. */
List *
keep_list(List *list, void *item)
{
	MemoryContext old = MemoryContextSwitchTo(WorkerContext);

	list = lappend(list, item);
	MemoryContextSwitchTo(old);
	return list;
}

/*
 * session_lock takes (without waiting) or releases a session's lock at
 * session level: held while one of its executions is in flight.
 */
bool
session_lock(int64 session_id, bool take)
{
	if (take)
		return sb_session_lock_id(session_id, true, false);
	sb_session_unlock_id(session_id);
	return true;
}

/* begin starts a transaction for one step of the loop. */
void
begin(const char *what)
{
	outer_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

/* commit ends it. */
void
commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* Committing leaves TopMemoryContext current: go back, or the loop leaks there. */
	MemoryContextSwitchTo(outer_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * caught_code copies the current error's message and clears the error
 * state; *sqlerrcode gets its SQLSTATE.
 */
char *
caught_code(MemoryContext cxt, int *sqlerrcode)
{
	ErrorData  *ed;
	char	   *msg;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	msg = ed->detail ? psprintf("%s: %s", ed->message, ed->detail) : pstrdup(ed->message);
	*sqlerrcode = ed->sqlerrcode;
	FreeErrorData(ed);
	return msg;
}

/* caught copies the current error's message and clears the error state. */
char *
caught(MemoryContext cxt)
{
	int			code;

	return caught_code(cxt, &code);
}
