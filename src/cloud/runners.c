/*
 * runners.c
 *		The registry of Cloud Run session runners in shared memory, their
 *		settings, and sandbox.session_runner_entries() behind the view
 *		sandbox.session_runners.
 *
 * A backend or the worker that starts or uses a session's runner records
 * it here: the next call of any process in this server, a new connection's
 * too, then posts its request to that runner without reading the lease
 * object first.  An entry is trusted only while the runner cannot have
 * left for lack of work (its last request plus the idle timeout, less a
 * margin); a runner that died meanwhile is found out by the call that uses
 * it (its execution has ended, or it did not take the request in time) and
 * forgotten.  Without the preloaded library there is no registry: every
 * call reads the lease.
 */
#include "runners.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#define SB_RUNNER_CAPACITY 256
/* An entry is trusted until this long before its runner may have left idle. */
#define SB_RUNNER_TRUST_MARGIN_S 15

bool		sb_cloud_runners = true;
int			sb_cloud_warm_idle_timeout_s = 300;
int			sb_cloud_runner_take_timeout_s = 60;
int			sb_cloud_max_runners = 100;
int			sb_cloud_max_runners_per_role = 10;

typedef struct RunnerEntry
{
	bool		used;
	Oid			database;
	Oid			owner;
	char		dir[SB_RUNNER_DIR_MAX];
	char		key[NAMEDATALEN + 8];
	int			idle_timeout_s;
	SbRunnerInfo info;
} RunnerEntry;

/*
 * A session whose runner, started by a call, ended without taking the call's
 * request (it could not start, or could not read its inbox): no new runner
 * for it until `until`; its calls run cold meanwhile.  The wait doubles with
 * each such failure in a row (SB_RUNNER_BACKOFF_FIRST_S up to
 * SB_RUNNER_BACKOFF_MAX_S) and ends when a runner serves a request.
 * Without it, a runner that cannot work cost every command two jobs:run.
 */
#define SB_RUNNER_BACKOFF_FIRST_S 60
#define SB_RUNNER_BACKOFF_MAX_S 1800

typedef struct RunnerBackoff
{
	bool		used;
	Oid			database;
	char		dir[SB_RUNNER_DIR_MAX];
	int			failures;
	TimestampTz until;
} RunnerBackoff;

typedef struct RunnerRegistry
{
	LWLock	   *lock;
	RunnerEntry entries[SB_RUNNER_CAPACITY];
	RunnerBackoff backoff[SB_RUNNER_CAPACITY];
} RunnerRegistry;

static RunnerRegistry *registry = NULL;

void
sb_runners_define_settings(void)
{
	DefineCustomBoolVariable("cloudrun_sandbox.cloud_runners",
							 "Serve each cloud session in use by a long-running Cloud Run execution (a session runner).",
							 "Off: every command and file operation is a Cloud Run execution of its own.",
							 &sb_cloud_runners, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cloud_warm_idle_timeout",
							"How long a session runner waits for work before it exits.",
							"It runs, and is billed, for this long after the session's last call.",
							&sb_cloud_warm_idle_timeout_s, 300, 10, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cloud_runner_take_timeout",
							"How long a running session runner may leave a request untaken before the call gives it up.",
							"The request then runs as a Cloud Run execution of its own and the runner is stopped.",
							&sb_cloud_runner_take_timeout_s, 60, 1, 3600, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cloud_max_runners",
							"Most session runners this server starts and keeps in use at once.",
							"Past it a session without a runner runs each command as an execution of its own; 0 = no limit.",
							&sb_cloud_max_runners, 100, 0, SB_RUNNER_CAPACITY, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cloud_max_runners_per_role",
							"Most session runners one role's sessions have at once.",
							"Past it that role's other sessions run each command as an execution of its own; 0 = no limit.",
							&sb_cloud_max_runners_per_role, 10, 0, SB_RUNNER_CAPACITY, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

static Size
registry_size(void)
{
	return MAXALIGN(sizeof(RunnerRegistry));
}

void
sb_runners_shmem_request(void)
{
	RequestAddinShmemSpace(registry_size());
	RequestNamedLWLockTranche("cloudrun_sandbox runners", 1);
}

void
sb_runners_shmem_startup(void)
{
	bool		found;

	registry = ShmemInitStruct("cloudrun_sandbox runners", registry_size(), &found);
	if (!found)
	{
		memset(registry, 0, registry_size());
		registry->lock = &(GetNamedLWLockTranche("cloudrun_sandbox runners"))->lock;
	}
}

/* find returns the entry of dir in this database, or NULL (lock held). */
static RunnerEntry *
find(const char *dir)
{
	for (int i = 0; i < SB_RUNNER_CAPACITY; i++)
	{
		RunnerEntry *e = &registry->entries[i];

		if (e->used && e->database == MyDatabaseId && strcmp(e->dir, dir) == 0)
			return e;
	}
	return NULL;
}

/* find_backoff returns dir's backoff record in this database, or NULL (lock held). */
static RunnerBackoff *
find_backoff(const char *dir)
{
	for (int i = 0; i < SB_RUNNER_CAPACITY; i++)
	{
		RunnerBackoff *b = &registry->backoff[i];

		if (b->used && b->database == MyDatabaseId && strcmp(b->dir, dir) == 0)
			return b;
	}
	return NULL;
}

/* trusted says whether an entry's runner is still waiting for work, as far as we know. */
static bool
trusted(const RunnerEntry *e, TimestampTz now)
{
	TimestampTz last = Max(e->info.last_request_at, e->info.started_at);
	int			window = e->idle_timeout_s - SB_RUNNER_TRUST_MARGIN_S;

	return window > 0 && now < TimestampTzPlusMilliseconds(last, (int64) window * 1000);
}

bool
sb_runner_lookup(const char *dir, SbRunnerInfo *info)
{
	RunnerEntry *e;
	bool		ok = false;

	if (registry == NULL || strlen(dir) >= SB_RUNNER_DIR_MAX)
		return false;
	LWLockAcquire(registry->lock, LW_SHARED);
	e = find(dir);
	if (e != NULL && trusted(e, GetCurrentTimestamp()))
	{
		*info = e->info;
		ok = true;
	}
	LWLockRelease(registry->lock);
	return ok;
}

void
sb_runner_put(const char *dir, const char *key, Oid owner, const SbRunnerInfo *info)
{
	RunnerEntry *e;

	if (registry == NULL || strlen(dir) >= SB_RUNNER_DIR_MAX || strlen(key) >= NAMEDATALEN + 8)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	e = find(dir);
	if (e == NULL)
	{
		TimestampTz now = GetCurrentTimestamp();

		/* A free slot, else one no longer trusted, else the least recently used. */
		for (int i = 0; i < SB_RUNNER_CAPACITY && e == NULL; i++)
			if (!registry->entries[i].used)
				e = &registry->entries[i];
		for (int i = 0; i < SB_RUNNER_CAPACITY && e == NULL; i++)
			if (!trusted(&registry->entries[i], now))
				e = &registry->entries[i];
		if (e == NULL)
		{
			e = &registry->entries[0];
			for (int i = 1; i < SB_RUNNER_CAPACITY; i++)
				if (registry->entries[i].info.last_request_at < e->info.last_request_at)
					e = &registry->entries[i];
		}
	}
	memset(e, 0, sizeof(*e));
	e->used = true;
	e->database = MyDatabaseId;
	e->owner = owner;
	strlcpy(e->dir, dir, sizeof(e->dir));
	strlcpy(e->key, key, sizeof(e->key));
	e->idle_timeout_s = sb_cloud_warm_idle_timeout_s;
	e->info = *info;
	LWLockRelease(registry->lock);
}

void
sb_runner_used(const char *dir, const char *token)
{
	RunnerEntry *e;
	RunnerBackoff *b;

	if (registry == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	e = find(dir);
	if (e != NULL && strcmp(e->info.token, token) == 0)
	{
		e->info.last_request_at = GetCurrentTimestamp();
		e->info.requests++;
	}
	/* A runner served the session: it has no failures in a row now. */
	b = find_backoff(dir);
	if (b != NULL)
		b->used = false;
	LWLockRelease(registry->lock);
}

/*
 * sb_runner_failed records that a runner a call started for dir ended
 * without taking the call's request: see RunnerBackoff.
 */
void
sb_runner_failed(const char *dir)
{
	TimestampTz now = GetCurrentTimestamp();
	RunnerBackoff *b;
	int64		wait_s;

	if (registry == NULL || strlen(dir) >= SB_RUNNER_DIR_MAX)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	b = find_backoff(dir);
	if (b == NULL)
	{
		/* A free record, else one whose wait is over, else the one whose wait ends first. */
		for (int i = 0; i < SB_RUNNER_CAPACITY && b == NULL; i++)
			if (!registry->backoff[i].used)
				b = &registry->backoff[i];
		for (int i = 0; i < SB_RUNNER_CAPACITY && b == NULL; i++)
			if (registry->backoff[i].until <= now)
				b = &registry->backoff[i];
		if (b == NULL)
		{
			b = &registry->backoff[0];
			for (int i = 1; i < SB_RUNNER_CAPACITY; i++)
				if (registry->backoff[i].until < b->until)
					b = &registry->backoff[i];
		}
		memset(b, 0, sizeof(*b));
		b->used = true;
		b->database = MyDatabaseId;
		strlcpy(b->dir, dir, sizeof(b->dir));
	}
	/* Failures in a row: the last one's wait ended less than the longest wait ago. */
	if (b->failures > 0 &&
		now > TimestampTzPlusMilliseconds(b->until, (int64) SB_RUNNER_BACKOFF_MAX_S * 1000))
		b->failures = 0;
	b->failures = Min(b->failures + 1, 30);
	wait_s = Min((int64) SB_RUNNER_BACKOFF_FIRST_S << (b->failures - 1), SB_RUNNER_BACKOFF_MAX_S);
	b->until = TimestampTzPlusMilliseconds(now, wait_s * 1000);
	LWLockRelease(registry->lock);
	ereport(LOG,
			(errmsg("cloudrun_sandbox: the session runner started for %s ended without taking "
					"its request; the session's calls run as executions of their own for "
					INT64_FORMAT " s", dir, wait_s)));
}

/* sb_runner_backing_off says whether dir is to start no new runner now (see RunnerBackoff). */
bool
sb_runner_backing_off(const char *dir)
{
	RunnerBackoff *b;
	bool		off = false;

	if (registry == NULL || strlen(dir) >= SB_RUNNER_DIR_MAX)
		return false;
	LWLockAcquire(registry->lock, LW_SHARED);
	b = find_backoff(dir);
	if (b != NULL && GetCurrentTimestamp() < b->until)
		off = true;
	LWLockRelease(registry->lock);
	return off;
}

void
sb_runner_forget(const char *dir, const char *token)
{
	RunnerEntry *e;

	if (registry == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	e = find(dir);
	if (e != NULL && (token == NULL || strcmp(e->info.token, token) == 0))
		e->used = false;
	/* The session is gone (drop_session): its backoff goes too. */
	if (token == NULL)
	{
		RunnerBackoff *b = find_backoff(dir);

		if (b != NULL)
			b->used = false;
	}
	LWLockRelease(registry->lock);
}

/*
 * sb_runner_count is the number of runners this server trusts to be up: of
 * one owner's sessions, or (InvalidOid) all.
 */
int
sb_runner_count(Oid owner)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	if (registry == NULL)
		return 0;
	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < SB_RUNNER_CAPACITY; i++)
		if (registry->entries[i].used && trusted(&registry->entries[i], now) &&
			(!OidIsValid(owner) || registry->entries[i].owner == owner))
			n++;
	LWLockRelease(registry->lock);
	return n;
}

PG_FUNCTION_INFO_V1(sandbox_session_runner_entries);

/*
 * sandbox_session_runner_entries lists the runners of this database's cloud
 * sessions that this server uses (behind sandbox.session_runners): a
 * superuser's all, anyone else's own.  Copied out under the lock.
 */
Datum
sandbox_session_runner_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RunnerEntry *copy;
	int			n = 0;
	bool		all = superuser();
	Oid			me = GetUserId();
	TimestampTz now = GetCurrentTimestamp();

	InitMaterializedSRF(fcinfo, 0);
	if (registry == NULL)
		PG_RETURN_VOID();
	copy = palloc(sizeof(RunnerEntry) * SB_RUNNER_CAPACITY);
	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < SB_RUNNER_CAPACITY; i++)
	{
		RunnerEntry *e = &registry->entries[i];

		if (e->used && e->database == MyDatabaseId && (all || e->owner == me) && trusted(e, now))
			copy[n++] = *e;
	}
	LWLockRelease(registry->lock);
	for (int i = 0; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false};

		values[0] = CStringGetTextDatum(copy[i].key);
		values[1] = ObjectIdGetDatum(copy[i].owner);
		values[2] = CStringGetTextDatum(copy[i].info.execution);
		nulls[2] = copy[i].info.execution[0] == '\0';
		values[3] = TimestampTzGetDatum(copy[i].info.started_at);
		values[4] = TimestampTzGetDatum(copy[i].info.last_request_at);
		nulls[4] = copy[i].info.last_request_at == 0;
		values[5] = Int64GetDatum(copy[i].info.requests);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
