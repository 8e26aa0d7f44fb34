/*
 * cloudrun_sandbox.h
 *		Declarations shared by the extension's source files: settings, the
 *		catalog (mirror tables) and session helpers.
 */
#ifndef CLOUDRUN_SANDBOX_H
#define CLOUDRUN_SANDBOX_H

#include "postgres.h"

/*
 * PostgreSQL's SQL function json_object() has the same C name as jansson's
 * constructor.  Declare PostgreSQL's under another name here, before jansson
 * is included.  At run time the postgres binary's symbol would win, so shared
 * code never calls json_object() directly (see sbutil.h).
 */
#define json_object pg_sql_json_object
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#undef json_object

#include "common/protocol.h"
#include "common/sbutil.h"

/* Settings (cloudrun_sandbox.*), defined in cloudrun_sandbox.c. */
extern char *sb_local_root;
extern char *sb_bwrap_path;
extern char *sb_executor_path;
extern bool sb_local_network;
extern int	sb_max_processes;
extern int	sb_memory_limit_mb;
extern int	sb_shm_size_mb;
extern int	sb_file_size_limit_mb;
extern int	sb_cpu_time_limit_s;
extern int	sb_max_output_bytes;
extern int	sb_default_timeout_s;
extern int	sb_max_timeout_s;
extern int	sb_history_retention_s;
extern int	sb_history_max_kb;
extern int	sb_default_backend;
extern char *sb_project;
extern char *sb_region;
extern char *sb_job;
extern char *sb_bucket;
extern char *sb_prefix;
extern char *sb_credentials;
extern char *sb_run_endpoint;
extern char *sb_storage_endpoint;
extern char *sb_token_endpoint;
extern char *sb_metadata_host;
extern char *sb_worker_database;
extern int	sb_max_concurrent;
extern int	sb_max_command_bytes;
extern int	sb_max_background_per_role;
extern int	sb_max_sessions_per_role;
extern int	sb_max_sandboxes_per_role;
extern int	sb_local_nice;
extern int	sb_max_batch;
extern int	sb_warm_sessions;
extern int	sb_warm_idle_timeout_s;

/* fileops.c: cloudrun_sandbox.max_transfer_bytes, defined by sb_fileops_init(). */
extern int	sb_max_transfer_bytes;

/* cloudrun_sandbox.c: a bound on what shared code and jansson allocate. */
extern bool sb_alloc_limit(size_t budget);
extern void sb_fileops_init(void);
/* stdin.c: cloudrun_sandbox.max_stdin_bytes. */
extern void sb_stdin_init(void);

/* Which backend runs a session's commands. */
typedef enum SbBackend
{
	SB_BACKEND_LOCAL,
	SB_BACKEND_CLOUDRUN
} SbBackend;

extern const char *sb_backend_name(SbBackend backend);
extern SbBackend sb_backend_parse(const char *name);

/* A session row, locked for the rest of the transaction. */
typedef struct SbSession
{
	int64		id;				/* sandbox.sessions.id: its identity */
	char	   *name;			/* the name its owner calls it by */
	char	   *key;			/* storage_key: the drivers' name for its storage */
	Oid			owner;
	SbBackend	backend;
	int64		generation;
	bool		created;		/* inserted by this call */
} SbSession;

/* The outcome of one execution, ready for the mirror and the caller. */
typedef struct SbOutcome
{
	int64		id;
	const char *command;
	SbExecResult result;
	TimestampTz started_at;
	TimestampTz finished_at;
	/*
	 * Output that came as frame payloads, as text datums made in place
	 * (result.stdout_data/stderr_data then point into them), else NULL.
	 */
	struct varlena *stdout_text;
	struct varlena *stderr_text;
} SbOutcome;

/* catalog.c: the mirror tables, written as the extension owner. */
extern void sb_check_session_name(const char *name);
extern SbSession *sb_session_lock(const char *name, bool create, SbBackend backend,
								  bool missing_ok);
extern SbSession *sb_session_lock_ext(const char *name, bool create, SbBackend backend,
									 bool missing_ok, bool wait_for_runs);
extern bool sb_session_insert(const char *name, SbBackend backend);
extern void sb_session_delete(const SbSession *session);
extern void sb_session_update(const SbSession *session, const SbState *state);
extern List *sb_session_names_visible(void);
extern int64 sb_execution_next_id(void);
extern void sb_execution_insert(const SbSession *session, const SbOutcome *outcome);
extern void sb_execution_prune(void);
/* Most rows one prune deletes (sb_execution_prune, sb_history_prune_role). */
#define SB_HISTORY_PRUNE_BATCH 500
extern int64 sb_history_prune_role(Oid role);
extern int64 sb_execution_queue(const SbSession *session, const char *command, int64 timeout_ms,
								Jsonb *call_env, Oid callback);
extern Datum sb_execution_row(int64 id, TupleDesc desc, bool *finished, bool *mine_uncommitted);
extern Datum sb_execution_row_live(int64 id, TupleDesc desc, bool *finished,
								   bool *mine_uncommitted, bool live_output);
extern bool sb_execution_cancel(int64 id);
extern bool sb_session_lock_id(int64 id, bool session_level, bool wait);
extern void sb_session_unlock_id(int64 id);
extern SbSession *sb_session_lock_by_id(int64 id, bool *busy);

/* catalog.c: sandbox.dropped_storage, storage to delete once its drop committed. */
typedef struct SbDroppedStorage
{
	int64		id;
	SbBackend	backend;
	char	   *key;			/* the dropped session's storage key */
	char	   *location;		/* cloud: its object prefix, as it was; or NULL */
	Oid			owner;
} SbDroppedStorage;
extern void sb_dropped_storage_insert(const SbSession *session, const char *location);
extern List *sb_dropped_storage_next(int64 after, int limit);
extern bool sb_dropped_storage_claim(int64 id);
extern void sb_dropped_storage_done(int64 id, const char *error);
extern bool sb_storage_key_in_use(const char *key);
extern void sb_spi_begin_owner(void);
extern void sb_spi_end_owner(void);

/*
 * field4 of the advisory lock tag of a session lock: pg_advisory_lock() and
 * its relatives use only 1 and 2, so SQL can never take this lock.
 */
#define SB_SESSION_LOCK_CLASS 0x5B0C
/* The same for a role's lock on its count of background processes (background.c). */
#define SB_ROLE_LOCK_CLASS 0x5B0D
/* The same for a role's slots of sandboxes running at once (local/slots.c). */
#define SB_SANDBOX_SLOT_CLASS 0x5B0E
extern Datum sb_session_datum(const SbSession *session, TupleDesc result_desc);

/* cloudrun_sandbox.c: JSON helpers between jsonb and jansson. */
extern json_t *sb_jsonb_to_env(Jsonb *jb, const char *what);
extern Jsonb *sb_env_to_jsonb(json_t *env);
extern void sb_require_utf8(void);

/* limits_report.c: the limits in force, for worker_status(). */
extern Datum sb_limits_in_force(void);

#endif							/* CLOUDRUN_SANDBOX_H */
