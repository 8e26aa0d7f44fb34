/*
 * roles.c
 *		What happens to a role's sessions when the role is dropped.
 *
 * Sessions belong to roles by OID (sandbox.sessions.owner), so a rename keeps
 * them.  DROP ROLE cannot be refused for them (PostgreSQL keeps no dependency
 * from a role to rows), so they are cleaned up instead: a utility hook (in
 * every backend, since the library is preloaded) tells the background worker
 * when a DROP ROLE commits, and the worker sweeps the sessions whose owner no
 * longer exists: their background processes are killed, their queued
 * commands cancelled, their storage removed and their rows deleted, with
 * their finished history.  Until the sweep (a moment after the commit) they
 * are visible to no role (row-level security compares owners by OID) and
 * usable by none (no role has that OID).
 */
#include "driver.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"

#include "roles.h"
#include "shared.h"
#include "worker/reaper.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/* process_utility notices DROP ROLE and DROP OWNED / REASSIGN OWNED are left alone. */
static void
process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
							 dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
								dest, qc);
	if (IsA(pstmt->utilityStmt, DropRoleStmt))
		sb_roles_changed_at_commit();
}

void
sb_roles_init_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
}

int
sb_sweep_dropped_roles(void)
{
	int			n;
	int64	   *ids;
	char	  **keys;
	SbBackend  *backends;
	MemoryContext outer = CurrentMemoryContext;

	sb_spi_begin_owner();
	if (SPI_execute("SELECT s.id, s.storage_key, s.backend FROM sandbox.sessions s "
					"WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_authid a WHERE a.oid = s.owner) "
					"ORDER BY s.id FOR UPDATE", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for sessions of dropped roles");
	n = (int) SPI_processed;
	ids = MemoryContextAlloc(outer, sizeof(int64) * (n + 1));
	keys = MemoryContextAlloc(outer, sizeof(char *) * (n + 1));
	backends = MemoryContextAlloc(outer, sizeof(SbBackend) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1,
											 &isnull));
		keys[i] = MemoryContextStrdup(outer, SPI_getvalue(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 2));
		backends[i] = sb_backend_parse(SPI_getvalue(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 3));
	}
	/* Finished history of dropped roles, and their ended background processes. */
	if (SPI_execute("DELETE FROM sandbox.executions e WHERE e.status NOT IN "
					"('queued', 'launching', 'running') AND NOT EXISTS "
					"(SELECT FROM pg_catalog.pg_authid a WHERE a.oid = e.owner)", false, 0) < 0 ||
		SPI_execute("DELETE FROM sandbox.background_processes b WHERE b.status NOT IN "
					"('starting', 'running') AND NOT EXISTS "
					"(SELECT FROM pg_catalog.pg_authid a WHERE a.oid = b.owner)", false, 0) < 0)
		elog(ERROR, "could not remove the history of dropped roles");
	sb_spi_end_owner();

	for (int i = 0; i < n; i++)
	{
		ArrayBuildState *killed = NULL;
		SbSession	session = {.id = ids[i], .key = keys[i], .backend = backends[i]};

		(void) sb_background_kill(0, ids[i], NULL, &killed);
		sb_session_delete(&session);
		sb_reaper_drop(&session);
	}
	if (n > 0)
		ereport(LOG,
				(errmsg("cloudrun_sandbox: removed %d sessions of dropped roles", n)));
	return n;
}
