/*
 * session.c
 *		sandbox.create_session(), sandbox.drop_session() and sandbox.sync().
 */
#include "driver.h"

#include "fmgr.h"
#include "funcapi.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "common/sbutil.h"
#include "worker/reaper.h"

PG_FUNCTION_INFO_V1(sandbox_create_session);
PG_FUNCTION_INFO_V1(sandbox_drop_session);
PG_FUNCTION_INFO_V1(sandbox_sync);

/* name_arg returns a required session-name argument. */
static char *
name_arg(FunctionCallInfo fcinfo, int n)
{
	char	   *name;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("session name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(n));
	sb_check_session_name(name);
	return name;
}

Datum
sandbox_create_session(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	SbBackend	backend = PG_ARGISNULL(1) ? SB_BACKEND_LOCAL
		: sb_backend_parse(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	json_t	   *env = PG_ARGISNULL(2) ? NULL
		: sb_jsonb_to_env(PG_GETARG_JSONB_P(2), "env argument");
	bool		if_not_exists = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	SbSession  *session;
	const SbDriver *driver = sb_driver_for(backend);
	SbState		state;
	TupleDesc	desc;

	sb_require_utf8();
	if (!sb_session_insert(name, backend))
	{
		session = sb_session_lock(name, false, backend, false);
		if (!if_not_exists)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("session \"%s\" already exists", name),
					 errhint("Pass if_not_exists => true to reuse it.")));
		if (!PG_ARGISNULL(1) && session->backend != backend)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("session \"%s\" already exists on the %s backend", name,
							sb_backend_name(session->backend)),
					 errhint("Drop it first, or use another name for a %s session.",
							 sb_backend_name(backend))));
		ereport(NOTICE, (errmsg("session \"%s\" already exists, skipping", name)));
	}
	else
	{
		session = sb_session_lock(name, false, backend, false);
		driver->prepare_session(session->key, true);
		memset(&state, 0, sizeof(state));
		state.cwd = SB_WORKSPACE;
		state.env = json_object();
		if (env != NULL)
			json_object_update(state.env, env);
		state.generation++;
		driver->store_state(session->key, &state);
		sb_session_update(session, &state);
	}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "sandbox.create_session must return a composite type");
	PG_RETURN_DATUM(sb_session_datum(session, desc));
}

Datum
sandbox_drop_session(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	SbSession  *session = sb_session_lock(name, false, SB_BACKEND_LOCAL, if_exists);

	if (session == NULL)
	{
		ereport(NOTICE, (errmsg("session \"%s\" does not exist, skipping", name)));
		PG_RETURN_BOOL(false);
	}
	/* Its background processes go first; its queued commands are cancelled. */
	{
		ArrayBuildState *killed = NULL;

		(void) sb_background_kill(0, session->id, NULL, &killed);
	}
	sb_session_delete(session);
	/* Its storage is deleted once the drop commits; a rollback leaves it as it was. */
	sb_reaper_drop(session);
	PG_RETURN_BOOL(true);
}

/* sync_one refreshes one session's mirror row from its state.json. */
static bool
sync_one(const char *name)
{
	SbSession  *session = sb_session_lock(name, false, SB_BACKEND_LOCAL, true);
	SbState		state;

	if (session == NULL)
		return false;
	if (!sb_driver_for(session->backend)->load_state(session->key, &state))
	{
		memset(&state, 0, sizeof(state));
		state.cwd = SB_WORKSPACE;
		state.env = json_object();
	}
	sb_session_update(session, &state);
	return true;
}

/*
 * sync_guarded is sync_one in a subtransaction: a session whose state cannot
 * be read is reported as a WARNING and left as it is, so that one damaged
 * session does not keep the others from being synced.
 */
static bool
sync_guarded(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool synced = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		synced = sync_one(name);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* A cancel or a statement timeout stops the whole sync. */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("session \"%s\" was not synced: %s", name, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return synced;
}

Datum
sandbox_sync(PG_FUNCTION_ARGS)
{
	int			count = 0;

	sb_require_utf8();
	if (!PG_ARGISNULL(0))
	{
		char	   *name = name_arg(fcinfo, 0);

		/* An explicit name must be one of the caller's sessions. */
		(void) sb_session_lock(name, false, SB_BACKEND_LOCAL, false);
		count = sync_one(name) ? 1 : 0;
	}
	else
	{
		ListCell   *lc;

		foreach(lc, sb_session_names_visible())
			count += sync_guarded(lfirst(lc)) ? 1 : 0;
	}
	PG_RETURN_INT32(count);
}
