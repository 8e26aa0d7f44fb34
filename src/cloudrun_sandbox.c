/*
 * cloudrun_sandbox.c
 *		Module entry point: settings (GUCs), the allocator that shared code
 *		uses inside PostgreSQL, and small conversion helpers.
 */
#include "cloudrun_sandbox.h"
#include "gcloud.h"
#include "live.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "common/sbutil.h"
#include "local/cgroup.h"
#include "cloud/runners.h"
#include "roles.h"
#include "local/quota.h"
#include "shared.h"
#include "worker/callback.h"

PG_MODULE_MAGIC;

char	   *sb_local_root = NULL;
char	   *sb_bwrap_path = NULL;
char	   *sb_executor_path = NULL;
bool		sb_local_network = false;
int			sb_max_processes = 256;
int			sb_memory_limit_mb = 2048;
int			sb_shm_size_mb = 64;
int			sb_file_size_limit_mb = 1024;
int			sb_cpu_time_limit_s = 600;
int			sb_max_output_bytes = 1024 * 1024;
int			sb_default_timeout_s = 300;
int			sb_max_timeout_s = 3600;
int			sb_history_retention_s = 7 * 24 * 3600;
int			sb_history_max_kb = 100 * 1024;
int			sb_default_backend = SB_BACKEND_LOCAL;
char	   *sb_project = NULL;
char	   *sb_region = NULL;
char	   *sb_job = NULL;
char	   *sb_bucket = NULL;
char	   *sb_prefix = NULL;
char	   *sb_credentials = NULL;
char	   *sb_run_endpoint = NULL;
char	   *sb_storage_endpoint = NULL;
char	   *sb_token_endpoint = NULL;
char	   *sb_metadata_host = NULL;
char	   *sb_worker_database = NULL;
int			sb_max_concurrent = 64;
int			sb_max_command_bytes = 1024 * 1024;
int			sb_max_background_per_role = 32;
int			sb_max_sessions_per_role = 100;
int			sb_max_sandboxes_per_role = 8;
int			sb_local_nice = 10;
int			sb_warm_sessions = 128;
int			sb_warm_idle_timeout_s = 60;
int			sb_max_batch = 50;

static const struct config_enum_entry backend_options[] = {
	{"local", SB_BACKEND_LOCAL, false},
	{"cloudrun", SB_BACKEND_CLOUDRUN, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/* While alloc_limited, bytes pg_alloc may still hand out; alloc_exceeded once it refused. */
static bool alloc_limited = false;
static bool alloc_exceeded = false;
static int64 alloc_left = 0;

/* pg_alloc is the allocator for shared code and jansson: palloc, NULL on failure. */
static void *
pg_alloc(size_t size)
{
	void	   *p;

	if (alloc_limited && (int64) size > alloc_left)
	{
		alloc_exceeded = true;
		return NULL;
	}
	p = MemoryContextAllocExtended(CurrentMemoryContext, size,
								   MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (p != NULL && alloc_limited)
		alloc_left -= GetMemoryChunkSpace(p);
	return p;
}

/* pg_free releases memory from pg_alloc. */
static void
pg_free(void *ptr)
{
	if (ptr == NULL)
		return;
	if (alloc_limited)
		alloc_left += GetMemoryChunkSpace(ptr);
	pfree(ptr);
}

/*
 * sb_alloc_limit bounds what shared code and jansson may allocate from now on
 * to budget bytes (an allocation beyond it fails as if out of memory); with
 * budget 0, lifts the bound.  Returns whether an allocation failed for it
 * since the bound was set.
 */
bool
sb_alloc_limit(size_t budget)
{
	bool		exceeded = alloc_exceeded;

	alloc_limited = budget > 0;
	alloc_left = (int64) budget;
	alloc_exceeded = false;
	return exceeded;
}

/* _PG_init defines the settings and installs the allocator. */
void
_PG_init(void)
{
	sb_set_allocator(pg_alloc, pg_free);
	sb_live_guc_init();

	DefineCustomStringVariable("cloudrun_sandbox.local_root",
							   "Directory that holds the local backend's sessions.",
							   "Empty means cloudrun_sandbox/<data directory's name> next to the data directory.",
							   &sb_local_root, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.bwrap_path",
							   "Path of the bubblewrap program used by the local backend.",
							   NULL, &sb_bwrap_path, "/usr/bin/bwrap", PGC_SUSET, 0, NULL, NULL,
							   NULL);
	DefineCustomStringVariable("cloudrun_sandbox.executor_path",
							   "Path of the cloudrun-sandbox-executor program.",
							   "Empty means the one installed next to the postgres program.",
							   &sb_executor_path, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("cloudrun_sandbox.local_network",
							 "Whether local sandboxes share the host's network.",
							 "Off gives each sandbox an empty network namespace.",
							 &sb_local_network, false, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_processes",
							"Process limit (RLIMIT_NPROC) for sandboxed commands; 0 = none.",
							NULL, &sb_max_processes, 256, 0, 1000000, PGC_SUSET, 0, NULL, NULL,
							NULL);
	DefineCustomIntVariable("cloudrun_sandbox.memory_limit",
							"Address-space limit (RLIMIT_AS) for sandboxed commands; 0 = none.",
							NULL, &sb_memory_limit_mb, 2048, 0, INT_MAX / 2, PGC_SUSET,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.local_shm_size",
							"Size of /dev/shm in a local sandbox (a tmpfs, counted in no rlimit).",
							"A warm sandbox empties it after each command.",
							&sb_shm_size_mb, 64, 1, INT_MAX / 2, PGC_SUSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.file_size_limit",
							"Largest file a sandboxed command may write (RLIMIT_FSIZE); 0 = none.",
							NULL, &sb_file_size_limit_mb, 1024, 0, INT_MAX / 2, PGC_SUSET,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cpu_time_limit",
							"CPU time limit (RLIMIT_CPU) for sandboxed commands; 0 = none.",
							NULL, &sb_cpu_time_limit_s, 600, 0, INT_MAX, PGC_SUSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_output_bytes",
							"Bytes of stdout and of stderr kept per command; the rest is dropped.",
							NULL, &sb_max_output_bytes, 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_command_bytes",
							"Longest command (in bytes) exec, submit and start_background take.",
							NULL, &sb_max_command_bytes, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.default_timeout",
							"Timeout of a command when the call gives none.",
							NULL, &sb_default_timeout_s, 300, 1, INT_MAX, PGC_USERSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_timeout",
							"Largest timeout a command may ask for.",
							NULL, &sb_max_timeout_s, 3600, 1, INT_MAX, PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.history_retention",
							"How long finished executions are kept in sandbox.executions; 0 = forever.",
							NULL, &sb_history_retention_s, 7 * 24 * 3600, 0, INT_MAX, PGC_SUSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.history_max_bytes_per_role",
							"Bytes of finished history (command, stdout, stderr, error) kept per role; 0 = no bound.",
							"Beyond it, the role's oldest finished executions are deleted.",
							&sb_history_max_kb, 100 * 1024, 0, INT_MAX, PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("cloudrun_sandbox.backend",
							 "Backend of sessions created from now on: local or cloudrun.",
							 "A session keeps the backend it was created with.",
							 &sb_default_backend, SB_BACKEND_LOCAL, backend_options,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.project",
							   "Google Cloud project of the Cloud Run job.",
							   NULL, &sb_project, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.region",
							   "Region (location) of the Cloud Run job.",
							   NULL, &sb_region, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.job",
							   "Name of the Cloud Run job whose container is the executor.",
							   NULL, &sb_job, "sandbox", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.bucket",
							   "Cloud Storage bucket that holds cloud sessions.",
							   NULL, &sb_bucket, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.prefix",
							   "Object-name prefix of cloud sessions in the bucket.",
							   "Empty means the bucket's top level.",
							   &sb_prefix, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.credentials",
							   "How to authenticate to Google Cloud: a service-account key file, "
							   "\"metadata\" or \"none\".",
							   NULL, &sb_credentials, "metadata", PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.run_endpoint",
							   "Base URL of the Cloud Run Admin API.",
							   NULL, &sb_run_endpoint, "https://run.googleapis.com", PGC_SUSET,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.storage_endpoint",
							   "Base URL of the Cloud Storage JSON API.",
							   NULL, &sb_storage_endpoint, "https://storage.googleapis.com",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.token_endpoint",
							   "OAuth token endpoint for a service-account key.",
							   "Empty means the key file's token_uri.",
							   &sb_token_endpoint, "", PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL,
							   NULL);
	DefineCustomStringVariable("cloudrun_sandbox.metadata_host",
							   "Host (and port) of the metadata server for credentials = metadata.",
							   NULL, &sb_metadata_host, "metadata.google.internal", PGC_SUSET,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cloudrun_sandbox.database",
							   "Database the background worker connects to and serves.",
							   NULL, &sb_worker_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL,
							   NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_concurrent",
							"Executions the background worker runs at once (different sessions).",
							NULL, &sb_max_concurrent, 64, 1, 10000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_background_per_role",
							"Background processes a role may have starting or running at once; 0 = no limit.",
							NULL, &sb_max_background_per_role, 32, 0, 100000, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_sessions_per_role",
							"Sessions a role may have in a database (both backends); 0 = no limit.",
							"With local_disk_quota, a role's local disk is at most this many quotas.",
							&sb_max_sessions_per_role, 100, 0, 1000000, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_sandboxes_per_role",
							"Local sandboxes a role's own connections may run at once (exec, file operations); 0 = no limit.",
							"The background worker's executions are bounded by max_concurrent instead.",
							&sb_max_sandboxes_per_role, 8, 0, 10000, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.local_nice",
							"Niceness (CPU priority) of every local sandbox's processes.",
							"Never below the server's own; nothing in a sandbox can lower it.",
							&sb_local_nice, 10, 0, 19, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.local_warm_sessions",
							"Local sessions whose sandbox the background worker keeps running between calls; 0 = none.",
							"The worker's value is the pool's size (at most 1024); a session that sets 0 runs its own "
							"calls in a sandbox each.",
							&sb_warm_sessions, 128, 0, 10000, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.local_warm_idle_timeout",
							"How long an unused warm sandbox is kept.",
							NULL, &sb_warm_idle_timeout_s, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.max_batch",
							"Most queued cloud executions launched as one Cloud Run execution.",
							"Cloud Run limits job run requests per minute; tasks of one execution are not.",
							&sb_max_batch, 50, 1, 10000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	sb_fileops_init();
	sb_stdin_init();
	sb_cgroup_define_settings();
	sb_quota_init();
	sb_callbacks_define_settings();
	sb_gcloud_init();
	sb_runners_define_settings();
	MarkGUCPrefixReserved("cloudrun_sandbox");

	if (process_shared_preload_libraries_in_progress)
	{
		sb_shared_init_hooks();
		sb_roles_init_hooks();
		sb_register_worker();
	}
}

/* sb_backend_name returns the name stored in sandbox.sessions.backend. */
const char *
sb_backend_name(SbBackend backend)
{
	return backend == SB_BACKEND_CLOUDRUN ? "cloudrun" : "local";
}

/* sb_backend_parse maps a backend name to the enum, with a clear error. */
SbBackend
sb_backend_parse(const char *name)
{
	if (strcmp(name, "local") == 0)
		return SB_BACKEND_LOCAL;
	if (strcmp(name, "cloudrun") == 0)
		return SB_BACKEND_CLOUDRUN;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown sandbox backend \"%s\"", name),
			 errhint("Use \"local\" or \"cloudrun\".")));
	return SB_BACKEND_LOCAL;	/* keep compiler quiet */
}

/* sb_jsonb_to_env converts a jsonb object of strings into a validated jansson object. */
json_t *
sb_jsonb_to_env(Jsonb *jb, const char *what)
{
	char	   *text;
	json_error_t jerr;
	json_t	   *env;
	char		errbuf[256];

	/*
	 * Refused before any copy: its text and its jansson tree would take
	 * several times its size.  A valid environment (at most SB_MAX_ENV_BYTES
	 * of name=value, 3 bytes or more each) is never this large as jsonb.
	 */
	if (VARSIZE(jb) > 4 * SB_MAX_ENV_BYTES + 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large: %zu bytes", what, (size_t) VARSIZE(jb)),
				 errdetail("An environment holds at most %d bytes of name=value.",
						   SB_MAX_ENV_BYTES),
				 errhint("Pass large data in a file (sandbox.file_write or file_upload), "
						 "not in the environment.")));
	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	env = json_loads(text, 0, &jerr);
	pfree(text);

	if (env == NULL || !sb_env_settable(env, errbuf, sizeof(errbuf)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s", what),
				 errdetail("%s", env == NULL ? jerr.text : errbuf),
				 errhint("Pass a JSON object of variable names to string values, each "
						 "name=value at most %d bytes and none of the shell's own (such as "
						 "SHELLOPTS), for example '{\"FOO\": \"bar\"}'.",
						 SB_MAX_ENV_VAR_BYTES)));
	return env;
}

/* sb_env_to_jsonb converts a jansson environment object to jsonb. */
Jsonb *
sb_env_to_jsonb(json_t *env)
{
	char	   *text = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);

	if (text == NULL)
		elog(ERROR, "could not serialize an environment");
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}
