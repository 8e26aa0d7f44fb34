/*
 * warm.c
 *		The warm pool's owner side: the background worker starts, watches
 *		and stops the warm sandboxes that every caller of a session uses
 *		(src/local/warm_client.c), one per session in use.
 *
 * The registry (SbWarmRegistry, shared memory) has one entry per warm
 * sandbox and per start request.  A caller that found none posts a request
 * (REQUESTED) and sets the worker's latch; the worker, in
 * sb_warm_owner_tick(), checks that the session still binds what the caller
 * saw, makes a listening AF_UNIX socket <local_root>/warm/w<slot>.<generation>
 * (a directory of mode 0700 that no sandbox sees, emptied when the worker
 * starts), and starts bwrap (--die-with-parent) with the executor in
 * `serve --listen 3` as its PID 1 and the socket as its descriptor 3, then
 * closes its own copy.  The entry is then READY: a caller claims it (BUSY,
 * its pid), connects, sends one request frame, reads one result frame, and
 * gives it back (READY, served + 1) or, after any doubt, RETIREs it.
 *
 * The worker is the sandboxes' parent: when it exits, they die.  It never
 * waits on them: stopping is SIGKILL to the sandbox's process group and a
 * waitpid(WNOHANG) at later turns; their descriptors 0, 1 and 2 are
 * /dev/null.  It retires a sandbox idle longer than
 * cloudrun_sandbox.local_warm_idle_timeout, the least recently used one when
 * the pool (local_warm_sessions) or the role's share of it
 * (max_sandboxes_per_role) is full, one whose caller died mid-request, and
 * one whose bwrap died.  Any failed step of a start frees the entry: the
 * callers keep running cold.
 */
#include "local/warm.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "local/bwrap.h"
#include "local/cgroup.h"
#include "local/storage.h"

SbWarmRegistry *sb_warm = NULL;

/* At most this many sandboxes are started in one turn of the worker's loop. */
#define SB_WARM_STARTS_PER_TICK 8
/* How often the worker looks again while a sandbox is dying or a caller may have died. */
#define SB_WARM_RECHECK_MS 250

/* What the worker knows of each slot's sandbox (only in the worker). */
typedef struct WarmOwned
{
	pid_t		pid;			/* bwrap, 0 if none */
	uint32		generation;
	bool		dying;			/* killed, not yet reaped */
} WarmOwned;

static WarmOwned owned[SB_WARM_CAPACITY];
static int	warm_dirfd = -1;

static void kill_owned(int slot);

/* sb_warm_shmem_size is the registry's size. */
Size
sb_warm_shmem_size(void)
{
	return MAXALIGN(sizeof(SbWarmRegistry));
}

/* sb_warm_shmem_request asks for the registry's lock (with src/shared.c's shmem_request). */
void
sb_warm_shmem_request(void)
{
	RequestAddinShmemSpace(sb_warm_shmem_size());
	RequestNamedLWLockTranche("cloudrun_sandbox warm", 1);
}

/* sb_warm_shmem_startup creates or attaches the registry (AddinShmemInitLock held). */
void
sb_warm_shmem_startup(void)
{
	bool		found;

	sb_warm = ShmemInitStruct("cloudrun_sandbox warm", sb_warm_shmem_size(), &found);
	if (!found)
	{
		memset(sb_warm, 0, sb_warm_shmem_size());
		sb_warm->lock = &(GetNamedLWLockTranche("cloudrun_sandbox warm"))->lock;
	}
}

/* sb_warm_dir is the directory of the warm sandboxes' sockets: <local_root>/warm. */
char *
sb_warm_dir(void)
{
	return psprintf("%s/warm", sb_storage_root_path());
}

/*
 * sb_warm_identity is what a sandbox of the session binds (see
 * sb_bwrap_files_identity); false if it is not there.
 */
bool
sb_warm_identity(const char *session, SbWarmIdentity *id)
{
	memset(id, 0, sizeof(*id));
	return sb_bwrap_files_identity(session, &id->dev, &id->a, &id->b);
}

/*
 * signature_of hashes a warm sandbox's command line with what shapes it
 * besides: the niceness and the cgroup parent it starts with (a sandbox
 * joins its role's cgroup when it starts), and with cgroups in force the
 * role's cgroup limits, which are written when a sandbox joins: changed
 * limits need a new sandbox to reach the cgroup.  Limits that come with
 * each request (memory, processes, time) are not part of it.
 */
static uint64
signature_of(char **argv)
{
	StringInfoData buf;
	uint64		h;

	initStringInfo(&buf);
	for (int i = 0; argv[i] != NULL; i++)
		appendStringInfo(&buf, "%s%c", argv[i], '\x1f');
	appendStringInfo(&buf, "nice=%d%ccgroup=%s", sb_local_nice, '\x1f',
					 sb_local_cgroup ? sb_local_cgroup : "");
	if (sb_local_cgroup != NULL && sb_local_cgroup[0] != '\0')
		appendStringInfo(&buf, "%climits=%d,%d,%d", '\x1f', sb_role_memory_max_mb,
						 sb_role_pids_max, sb_role_cpu_weight);
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return h;
}

/* sb_warm_signature is the signature a warm sandbox of the session has with this process's settings. */
uint64
sb_warm_signature(const char *session)
{
	return signature_of(sb_bwrap_args(session, 0, SB_BWRAP_LISTEN));
}

/* sb_warm_socket_path names slot's socket below the directory descriptor dirfd. */
void
sb_warm_socket_path(struct sockaddr_un *addr, int dirfd, int slot, uint32 generation)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/w%d.%u", dirfd, slot,
			 generation);
}

/* unlink_socket removes a slot's socket file. */
static void
unlink_socket(int slot, uint32 generation)
{
	char		name[32];

	if (warm_dirfd < 0)
		return;
	snprintf(name, sizeof(name), "w%d.%u", slot, generation);
	(void) unlinkat(warm_dirfd, name, 0);
}

/*
 * open_warm_dir opens (making it, mode 0700, and emptying it: the sandboxes
 * of a worker before us died with it) the socket directory into warm_dirfd;
 * false if it cannot.  local_root may not exist yet when the worker starts
 * (it is made with the first session): start_one() tries again then.
 */
static bool
open_warm_dir(bool warn)
{
	char	   *dir = sb_warm_dir();
	struct stat st;
	int			fd;
	DIR		   *d;
	struct dirent *de;

	if (mkdir(dir, S_IRWXU) != 0 && errno != EEXIST)
	{
		if (warn && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("cloudrun_sandbox: could not create \"%s\", no warm sandboxes: %m", dir)));
		pfree(dir);
		return false;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid() || fchmod(fd, S_IRWXU) != 0)
	{
		if (warn)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("cloudrun_sandbox: could not use \"%s\", no warm sandboxes: %m", dir)));
		if (fd >= 0)
			close(fd);
		pfree(dir);
		return false;
	}
	d = fdopendir(dup(fd));
	while (d != NULL && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			(void) unlinkat(fd, de->d_name, 0);
	if (d != NULL)
		closedir(d);
	warm_dirfd = fd;
	pfree(dir);
	return true;
}

/*
 * sb_warm_owner_start makes the worker the pool's owner: the socket
 * directory (see open_warm_dir) and an empty registry.  Without the
 * directory every call runs cold.
 */
void
sb_warm_owner_start(void)
{
	if (sb_warm == NULL)
		return;
	memset(owned, 0, sizeof(owned));
	(void) open_warm_dir(true);
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	memset(sb_warm->entries, 0, sizeof(sb_warm->entries));
	sb_warm->owner_pid = MyProcPid;
	sb_warm->owner_database = MyDatabaseId;
	LWLockRelease(sb_warm->lock);
}

/* sb_warm_owner_stop says that no worker owns the pool any more (its sandboxes die with it). */
void
sb_warm_owner_stop(void)
{
	if (sb_warm == NULL || sb_warm->owner_pid != MyProcPid)
		return;
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	sb_warm->owner_pid = 0;
	memset(sb_warm->entries, 0, sizeof(sb_warm->entries));
	LWLockRelease(sb_warm->lock);
}

/*
 * sb_warm_owner_settings_changed retires, after a reload of the
 * configuration, the idle sandboxes whose signature is not what they would
 * be started with now (a setting that shapes them changed).  One in use is
 * retired by its caller, whose signature no longer matches either.
 */
void
sb_warm_owner_settings_changed(void)
{
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		SbWarmEntry e;
		uint64		now;

		if (sb_warm == NULL || sb_warm->owner_pid != MyProcPid || owned[i].pid <= 0)
			continue;
		LWLockAcquire(sb_warm->lock, LW_SHARED);
		e = sb_warm->entries[i];
		LWLockRelease(sb_warm->lock);
		if (e.state != SB_WARM_READY)
			continue;
		now = sb_warm_signature(e.key);
		LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
		if (sb_warm->entries[i].state == SB_WARM_READY &&
			sb_warm->entries[i].generation == e.generation && now != e.signature)
		{
			sb_warm->entries[i].state = SB_WARM_RETIRE;
			kill_owned(i);
		}
		LWLockRelease(sb_warm->lock);
	}
}

/* kill_owned stops a slot's sandbox (SIGKILL; reaped at a later turn). */
static void
kill_owned(int slot)
{
	WarmOwned  *o = &owned[slot];

	if (o->pid <= 0 || o->dying)
		return;
	kill(-o->pid, SIGKILL);
	kill(o->pid, SIGKILL);
	o->dying = true;
}

/*
 * reap reaps the sandboxes that have exited, without waiting.  A slot whose
 * sandbox died is freed; one that was retiring too.
 */
static bool
reap(void)
{
	bool		dying = false;

	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		WarmOwned  *o = &owned[i];
		pid_t		r;

		if (o->pid <= 0)
			continue;
		r = waitpid(o->pid, NULL, WNOHANG);
		if (r == 0 || (r < 0 && errno == EINTR))
		{
			dying |= o->dying;
			continue;
		}
		unlink_socket(i, o->generation);
		LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
		if (sb_warm->entries[i].generation == o->generation &&
			sb_warm->entries[i].state != SB_WARM_FREE &&
			sb_warm->entries[i].state != SB_WARM_REQUESTED &&
			sb_warm->entries[i].state != SB_WARM_STARTING)
			memset(&sb_warm->entries[i], 0, sizeof(SbWarmEntry));
		LWLockRelease(sb_warm->lock);
		o->pid = 0;
		o->dying = false;
	}
	return dying;
}

/*
 * make_room retires (lock held) the least recently used idle sandbox among
 * those of owner (InvalidOid: all) when they number limit or more; false if
 * they do and none is idle.
 */
static bool
make_room(Oid owner, int limit)
{
	int			count = 0;
	int			lru = -1;

	if (limit <= 0)
		return true;
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		SbWarmEntry *e = &sb_warm->entries[i];

		if (owned[i].pid <= 0 || owned[i].dying || e->state == SB_WARM_RETIRE)
			continue;
		if (OidIsValid(owner) && e->owner != owner)
			continue;
		count++;
		if (e->state == SB_WARM_READY &&
			(lru < 0 || e->last_used_at < sb_warm->entries[lru].last_used_at))
			lru = i;
	}
	if (count < limit)
		return true;
	if (lru < 0)
		return false;
	sb_warm->entries[lru].state = SB_WARM_RETIRE;
	kill_owned(lru);
	return count - 1 < limit;
}

/* free_entry frees a slot whose start was given up. */
static void
free_entry(int slot)
{
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	if (sb_warm->entries[slot].state == SB_WARM_STARTING ||
		sb_warm->entries[slot].state == SB_WARM_RETIRE)
		memset(&sb_warm->entries[slot], 0, sizeof(SbWarmEntry));
	LWLockRelease(sb_warm->lock);
}

/*
 * start_one starts the sandbox a caller asked for in slot (STARTING), if the
 * session still binds what the caller saw and the pool has room.  An ERROR
 * on the way (bwrap missing, the cgroup, descriptors) propagates: the
 * caller frees the slot.
 */
static void
start_one(int slot)
{
	SbWarmEntry req;
	SbWarmIdentity now;
	struct sockaddr_un addr;
	char	  **argv;
	uint64		signature;
	uint32		generation;
	int			sock, null;
	int			extra[2];
	volatile pid_t pid = -1;
	bool		room;

	LWLockAcquire(sb_warm->lock, LW_SHARED);
	req = sb_warm->entries[slot];
	LWLockRelease(sb_warm->lock);
	if (req.state != SB_WARM_STARTING || (warm_dirfd < 0 && !open_warm_dir(true)) ||
		sb_warm_sessions <= 0 ||
		!sb_warm_identity(req.key, &now) || memcmp(&now, &req.identity, sizeof(now)) != 0)
	{
		free_entry(slot);
		return;
	}
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	room = make_room(InvalidOid, Min(sb_warm_sessions, SB_WARM_CAPACITY)) &&
		make_room(req.owner, sb_max_sandboxes_per_role);
	generation = ++sb_warm->next_generation;
	LWLockRelease(sb_warm->lock);
	if (!room)
	{
		free_entry(slot);
		return;
	}

	sb_cgroup_use_role(req.owner);
	argv = sb_bwrap_args(req.key, 0, SB_BWRAP_LISTEN);
	signature = signature_of(argv);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		ereport(ERROR, (errcode_for_socket_access(), errmsg("could not create a socket: %m")));
	sb_warm_socket_path(&addr, warm_dirfd, slot, generation);
	unlink_socket(slot, generation);
	if (bind(sock, (struct sockaddr *) &addr, sizeof(addr)) != 0 || listen(sock, 8) != 0)
	{
		int			save = errno;

		close(sock);
		errno = save;
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("could not make the socket of a warm sandbox: %m")));
	}
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	extra[0] = sock;			/* the executor's descriptor 3: `serve --listen 3` */
	extra[1] = -1;				/* the seccomp program's */
	PG_TRY();
	{
		pid = sb_bwrap_spawn(argv, null, null, null, extra, lengthof(extra));
	}
	PG_FINALLY();
	{
		close(sock);
		if (null >= 0)
			close(null);
	}
	PG_END_TRY();
	owned[slot].pid = pid;
	owned[slot].generation = generation;
	owned[slot].dying = false;

	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	{
		SbWarmEntry *e = &sb_warm->entries[slot];

		e->generation = generation;
		e->pid = pid;
		e->signature = signature;
		e->started_at = e->last_used_at = GetCurrentTimestamp();
		e->served = 0;
		e->busy_pid = 0;
		if (e->state == SB_WARM_STARTING)
			e->state = SB_WARM_READY;
		else
		{
			/* Retired while it started (its session was dropped). */
			e->state = SB_WARM_RETIRE;
			kill_owned(slot);
		}
	}
	LWLockRelease(sb_warm->lock);
}

/* try_start is start_one, a failure of which frees the slot (a WARNING in the log). */
static void
try_start(int slot)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		start_one(slot);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(WARNING,
				(errmsg("cloudrun_sandbox: could not start a warm sandbox: %s", edata->message)));
		FreeErrorData(edata);
		free_entry(slot);
	}
	PG_END_TRY();
}

/*
 * sb_warm_owner_tick is the worker's turn at the pool: reap, retire (idle,
 * requested, callers that died mid-request), start what callers asked for.
 * Returns the milliseconds until it has work again, -1 for none.  Called
 * before each sleep; a caller's request sets the worker's latch.
 */
long
sb_warm_owner_tick(void)
{
	int			starts[SB_WARM_STARTS_PER_TICK];
	int			nstarts = 0;
	bool		recheck;
	long		next = -1;
	TimestampTz now = GetCurrentTimestamp();
	int64		idle_ms = (int64) sb_warm_idle_timeout_s * 1000;

	if (sb_warm == NULL || sb_warm->owner_pid != MyProcPid)
		return -1;
	recheck = reap();
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
	{
		SbWarmEntry *e = &sb_warm->entries[i];

		switch (e->state)
		{
			case SB_WARM_FREE:
				break;
			case SB_WARM_REQUESTED:
				if (e->database != MyDatabaseId || sb_warm_sessions <= 0 || owned[i].pid > 0)
					memset(e, 0, sizeof(*e));
				else if (nstarts < lengthof(starts))
				{
					e->state = SB_WARM_STARTING;
					starts[nstarts++] = i;
				}
				else
					next = 0;
				break;
			case SB_WARM_STARTING:
				/* Left by a start that failed with an error. */
				if (owned[i].pid <= 0)
					memset(e, 0, sizeof(*e));
				break;
			case SB_WARM_BUSY:
				if (e->busy_pid != MyProcPid && kill(e->busy_pid, 0) != 0 && errno == ESRCH)
				{
					/* Its caller died mid-request: the sandbox is not trusted again. */
					e->state = SB_WARM_RETIRE;
					kill_owned(i);
				}
				else if (e->busy_pid != MyProcPid)
					recheck = true;
				break;
			case SB_WARM_READY:
				if (owned[i].pid <= 0)
					memset(e, 0, sizeof(*e));
				else if (e->last_used_at + idle_ms * 1000 <= now ||
						 sb_warm_sessions <= 0)
				{
					e->state = SB_WARM_RETIRE;
					kill_owned(i);
				}
				else
				{
					long		due = (long) ((e->last_used_at + idle_ms * 1000 - now) / 1000) + 1;

					next = next < 0 ? due : Min(next, due);
				}
				break;
			case SB_WARM_RETIRE:
				if (owned[i].pid <= 0)
					memset(e, 0, sizeof(*e));
				else
					kill_owned(i);
				break;
		}
	}
	LWLockRelease(sb_warm->lock);
	/* Over the pool's size after a reload: the least recently used go. */
	LWLockAcquire(sb_warm->lock, LW_EXCLUSIVE);
	for (int n = 0; n < SB_WARM_CAPACITY && sb_warm_sessions > 0; n++)
		if (make_room(InvalidOid, Min(sb_warm_sessions, SB_WARM_CAPACITY) + 1))
			break;
	LWLockRelease(sb_warm->lock);

	for (int s = 0; s < nstarts; s++)
		try_start(starts[s]);
	for (int i = 0; i < SB_WARM_CAPACITY; i++)
		recheck |= owned[i].dying;
	if (recheck)
		next = next < 0 ? SB_WARM_RECHECK_MS : Min(next, SB_WARM_RECHECK_MS);
	return next;
}
