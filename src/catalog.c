/*
 * catalog.c
 *		The mirror tables (sandbox.sessions, sandbox.executions), read and
 *		written through SPI as the extension owner.
 *
 * SQL users only have SELECT on these tables, filtered by row-level security.
 * The functions check ownership themselves, then write as the owner of the
 * tables with search_path pinned to pg_catalog, so no object of the caller's
 * can be substituted into a query that runs with the owner's rights.
 */
#include "driver.h"
#include "gcloud.h"
#include "live.h"
#include "shared.h"
#include "worker/reaper.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* How often one backend prunes old history, and how much at once. */
#define PRUNE_INTERVAL_MS 10000
#define PRUNE_BATCH SB_HISTORY_PRUNE_BATCH

/*
 * A backend prunes its role's history by bytes once it has added this
 * fraction of history_max_bytes_per_role since its last prune: a prune reads
 * the rows it keeps, so it runs once per that many bytes, never per exec.
 */
#define PRUNE_BYTES_FRACTION 64

/*
 * Each row also counts this much toward history_max_bytes_per_role, about
 * what its other columns, tuple header and index entries take: a role cannot
 * keep millions of empty rows under the bound (a prune reads the rows kept).
 */
#define HISTORY_ROW_BYTES 256

/*
 * History bytes this backend added since it last pruned its role's history by
 * bytes, and how many of them the last chance was drawn for.
 */
static int64 history_bytes_added = 0;
static int64 history_bytes_drawn = 0;

/* Saved identity while running SPI as the extension owner. */
typedef struct SbSpi
{
	MemoryContext outer;
	Oid			save_uid;
	int			save_sec;
	int			nest;
} SbSpi;

/* Prepared plans, kept for the life of the backend. */
static SPIPlanPtr plan_insert_session;
static SPIPlanPtr plan_lock_session;
static SPIPlanPtr plan_lookup_session;
static SPIPlanPtr plan_cancel_session_queue;
static SPIPlanPtr plan_update_session;
static SPIPlanPtr plan_delete_session;
static SPIPlanPtr plan_insert_execution;
static SPIPlanPtr plan_queue_execution;
static SPIPlanPtr plan_execution_row;
static SPIPlanPtr plan_cancel_execution;
static SPIPlanPtr plan_next_id;
static SPIPlanPtr plan_prune;
static SPIPlanPtr plan_prune_bytes;
static SPIPlanPtr plan_session_row;
static SPIPlanPtr plan_visible_sessions;
static SPIPlanPtr plan_insert_dropped;
static SPIPlanPtr plan_next_dropped;
static SPIPlanPtr plan_dropped_done;
static SPIPlanPtr plan_dropped_retry;
static SPIPlanPtr plan_claim_dropped;
static SPIPlanPtr plan_key_in_use;

/* tables_owner returns the role that owns the extension's tables. */
static Oid
tables_owner(void)
{
	Oid			nsp = get_namespace_oid("sandbox", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("sessions", nsp) : InvalidOid;
	HeapTuple	tp;
	Oid			owner;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table sandbox.sessions does not exist"),
				 errhint("Run CREATE EXTENSION cloudrun_sandbox in this database.")));
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/* spi_begin connects to SPI and becomes the tables' owner with a safe search_path. */
static void
spi_begin(SbSpi *s)
{
	Oid			owner = tables_owner();

	s->outer = CurrentMemoryContext;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&s->save_uid, &s->save_sec);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	s->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

/* spi_end restores the caller's identity and settings. */
static void
spi_end(SbSpi *s)
{
	AtEOXact_GUC(true, s->nest);
	SetUserIdAndSecContext(s->save_uid, s->save_sec);
	SPI_finish();
}

/* prepare returns a kept plan for sql, preparing it on first use. */
static SPIPlanPtr
prepare(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

/* run executes a plan and checks for the expected result code. */
static void
run(SPIPlanPtr plan, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

void
sb_check_session_name(const char *name)
{
	if (!sb_session_name_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid session name \"%s\"", name),
				 errdetail("A session name is 1 to 63 letters, digits, \"_\", \".\" or \"-\", "
						   "starting with a letter or digit.")));
}

/*
 * check_session_cap refuses a role's new session beyond
 * cloudrun_sandbox.max_sessions_per_role, after the row was inserted (so that
 * only a new session is counted), with a snapshot taken after a lock on the
 * role's session count (an advisory tag no SQL caller can take, held to the
 * end of the transaction), so that concurrent creations of one role count one
 * after another.  The lock is taken without waiting: a transaction of the
 * role's that made a session and stays open must not stall its other calls,
 * so while one does, a creation counts without the lock, and concurrent
 * creations can pass the cap by at most the role's open transactions
 * (max_connections bounds them).  It never makes another role, or the
 * worker (which makes no session rows), wait.  Runs as the tables' owner.
 */
static SPIPlanPtr plan_count_sessions = NULL;

static void
check_session_cap(Oid role)
{
	LOCKTAG		tag;
	Oid			type = REGROLEOID;
	Datum		value = ObjectIdGetDatum(role);
	bool		isnull;
	int64		n;

	/* Superusers are not sandbox users: the cap is for roles granted sandbox_user. */
	if (sb_max_sessions_per_role <= 0 || superuser_arg(role))
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 1, (uint32) role, SB_ROLE_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, true);
	if (SPI_execute_snapshot(prepare(&plan_count_sessions,
									 "SELECT count(*) FROM sandbox.sessions WHERE owner = $1",
									 1, &type),
							 &value, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count sessions");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (n > sb_max_sessions_per_role)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" already has %d sessions", GetUserNameFromId(role, false),
						sb_max_sessions_per_role),
				 errdetail("cloudrun_sandbox.max_sessions_per_role is %d.", sb_max_sessions_per_role),
				 errhint("Drop sessions it no longer needs with sandbox.drop_session(), or ask an "
						 "administrator to raise the limit.")));
}

bool
sb_session_insert(const char *name, SbBackend backend)
{
	SbSpi		s;
	Oid			types[3] = {TEXTOID, REGROLEOID, TEXTOID};
	Datum		values[3];
	bool		inserted;

	spi_begin(&s);
	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(s.save_uid);
	values[2] = CStringGetTextDatum(sb_backend_name(backend));
	/* A new session's storage is named by its id, never by its name. */
	run(prepare(&plan_insert_session,
				"INSERT INTO sandbox.sessions (id, name, owner, backend, storage_key) "
				"SELECT n, $1, $2, $3, '_' || n FROM (SELECT "
				"nextval(pg_get_serial_sequence('sandbox.sessions', 'id')) AS n) q "
				"ON CONFLICT (owner, name) DO NOTHING RETURNING storage_key",
				3, types),
		values, NULL, SPI_OK_INSERT_RETURNING);
	inserted = SPI_processed == 1;
	if (inserted)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		check_session_cap(s.save_uid);
		/* If this (sub)transaction rolls back, whatever storage it made for the session goes. */
		sb_reaper_if_creation_aborts(backend, s.save_uid, key);
	}
	spi_end(&s);
	return inserted;
}

/*
 * session_locktag fills the lock tag of session id.  It is an advisory lock
 * tag with a field4 that pg_advisory_lock() and its relatives never use (they
 * use 1 and 2), so no SQL caller can take, hold or release it.
 */
static void
session_locktag(LOCKTAG *tag, int64 id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) id >> 32), (uint32) id,
						 SB_SESSION_LOCK_CLASS);
}

bool
sb_session_lock_id(int64 id, bool session_level, bool wait)
{
	LOCKTAG		tag;

	session_locktag(&tag, id);
	return LockAcquire(&tag, ExclusiveLock, session_level, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

void
sb_session_unlock_id(int64 id)
{
	LOCKTAG		tag;

	session_locktag(&tag, id);
	(void) LockRelease(&tag, ExclusiveLock, true);
}

/* session_lookup returns the id of the caller's session name, or 0. */
static int64
session_lookup(const char *name)
{
	SbSpi		s;
	Oid			types[2] = {TEXTOID, REGROLEOID};
	Datum		values[2];
	int64		id = 0;
	bool		isnull;

	spi_begin(&s);
	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(s.save_uid);
	run(prepare(&plan_lookup_session,
				"SELECT id FROM sandbox.sessions WHERE name = $1 AND owner = $2", 2, types),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										 &isnull));
	spi_end(&s);
	return id;
}

/* session_row_lock locks session id's row and returns it, or NULL if it is gone. */
static SbSession *
session_row_lock(int64 id)
{
	SbSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	SbSession  *session = NULL;

	spi_begin(&s);
	values[0] = Int64GetDatum(id);
	run(prepare(&plan_lock_session,
				"SELECT name, owner, backend, generation, storage_key FROM sandbox.sessions "
				"WHERE id = $1 FOR UPDATE",
				1, types),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(s.outer);

		session = palloc0(sizeof(SbSession));
		session->id = id;
		session->name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		session->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		session->backend = sb_backend_parse(TextDatumGetCString(SPI_getbinval(tup, desc, 3,
																			  &isnull)));
		session->generation = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		session->key = TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull));
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	return session;
}

/*
 * The ids of the sessions this backend used last, by owner and name, so that
 * a call on one skips the lookup by name.  An entry is only a hint: the row
 * locked by its id must still be there with the same owner and name (ids are
 * never reused; a session dropped, or made by a transaction that rolled back,
 * has no row), or the name is looked up as if there were no entry.
 */
#define SESSION_IDS 16

typedef struct SessionId
{
	Oid			owner;
	int64		id;
	char		name[NAMEDATALEN];
} SessionId;

static SessionId session_ids[SESSION_IDS];
static int	session_ids_next = 0;

/* session_id_find returns the entry of the caller's session name, or NULL. */
static SessionId *
session_id_find(const char *name)
{
	Oid			owner = GetUserId();

	for (int i = 0; i < SESSION_IDS; i++)
		if (session_ids[i].id != 0 && session_ids[i].owner == owner &&
			strcmp(session_ids[i].name, name) == 0)
			return &session_ids[i];
	return NULL;
}

/* session_id_remember records the id of the caller's session name. */
static void
session_id_remember(const char *name, int64 id)
{
	SessionId  *e = session_id_find(name);

	if (strlen(name) >= NAMEDATALEN)
		return;
	if (e == NULL)
	{
		e = &session_ids[session_ids_next];
		session_ids_next = (session_ids_next + 1) % SESSION_IDS;
	}
	e->owner = GetUserId();
	e->id = id;
	strlcpy(e->name, name, NAMEDATALEN);
}

/*
 * session_lock_known locks the caller's session name by the id remembered
 * for it (see sb_session_lock_ext for the order of the locks); NULL, and the
 * entry forgotten, if there is none or its row is not that session's.
 */
static SbSession *
session_lock_known(const char *name, bool wait_for_runs)
{
	SessionId  *e = session_id_find(name);
	SbSession  *session;

	if (e == NULL)
		return NULL;
	if (wait_for_runs)
		(void) sb_session_lock_id(e->id, false, true);
	session = session_row_lock(e->id);
	if (session != NULL && session->owner == e->owner && strcmp(session->name, name) == 0)
		return session;
	e->id = 0;
	return NULL;
}

SbSession *
sb_session_lock(const char *name, bool create, SbBackend backend, bool missing_ok)
{
	return sb_session_lock_ext(name, create, backend, missing_ok, true);
}

/*
 * sb_session_lock_ext finds the caller's session called name (creating it
 * with create), takes its session lock for the rest of the transaction and
 * locks its row.  Names are per role: the same name of another role is
 * another session.  With wait_for_runs false it does not take the session
 * lock, so it does not wait for the session's execution in flight in the
 * worker (submit only queues, it does not run anything).
 */
SbSession *
sb_session_lock_ext(const char *name, bool create, SbBackend backend, bool missing_ok,
					bool wait_for_runs)
{
	SbSession  *session = NULL;
	bool		created = false;

	sb_check_session_name(name);
	session = session_lock_known(name, wait_for_runs);
	for (int attempt = 0; attempt < 3 && session == NULL; attempt++)
	{
		int64		id = session_lookup(name);

		created = false;
		/* A new session is inserted only when there is none (an insert costs a sequence value). */
		if (id == 0 && create)
		{
			created = sb_session_insert(name, backend);
			id = session_lookup(name);
		}
		if (id == 0)
			break;

		/*
		 * The session lock comes before the row lock: the background worker
		 * holds it (at session level) while one of the session's executions
		 * is in flight, and takes no row lock meanwhile, so the two can never
		 * wait for each other.
		 */
		if (wait_for_runs)
			(void) sb_session_lock_id(id, false, true);
		/* NULL: dropped meanwhile by a transaction that committed; look again. */
		session = session_row_lock(id);
		if (session != NULL)
			session_id_remember(name, id);
	}
	if (session == NULL)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("session \"%s\" does not exist", name),
				 errhint("Create it with sandbox.create_session(), or run a command in it.")));
	}
	session->created = created;
	/* Cloud calls on it from now on use its owner's job and prefix. */
	if (session->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(session->owner);
	return session;
}

/*
 * sb_session_lock_by_id takes session id's session lock without waiting, and
 * its row lock, whoever owns it; NULL if it is gone, or *busy (someone runs
 * something in it).  For the reaper, which knows a session by its identity
 * only.
 */
SbSession *
sb_session_lock_by_id(int64 id, bool *busy)
{
	SbSession  *session;

	*busy = !sb_session_lock_id(id, false, false);
	if (*busy)
		return NULL;
	session = session_row_lock(id);
	if (session != NULL && session->backend == SB_BACKEND_CLOUDRUN)
		sb_gc_use_role(session->owner);
	return session;
}

void
sb_session_delete(const SbSession *session)
{
	SbSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	spi_begin(&s);
	values[0] = Int64GetDatum(session->id);
	run(prepare(&plan_delete_session, "DELETE FROM sandbox.sessions WHERE id = $1", 1,
				types),
		values, NULL, SPI_OK_DELETE);
	/* Its queued commands never run: not in this session, not in a later one. */
	run(prepare(&plan_cancel_session_queue,
				"UPDATE sandbox.executions SET status = 'cancelled', finished_at = now(), "
				"stdin = NULL, error = 'its session was dropped before it started' "
				"WHERE session_id = $1 AND status = 'queued'",
				1, types),
		values, NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

void
sb_session_update(const SbSession *session, const SbState *state)
{
	SbSpi		s;
	Oid			types[5] = {INT8OID, TEXTOID, JSONBOID, INT8OID, INT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Jsonb	   *env = sb_env_to_jsonb(state->env);

	spi_begin(&s);
	values[0] = Int64GetDatum(session->id);
	values[1] = CStringGetTextDatum(state->cwd);
	values[2] = JsonbPGetDatum(env);
	values[3] = Int64GetDatum(state->generation);
	values[4] = Int64GetDatum(state->last_execution);
	if (state->last_execution == 0)
		nulls[4] = 'n';
	/*
	 * last_execution only ever names a command with a history row: one whose
	 * transaction rolled back has none (its effects are in the state all the
	 * same).
	 */
	run(prepare(&plan_update_session,
				"UPDATE sandbox.sessions SET cwd = $2, env = $3, generation = $4, "
				"last_execution = CASE WHEN EXISTS (SELECT FROM sandbox.executions e "
				"WHERE e.id = $5) THEN $5 ELSE last_execution END, updated_at = now() "
				"WHERE id = $1",
				5, types),
		values, nulls, SPI_OK_UPDATE);
	spi_end(&s);
}

List *
sb_session_names_visible(void)
{
	SbSpi		s;
	Oid			types[1] = {REGROLEOID};
	Datum		values[1];
	List	   *names = NIL;

	spi_begin(&s);
	values[0] = ObjectIdGetDatum(s.save_uid);
	run(prepare(&plan_visible_sessions,
				"SELECT name FROM sandbox.sessions WHERE owner = $1 ORDER BY name", 1,
				types),
		values, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(s.outer);

		names = lappend(names, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	return names;
}

Datum
sb_session_datum(const SbSession *session, TupleDesc result_desc)
{
	SbSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	Datum		result = (Datum) 0;

	spi_begin(&s);
	values[0] = Int64GetDatum(session->id);
	run(prepare(&plan_session_row, "SELECT * FROM sandbox.sessions WHERE id = $1", 1,
				types),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum	   *cols = palloc(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc(sizeof(bool) * desc->natts);
		MemoryContext old;

		if (desc->natts != result_desc->natts)
			elog(ERROR, "sandbox.sessions does not match the function's result type");
		heap_deform_tuple(SPI_tuptable->vals[0], desc, cols, nulls);
		old = MemoryContextSwitchTo(s.outer);
		result = HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), cols, nulls));
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	if (result == (Datum) 0)
		elog(ERROR, "session \"%s\" vanished", session->name);
	return result;
}

/*
 * executions_id_sequence returns the sequence of sandbox.executions.id, or
 * InvalidOid if it cannot be told; found once (a scan of pg_depend) and kept
 * while the table is the same one and the sequence exists.
 */
static Oid
executions_id_sequence(void)
{
	static Oid	rel_seen = InvalidOid;
	static Oid	seq = InvalidOid;
	Oid			nsp = get_namespace_oid("sandbox", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("executions", nsp) : InvalidOid;

	if (!OidIsValid(rel))
		return InvalidOid;
	if (rel != rel_seen || !OidIsValid(seq) || get_rel_relkind(seq) != RELKIND_SEQUENCE)
	{
		AttrNumber	att = get_attnum(rel, "id");

		rel_seen = InvalidOid;
		seq = att != InvalidAttrNumber ? getIdentitySequence(rel, att, true) : InvalidOid;
		if (!OidIsValid(seq))
			return InvalidOid;
		rel_seen = rel;
	}
	return seq;
}

/*
 * sb_execution_next_id takes the next execution id: nextval of the id's
 * sequence, called directly as the tables' owner (a statement through SPI
 * costs a call far more), or through SPI if the sequence cannot be told.
 */
int64
sb_execution_next_id(void)
{
	SbSpi		s;
	int64		id;
	bool		isnull;
	Oid			seq = executions_id_sequence();

	if (OidIsValid(seq))
	{
		Oid			owner = tables_owner();
		Oid			save_uid;
		int			save_sec;

		/* An error on the way restores the identity with the (sub)transaction's abort. */
		GetUserIdAndSecContext(&save_uid, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		id = DatumGetInt64(DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seq)));
		SetUserIdAndSecContext(save_uid, save_sec);
		return id;
	}
	spi_begin(&s);
	run(prepare(&plan_next_id,
				"SELECT nextval(pg_get_serial_sequence('sandbox.executions', 'id'))", 0, NULL),
		NULL, NULL, SPI_OK_SELECT);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	spi_end(&s);
	return id;
}

void
sb_execution_insert(const SbSession *session, const SbOutcome *o)
{
	SbSpi		s;
	Oid			types[15] = {TEXTOID, REGROLEOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
	BOOLOID, BOOLOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		values[15];
	char		nulls[15];
	const SbExecResult *r = &o->result;

	memset(nulls, ' ', sizeof(nulls));
	spi_begin(&s);
	values[0] = CStringGetTextDatum(session->name);
	values[1] = ObjectIdGetDatum(s.save_uid);
	values[2] = CStringGetTextDatum(o->command);
	values[3] = CStringGetTextDatum(sb_status_name(r->status));
	values[4] = Int32GetDatum(r->exit_code);
	if (!r->has_exit_code)
		nulls[4] = 'n';
	values[5] = PointerGetDatum(cstring_to_text_with_len(r->stdout_data, r->stdout_len));
	values[6] = PointerGetDatum(cstring_to_text_with_len(r->stderr_data, r->stderr_len));
	values[7] = BoolGetDatum(r->stdout_truncated);
	values[8] = BoolGetDatum(r->stderr_truncated);
	values[9] = r->has_state ? CStringGetTextDatum(r->cwd) : (Datum) 0;
	if (!r->has_state)
		nulls[9] = 'n';
	values[10] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	if (!r->error)
		nulls[10] = 'n';
	values[11] = TimestampTzGetDatum(o->started_at);
	values[12] = TimestampTzGetDatum(o->finished_at);
	values[13] = Int64GetDatum(o->id);
	values[14] = Int64GetDatum(session->id);
	run(prepare(&plan_insert_execution,
				"INSERT INTO sandbox.executions (id, session, owner, command, status, exit_code, "
				"stdout, stderr, stdout_truncated, stderr_truncated, cwd, error, "
				"submitted_at, started_at, finished_at, duration, session_id) "
				"VALUES ($14, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $13 - $12, $15)",
				15, types),
		values, nulls, SPI_OK_INSERT);
	spi_end(&s);
	history_bytes_added += HISTORY_ROW_BYTES + strlen(o->command) + r->stdout_len + r->stderr_len +
		(r->error ? strlen(r->error) : 0) + (r->cwd ? strlen(r->cwd) : 0);
}

/* sb_history_max_bytes returns cloudrun_sandbox.history_max_bytes_per_role in bytes, 0 for none. */
static int64
sb_history_max_bytes(void)
{
	return (int64) sb_history_max_kb * 1024;
}

/*
 * sb_history_prune_role deletes up to PRUNE_BATCH of role's oldest finished
 * executions beyond history_max_bytes_per_role (their bytes plus
 * HISTORY_ROW_BYTES each, newest first, the newest one always kept), skipping rows another transaction has locked and rows whose
 * callback has yet to run.  Returns how many it deleted.  It reads the role's
 * finished rows newest first, through executions_history_idx, only until their
 * bytes pass the bound, and deletes from there on down in the index's order
 * (so a batch reads its own rows, not a role's whole backlog).
 */
int64
sb_history_prune_role(Oid role)
{
	SbSpi		s;
	Oid			types[2] = {REGROLEOID, INT8OID};
	Datum		values[2];
	int64		deleted;

	if (sb_history_max_bytes() <= 0)
		return 0;
	spi_begin(&s);
	values[0] = ObjectIdGetDatum(role);
	values[1] = Int64GetDatum(sb_history_max_bytes());
	run(prepare(&plan_prune_bytes,
				"DELETE FROM sandbox.executions WHERE id IN ("
				"SELECT e.id FROM sandbox.executions e "
				"WHERE e.owner = $1 AND e.finished_at IS NOT NULL "
				"AND (e.finished_at, e.id) <= (SELECT finished_at, id FROM ("
				"SELECT finished_at, id, sum(bytes + " CppAsString2(HISTORY_ROW_BYTES) ") OVER w AS newer, "
				"row_number() OVER w AS n "
				"FROM sandbox.executions WHERE owner = $1 AND finished_at IS NOT NULL "
				"WINDOW w AS (ORDER BY finished_at DESC, id DESC ROWS UNBOUNDED PRECEDING)) h "
				"WHERE newer > $2 AND n > 1 LIMIT 1) "
				"AND e.status NOT IN ('queued', 'launching', 'running') "
				"AND (e.callback_state IS NULL OR e.callback_state NOT IN ('pending', 'running')) "
				"ORDER BY e.finished_at DESC, e.id DESC LIMIT " CppAsString2(PRUNE_BATCH)
				" FOR UPDATE OF e SKIP LOCKED)",
				2, types),
		values, NULL, SPI_OK_DELETE);
	deleted = (int64) SPI_processed;
	spi_end(&s);
	return deleted;
}

/*
 * history_retention's prune runs at most once per PRUNE_INTERVAL_MS for the
 * whole server (shared memory; per backend without the preloaded library),
 * so that a client that connects for each call does not pay for a prune
 * every time.  The interval starts when a prune that deleted less than a
 * full batch commits: a prune rolled back, or held in an open transaction,
 * leaves it due for everyone else (whose deletes skip the rows it holds),
 * and a backlog is deleted batch after batch.
 */
static TimestampTz local_last_prune = 0;
static TimestampTz prune_done_at = 0;	/* this transaction's prune, to publish at commit */
static bool prune_callback_registered = false;

static void
prune_xact_callback(XactEvent event, void *arg)
{
	if (prune_done_at == 0)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (sb_shared == NULL)
			local_last_prune = Max(local_last_prune, prune_done_at);
		else
		{
			SpinLockAcquire(&sb_shared->mutex);
			if (sb_shared->last_retention_prune < prune_done_at)
				sb_shared->last_retention_prune = prune_done_at;
			SpinLockRelease(&sb_shared->mutex);
		}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		prune_done_at = 0;
}

/* retention_prune_due says whether history_retention's prune is due now. */
static bool
retention_prune_due(TimestampTz now)
{
	TimestampTz last = local_last_prune;

	if (prune_done_at != 0)
		return false;			/* this transaction pruned already */
	if (sb_shared != NULL)
	{
		SpinLockAcquire(&sb_shared->mutex);
		last = sb_shared->last_retention_prune;
		SpinLockRelease(&sb_shared->mutex);
	}
	return TimestampDifferenceExceeds(last, now, PRUNE_INTERVAL_MS);
}

/* retention_pruned notes this transaction's prune, to start the interval if it commits. */
static void
retention_pruned(TimestampTz now, int64 deleted)
{
	if (deleted >= PRUNE_BATCH)
		return;					/* more to delete: due again at once */
	if (!prune_callback_registered)
	{
		RegisterXactCallback(prune_xact_callback, NULL);
		prune_callback_registered = true;
	}
	prune_done_at = now;
}

/*
 * sb_execution_prune deletes, in small batches and without waiting for any
 * lock, history older than history_retention and, once this backend has
 * added enough bytes, the caller's history beyond history_max_bytes_per_role.
 */
void
sb_execution_prune(void)
{
	TimestampTz now = GetCurrentTimestamp();
	SbSpi		s;
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	int64		step = Max(sb_history_max_bytes() / PRUNE_BYTES_FRACTION, 1);

	/*
	 * In a REPEATABLE READ or SERIALIZABLE transaction, a row another pruner
	 * deleted after the snapshot would fail the caller's statement: the
	 * role's next exec in READ COMMITTED, or the worker, prunes instead.
	 */
	if (IsolationUsesXactSnapshot())
		return;

	/*
	 * The caller's role, once this backend added 1/64 of the bound since its
	 * last prune, or before that with the chance of the bytes added since the
	 * last draw (fresh / step): so a client that connects once per call is
	 * pruned as often on average, once per step bytes.  (A draw against all
	 * the bytes added since the last prune pruned every hundred calls or so,
	 * reading the role's whole history each time.)
	 */
	if (sb_history_max_bytes() > 0)
	{
		int64		fresh = history_bytes_added - history_bytes_drawn;

		history_bytes_drawn = history_bytes_added;
		if (history_bytes_added >= step ||
			pg_prng_double(&pg_global_prng_state) * (double) step < (double) fresh)
		{
			history_bytes_added = history_bytes_drawn = 0;
			(void) sb_history_prune_role(GetUserId());
		}
	}
	if (sb_history_retention_s <= 0 || !retention_prune_due(now))
		return;
	spi_begin(&s);
	values[0] = TimestampTzGetDatum(now - (int64) sb_history_retention_s * USECS_PER_SEC);
	run(prepare(&plan_prune,
				"DELETE FROM sandbox.executions WHERE id IN ("
				"SELECT id FROM sandbox.executions WHERE finished_at < $1 "
				"ORDER BY finished_at LIMIT " CppAsString2(PRUNE_BATCH)
				" FOR UPDATE SKIP LOCKED)",
				1, types),
		values, NULL, SPI_OK_DELETE);
	retention_pruned(now, (int64) SPI_processed);
	spi_end(&s);
}

int64
sb_execution_queue(const SbSession *session, const char *command, int64 timeout_ms,
				   Jsonb *call_env, Oid callback)
{
	SbSpi		s;
	Oid			types[7] = {TEXTOID, REGROLEOID, TEXTOID, INTERVALOID, JSONBOID, REGPROCEDUREOID,
	INT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Interval   *tmo = palloc0(sizeof(Interval));
	int64		id;
	bool		isnull;

	tmo->time = timeout_ms * 1000;
	spi_begin(&s);
	values[0] = CStringGetTextDatum(session->name);
	values[1] = ObjectIdGetDatum(s.save_uid);
	values[2] = CStringGetTextDatum(command);
	values[3] = IntervalPGetDatum(tmo);
	values[4] = call_env ? JsonbPGetDatum(call_env) : (Datum) 0;
	nulls[4] = call_env ? ' ' : 'n';
	values[5] = ObjectIdGetDatum(callback);
	nulls[5] = OidIsValid(callback) ? ' ' : 'n';
	values[6] = Int64GetDatum(session->id);
	run(prepare(&plan_queue_execution,
				"INSERT INTO sandbox.executions (session, owner, command, status, timeout, "
				"call_env, callback, session_id) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7) "
				"RETURNING id",
				7, types),
		values, nulls, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	spi_end(&s);
	return id;
}

/*
 * sb_execution_row returns execution id as the row sandbox.wait/result give,
 * after checking the caller may see it.  *finished says whether it is done;
 * *mine_uncommitted whether the caller's own open transaction queued it.
 */
Datum
sb_execution_row(int64 id, TupleDesc desc, bool *finished, bool *mine_uncommitted)
{
	return sb_execution_row_live(id, desc, finished, mine_uncommitted, false);
}

/*
 * sb_execution_row_live is sb_execution_row; with live, a running
 * execution's stdout and stderr are its output so far, read from its
 * session's storage (live.c): what sandbox.result shows.
 */
Datum
sb_execution_row_live(int64 id, TupleDesc desc, bool *finished, bool *mine_uncommitted,
					  bool live_output)
{
	SbSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	Datum		result;
	HeapTuple	tup;
	TupleDesc	td;
	bool		n[14];
	Datum		v[14];
	text	   *live[2] = {NULL, NULL};
	Oid			owner;
	char	   *status;
	MemoryContext old;

	spi_begin(&s);
	values[0] = Int64GetDatum(id);
	run(prepare(&plan_execution_row,
				"SELECT e.owner, e.status, e.exit_code, e.stdout, e.stderr, e.error, e.cwd, "
				"COALESCE(e.duration, CASE WHEN e.started_at IS NOT NULL THEN now() - e.started_at END), "
				"e.stdout_truncated, e.stderr_truncated, e.xmin::text::bigint, "
				"s.storage_key, s.backend, COALESCE(e.run_id, e.id) "
				"FROM sandbox.executions e LEFT JOIN sandbox.sessions s ON s.id = e.session_id "
				"WHERE e.id = $1",
				1, types),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("execution " INT64_FORMAT " does not exist", id),
				 errhint("It may have been removed by cloudrun_sandbox.history_retention "
						 "or cloudrun_sandbox.history_max_bytes_per_role.")));
	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	heap_deform_tuple(tup, td, v, n);
	owner = DatumGetObjectId(v[0]);
	if (owner != s.save_uid && !superuser_arg(s.save_uid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for execution " INT64_FORMAT, id),
				 errdetail("The execution belongs to another role.")));
	status = TextDatumGetCString(v[1]);
	*finished = strcmp(status, "queued") != 0 && strcmp(status, "launching") != 0 &&
		strcmp(status, "running") != 0;
	*mine_uncommitted = TransactionIdIsCurrentTransactionId((TransactionId) DatumGetInt64(v[10]));
	old = MemoryContextSwitchTo(s.outer);
	/* A running execution's output so far is in its session's storage (live.c). */
	if (live_output && strcmp(status, "running") == 0 && n[3] && !n[11] && !n[12])
	{
		SbBackend	backend = sb_backend_parse(TextDatumGetCString(v[12]));
		char	   *key = TextDatumGetCString(v[11]);

		for (int i = 0; i < 2; i++)
		{
			/* The attempt running now: a retry's files are named by its run_id. */
			bytea	   *b = sb_live_output(backend, key, owner, DatumGetInt64(v[13]), i, 0,
										 sb_max_output_bytes, true);
			SbPayload	p = {VARDATA(b), VARSIZE(b) - VARHDRSZ};
			bool		repaired;

			live[i] = sb_payload_text(&p, true, &repaired);
		}
	}
	result = sb_result_datum(desc, id, status, !n[2], n[2] ? 0 : DatumGetInt32(v[2]),
							 live[0] ? live[0] : n[3] ? NULL : DatumGetTextPCopy(v[3]),
							 live[1] ? live[1] : n[4] ? NULL : DatumGetTextPCopy(v[4]),
							 n[5] ? NULL : TextDatumGetCString(v[5]),
							 n[6] ? NULL : TextDatumGetCString(v[6]),
							 n[7] ? NULL : DatumGetIntervalP(datumCopy(v[7], false, sizeof(Interval))),
							 !n[8] && DatumGetBool(v[8]), !n[9] && DatumGetBool(v[9]));
	MemoryContextSwitchTo(old);
	spi_end(&s);
	return result;
}

/*
 * sb_execution_cancel stops execution id if it is unfinished: a queued one is
 * cancelled at once, one in flight is flagged for the worker.  Returns whether
 * it was unfinished.
 */
bool
sb_execution_cancel(int64 id)
{
	SbSpi		s;
	Oid			types[2] = {INT8OID, REGROLEOID};
	Datum		values[2];
	bool		did;

	spi_begin(&s);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(superuser_arg(s.save_uid) ? InvalidOid : s.save_uid);
	run(prepare(&plan_cancel_execution,
				"UPDATE sandbox.executions SET "
				"status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, "
				"finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END, "
				"error = CASE WHEN status <> 'queued' THEN error WHEN attempt > 1 "
				"THEN format('cancelled before attempt %s (a retry) started', attempt) "
				"ELSE 'cancelled before it started' END, "
				"stdin = CASE WHEN status = 'queued' THEN NULL ELSE stdin END, "
				"cancel_requested = true "
				"WHERE id = $1 AND ($2 = 0 OR owner = $2) "
				"AND status IN ('queued', 'launching', 'running') RETURNING id",
				2, types),
		values, NULL, SPI_OK_UPDATE_RETURNING);
	did = SPI_processed == 1;
	spi_end(&s);
	return did;
}

void
sb_dropped_storage_insert(const SbSession *session, const char *location)
{
	SbSpi		s;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	spi_begin(&s);
	values[0] = CStringGetTextDatum(sb_backend_name(session->backend));
	values[1] = CStringGetTextDatum(session->key);
	values[2] = location ? CStringGetTextDatum(location) : (Datum) 0;
	nulls[2] = location ? ' ' : 'n';
	values[3] = ObjectIdGetDatum(session->owner);
	run(prepare(&plan_insert_dropped,
				"INSERT INTO sandbox.dropped_storage (backend, storage_key, location, owner) "
				"VALUES ($1, $2, $3, $4)",
				4, types),
		values, nulls, SPI_OK_INSERT);
	spi_end(&s);
}

List *
sb_dropped_storage_next(int64 after, int limit)
{
	SbSpi		s;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	List	   *rows = NIL;

	spi_begin(&s);
	values[0] = Int64GetDatum(after);
	values[1] = Int32GetDatum(limit);
	run(prepare(&plan_next_dropped,
				"SELECT id, backend, storage_key, location, owner FROM sandbox.dropped_storage "
				"WHERE id > $1 ORDER BY id LIMIT $2",
				2, types),
		values, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(s.outer);
		SbDroppedStorage *d = palloc0(sizeof(SbDroppedStorage));

		d->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d->backend = sb_backend_parse(SPI_getvalue(tup, desc, 2));
		d->key = SPI_getvalue(tup, desc, 3);
		d->location = SPI_getvalue(tup, desc, 4);
		d->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		rows = lappend(rows, d);
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	return rows;
}

void
sb_dropped_storage_done(int64 id, const char *error)
{
	SbSpi		s;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	spi_begin(&s);
	values[0] = Int64GetDatum(id);
	if (error == NULL)
		run(prepare(&plan_dropped_done, "DELETE FROM sandbox.dropped_storage WHERE id = $1",
					1, types),
			values, NULL, SPI_OK_DELETE);
	else
	{
		values[1] = CStringGetTextDatum(error);
		run(prepare(&plan_dropped_retry,
					"UPDATE sandbox.dropped_storage SET attempts = attempts + 1, last_error = $2, "
					"last_attempt_at = now() WHERE id = $1",
					2, types),
			values, NULL, SPI_OK_UPDATE);
	}
	spi_end(&s);
}

/* any_row runs a one-parameter query and says whether it found a row. */
static bool
any_row(SPIPlanPtr *cache, const char *sql, Oid type, Datum value)
{
	SbSpi		s;
	bool		found;

	spi_begin(&s);
	run(prepare(cache, sql, 1, &type), &value, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	spi_end(&s);
	return found;
}

/*
 * sb_dropped_storage_claim locks row id of sandbox.dropped_storage for this
 * transaction; false if it is gone, or another reaper has it.
 */
bool
sb_dropped_storage_claim(int64 id)
{
	return any_row(&plan_claim_dropped,
				   "SELECT FROM sandbox.dropped_storage WHERE id = $1 FOR UPDATE SKIP LOCKED",
				   INT8OID, Int64GetDatum(id));
}

bool
sb_storage_key_in_use(const char *key)
{
	return any_row(&plan_key_in_use, "SELECT FROM sandbox.sessions WHERE storage_key = $1",
				   TEXTOID, CStringGetTextDatum(key));
}

/* For other files: one SPI connection as the tables' owner at a time. */
static SbSpi owner_spi;

/* sb_spi_begin_owner connects to SPI as the tables' owner with a pinned search_path. */
void
sb_spi_begin_owner(void)
{
	spi_begin(&owner_spi);
}

/* sb_spi_end_owner undoes sb_spi_begin_owner. */
void
sb_spi_end_owner(void)
{
	spi_end(&owner_spi);
}
