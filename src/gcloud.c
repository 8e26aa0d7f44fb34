/*
 * gcloud.c
 *		Google Cloud access from a backend: GCS and Cloud Run calls made with
 *		the shared client in src/common, configured from the
 *		cloudrun_sandbox.* settings, interruptible by query cancel, and failing
 *		with SQL errors whose hints name the setting to fix.
 *
 * Where a session's commands run, and where its objects live, is a matter of
 * its owner: cloudrun_sandbox.job, .prefix and .cloud_isolation are read
 * from the owner's ALTER ROLE ... SET (in this database, then in all), and
 * only if the owner has none from this backend's own settings.  So a
 * superuser can give each role a job of its own, whose service account IAM
 * limits to the role's prefix, and the background worker, which runs every
 * role's queued commands in its one session, uses the owner's job and prefix,
 * never its own.  sb_gc_use_role() chooses the role whose values the calls
 * that follow use (until the end of the transaction; outside a transaction
 * the values last read for that role).
 *
 * Every cloud call a user's backend makes (a command, a file operation, a
 * session or background-process call) has a time limit that each of its
 * requests -- token, uploads, jobs:run, waits, downloads -- is held to,
 * retries and backoff included: sb_gc_use_role() starts a call with the
 * limit of a call without a timeout of its own (statement_timeout if set,
 * else cloudrun_sandbox.default_timeout, plus cloudrun_sandbox.cloud_margin),
 * sb_gc_call_until() gives it, once, the end of its own timeout plus the
 * margin.  A limit holds for the statement that set it, and never for the
 * work a transaction does when it ends.  The background worker's calls never
 * block and have no such limit.
 */
#include "gcloud.h"

#include "driver.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_db_role_setting.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* A request that failed this close to its call's deadline was cut short by it. */
#define GC_DEADLINE_SLOP_MS 50

/* cloudrun_sandbox.cloud_isolation: how cloud commands are isolated in their container. */
int			sb_cloud_isolation = SB_ISOLATION_SANDBOX;

static const struct config_enum_entry isolation_options[] = {
	{"sandbox", SB_ISOLATION_SANDBOX, false},
	{"none", SB_ISOLATION_NONE, false},
	{NULL, 0, false}
};

/* What a role's cloud sessions use; see the file header. */
typedef struct GcTarget
{
	Oid			role;
	char	   *job;
	char	   *prefix;
	SbIsolation isolation;
} GcTarget;

static List *gc_targets = NIL;	/* GcTarget *, in TopMemoryContext: last read per role */
static GcTarget *gc_current = NULL; /* the role sb_gc_use_role() chose, or NULL */
static bool gc_callback_set = false;

/* cloudrun_sandbox.cloud_margin: how much longer than its timeout a cloud call may take. */
int			sb_cloud_margin_ms = 30000;

/* The time limit of the cloud call in progress; see the file header. */
static int64 gc_deadline_ms = 0;	/* monotonic (sb_now_ms); 0: none */
static TimestampTz gc_deadline_stmt = 0;	/* the statement it holds for */
static int64 gc_limit_ms = 0;	/* the whole limit, for messages */
static const char *gc_limit_source = NULL;	/* what it is made of, for messages */
static bool gc_limit_own = false;	/* set by sb_gc_call_until, from the call's timeout */

/* One connection cache and one credential per backend, rebuilt when settings change. */
static SbHttpClient *gc_http = NULL;
static SbAuth *gc_auth = NULL;
static char *gc_auth_key = NULL;

/* gc_should_abort stops a call in progress when the query is being cancelled. */
static int
gc_should_abort(void *arg)
{
	return InterruptPending && (QueryCancelPending || ProcDiePending);
}

static void gc_end_of_xact(XactEvent event, void *arg);

/* gc_register has gc_end_of_xact called at the end of every transaction. */
static void
gc_register(void)
{
	if (!gc_callback_set)
	{
		RegisterXactCallback(gc_end_of_xact, NULL);
		gc_callback_set = true;
	}
}

/* gc_deadline is the current call's deadline (monotonic ms), or 0 when it has none. */
static int64
gc_deadline(void)
{
	if (gc_deadline_ms == 0 || sb_driver_nonblocking ||
		gc_deadline_stmt != GetCurrentStatementStartTimestamp())
		return 0;
	return gc_deadline_ms;
}

/* gc_set_limit makes the call in progress end limit_ms from now (own: from its timeout). */
static void
gc_set_limit(int64 limit_ms, const char *source, bool own)
{
	if (sb_driver_nonblocking)
		return;
	gc_register();
	gc_deadline_ms = sb_now_ms() + Max(limit_ms, 1);
	gc_deadline_stmt = GetCurrentStatementStartTimestamp();
	gc_limit_ms = limit_ms;
	gc_limit_source = source;
	gc_limit_own = own;
}

void
sb_gc_call_start(void)
{
	if (StatementTimeout > 0)
		/* PostgreSQL's own timer ends the call; this is only a backstop. */
		gc_set_limit((int64) StatementTimeout + 1000, "statement_timeout", false);
	else
		gc_set_limit(sb_timeout_ms(NULL) + sb_cloud_margin_ms,
					 "cloudrun_sandbox.default_timeout plus cloudrun_sandbox.cloud_margin", false);
}

void
sb_gc_call_until(TimestampTz end)
{
	if (gc_limit_own && gc_deadline() != 0)
		return;					/* the call's limit runs from its start, not from here */
	gc_set_limit((end - GetCurrentTimestamp()) / 1000 + sb_cloud_margin_ms,
				 "the call's timeout and grace period plus cloudrun_sandbox.cloud_margin", true);
}

TimestampTz
sb_gc_call_end(void)
{
	int64		deadline = gc_deadline();

	if (deadline == 0)
		return DT_NOEND;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), deadline - sb_now_ms());
}

int64
sb_gc_call_suspend(void)
{
	int64		saved = gc_deadline();

	gc_deadline_ms = 0;
	return saved;
}

void
sb_gc_call_resume(int64 saved)
{
	if (saved != 0)
	{
		gc_deadline_ms = saved;
		gc_deadline_stmt = GetCurrentStatementStartTimestamp();
	}
}

/* gc_cap_deadline holds a request's deadline (monotonic ms, 0: none) to the call's. */
static int64
gc_cap_deadline(int64 deadline_ms)
{
	int64		call = gc_deadline();

	if (call != 0 && (deadline_ms == 0 || call < deadline_ms))
		return call;
	return deadline_ms;
}

void
sb_gc_raise_late(const char *what, const char *last_error)
{
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("%s: Google Cloud did not answer in time", what),
			 errdetail("No answer came within the call's time limit of " INT64_FORMAT " ms (%s)%s%s.",
					   gc_limit_ms, gc_limit_source ? gc_limit_source : "",
					   last_error ? "; the last error: " : "", last_error ? last_error : ""),
			 errhint("Check that cloudrun_sandbox.run_endpoint, cloudrun_sandbox.storage_endpoint "
					 "and the token endpoint answer; if the Cloud Run job only starts slowly, "
					 "raise cloudrun_sandbox.cloud_margin or the call's timeout.")));
	pg_unreachable();
}

/* gc_policy is the retry policy of every call: defaults plus query cancel. */
static void
gc_policy(SbHttpPolicy *policy)
{
	sb_http_policy_default(policy);
	policy->should_abort = gc_should_abort;
}

/* gc_client returns the backend's HTTP connection cache. */
static SbHttpClient *
gc_client(void)
{
	SbError		err;

	if (gc_http == NULL)
	{
		if (sb_http_global_init(&err) != 0 || (gc_http = sb_http_client_new(&err)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize the HTTP client: %s", err.message)));
	}
	return gc_http;
}

/* gc_credentials returns the credential the settings describe, making it when they change. */
static SbAuth *
gc_credentials(void)
{
	char	   *key = psprintf("%s|%s|%s", sb_credentials, sb_token_endpoint, sb_metadata_host);
	SbAuthConfig cfg = {0};
	SbHttpPolicy policy;
	SbError		err;

	if (gc_auth != NULL && strcmp(key, gc_auth_key) == 0)
		return gc_auth;
	if (gc_auth != NULL)
		sb_auth_free(gc_auth);
	gc_auth = NULL;
	if (strcmp(sb_credentials, "none") == 0)
		cfg.mode = SB_AUTH_NONE;
	else if (strcmp(sb_credentials, "metadata") == 0)
		cfg.mode = SB_AUTH_METADATA;
	else
	{
		cfg.mode = SB_AUTH_SERVICE_ACCOUNT;
		cfg.key_file = sb_credentials;
	}
	cfg.token_endpoint = sb_token_endpoint[0] ? sb_token_endpoint : NULL;
	cfg.metadata_host = sb_metadata_host[0] ? sb_metadata_host : NULL;
	gc_auth = sb_auth_new(&cfg, &err);
	if (gc_auth == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("could not load Google Cloud credentials: %s", err.message),
				 errhint("Set cloudrun_sandbox.credentials to a service-account key file the "
						 "server can read, to \"metadata\", or to \"none\".")));
	gc_policy(&policy);
	sb_auth_set_http(gc_auth, gc_client(), &policy);
	if (gc_auth_key)
		pfree(gc_auth_key);
	gc_auth_key = MemoryContextStrdup(TopMemoryContext, key);
	return gc_auth;
}

/* require_setting raises a clear error when a needed setting is empty. */
static void
require_setting(const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not set", name),
				 errhint("The cloudrun backend needs cloudrun_sandbox.project, .region, .job "
						 "and .bucket; ask a superuser to set them.")));
}

/* sb_gc_require_settings checks that the cloud backend is configured. */
void
sb_gc_require_settings(void)
{
	require_setting("cloudrun_sandbox.project", sb_project);
	require_setting("cloudrun_sandbox.region", sb_region);
	require_setting("cloudrun_sandbox.job", sb_gc_job());
	require_setting("cloudrun_sandbox.bucket", sb_bucket);
}

/* sb_gc_gcs fills a GCS client configuration from the settings. */
void
sb_gc_gcs(SbGcsConfig *cfg)
{
	static SbHttpPolicy policy;

	require_setting("cloudrun_sandbox.bucket", sb_bucket);
	memset(cfg, 0, sizeof(*cfg));
	gc_policy(&policy);
	cfg->storage_endpoint = sb_storage_endpoint;
	cfg->bucket = sb_bucket;
	cfg->auth = gc_credentials();
	cfg->http = gc_client();
	cfg->policy = &policy;
	cfg->deadline_ms = gc_cap_deadline(0);
}

/* sb_gcloud_init defines this module's settings; called from _PG_init. */
void
sb_gcloud_init(void)
{
	DefineCustomEnumVariable("cloudrun_sandbox.cloud_isolation",
							 "How cloud commands are isolated inside their container: sandbox or none.",
							 "sandbox: each command runs in a sandbox of its own without network, "
							 "the executor's environment or its credentials; a command whose sandbox "
							 "cannot be created is not run.  none: commands run directly in the "
							 "container, where the job's service-account token is within their reach.",
							 &sb_cloud_isolation, SB_ISOLATION_SANDBOX, isolation_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.cloud_margin",
							"How much longer than its timeout a cloud call may take.",
							"Cloud Run's start-up and the transfers of a command, file operation "
							"or session call; a call without a timeout of its own has "
							"statement_timeout, else cloudrun_sandbox.default_timeout, as its "
							"timeout.  When the limit passes, the call ends with an error (and "
							"cancels its execution, which may take up to 3 more seconds).",
							&sb_cloud_margin_ms, 30000, 0, 3600 * 1000, PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* gc_end_of_xact forgets the chosen role when a transaction ends. */
static void
gc_end_of_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		gc_current = NULL;
		gc_deadline_ms = 0;		/* the call's limit is not the end-of-transaction work's */
	}
}

/* role_config returns the setconfig array of pg_db_role_setting's row (db, role), or NULL. */
static ArrayType *
role_config(Relation rel, Oid db, Oid role)
{
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	ArrayType  *config = NULL;

	ScanKeyInit(&key[0], Anum_pg_db_role_setting_setdatabase, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(db));
	ScanKeyInit(&key[1], Anum_pg_db_role_setting_setrole, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(role));
	scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true, NULL, 2, key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_db_role_setting_setconfig,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			config = DatumGetArrayTypePCopy(d);
	}
	systable_endscan(scan);
	return config;
}

/* config_value finds a setting's value in a setconfig array ("name=value" items), or NULL. */
static char *
config_value(ArrayType *config, const char *name)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;
	char	   *found = NULL;

	if (config == NULL)
		return NULL;
	deconstruct_array(config, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *item;
		char	   *key;
		char	   *value;

		if (nulls[i])
			continue;
		item = TextDatumGetCString(items[i]);
		ParseLongOption(item, &key, &value);
		if (value != NULL && pg_strcasecmp(key, name) == 0)
			found = value;
	}
	return found;
}

/* role_value is a setting for role: this database's ALTER ROLE SET, then all databases', else NULL. */
static char *
role_value(ArrayType *here, ArrayType *everywhere, const char *name)
{
	char	   *v = config_value(here, name);

	return v != NULL ? v : config_value(everywhere, name);
}

/*
 * sb_role_setting returns a setting as role's ALTER ROLE SET gives it (this
 * database's, then all databases'), or NULL; in a transaction only.
 */
char *
sb_role_setting(Oid role, const char *name)
{
	Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	char	   *v = role_value(role_config(rel, MyDatabaseId, role), role_config(rel, InvalidOid, role),
							   name);

	table_close(rel, AccessShareLock);
	return v;
}

/* target_of returns the remembered entry of role, making an empty one if needed. */
static GcTarget *
target_of(Oid role)
{
	ListCell   *lc;
	MemoryContext old;
	GcTarget   *t;

	foreach(lc, gc_targets)
		if (((GcTarget *) lfirst(lc))->role == role)
			return lfirst(lc);
	old = MemoryContextSwitchTo(TopMemoryContext);
	t = palloc0(sizeof(GcTarget));
	t->role = role;
	gc_targets = lappend(gc_targets, t);
	MemoryContextSwitchTo(old);
	return t;
}

/* set_string replaces a remembered string (kept in TopMemoryContext). */
static void
set_string(char **field, const char *value)
{
	if (*field != NULL)
		pfree(*field);
	*field = MemoryContextStrdup(TopMemoryContext, value);
}

/* sb_gc_role is the role sb_gc_use_role() chose (InvalidOid: none). */
Oid
sb_gc_role(void)
{
	return gc_current != NULL ? gc_current->role : InvalidOid;
}

void
sb_gc_use_role(Oid role)
{
	GcTarget   *t;

	gc_register();
	sb_gc_call_start();		/* a call for the role's sessions begins */
	if (!OidIsValid(role))
	{
		gc_current = NULL;
		return;
	}
	t = target_of(role);
	if (IsTransactionState())
	{
		Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
		ArrayType  *here = role_config(rel, MyDatabaseId, role);
		ArrayType  *everywhere = role_config(rel, InvalidOid, role);
		char	   *job = role_value(here, everywhere, "cloudrun_sandbox.job");
		char	   *prefix = role_value(here, everywhere, "cloudrun_sandbox.prefix");
		char	   *isolation = role_value(here, everywhere, "cloudrun_sandbox.cloud_isolation");

		table_close(rel, AccessShareLock);
		set_string(&t->job, job != NULL ? job : sb_job);
		set_string(&t->prefix, prefix != NULL ? prefix : sb_prefix);
		t->isolation = (SbIsolation) sb_cloud_isolation;
		/* Anything but a clear 'none' (e.g. set before the library was loaded) isolates. */
		if (isolation != NULL)
			t->isolation = pg_strcasecmp(isolation, "none") == 0 ? SB_ISOLATION_NONE
				: SB_ISOLATION_SANDBOX;
	}
	else if (t->job == NULL)
	{
		/* Never read (outside a transaction): this backend's settings, as before. */
		set_string(&t->job, sb_job);
		set_string(&t->prefix, sb_prefix);
		t->isolation = (SbIsolation) sb_cloud_isolation;
	}
	gc_current = t;
}

/* sb_gc_job is the Cloud Run job of the chosen role's sessions. */
const char *
sb_gc_job(void)
{
	return gc_current != NULL ? gc_current->job : sb_job;
}

/* sb_gc_prefix is the object-name prefix of the chosen role's sessions. */
const char *
sb_gc_prefix(void)
{
	return gc_current != NULL ? gc_current->prefix : sb_prefix;
}

/* sb_gc_isolation is how the chosen role's commands are isolated in their container. */
SbIsolation
sb_gc_isolation(void)
{
	return gc_current != NULL ? gc_current->isolation : (SbIsolation) sb_cloud_isolation;
}

/* sb_gc_session_prefix returns "<prefix>/sessions/<session>/" (no leading slash). */
char *
sb_gc_session_prefix(const char *session)
{
	const char *prefix = sb_gc_prefix();
	size_t		len = strlen(prefix);

	while (len > 0 && prefix[len - 1] == '/')
		len--;
	if (len == 0)
		return psprintf("sessions/%s/", session);
	return psprintf("%.*s/sessions/%s/", (int) len, prefix, session);
}

/* sb_gc_object returns the name of one of a session's objects. */
char *
sb_gc_object(const char *session, const char *suffix)
{
	return psprintf("%s%s", sb_gc_session_prefix(session), suffix);
}

/*
 * gc_cut_short says whether a request failed for the call's limit: it timed
 * out, or stopped retrying, close to the call's deadline (a retry is given up
 * when its backoff would end past the deadline), or failed at the deadline.
 */
static bool
gc_cut_short(const SbError *err)
{
	int64		deadline = gc_deadline();
	SbHttpPolicy policy;

	if (deadline == 0)
		return false;
	gc_policy(&policy);
	if (err->kind == SB_ERR_TIMEOUT)
		return sb_now_ms() + policy.backoff_cap_ms + GC_DEADLINE_SLOP_MS >= deadline;
	return err->kind == SB_ERR_NETWORK && sb_now_ms() + GC_DEADLINE_SLOP_MS >= deadline;
}

void
sb_gc_raise(const SbError *err, const char *what, SbGcNotFound nf)
{
	if (err->kind == SB_ERR_CANCELLED)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("%s: cancelled", what)));
	}
	if (gc_cut_short(err))
		sb_gc_raise_late(what, err->message);
	switch (err->kind)
	{
		case SB_ERR_AUTH:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("%s: Google Cloud rejected the credentials", what),
					 errdetail("%s", err->message),
					 errhint("Check cloudrun_sandbox.credentials (a service-account key file, "
							 "\"metadata\" or \"none\") and cloudrun_sandbox.token_endpoint.")));
			break;
		case SB_ERR_FORBIDDEN:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s: permission denied by Google Cloud", what),
					 errdetail("%s", err->message),
					 errhint("Grant the service account of cloudrun_sandbox.credentials "
							 "roles/storage.objectAdmin on cloudrun_sandbox.bucket and "
							 "roles/run.developer on cloudrun_sandbox.job.")));
			break;
		case SB_ERR_NOT_FOUND:
			if (nf == SB_GC_NOT_FOUND_JOB)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("%s: the Cloud Run job was not found", what),
						 errdetail("%s", err->message),
						 errhint("Check cloudrun_sandbox.project, cloudrun_sandbox.region and "
								 "cloudrun_sandbox.job.")));
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("%s: %s was not found", what,
							nf == SB_GC_NOT_FOUND_BUCKET ? "the bucket" : "an object"),
					 errdetail("%s", err->message),
					 errhint("Check cloudrun_sandbox.bucket and cloudrun_sandbox.prefix.")));
			break;
		case SB_ERR_NETWORK:
		case SB_ERR_TIMEOUT:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s: could not reach Google Cloud", what),
					 errdetail("%s", err->message),
					 errhint("Check cloudrun_sandbox.run_endpoint, "
							 "cloudrun_sandbox.storage_endpoint and the network.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("%s: %s", what, err->message)));
	}
	pg_unreachable();
}

/*
 * run_request prepares a Cloud Run Admin API request (the path is below the
 * endpoint).  jobs:run is not idempotent (each call starts an execution):
 * it is never sent again after it may have reached Cloud Run; the caller
 * looks for the execution instead (see driver_cloudrun.c).
 */
static int
run_request(SbHttpRequest *req, const char *method, const char *path, const char *body,
			int64 timeout_ms, SbError *err)
{
	size_t		n = strlen(path);

	if (sb_http_request_init(req, method, psprintf("%s%s", sb_run_endpoint, path), err) != 0)
		return -1;
	gc_policy(&req->policy);
	req->idempotent = !(n > 4 && strcmp(path + n - 4, ":run") == 0);
	req->deadline_ms = gc_cap_deadline(sb_now_ms() + timeout_ms);
	if (body != NULL)
	{
		sb_http_request_set_body(req, body, strlen(body));
		if (sb_http_request_add_header(req, err, "Content-Type: application/json") != 0)
		{
			sb_http_request_cleanup(req);
			return -1;
		}
	}
	return 0;
}

/*
 * sb_gc_run_call makes one Cloud Run Admin API call: method, a path below
 * the endpoint ("/v2/projects/..."), an optional JSON body.  On success the
 * response body (palloc'd) is in *response.
 */
int
sb_gc_run_call(const char *method, const char *path, const char *body, int64 timeout_ms,
			   char **response, SbError *err)
{
	SbHttpRequest req;
	int			rc;

	*response = NULL;
	if (run_request(&req, method, path, body, timeout_ms, err) != 0)
		return -1;
	rc = sb_http_perform_auth(gc_client(), &req, gc_credentials(), err);
	if (rc == 0)
		*response = pnstrdup(req.response.data ? req.response.data : "", req.response.len);
	sb_http_request_cleanup(&req);
	return rc;
}

/*
 * sb_gc_run_start starts one attempt of a Cloud Run Admin API call on the
 * connection cache without waiting (an event loop drives it, see
 * sb_http_start); body is borrowed and must outlive the attempt.  A
 * jobs:run is never sent twice by this attempt.  Getting a token may block
 * (rarely: it is cached), at most SB_GC_TOKEN_WAIT_MS.
 */
int
sb_gc_run_start(SbHttpRequest *req, const char *method, const char *path, const char *body,
				int64 timeout_ms, SbError *err)
{
	const char *header;
	SbAuth	   *auth = gc_credentials();

	if (run_request(req, method, path, body, timeout_ms, err) != 0)
		return -1;
	/* A token fetch (the cached one expired) blocks: briefly. */
	header = sb_auth_header_ex(auth, gc_client(), Min(req->deadline_ms, sb_now_ms() + SB_GC_TOKEN_WAIT_MS),
							   &req->policy, err);
	if ((header == NULL && err->kind != SB_OK) ||
		sb_http_request_set_auth_header(req, header, err) != 0 ||
		sb_http_start(gc_client(), req, err) != 0)
	{
		sb_http_request_cleanup(req);
		return -1;
	}
	return 0;
}

/*
 * sb_gc_run_end reads a finished call started with sb_gc_run_start: 0 with
 * the response body (palloc'd) in *response, or -1 with *err set (a 401
 * drops the cached token).  Cleans up req.
 */
int
sb_gc_run_end(SbHttpRequest *req, char **response, SbError *err)
{
	int			rc = sb_http_finish(req, err);

	*response = NULL;
	if (rc == 0)
		*response = pnstrdup(req->response.data ? req->response.data : "", req->response.len);
	else if (req->status == 401 && gc_auth != NULL)
		sb_auth_invalidate(gc_auth);
	sb_http_request_cleanup(req);
	return rc;
}
