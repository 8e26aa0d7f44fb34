/*
 * slots.c
 *		The per-role cap on local sandboxes running at once in a role's own
 *		backends: cloudrun_sandbox.max_sandboxes_per_role.
 *
 * A role has that many slots, numbered 1 to N: session-level locks on an
 * advisory tag (database 0, so the cap holds across databases; the slot; the
 * role's oid; field4 SB_SANDBOX_SLOT_CLASS, which no SQL caller can take).  A
 * backend takes the first free one without waiting before it starts a sandbox
 * for a call (exec, a file operation) and releases it when the sandbox has
 * ended: reaped, cancelled, or the transaction aborted (abort_callback, the
 * safety net), and with the backend (session locks go at exit).  With every
 * slot taken the call fails at once with 53400: a caller that wants to queue
 * uses sandbox.submit().
 *
 * The background worker never takes a slot (it would wait on locks a role's
 * backends hold): its flights are bounded by cloudrun_sandbox.max_concurrent
 * and each role's fair share of it, background processes by
 * max_background_per_role.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"

#include "cloudrun_sandbox.h"
#include "driver.h"
#include "local/slots.h"

/* The slots this backend holds (one at a time in practice: calls are synchronous). */
#define MAX_HELD 4
static LOCKTAG held[MAX_HELD];
static int	held_slot[MAX_HELD];	/* 0: free entry */
static bool callback_registered = false;

/* slot_tag fills the lock tag of a role's slot. */
static void
slot_tag(LOCKTAG *tag, Oid role, int slot)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, (uint32) slot, (uint32) role, SB_SANDBOX_SLOT_CLASS);
}

/* abort_callback releases what an aborted transaction's calls still hold. */
static void
abort_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	for (int i = 0; i < MAX_HELD; i++)
		if (held_slot[i] != 0)
			sb_sandbox_slot_release(held_slot[i]);
}

/*
 * sb_sandbox_slot_take takes a free slot of the current role before a
 * sandbox starts for a call, and returns it; 0 when none is needed (no cap,
 * or the background worker).  Raises 53400 when the role has none free.
 */
int
sb_sandbox_slot_take(void)
{
	Oid			role = GetUserId();
	int			entry = -1;

	if (sb_max_sandboxes_per_role <= 0 || sb_driver_nonblocking)
		return 0;
	for (int i = 0; i < MAX_HELD && entry < 0; i++)
		if (held_slot[i] == 0)
			entry = i;
	if (entry < 0)
		elog(ERROR, "this backend already runs %d sandboxes", MAX_HELD);
	if (!callback_registered)
	{
		RegisterXactCallback(abort_callback, NULL);
		callback_registered = true;
	}
	for (int slot = 1; slot <= sb_max_sandboxes_per_role; slot++)
	{
		bool		mine = false;

		for (int i = 0; i < MAX_HELD; i++)
			mine |= held_slot[i] == slot && held[i].locktag_field3 == (uint32) role;
		if (mine)
			continue;			/* a lock of ours would be granted again */
		slot_tag(&held[entry], role, slot);
		if (LockAcquire(&held[entry], ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			held_slot[entry] = slot;
			return slot;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("role \"%s\" already runs %d sandboxes at once",
					GetUserNameFromId(role, false), sb_max_sandboxes_per_role),
			 errdetail("cloudrun_sandbox.max_sandboxes_per_role is %d.",
					   sb_max_sandboxes_per_role),
			 errhint("Wait for one to finish, queue the command with sandbox.submit(), or ask "
					 "an administrator to raise cloudrun_sandbox.max_sandboxes_per_role.")));
	return 0;					/* keep compiler quiet */
}

/* sb_sandbox_slot_release releases a slot sb_sandbox_slot_take returned (0: nothing). */
void
sb_sandbox_slot_release(int slot)
{
	for (int i = 0; slot != 0 && i < MAX_HELD; i++)
		if (held_slot[i] == slot)
		{
			held_slot[i] = 0;
			(void) LockRelease(&held[i], ExclusiveLock, true);
			return;
		}
}
