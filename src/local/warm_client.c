/*
 * warm_client.c
 *		The warm pool's callers' side: a backend (a synchronous exec, every
 *		file operation) or the worker (a queued command) finds the session's
 *		warm sandbox in the registry, claims it, connects to its socket, and
 *		gives it back; or asks the worker to start one (see src/local/warm.c).
 *
 * A sandbox is used only if it was started with the signature this caller
 * would start it with (its bwrap command line, niceness and cgroup parent:
 * changed settings give a new one), for the same owner, binding the
 * session's workspace and tmp this caller sees (a dropped and re-created
 * session, or a remounted disk image, gives a new one); a mismatch retires
 * it.  The lock is held only while the registry is read or updated.
 */
#include "local/warm.h"
#include "shared.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

static bool exit_callback_registered = false;

/* wake_owner sets the pool owner's latch (not the worker's work counter: no new queued work). */
static void
wake_owner(void)
{
	if (sb_warm->owner_pid != MyProcPid)
		sb_set_worker_latch();
}

/*
 * retire_mine_at_exit retires the sandboxes this process was talking to
 * when it exits mid-request (pg_terminate_backend): its connection closed,
 * so the executor killed the command, but the sandbox is not trusted again.
 */
static void
retire_mine_at_exit(int code, Datum arg)
{
	bool		any = false;

	if (sb_warm == NULL)
		return;
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
		if (sb_warm->entries[i].state == SB_WARM_BUSY &&
			sb_warm->entries[i].busy_pid == MyProcPid)
		{
			sb_warm->entries[i].state = SB_WARM_RETIRE;
			any = true;
		}
	LWLockRelease(sb_warm->lock);
	if (any)
		wake_owner();
}

/*
 * sb_warm_usable tells whether this call may use the pool: the library is
 * preloaded, a worker owns the pool in this database, and
 * cloudrun_sandbox.local_warm_sessions is not 0 (here: a session may set 0
 * to run its calls cold).
 */
bool
sb_warm_usable(void)
{
	return sb_warm != NULL && sb_warm_sessions > 0 && sb_warm->owner_pid != 0 &&
		sb_warm->owner_database == MyDatabaseId;
}

/* find locates (lock held) the live entry of a session in this database, or -1. */
static int
find(const char *session)
{
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		SbWarmEntry *e = &sb_warm->entries[i];

		if (e->state != SB_WARM_FREE && e->state != SB_WARM_RETIRE &&
			e->database == MyDatabaseId && strcmp(e->key, session) == 0)
			return i;
	}
	return -1;
}

/*
 * sb_warm_claim claims the session's warm sandbox for one request: returns
 * its slot (and generation), or -1 if there is none (the caller then asks
 * for one, sb_warm_request), or -2 if there is one that this caller must
 * not use: started with other settings than this process has (a SET of a
 * superuser's, or a reload the worker has not seen yet: it retires such
 * sandboxes itself), or binding other files (a remounted disk image),
 * which is retired.
 */
int
sb_warm_claim(const char *session, Oid owner, uint32 *generation)
{
	SbWarmIdentity id;
	uint64		signature;
	int			slot;
	bool		retired = false;

	if (!sb_warm_usable() || strlen(session) >= SB_WARM_KEY_MAX)
		return -1;
	if (!sb_warm_identity(session, &id))
		return -1;
	signature = sb_warm_signature(session);
	if (!exit_callback_registered)
	{
		before_shmem_exit(retire_mine_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	slot = find(session);
	if (slot >= 0)
	{
		SbWarmEntry *e = &sb_warm->entries[slot];

		if (e->state != SB_WARM_READY)
			slot = -1;
		else if (e->signature != signature)
			slot = -2;
		else if (e->owner != owner || memcmp(&e->identity, &id, sizeof(id)) != 0)
		{
			e->state = SB_WARM_RETIRE;
			retired = true;
			slot = -1;
		}
		else
		{
			e->state = SB_WARM_BUSY;
			e->busy_pid = MyProcPid;
			*generation = e->generation;
		}
	}
	LWLockRelease(sb_warm->lock);
	if (retired)
		wake_owner();
	return slot;
}

/*
 * sb_warm_release gives a claimed sandbox back: ok, it answered in full and
 * takes the session's next request; otherwise it is retired.
 */
void
sb_warm_release(int slot, uint32 generation, bool ok)
{
	SbWarmEntry *e;
	bool		retired = false;

	if (sb_warm == NULL || slot < 0 || slot >= SB_WARM_CAPACITY)
		return;
	e = &sb_warm->entries[slot];
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	if (e->generation == generation && e->state == SB_WARM_BUSY && e->busy_pid == MyProcPid)
	{
		e->busy_pid = 0;
		e->last_used_at = GetCurrentTimestamp();
		if (ok)
		{
			e->state = SB_WARM_READY;
			e->served++;
		}
		else
		{
			e->state = SB_WARM_RETIRE;
			retired = true;
		}
	}
	LWLockRelease(sb_warm->lock);
	if (retired)
		wake_owner();
}

/*
 * sb_warm_request asks the worker to start a warm sandbox for the session
 * (which this call runs cold), unless one is there or on its way.
 */
void
sb_warm_request(const char *session, Oid owner)
{
	SbWarmIdentity id;
	bool		posted = false;

	if (!sb_warm_usable() || strlen(session) >= SB_WARM_KEY_MAX || !sb_warm_identity(session, &id))
		return;
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	if (find(session) < 0)
		for (int i = 0; i < SB_WARM_CAPACITY; i++)
		{
			SbWarmEntry *e = &sb_warm->entries[i];

			if (e->state != SB_WARM_FREE)
				continue;
			memset(e, 0, sizeof(*e));
			e->state = SB_WARM_REQUESTED;
			e->database = MyDatabaseId;
			e->owner = owner;
			strlcpy(e->key, session, sizeof(e->key));
			e->identity = id;
			posted = true;
			break;
		}
	LWLockRelease(sb_warm->lock);
	if (posted)
		wake_owner();
}

/*
 * sb_warm_retire_session retires the session's warm sandbox (its session is
 * being dropped, or its storage deleted).
 */
void
sb_warm_retire_session(const char *session)
{
	int			slot;

	if (sb_warm == NULL)
		return;
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	slot = find(session);
	if (slot >= 0)
		sb_warm->entries[slot].state = SB_WARM_RETIRE;
	LWLockRelease(sb_warm->lock);
	if (slot >= 0)
		wake_owner();
}

/*
 * sb_warm_connect connects to a claimed sandbox's socket (non-blocking);
 * -1 if it cannot (the sandbox died: the caller releases it, not ok).
 */
int
sb_warm_connect(int slot, uint32 generation)
{
	struct sockaddr_un addr;
	char	   *dir = sb_warm_dir();
	int			dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int			sock;

	if (dirfd < 0)
		return -1;
	sb_warm_socket_path(&addr, dirfd, slot, generation);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sock >= 0 && connect(sock, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		close(sock);
		sock = -1;
	}
	close(dirfd);
	return sock;
}

PG_FUNCTION_INFO_V1(sandbox_warm_sandbox_entries);

/*
 * sandbox_warm_sandbox_entries lists the warm sandboxes of this database
 * (behind the view sandbox.warm_sandboxes): a superuser's all, anyone
 * else's only their own.  Copied out under the lock, returned after.
 */
Datum
sandbox_warm_sandbox_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SbWarmEntry *copy;
	int			n = 0;
	bool		all = superuser();
	Oid			me = GetUserId();

	InitMaterializedSRF(fcinfo, 0);
	if (sb_warm == NULL)
		PG_RETURN_VOID();
	copy = palloc(sizeof(SbWarmEntry) * SB_WARM_CAPACITY);
	LWLockAcquire(sb_warm->lock, LW_SHARED);
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		SbWarmEntry *e = &sb_warm->entries[i];

		if ((e->state == SB_WARM_READY || e->state == SB_WARM_BUSY) &&
			e->database == MyDatabaseId && (all || e->owner == me))
			copy[n++] = *e;
	}
	LWLockRelease(sb_warm->lock);
	for (int i = 0; i < n; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {false};

		values[0] = CStringGetTextDatum(copy[i].key);
		values[1] = ObjectIdGetDatum(copy[i].owner);
		values[2] = Int32GetDatum((int32) copy[i].pid);
		values[3] = TimestampTzGetDatum(copy[i].started_at);
		values[4] = TimestampTzGetDatum(copy[i].last_used_at);
		values[5] = Int64GetDatum(copy[i].served);
		values[6] = BoolGetDatum(copy[i].state == SB_WARM_BUSY);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
