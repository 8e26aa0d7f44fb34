/*
 * slots.c
 *		The per-role cap on local sandboxes running at once in a role's own
 *		backends: cloudrun_sandbox.max_sandboxes_per_role.
 *
 * A role has that many slots, numbered 1 to N: session-level locks on an
 * advisory tag (database 0, so the cap holds across databases; the slot; the
 * role's oid; field4 SB_SANDBOX_SLOT_CLASS, which no SQL caller can take).  A
 * backend takes the first free one, without waiting, before it starts a
 * sandbox for a call (exec, a file operation), and releases it when the
 * sandbox has ended (reaped or cancelled; at the latest at the end of the
 * transaction, in xact_callback, the safety net) or the backend exits
 * (session locks go with it).  With every slot taken the call fails at once
 * with 53400: a caller that wants to queue uses sandbox.submit().
 *
 * The background worker never takes a slot (a role's own connections could
 * then keep it from its work): its runs are bounded by
 * cloudrun_sandbox.max_concurrent and each role's fair share of it,
 * background processes by max_background_per_role.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"

#include "cloudrun_sandbox.h"
#include "driver.h"
#include "local/slots.h"

/*
 * The slots this backend holds: one at a time in practice, since its calls
 * are synchronous.  A holder is known by its entry here plus one (0: none).
 */
#define MAX_HELD 4
static LOCKTAG held[MAX_HELD];
static bool held_used[MAX_HELD];
static bool callback_registered = false;

/*
 * xact_callback releases at the end of a transaction whatever its calls
 * still hold.  No sandbox of a call outlives its transaction: one still held
 * then was missed on an error path.
 */
static void
xact_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PREPARE)
		return;
	for (int i = 0; i < MAX_HELD; i++)
		sb_sandbox_slot_release(held_used[i] ? i + 1 : 0);
}

/*
 * sb_sandbox_slot_take takes a free slot of the current role, without
 * waiting, before a sandbox starts for a call; returns its holder for
 * sb_sandbox_slot_release, or 0 when none is needed (no cap, or the
 * background worker).  Raises 53400 when the role has no slot free.
 */
int
sb_sandbox_slot_take(void)
{
	Oid			role = GetUserId();
	int			entry = -1;

	if (sb_max_sandboxes_per_role <= 0 || sb_driver_nonblocking)
		return 0;
	for (int i = 0; i < MAX_HELD && entry < 0; i++)
		if (!held_used[i])
			entry = i;
	if (entry < 0)
		elog(ERROR, "this backend already runs %d sandboxes", MAX_HELD);
	if (!callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		callback_registered = true;
	}
	for (int slot = 1; slot <= sb_max_sandboxes_per_role; slot++)
	{
		LOCKTAG		tag;
		bool		mine = false;

		/* Slots 1 to N: the tag's database 0 makes the cap one for the whole cluster. */
		SET_LOCKTAG_ADVISORY(tag, InvalidOid, (uint32) slot, (uint32) role, SB_SANDBOX_SLOT_CLASS);
		for (int i = 0; i < MAX_HELD; i++)
			mine |= held_used[i] && memcmp(&held[i], &tag, sizeof(tag)) == 0;
		if (mine)
			continue;			/* a lock of ours would be granted again */
		if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			held[entry] = tag;
			held_used[entry] = true;
			return entry + 1;
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

/* sb_sandbox_slot_release releases the slot of a holder sb_sandbox_slot_take returned (0: none). */
void
sb_sandbox_slot_release(int holder)
{
	if (holder <= 0 || holder > MAX_HELD || !held_used[holder - 1])
		return;
	held_used[holder - 1] = false;
	(void) LockRelease(&held[holder - 1], ExclusiveLock, true);
}
