/*
 * reaper.c
 *		The reaper: a short-lived background process that does a session's
 *		storage work that must wait for the end of a transaction, so that a
 *		rollback leaves a session exactly as it was and nobody waits for it.
 *
 * - A drop does not touch the session's storage: it records it in
 *   sandbox.dropped_storage, in the dropping transaction (a rollback forgets
 *   it), and once the drop commits a reaper deletes it and the row.  New
 *   sessions' storage keys ("_<id>") are never reused, and a session from
 *   0.1.0 (storage key = its name) that is dropped and made again in one
 *   transaction gets a new key, so the deletion never meets a later session.
 *   What cannot be deleted yet (the storage API is down) stays recorded, with
 *   the error, for a later reaper.
 * - The storage a (sub)transaction made for a session it created is deleted
 *   if that (sub)transaction rolls back: the abort starts a reaper for it.
 * - A command whose transaction rolls back did run: its state (cwd, env) is
 *   in state.json.  The abort starts a reaper that refreshes the session's
 *   mirror row from state.json.
 * A reaper is started at those commits and aborts, and by the background
 * worker now and then (sb_reaper_tick), which never waits for it: the
 * deletions and the storage reads happen in the reaper's own process.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "driver.h"
#include "gcloud.h"
#include "shared.h"
#include "worker/reaper.h"

/* The background worker starts a reaper this often, for what a missed start left. */
#define REAPER_TICK_MS (5 * 60 * 1000)
/* How often (100 ms apart) a reaper tries a session's lock, which a user may hold. */
#define REAPER_LOCK_TRIES 10
/* Any other lock it might wait for (only other reapers take them). */
#define REAPER_LOCK_TIMEOUT "30s"
#define REAPER_BATCH 50

typedef enum ReapKind
{
	REAP_DROPPED,				/* sandbox.dropped_storage only */
	REAP_ORPHAN,				/* and the storage of a creation that rolled back */
	REAP_RESYNC					/* and the mirror of a session whose command rolled back */
} ReapKind;

/* What a reaper is started for, in bgw_extra. */
typedef struct ReapArgs
{
	Oid			database;
	Oid			owner;
	int32		kind;			/* ReapKind */
	int32		backend;		/* SbBackend */
	int64		session_id;		/* REAP_RESYNC */
	char		key[NAMEDATALEN + 8];	/* REAP_ORPHAN: the storage key */
} ReapArgs;

/* start registers a reaper process; false if no slot was free (a later one does it). */
static bool
start(const ReapArgs *a)
{
	BackgroundWorker w;

	StaticAssertStmt(sizeof(ReapArgs) <= BGW_EXTRALEN, "reaper arguments do not fit bgw_extra");
	sb_dynamic_worker(&w, "sb_reaper_main", "cloudrun_sandbox reaper", a, sizeof(ReapArgs));
	return RegisterDynamicBackgroundWorker(&w, NULL);
}

/*
 * start_encoded starts the reaper an end-of-transaction action describes:
 * "kind backend owner session_id key".
 */
static void
start_encoded(const char *arg)
{
	ReapArgs	a;
	int			kind;
	int			backend;
	long long	id;

	memset(&a, 0, sizeof(a));
	if (sscanf(arg, "%d %d %u %lld %70s", &kind, &backend, &a.owner, &id, a.key) < 4)
		return;
	a.database = MyDatabaseId;
	a.kind = kind;
	a.backend = backend;
	a.session_id = id;
	(void) start(&a);
}

/* at_end registers start_encoded for the commit or the abort of this (sub)transaction. */
static void
at_end(bool on_commit, ReapKind kind, SbBackend backend, Oid owner, int64 id, const char *key)
{
	char	   *arg = psprintf("%d %d %u " INT64_FORMAT " %s", (int) kind, (int) backend, owner,
							   id, key ? key : "-");

	sb_at_end_of_xact(on_commit ? start_encoded : NULL, on_commit ? NULL : start_encoded, arg);
}

void
sb_reaper_drop(const SbSession *session)
{
	const SbDriver *driver = sb_driver_for(session->backend);
	char	   *location;

	/* Cloud: under its owner's prefix (a dropped role's: the default one). */
	if (session->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(session->owner);
	location = driver->storage_location ? driver->storage_location(session->key) : NULL;
	sb_dropped_storage_insert(session, location);
	/* One reaper per transaction does all its drops. */
	at_end(true, REAP_DROPPED, SB_BACKEND_LOCAL, InvalidOid, 0, NULL);
}

void
sb_reaper_if_creation_aborts(SbBackend backend, Oid owner, const char *key)
{
	at_end(false, REAP_ORPHAN, backend, owner, 0, key);
}

void
sb_reaper_if_change_aborts(const SbSession *session)
{
	at_end(false, REAP_RESYNC, session->backend, session->owner, session->id, NULL);
}

void
sb_reaper_tick(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	ReapArgs	a;

	if (last != 0 && !TimestampDifferenceExceeds(last, now, REAPER_TICK_MS))
		return;
	last = now;
	memset(&a, 0, sizeof(a));
	a.database = MyDatabaseId;
	a.kind = REAP_DROPPED;
	(void) start(&a);
}

/*
 * guarded runs fn(a) in a transaction of its own; an error is logged (and
 * returned, palloc'd in the caller's context) and the transaction rolled back.
 */
static char *
guarded(void (*fn) (void *), void *a, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile error = NULL;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		fn(a);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		error = edata->message;
		ereport(WARNING,
				(errmsg("cloudrun_sandbox reaper: could not %s: %s", what, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return error;
}

/* delete_orphan deletes the storage of a session whose creation rolled back. */
static void
delete_orphan(void *arg)
{
	ReapArgs   *a = arg;

	if (!sb_storage_key_valid(a->key) || sb_storage_key_in_use(a->key))
		return;
	if (a->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(a->owner);
	sb_driver_for((SbBackend) a->backend)->delete_storage(a->key, NULL);
}

/*
 * resync refreshes a session's mirror row from its state, if the mirror is
 * behind.  It never waits for the session's lock (so that reapers cannot pile
 * up in the worker slots behind a user's transaction): while someone runs
 * something in the session, that call brings the mirror up to date itself.
 */
static void
resync(void *arg)
{
	ReapArgs   *a = arg;
	SbSession  *session = NULL;
	SbState		state;
	bool		busy = true;

	for (int i = 0; i < REAPER_LOCK_TRIES && busy; i++)
	{
		if (i > 0)
			pg_usleep(100 * 1000L);
		session = sb_session_lock_by_id(a->session_id, &busy);
	}
	if (session == NULL ||
		!sb_driver_for(session->backend)->load_state(session->key, &state) ||
		state.generation == session->generation)
		return;
	sb_session_update(session, &state);
}

/* delete_dropped deletes one dropped session's storage and forgets it. */
static void
delete_dropped(void *arg)
{
	SbDroppedStorage *d = arg;

	if (!sb_dropped_storage_claim(d->id))
		return;
	/* Never a live session's: keys are not reused, but be sure. */
	if (!sb_storage_key_in_use(d->key))
	{
		if (d->backend == SB_BACKEND_CLOUDRUN)
			sb_gc_use_role(d->owner);
		sb_driver_for(d->backend)->delete_storage(d->key, d->location);
	}
	sb_dropped_storage_done(d->id, NULL);
}

/* next_dropped fills *(List **) arg with the next batch of dropped storage, in ReaperContext. */
static MemoryContext ReaperContext = NULL;
static int64 next_after = 0;
static void
next_dropped(void *arg)
{
	MemoryContext old = MemoryContextSwitchTo(ReaperContext);

	*(List **) arg = sb_dropped_storage_next(next_after, REAPER_BATCH);
	MemoryContextSwitchTo(old);
}

/* record_failure keeps a deletion that failed for a later reaper. */
static char *record_error = NULL;
static void
record_failure(void *arg)
{
	sb_dropped_storage_done(((SbDroppedStorage *) arg)->id, record_error);
}

/* installed says whether this database has the extension with sandbox.dropped_storage. */
static void
installed(void *arg)
{
	Oid			nsp = get_namespace_oid("sandbox", true);

	*(bool *) arg = OidIsValid(get_extension_oid("cloudrun_sandbox", true)) &&
		OidIsValid(nsp) && OidIsValid(get_relname_relid("dropped_storage", nsp));
}

void
sb_reaper_main(Datum arg)
{
	ReapArgs	a;
	bool		ready = false;
	memcpy(&a, MyBgworkerEntry->bgw_extra, sizeof(a));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(a.database, InvalidOid, 0);
	pgstat_report_appname("cloudrun_sandbox reaper");
	SetConfigOption("lock_timeout", REAPER_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION);
	ReaperContext = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox reaper",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(ReaperContext);

	(void) guarded(installed, &ready, "look for the extension");
	if (!ready)
		proc_exit(0);
	if (a.kind == REAP_ORPHAN)
		(void) guarded(delete_orphan, &a, "delete the storage of a session whose creation rolled back");
	else if (a.kind == REAP_RESYNC)
		(void) guarded(resync, &a, "refresh a session's mirror");

	/* Then whatever dropped sessions left, each once. */
	for (;;)
	{
		List	   *batch = NIL;
		ListCell   *lc;

		if (guarded(next_dropped, &batch, "list dropped sessions' storage") != NULL || batch == NIL)
			break;
		foreach(lc, batch)
		{
			SbDroppedStorage *d = lfirst(lc);

			next_after = d->id;
			record_error = guarded(delete_dropped, d, "delete a dropped session's storage");
			if (record_error != NULL)
				(void) guarded(record_failure, d, "record a failed deletion");
		}
		MemoryContextReset(ReaperContext);
	}
	proc_exit(0);
}
