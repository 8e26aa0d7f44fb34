/*
 * gcloud.c
 *		Google Cloud access from a backend: GCS and Cloud Run calls made with
 *		the shared client in src/common, configured from the
 *		cloudrun_sandbox.* settings, interruptible by query cancel, and failing
 *		with SQL errors whose hints name the setting to fix.
 */
#include "gcloud.h"

#include "miscadmin.h"
#include "utils/memutils.h"

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
	require_setting("cloudrun_sandbox.job", sb_job);
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
}

/* sb_gc_session_prefix returns "<prefix>/sessions/<session>/" (no leading slash). */
char *
sb_gc_session_prefix(const char *session)
{
	if (sb_prefix[0] == '\0')
		return psprintf("sessions/%s/", session);
	return psprintf("%s/sessions/%s/", sb_prefix, session);
}

/* sb_gc_object returns the name of one of a session's objects. */
char *
sb_gc_object(const char *session, const char *suffix)
{
	return psprintf("%s%s", sb_gc_session_prefix(session), suffix);
}

void
sb_gc_raise(const SbError *err, const char *what, SbGcNotFound nf)
{
	if (err->kind == SB_ERR_CANCELLED)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("%s: cancelled", what)));
	}
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
 * sb_gc_run_call makes one Cloud Run Admin API call: method, a path below
 * the endpoint ("/v2/projects/..."), an optional JSON body.  On success the
 * response body (palloc'd) is in *response.
 */
int
sb_gc_run_call(const char *method, const char *path, const char *body, int64 timeout_ms,
			   char **response, SbError *err)
{
	SbHttpRequest req;
	char	   *url = psprintf("%s%s", sb_run_endpoint, path);
	int			rc;

	*response = NULL;
	if (sb_http_request_init(&req, method, url, err) != 0)
		return -1;
	gc_policy(&req.policy);
	req.deadline_ms = sb_now_ms() + timeout_ms;
	if (body != NULL)
	{
		sb_http_request_set_body(&req, body, strlen(body));
		if (sb_http_request_add_header(&req, err, "Content-Type: application/json") != 0)
		{
			sb_http_request_cleanup(&req);
			return -1;
		}
	}
	rc = sb_http_perform_auth(gc_client(), &req, gc_credentials(), err);
	if (rc == 0)
		*response = pnstrdup(req.response.data ? req.response.data : "", req.response.len);
	sb_http_request_cleanup(&req);
	return rc;
}
