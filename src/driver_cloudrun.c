/*
 * driver_cloudrun.c
 *		The Cloud Run backend: each command is one Cloud Run Jobs execution of
 *		the executor; the session's state lives in Cloud Storage.
 *
 * Objects, under cloudrun_sandbox.prefix in cloudrun_sandbox.bucket:
 *		sessions/<s>/state.json			cwd, env, workspace snapshot name; its GCS
 *										generation is the session's generation
 *		sessions/<s>/requests/<id>.json	what to run (written here, create-only)
 *		sessions/<s>/results/<id>.json	what happened (written by the executor,
 *										create-only)
 *		sessions/<s>/workspace/<id>.tar	the workspace after execution <id>
 *
 * A run: upload the request, POST jobs/{job}:run with the request's object
 * name as the container's arguments, then wait on the returned Operation
 * (operations/{op}:wait in short slices, so a query cancel is noticed), then
 * read the result object.  Cancelling a run cancels the execution.  The
 * executor commits the new state.json itself, with ifGenerationMatch.
 *
 * A run keeps the job and the object names it started with: which job (and
 * so which service account) and prefix a session uses is its owner's (see
 * gcloud.c), chosen when the run is staged or re-attached; runs of
 * different jobs never share a batch.
 *
 * In the background worker nothing waits on the network: every call of a
 * run -- the request upload, jobs:run, the search for its execution, the
 * result lookups, the execution checks, a cancel -- is one attempt at a
 * time on the connection cache's curl multi handle, whose sockets the
 * worker's event loop waits on (sb_cloud_wait_fds, sb_cloud_drive); step()
 * reads what has come in and starts what is due.  A call that fails in a
 * way that may pass (the network, a timeout, a 5xx, a 429, an expired
 * token) is tried again later with backoff; it never fails the run.  A run
 * fails when Cloud Run says so: jobs:run is refused, or the execution ended
 * without a result (and at the worker's deadline, the command's timeout
 * plus EXECUTION_MARGIN_S, after which Cloud Run has stopped the execution
 * itself).
 *
 * jobs:run is not idempotent: after an answer that may have been lost (a
 * reset, a timeout, a 5xx) the execution is looked for by its request
 * (find_execution) before jobs:run is tried again; and the executor refuses
 * to run a request another execution has claimed (requests/<id>.claim,
 * create-only), so a twin execution writes nothing.
 */
#include "driver.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "gcloud.h"
#include "live.h"
#include "cloud/runners.h"
#include "port.h"
#include "utils/timestamp.h"

/* How long one operations:wait call may block (the emulator and Google cap it). */
#define WAIT_SLICE "2s"
#define CALL_TIMEOUT_MS 60000
/* Cloud Run gets this much beyond the command's timeout for start-up and I/O. */
#define EXECUTION_MARGIN_S 120
/* One attempt of the worker's asynchronous calls may take this long. */
#define ASYNC_CALL_TIMEOUT_MS 30000
/* The worker asks whether an execution ended this often (then less often). */
#define CHECK_FIRST_MS 2000
#define CHECK_MAX_MS 10000
/* Backoff of a call that failed in a way that may pass: doubling, capped. */
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000
/* Pages of a job's executions looked through for a request's execution. */
#define FIND_MAX_PAGES 20
/* How long cancelling an execution may take, beyond the limit of the call that cancels it. */
#define CANCEL_TIMEOUT_MS 3000

/*
 * CloudCall is one of the worker's asynchronous calls: the attempt in
 * progress on the connection cache (req), or the time before which it is
 * not started again after a failure that may pass.
 */
typedef struct CloudCall
{
	SbHttpRequest *req;			/* in TopMemoryContext, or NULL */
	int64		started_ms;		/* when req was started */
	int64		retry_at;		/* sb_now_ms() before which it is not started again */
	int			failures;		/* transient failures in a row */
} CloudCall;

typedef struct CloudBatch CloudBatch;

/* The steps of a run through the session's runner; see "Session runners" below. */
typedef enum RunnerStep
{
	RN_NONE = 0,				/* a cold execution of its own */
	RN_LEASE_READ,				/* reading runner.json */
	RN_LEASE_WRITE,				/* writing a new lease */
	RN_POST,					/* uploading the request to the runner's inbox */
	RN_START,					/* jobs:run of a new runner */
	RN_NOTE,					/* the lease again, with the execution's name */
	RN_WAIT,					/* waiting for the result */
	RN_WITHDRAW,				/* giving the runner up: our claim */
	RN_REFETCH,					/* reading the request back for a cold execution */
	RN_WITHDRAW_CHECK			/* the claim was there: ours (a lost answer), or the runner's? */
} RunnerStep;

struct SbRun
{
	char	   *session;
	char	   *dir;			/* the session's object prefix, "P/sessions/S/" */
	char	   *job;			/* /v2/projects/P/locations/R/jobs/J, the owner's */
	int64		id;
	char	   *request_object;
	char	   *result_object;
	char	   *operation;		/* projects/.../operations/... */
	char	   *execution;		/* projects/.../jobs/.../executions/... */
	bool		done;
	bool		cancelled;
	char	   *failure;		/* the Operation's error message, if any */
	char	   *result;
	size_t		result_len;
	int64		timeout_s;		/* the execution's timeout */
	int			batch_size;		/* requests carried by the execution */
	/* The worker's asynchronous run (sb_driver_nonblocking). */
	char	   *request;		/* the request document, until it is uploaded */
	bool		uploaded;
	bool		upload_refused;	/* an upload attempt was refused (a final answer) */
	bool		upload_unsure;	/* an attempt ended in a way that may have stored it */
	CloudBatch *batch;			/* its launch, until the execution is known */
	CloudCall	upload;			/* the request upload */
	CloudCall	lookup;			/* a download of the result object */
	CloudCall	check;			/* a GET of the execution */
	bool		started;		/* its jobs:run happened (or its execution was found) */
	int64		ended_ms;		/* when Cloud Run said the execution ended, or 0 */
	int			check_ms;		/* the interval between execution checks */
	/* The synchronous run's execution checks, when jobs:run's answer was lost. */
	int64		next_check_ms;
	/* Through the session's runner; see "Session runners" below. */
	int			rstep;			/* RunnerStep; RN_NONE: a cold execution of its own */
	SbRunnerInfo runner;		/* the runner it uses */
	bool		fresh_runner;	/* this run starts it */
	bool		lease_existed;	/* runner.json was there (unusable): overwritten */
	bool		taken;			/* the runner took the request (our withdrawal failed) */
	char		mine[SB_RUNNER_TOKEN_LEN + 1];	/* the token of a lease this run wrote, or "" */
	char	   *upload_object;	/* what upload_start uploads: the inbox's object or request_object */
	char	   *lease_object;
	char	   *inbox_object;
	char	   *claim_object;
	char	   *lease;			/* the lease document while it is written */
	const char *request_ref;	/* synchronous: the caller's request, for a fallback */
	int64		take_deadline_ms;	/* the runner is given up if it has not taken it by then; 0: never */
	int64		poll_from_ms;	/* synchronous: when the result lookups began */
	CloudCall	rcall;			/* the worker's runner calls: lease, withdrawal, refetch */
};

/* Asynchronous calls the worker has in progress on the connection cache. */
static int	calls_in_progress = 0;

static bool runner_wanted(SbRun *run);
static void runner_stage_async(SbRun *run);
static bool runner_launch_sync(SbRun *run, const char *request);
static bool runner_step_sync(SbRun *run);
static bool lease_parse(const char *data, size_t len, SbRunnerInfo *info, const char *job);
#define LEASE_MAX ((size_t) 64 * 1024)
/* A lease whose execution is still not named this long after it was written names none. */
#define LEASE_UNNAMED_MS (2 * 60 * 1000)


/* What delete_prefix passes to delete_one for each object. */
typedef struct DeleteArgs
{
	SbGcsConfig cfg;
	int			failed;
	SbError		first;			/* the first failure */
} DeleteArgs;

/* delete_one deletes one listed object, keeping the first failure. */
static int
delete_one(void *arg, const char *name, int64_t generation, int64_t size)
{
	DeleteArgs *a = arg;
	SbError		err;

	if (sb_gcs_delete(&a->cfg, name, SB_GCS_ANY_GENERATION, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND && a->failed++ == 0)
		a->first = err;
	return 0;
}

/* delete_prefix deletes every object under prefix; false with *err if one is left. */
static bool
delete_prefix(const char *prefix, SbError *err)
{
	DeleteArgs	a;

	memset(&a, 0, sizeof(a));
	sb_gc_gcs(&a.cfg);
	if (sb_gcs_list(&a.cfg, prefix, delete_one, &a, err) != 0)
		return false;
	if (a.failed > 0)
		*err = a.first;
	return a.failed == 0;
}

/*
 * named_by_id says whether a storage key is a session id's, "_<digits>":
 * never reused, and no 0.1.0 name (a legacy key) starts with "_".
 */
static bool
named_by_id(const char *session)
{
	if (session[0] != '_' || session[1] == '\0')
		return false;
	for (const char *p = session + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/*
 * cloud_prepare_session checks the cloud settings; a fresh session must not
 * inherit objects left under its key.  A key named by the session's id is
 * never reused (and a rolled-back creation's objects are the reaper's), so
 * it has nothing to clear: only a legacy key (a session's name, 0.1.0) is
 * cleared, a blocking listing and deletes, so never in the worker's loop
 * (its creation, in the user's backend, cleared it).
 */
static void
cloud_prepare_session(const char *session, bool fresh)
{
	SbError		err;

	sb_gc_require_settings();
	if (fresh && !named_by_id(session) && !sb_driver_nonblocking &&
		!delete_prefix(sb_gc_session_prefix(session), &err))
		sb_gc_raise(&err, "could not clear the session's objects", SB_GC_NOT_FOUND_BUCKET);
}

/* cloud_storage_location is the session's object prefix under its owner's settings. */
static char *
cloud_storage_location(const char *session)
{
	return pstrdup(sb_gc_session_prefix(session));
}

/*
 * stop_runner cancels the execution of a session's runner, if its lease
 * names one (the session is gone; the runner would also stop by itself when
 * it finds its lease gone).  Best effort: only logged if it fails.
 */
static void
stop_runner(const char *prefix)
{
	SbGcsConfig cfg;
	SbError		err;
	SbRunnerInfo info;
	char	   *data;
	size_t		len;
	char	   *response;

	sb_gc_gcs(&cfg);
	sb_runner_forget(prefix, NULL);
	if (sb_gcs_download(&cfg, psprintf("%srunner.json", prefix), LEASE_MAX, &data, &len, NULL,
						&err) != 0)
		return;
	if (lease_parse(data, len, &info, NULL) && info.execution[0] != '\0' &&
		sb_gc_run_call("POST", psprintf("/v2/%s:cancel", info.execution), "{}", CANCEL_TIMEOUT_MS,
					   &response, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND && err.kind != SB_ERR_PRECONDITION &&
		strcmp(err.reason, "FAILED_PRECONDITION") != 0)
		elog(LOG, "cloudrun_sandbox: could not stop the session runner %s: %s", info.execution,
			 err.message);
	free(data);
}

/* cloud_delete_storage deletes the objects of a session that is gone (its runner stopped first). */
static void
cloud_delete_storage(const char *session, const char *location)
{
	SbError		err;

	sb_gc_require_settings();
	stop_runner(location ? location : sb_gc_session_prefix(session));
	if (!delete_prefix(location ? location : sb_gc_session_prefix(session), &err))
		sb_gc_raise(&err, "could not delete the session's objects", SB_GC_NOT_FOUND_BUCKET);
}

static bool
cloud_load_state(const char *session, SbState *state)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;
	int64_t		generation;
	char		errbuf[256];
	char	   *name = sb_gc_object(session, "state.json");

	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, name, SB_MAX_ENV_BYTES * 2, &data, &len, &generation, &err) != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND && strcmp(err.reason, "notFound") == 0 &&
			strstr(err.message, "ucket") == NULL)
			return false;
		sb_gc_raise(&err, "could not read the session's state", SB_GC_NOT_FOUND_BUCKET);
	}
	if (!sb_state_decode(data, len, state, errbuf, sizeof(errbuf)))
	{
		free(data);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("session state object \"%s\" is damaged", name),
				 errdetail("%s", errbuf)));
	}
	free(data);
	state->generation = generation;
	return true;
}

static void
cloud_store_state(const char *session, const SbState *state)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *text = sb_state_encode(state);
	int64_t		generation;

	sb_gc_gcs(&cfg);
	/* Only a brand-new session's state is written here; the executor does the rest. */
	if (sb_gcs_upload(&cfg, sb_gc_object(session, "state.json"), text, strlen(text), 0,
					  &generation, &err) != 0)
		sb_gc_raise(&err, "could not write the session's state", SB_GC_NOT_FOUND_BUCKET);
	((SbState *) state)->generation = generation;
}

/* request_timeout_s reads the command's timeout back out of the request document. */
static int64
request_timeout_s(const char *request)
{
	json_t	   *root = json_loads(request, 0, NULL);
	int64		ms = 0;

	if (root != NULL)
	{
		ms = json_integer_value(json_object_get(root, "timeout_ms")) +
			json_integer_value(json_object_get(root, "kill_grace_ms"));
		json_decref(root);
	}
	return (ms + 999) / 1000 + EXECUTION_MARGIN_S;
}

/* job_path returns /v2/projects/P/locations/R/jobs/J, J being the chosen role's job. */
static char *
job_path(void)
{
	return psprintf("/v2/projects/%s/locations/%s/jobs/%s", sb_project, sb_region, sb_gc_job());
}

/* run_init names a run's objects and job, as its owner's settings say now. */
static SbRun *
run_init(const char *session, int64 id)
{
	SbRun	   *run = palloc0(sizeof(SbRun));

	run->session = pstrdup(session);
	run->id = id;
	run->dir = sb_gc_session_prefix(session);
	run->job = job_path();
	run->request_object = psprintf("%srequests/" INT64_FORMAT ".json", run->dir, id);
	run->result_object = psprintf("%sresults/" INT64_FORMAT ".json", run->dir, id);
	run->upload_object = run->request_object;
	run->check_ms = CHECK_FIRST_MS;
	return run;
}

/* The largest result document: output capped, escaped at most sixfold, state. */
#define RESULT_MAX ((size_t) sb_max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES + 1024 * 1024)

/* may_pass says whether a failed call may succeed later (look again), rather than being an answer. */
static bool
may_pass(const SbError *err)
{
	switch (err->kind)
	{
		case SB_ERR_NETWORK:
		case SB_ERR_TIMEOUT:
		case SB_ERR_HTTP:
		case SB_ERR_AUTH:
		case SB_ERR_CANCELLED:
			return true;
		default:
			return false;
	}
}

/*
 * may_have_started says whether a failed jobs:run may have started an
 * execution all the same (its answer lost: a reset, a timeout, a 5xx),
 * unlike a 429 or a 401, which Cloud Run sends before doing anything.
 */
static bool
may_have_started(const SbError *err)
{
	return may_pass(err) && err->http_status != 429 && err->kind != SB_ERR_AUTH;
}

/* list_path is the path of one page of a job's executions (page: NULL for the first). */
static char *
list_path(const char *job, const char *page)
{
	return psprintf("%s/executions?pageSize=100%s%s", job, page ? "&pageToken=" : "", page ? page : "");
}

/*
 * find_in_page looks through one page of a job's executions for one that
 * ran request_object: its name (palloc'd) or NULL; *next gets the next
 * page's token (palloc'd), NULL on the last page.
 */
static char *
find_in_page(const char *response, const char *request_object, char **next)
{
	json_t	   *list = json_loads(response, 0, NULL);
	json_t	   *item;
	size_t		i;
	char	   *found = NULL;
	const char *token = json_string_value(json_object_get(list, "nextPageToken"));

	json_array_foreach(json_object_get(list, "executions"), i, item)
	{
		json_t	   *args = json_object_get(json_array_get(json_object_get(json_object_get(item, "template"),
																		  "containers"), 0), "args");
		json_t	   *a;
		size_t		j;

		json_array_foreach(args, j, a)
			if (found == NULL && json_is_string(a) && strcmp(json_string_value(a), request_object) == 0 &&
				json_is_string(json_object_get(item, "name")))
				found = pstrdup(json_string_value(json_object_get(item, "name")));
	}
	*next = token ? pstrdup(token) : NULL;
	if (list != NULL)
		json_decref(list);
	return found;
}

/* find_execution looks through a job's recent executions for one that ran request_object. */
static char *
find_execution(const char *job, const char *request_object)
{
	char	   *page = NULL;

	for (int pages = 0; pages < FIND_MAX_PAGES; pages++)
	{
		SbError		err;
		char	   *response;
		char	   *found;

		if (sb_gc_run_call("GET", list_path(job, page), NULL, CALL_TIMEOUT_MS, &response, &err) != 0)
			sb_gc_raise(&err, "could not list the job's executions", SB_GC_NOT_FOUND_JOB);
		found = find_in_page(response, request_object, &page);
		if (found != NULL || page == NULL)
			return found;
	}
	return NULL;
}

/*
 * read_operation reads jobs:run's answer, a long-running Operation: its
 * name and its execution's (NULL if not given), palloc'd in cxt.
 */
static bool
read_operation(const char *response, MemoryContext cxt, char **operation, char **execution)
{
	json_t	   *op = json_loads(response, 0, NULL);
	const char *name = json_string_value(json_object_get(op, "name"));
	const char *exec = json_string_value(json_object_get(json_object_get(op, "metadata"), "name"));

	*operation = name ? MemoryContextStrdup(cxt, name) : NULL;
	*execution = exec ? MemoryContextStrdup(cxt, exec) : NULL;
	if (op != NULL)
		json_decref(op);
	return name != NULL;
}

/* no_operation raises the error of a jobs:run answer without an operation. */
static void
no_operation(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("Cloud Run answered jobs.run without an operation name")));
}

/* run_body is jobs:run's body: the container's arguments name the requests. */
static char *
run_body(char **objects, int n, int64 timeout_s)
{
	json_t	   *args = json_pack("[ss]", "cloud", sb_bucket);
	json_t	   *body;
	char	   *text;

	for (int i = 0; i < n; i++)
		json_array_append_new(args, json_string(objects[i]));
	body = json_pack("{s{s[{so}]s:s}}", "overrides", "containerOverrides", "args", args,
					 "timeout", psprintf(INT64_FORMAT "s", timeout_s));
	if (n > 1)
		json_object_set_new(json_object_get(body, "overrides"), "taskCount", json_integer(n));
	text = json_dumps(body, JSON_COMPACT);	/* palloc'd: jansson allocates with palloc */
	json_decref(body);
	return text;
}

/* backoff_sleep waits ms (a retry's backoff), noticing a query cancel. */
static void
backoff_sleep(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * run_sync makes jobs:run (synchronous callers): after an answer that may
 * have been lost, the execution is looked for by its first request (first)
 * before jobs:run is tried again, so that one call never starts two
 * executions.  True with the operation (NULL when found by the search) and
 * the execution (NULL if not given); false with *err set.
 */
static bool
run_sync(const char *job, const char *body, const char *first, char **operation,
		 char **execution, SbError *err)
{
	int64		until = sb_now_ms() + CALL_TIMEOUT_MS;
	long		delay = BACKOFF_FIRST_MS;

	for (;;)
	{
		char	   *response;

		*operation = *execution = NULL;
		if (sb_gc_run_call("POST", psprintf("%s:run", job), body, Max(until - sb_now_ms(), 1),
						   &response, err) == 0)
		{
			if (!read_operation(response, CurrentMemoryContext, operation, execution))
				no_operation();
			return true;
		}
		if (may_have_started(err) && (*execution = find_execution(job, first)) != NULL)
			return true;
		if (!may_pass(err) || err->kind == SB_ERR_CANCELLED || sb_now_ms() + delay >= until)
			return false;
		backoff_sleep(delay);
		delay = Min(delay * 2, 5000);
	}
}

/* start_sync starts the requests of runs as one execution (synchronous callers). */
static void
start_sync(SbRun **runs, int n, const char *body)
{
	SbError		err;
	char	   *operation;
	char	   *execution;

	if (!run_sync(runs[0]->job, body, runs[0]->request_object, &operation, &execution, &err))
	{
		SbGcsConfig cfg;
		SbError		ignored;

		/* Leave nothing half-written: the requests go when their run cannot start. */
		sb_gc_gcs(&cfg);
		for (int i = 0; i < n; i++)
			(void) sb_gcs_delete(&cfg, runs[i]->request_object, SB_GCS_ANY_GENERATION, &ignored);
		sb_gc_raise(&err, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
	}
	for (int i = 0; i < n; i++)
	{
		/* Each run lives in its own memory context (the worker's flights outlive this call). */
		MemoryContext cxt = GetMemoryChunkContext(runs[i]);

		runs[i]->operation = operation ? MemoryContextStrdup(cxt, operation) : NULL;
		runs[i]->execution = execution ? MemoryContextStrdup(cxt, execution) : NULL;
		runs[i]->batch_size = n;
		runs[i]->started = true;
	}
}

/*
 * The worker's asynchronous calls.  Each is one attempt at a time on the
 * connection cache; call_due says whether a new attempt may start,
 * call_answered whether the one in progress has its answer; the *_end
 * functions read it and set the backoff of a failure that may pass.
 */

/* call_due says whether the call has no attempt in progress and may start one now. */
static bool
call_due(const CloudCall *c)
{
	return c->req == NULL && sb_now_ms() >= c->retry_at;
}

/* call_answered says whether the call's attempt in progress has ended. */
static bool
call_answered(const CloudCall *c)
{
	return c->req != NULL && c->req->finished;
}

/* call_note sets the call's backoff after a failure that may pass; clears it after anything else. */
static void
call_note(CloudCall *c, int rc, const SbError *err)
{
	int64		ceiling = BACKOFF_FIRST_MS;

	if (rc == 0 || !may_pass(err))
	{
		c->failures = 0;
		c->retry_at = 0;
		return;
	}
	for (int i = 0; i < c->failures && ceiling < BACKOFF_MAX_MS; i++)
		ceiling *= 2;
	ceiling = Min(ceiling, BACKOFF_MAX_MS);
	c->failures++;
	c->retry_at = sb_now_ms() + ceiling / 2 +
		(int64) pg_prng_uint64_range(&pg_global_prng_state, 0, ceiling / 2);
}

/* call_begin gives the call a request for its next attempt. */
static SbHttpRequest *
call_begin(CloudCall *c)
{
	c->req = MemoryContextAllocZero(TopMemoryContext, sizeof(SbHttpRequest));
	return c->req;
}

/* call_started notes an attempt started (rc 0), or forgets one that could not (the error's backoff). */
static bool
call_started(CloudCall *c, int rc, const SbError *err)
{
	if (rc != 0)
	{
		pfree(c->req);
		c->req = NULL;
		call_note(c, rc, err);
		return false;
	}
	c->started_ms = sb_now_ms();
	calls_in_progress++;
	return true;
}

/* call_taken forgets an attempt whose answer was read (and its request cleaned up). */
static int
call_taken(CloudCall *c, int rc, const SbError *err)
{
	pfree(c->req);
	c->req = NULL;
	calls_in_progress--;
	call_note(c, rc, err);
	return rc;
}

/* call_drop abandons the call's attempt in progress, if any. */
static void
call_drop(CloudCall *c)
{
	if (c->req == NULL)
		return;
	sb_http_request_cleanup(c->req);
	pfree(c->req);
	c->req = NULL;
	calls_in_progress--;
}

/* async_gcs is the GCS configuration of an asynchronous attempt. */
static void
async_gcs(SbGcsConfig *cfg)
{
	sb_gc_gcs(cfg);
	cfg->timeout_ms = ASYNC_CALL_TIMEOUT_MS;
	cfg->token_timeout_ms = SB_GC_TOKEN_WAIT_MS;
}

/* call_start_run starts a Cloud Run Admin API call (body borrowed: it must outlive the attempt). */
static bool
call_start_run(CloudCall *c, const char *method, const char *path, const char *body, SbError *err)
{
	return call_started(c, sb_gc_run_start(call_begin(c), method, path, body, ASYNC_CALL_TIMEOUT_MS,
										   err), err);
}

/* call_end_run reads a Cloud Run Admin API call's answer (palloc'd in *response). */
static int
call_end_run(CloudCall *c, char **response, SbError *err)
{
	return call_taken(c, sb_gc_run_end(c->req, response, err), err);
}

/* call_start_upload starts an upload (data borrowed: it must outlive the attempt). */
static bool
call_start_upload(CloudCall *c, const char *object, const char *data, size_t len,
				  int64 if_generation_match, SbError *err)
{
	SbGcsConfig cfg;

	async_gcs(&cfg);
	return call_started(c, sb_gcs_upload_start(&cfg, object, data, len, if_generation_match,
											   call_begin(c), err), err);
}

/* call_end_upload reads an upload's answer. */
static int
call_end_upload(CloudCall *c, SbError *err)
{
	SbGcsConfig cfg;

	async_gcs(&cfg);
	return call_taken(c, sb_gcs_upload_end(&cfg, c->req, NULL, err), err);
}

/* call_start_download starts a download of an object. */
static bool
call_start_download(CloudCall *c, const char *object, size_t max, SbError *err)
{
	SbGcsConfig cfg;

	async_gcs(&cfg);
	return call_started(c, sb_gcs_download_start(&cfg, object, max, call_begin(c), err), err);
}

/* call_end_download reads a download's answer (the bytes malloc'd in *data). */
static int
call_end_download(CloudCall *c, char **data, size_t *len, SbError *err)
{
	SbGcsConfig cfg;

	async_gcs(&cfg);
	return call_taken(c, sb_gcs_download_end(&cfg, c->req, data, len, err), err);
}

/*
 * Detached calls: cancels the worker sent for runs it no longer follows,
 * tried again (with backoff) while they fail in a way that may pass.
 */
#define DETACHED_TRIES 8

typedef struct Detached
{
	CloudCall	call;
	bool		upload;			/* an upload of target ("{}"), else a POST to it */
	bool		create_only;	/* the upload only if target does not exist (a withdrawal) */
	char	   *target;
	int			tries;
} Detached;

static List *detached = NIL;	/* in TopMemoryContext */
static int64 detached_due_ms = 0;	/* when one is due to start again, or 0 */

/* detached_start starts a detached call's attempt; false if it is over (a final failure). */
static bool
detached_start(Detached *d)
{
	SbError		err;

	if (d->upload ? call_start_upload(&d->call, d->target, "{}", 2,
									  d->create_only ? 0 : SB_GCS_ANY_GENERATION, &err)
		: call_start_run(&d->call, "POST", d->target, "{}", &err))
		return true;
	return may_pass(&err) && ++d->tries < DETACHED_TRIES;
}

/* detach sends a cancel the worker does not wait for. */
static void
detach_ex(bool upload, bool create_only, const char *target)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Detached   *d = palloc0(sizeof(Detached));

	d->upload = upload;
	d->create_only = create_only;
	d->target = pstrdup(target);
	if (detached_start(d))
		detached = lappend(detached, d);
	else
	{
		pfree(d->target);
		pfree(d);
	}
	MemoryContextSwitchTo(old);
}

static void
detach(bool upload, const char *target)
{
	detach_ex(upload, false, target);
}

/* detached_drive reads the detached calls' answers and starts again those that are due. */
static void
detached_drive(void)
{
	ListCell   *lc;

	detached_due_ms = 0;
	foreach(lc, detached)
	{
		Detached   *d = lfirst(lc);
		bool		over = false;

		if (call_answered(&d->call))
		{
			SbError		err;
			char	   *response;
			int			rc = d->upload ? call_end_upload(&d->call, &err)
				: call_end_run(&d->call, &response, &err);

			over = rc == 0 || !may_pass(&err) || ++d->tries >= DETACHED_TRIES;
			/* An execution that already ended cannot be cancelled: fine. */
			if (rc != 0 && over && err.kind != SB_ERR_NOT_FOUND && err.kind != SB_ERR_PRECONDITION &&
				strcmp(err.reason, "FAILED_PRECONDITION") != 0)
				elog(LOG, "cloudrun_sandbox: could not cancel %s: %s", d->target, err.message);
		}
		else if (call_due(&d->call))
			over = !detached_start(d);
		if (over)
		{
			call_drop(&d->call);
			pfree(d->target);
			pfree(d);
			detached = foreach_delete_current(detached, lc);
			continue;
		}
		if (d->call.req == NULL && (detached_due_ms == 0 || d->call.retry_at < detached_due_ms))
			detached_due_ms = d->call.retry_at;
	}
}

/*
 * CloudBatch is the worker's launch of staged runs as one execution: once
 * every request is uploaded, jobs:run; after an answer that may have been
 * lost, a search of the job's executions for the first request, then
 * jobs:run again if there is none.  Every run of the batch drives it from
 * its own step; a run that stops waiting (cancelled, failed) leaves it,
 * and the last one to leave frees it.
 */
typedef enum BatchState
{
	BATCH_UPLOADING,			/* waiting for the requests' uploads */
	BATCH_RUNNING,				/* jobs:run */
	BATCH_FINDING,				/* looking for an execution a lost answer started */
	BATCH_STARTED,				/* the execution is known */
	BATCH_FAILED				/* Cloud Run refused it: failure says why */
} BatchState;

struct CloudBatch
{
	MemoryContext cxt;			/* this batch and everything it holds */
	BatchState	state;
	char	   *job;
	int			n;
	int			cap;			/* room for this many runs */
	SbRun	  **runs;			/* NULL where a run has left */
	char	  **objects;		/* the runs' request objects */
	int64		timeout_s;
	char	   *body;			/* jobs:run's body, as last sent */
	char	   *runner_body;	/* a session runner's launch: its body (objects[0]: its token) */
	int			sent;			/* requests it carries */
	char	   *first;			/* the first of them, which the search looks for */
	CloudCall	call;			/* jobs:run, or a page of the job's executions */
	char	   *page;			/* while finding: the page to read, NULL for the first */
	int			pages;
	char	   *operation;
	char	   *execution;
	SbError		failure;
};

/*
 * The batch launched last, while its requests are still being uploaded:
 * runs staged meanwhile join it (same job, up to max_batch), so that the
 * worker's quick turns do not split what one jobs:run can carry.
 */
static CloudBatch *open_batch = NULL;

/*
 * batch_new puts staged runs (all of one job) into the open batch, or a new
 * one; alone: into a new batch that no other run joins.
 */
static void
batch_new(SbRun **runs, int n, bool alone)
{
	CloudBatch *b = alone ? NULL : open_batch;

	if (b == NULL || b->state != BATCH_UPLOADING || strcmp(b->job, runs[0]->job) != 0 ||
		b->n + n > b->cap)
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox batch",
												  ALLOCSET_SMALL_SIZES);

		b = MemoryContextAllocZero(cxt, sizeof(CloudBatch));
		b->cxt = cxt;
		b->state = BATCH_UPLOADING;
		b->job = MemoryContextStrdup(cxt, runs[0]->job);
		b->cap = Max(sb_max_batch, n);
		b->runs = MemoryContextAlloc(cxt, sizeof(SbRun *) * b->cap);
		b->objects = MemoryContextAlloc(cxt, sizeof(char *) * b->cap);
		if (!alone)
			open_batch = b;
	}
	for (int i = 0; i < n; i++)
	{
		b->runs[b->n] = runs[i];
		b->objects[b->n++] = MemoryContextStrdup(b->cxt, runs[i]->request_object);
		b->timeout_s = Max(b->timeout_s, runs[i]->timeout_s);
		runs[i]->batch = b;
	}
}

/* batch_leave takes a run out of its batch; the last one out frees it. */
static void
batch_leave(SbRun *run)
{
	CloudBatch *b = run->batch;
	bool		left = false;

	if (b == NULL)
		return;
	run->batch = NULL;
	for (int i = 0; i < b->n; i++)
	{
		if (b->runs[i] == run)
			b->runs[i] = NULL;
		left |= b->runs[i] != NULL;
	}
	if (!left)
	{
		if (open_batch == b)
			open_batch = NULL;
		call_drop(&b->call);
		MemoryContextDelete(b->cxt);
	}
}

/* batch_started records the batch's execution (found by the search, or jobs:run's answer). */
static void
batch_started(CloudBatch *b, const char *response, const char *found)
{
	if (response != NULL && !read_operation(response, b->cxt, &b->operation, &b->execution))
	{
		sb_error_set(&b->failure, SB_ERR_INTERNAL, 0, "",
					 "Cloud Run answered jobs.run without an operation name");
		b->state = BATCH_FAILED;
		return;
	}
	if (found != NULL)
		b->execution = MemoryContextStrdup(b->cxt, found);
	b->state = BATCH_STARTED;
	for (int i = 0; i < b->n; i++)
	{
		SbRun	   *run = b->runs[i];
		MemoryContext cxt;

		if (run == NULL)
			continue;
		cxt = GetMemoryChunkContext(run);
		run->operation = b->operation ? MemoryContextStrdup(cxt, b->operation) : NULL;
		run->execution = b->execution ? MemoryContextStrdup(cxt, b->execution) : NULL;
		run->batch_size = b->sent;
		run->started = true;
	}
}

/* batch_send starts jobs:run for the requests of the runs still in the batch. */
static void
batch_send(CloudBatch *b)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	char	  **objects = palloc(sizeof(char *) * b->n);
	SbError		err;

	b->sent = 0;
	for (int i = 0; i < b->n; i++)
		if (b->runs[i] != NULL)
			objects[b->sent++] = b->objects[i];
	b->first = objects[0];
	b->body = b->runner_body ? b->runner_body : run_body(objects, b->sent, b->timeout_s);
	MemoryContextSwitchTo(old);
	if (!call_start_run(&b->call, "POST", psprintf("%s:run", b->job), b->body, &err) &&
		!may_pass(&err))
	{
		b->failure = err;
		b->state = BATCH_FAILED;
	}
}

/* batch_drive makes progress on a batch's launch without waiting. */
static void
batch_drive(CloudBatch *b)
{
	SbError		err;
	char	   *response;
	char	   *found;
	char	   *next;

	if (b->state == BATCH_UPLOADING)
	{
		for (int i = 0; i < b->n; i++)
			if (b->runs[i] != NULL && !b->runs[i]->uploaded)
				return;
		b->state = BATCH_RUNNING;
		if (open_batch == b)
			open_batch = NULL;	/* closed: its jobs:run goes now */
	}
	if (b->state == BATCH_RUNNING)
	{
		if (call_due(&b->call))
			batch_send(b);
		if (!call_answered(&b->call))
			return;
		if (call_end_run(&b->call, &response, &err) == 0)
			batch_started(b, response, NULL);
		else if (may_have_started(&err))
		{
			/* Its answer may have been lost: look for the execution first. */
			b->state = BATCH_FINDING;
			b->page = NULL;
			b->pages = 0;
			b->call.retry_at = 0;
		}
		else if (!may_pass(&err))
		{
			b->failure = err;
			b->state = BATCH_FAILED;
		}
		return;
	}
	if (b->state != BATCH_FINDING)
		return;
	if (call_due(&b->call))
	{
		if (!call_start_run(&b->call, "GET", MemoryContextStrdup(b->cxt, list_path(b->job, b->page)),
							NULL, &err) && !may_pass(&err))
		{
			b->failure = err;
			b->state = BATCH_FAILED;
		}
		return;
	}
	if (!call_answered(&b->call))
		return;
	if (call_end_run(&b->call, &response, &err) != 0)
	{
		if (!may_pass(&err))
		{
			b->failure = err;
			b->state = BATCH_FAILED;
		}
		return;
	}
	found = find_in_page(response, b->first, &next);
	if (found != NULL)
		batch_started(b, NULL, found);
	else if (next != NULL && ++b->pages < FIND_MAX_PAGES)
		b->page = MemoryContextStrdup(b->cxt, next);
	else
		b->state = BATCH_RUNNING;	/* it never started: run it again */
}

/* upload_start starts (again) the upload of a run's request. */
static void
upload_start(SbRun *run)
{
	SbError		err;

	/* Ids are unique; a request already there is this one, re-launched after a restart. */
	if (!call_start_upload(&run->upload, run->upload_object, run->request, strlen(run->request),
						   SB_GCS_ANY_GENERATION, &err) && !may_pass(&err))
		sb_gc_raise(&err, "could not upload the request", SB_GC_NOT_FOUND_BUCKET);
}

/* run_release abandons the run's calls in progress and leaves its batch. */
static void
run_release(SbRun *run)
{
	call_drop(&run->upload);
	call_drop(&run->lookup);
	call_drop(&run->check);
	call_drop(&run->rcall);
	batch_leave(run);
}

/* cloud_stage uploads a request; the run starts with cloud_launch_batch(). */
static SbRun *
cloud_stage(const char *session, int64 id, const char *request)
{
	SbRun	   *run;
	SbGcsConfig cfg;
	SbError		err;

	sb_gc_require_settings();
	run = run_init(session, id);
	run->timeout_s = request_timeout_s(request);
	if (sb_driver_nonblocking)
	{
		/* The worker: the upload runs while the batch is formed. */
		run->request = pstrdup(request);
		if (runner_wanted(run))
			runner_stage_async(run);	/* its steps post it to the session's runner */
		else
			upload_start(run);
		return run;
	}

	sb_gc_gcs(&cfg);
	/* Ids are unique; a request already there is this one, re-launched after a restart. */
	if (sb_gcs_upload(&cfg, run->request_object, request, strlen(request), SB_GCS_ANY_GENERATION,
					  NULL, &err) != 0)
		sb_gc_raise(&err, "could not upload the request", SB_GC_NOT_FOUND_BUCKET);
	run->uploaded = true;
	return run;
}

/*
 * cloud_launch_batch starts staged runs as one Cloud Run execution: the
 * container's arguments name every request, and task i runs the i-th.  In
 * the worker it only forms the batch; the runs' steps launch it.
 */
static void
cloud_launch_batch(SbRun **runs, int n)
{
	char	  **objects = palloc(sizeof(char *) * n);
	int64		timeout_s = 0;

	for (int i = 0; i < n; i++)
	{
		if (strcmp(runs[i]->job, runs[0]->job) != 0)
			elog(ERROR, "runs of different Cloud Run jobs cannot share a batch");
		objects[i] = runs[i]->request_object;
		timeout_s = Max(timeout_s, runs[i]->timeout_s);
	}
	if (sb_driver_nonblocking)
	{
		/* A run through a runner is alone in its "batch" (cloud_batch_key): its steps launch it. */
		if (n == 1 && runs[0]->rstep != RN_NONE)
			return;
		batch_new(runs, n, false);
	}
	else
		start_sync(runs, n, run_body(objects, n, timeout_s));
}

static SbRun *
cloud_launch(const char *session, int64 id, const char *request, const SbPayload *upload)
{
	SbRun	   *run;

	/* Not binary_frames: an upload is in the request (or its transfer object). */
	if (upload != NULL)
		elog(ERROR, "the cloud driver takes no frame payload");
	if (!sb_driver_nonblocking && sb_cloud_runners)
	{
		sb_gc_require_settings();
		run = run_init(session, id);
		run->timeout_s = request_timeout_s(request);
		if (runner_wanted(run) && runner_launch_sync(run, request))
			return run;
		pfree(run);
	}
	run = cloud_stage(session, id, request);

	cloud_launch_batch(&run, 1);
	return run;
}

static int
cloud_wait_fds(SbRun *run, int *fds, int max_fds)
{
	return 0;					/* calls block in short slices instead */
}

/* keep_result copies a downloaded result (malloc'd, freed here) into the run. */
static void
keep_result(SbRun *run, char *data, size_t len)
{
	run->result = palloc(len + 1);
	memcpy(run->result, data, len);
	run->result[len] = '\0';
	run->result_len = len;
	free(data);
}

/* no_result raises the error of an execution that ended without the run's result. */
static void
no_result(SbRun *run)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("the Cloud Run execution ended without a result"),
			 errdetail("Execution %s: %s", run->execution ? run->execution : "(unknown)",
					   run->failure ? run->failure : "no error was reported"),
			 errhint("Look at the execution's logs; check that the job's container "
					 "runs cloudrun-sandbox-executor.")));
}

/* fetch_result downloads the result object of a finished run. */
static void
fetch_result(SbRun *run)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;

	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, run->result_object, RESULT_MAX, &data, &len, NULL, &err) != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND)
			no_result(run);
		sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
	}
	keep_result(run, data, len);
}

/* execution_completed says whether a GET of an execution says it has completed. */
static bool
execution_completed(const char *response)
{
	json_t	   *exec = json_loads(response, 0, NULL);
	bool		completed = exec != NULL && json_object_get(exec, "completionTime") != NULL;

	if (exec != NULL)
		json_decref(exec);
	return completed;
}

/* poll_execution asks (a synchronous call) whether the run's execution has completed. */
static bool
poll_execution(SbRun *run)
{
	SbError		err;
	char	   *response;

	if (run->execution == NULL)
		return true;			/* attached to a run whose result is already there */
	if (sb_gc_run_call("GET", psprintf("/v2/%s", run->execution), NULL, CALL_TIMEOUT_MS,
					   &response, &err) != 0)
	{
		if (err.kind == SB_ERR_CANCELLED)
			return false;
		sb_gc_raise(&err, "could not look at the Cloud Run execution", SB_GC_NOT_FOUND_OTHER);
	}
	return execution_completed(response);
}

/* upload_step makes progress on the upload of a run's request in the worker: true once done. */
static bool
upload_step(SbRun *run)
{
	SbError		err;

	if (run->uploaded)
		return true;
	if (call_answered(&run->upload))
	{
		if (call_end_upload(&run->upload, &err) == 0)
		{
			run->uploaded = true;
			pfree(run->request);
			run->request = NULL;
		}
		else if (!may_pass(&err))
		{
			run->upload_refused = true;
			sb_gc_raise(&err, "could not upload the request", SB_GC_NOT_FOUND_BUCKET);
		}
		else
			run->upload_unsure = true;
	}
	else if (call_due(&run->upload))
		upload_start(run);
	return run->uploaded;
}

/*
 * batch_step makes progress on the jobs:run of a run's batch in the worker:
 * true once its execution has started (the run has left the batch); raises
 * if Cloud Run refused it.
 */
static bool
batch_step(SbRun *run)
{
	CloudBatch *b = run->batch;

	if (b == NULL)
		return true;
	batch_drive(b);
	if (b->state == BATCH_FAILED)
	{
		SbError		failure = b->failure;

		batch_leave(run);
		sb_gc_raise(&failure, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
	}
	if (b->state != BATCH_STARTED)
		return false;
	batch_leave(run);
	run->check.retry_at = sb_now_ms() + CHECK_FIRST_MS;
	return true;
}

/*
 * launch_step makes progress on a run's launch in the worker without
 * waiting (its request's upload, then its batch's jobs:run): true once the
 * execution has started; raises if Cloud Run refused it.
 */
static bool
launch_step(SbRun *run)
{
	return upload_step(run) && batch_step(run);
}

/*
 * Session runners (issue 13).  With cloudrun_sandbox.cloud_runners on, a
 * command or file operation of a session is served by the session's runner:
 * one long-running execution of the executor (`runner BUCKET D TOKEN IDLE`)
 * that keeps the workspace on its disk and takes the session's requests
 * from the bucket as they come (src/executor/runner.c).  Objects, under D =
 * the session's prefix:
 *
 *		runner.json					the lease: which runner (token, execution) is
 *									the session's; "{}" or another token stops a
 *									runner (it looks every 10 s)
 *		runners/<T>/inbox/<id>.json	a request for runner T (written here)
 *		runners/<T>/claims/<id>		create-only: the runner's "taken", or our
 *									"withdrawn"; whichever is first decides
 *		results/<id>.json			the result, as a cold execution writes it
 *
 * A run reads the lease (the registry, src/cloud/runners.c, spares the read
 * when this server used the runner recently), or starts a runner: a new
 * lease (create-only), the request in its inbox, jobs:run, the lease again
 * with the execution's name.  Then it waits for the result as a cold run
 * does, checking now and then whether the runner's execution has ended.
 * The rule for giving a runner up: the runner's execution ended without the
 * result, or (a runner this run did not start) it has not taken the
 * request within cloud_runner_take_timeout.  Then the run withdraws the
 * request (its claim, create-only): if that succeeds the runner never runs
 * it, the lease is revoked, the runner's execution cancelled, and the
 * request runs as a cold execution of its own; if the runner had taken it,
 * the run keeps waiting, and a runner that ended without the result fails
 * the run ("lost"): a request is never run twice.
 */

#define RUNNER_TIMEOUT "86400s"
/* The largest request document (the executor's MAX_REQUEST_BYTES). */
#define REQUEST_MAX ((size_t) 64 * 1024 * 1024)
#define WITHDRAWN "{\"withdrawn\":true}"

/* registry_hit: the registry knows the session's runner, in the run's job. */
static bool
registry_hit(SbRun *run, SbRunnerInfo *info)
{
	return sb_runner_lookup(run->dir, info) && strcmp(info->job, run->job) == 0;
}

/* runner_wanted says whether a run goes through the session's runner. */
static bool
runner_wanted(SbRun *run)
{
	SbRunnerInfo info;

	if (!sb_cloud_runners || strlen(run->dir) >= SB_RUNNER_DIR_MAX)
		return false;
	/* At the caps (the server's, the owner's), only a session that has one keeps using it. */
	if (registry_hit(run, &info))
		return true;
	/* A session whose last runners could not work runs cold for a while (runners.c). */
	if (sb_runner_backing_off(run->dir))
		return false;
	return (sb_cloud_max_runners == 0 || sb_runner_count(InvalidOid) < sb_cloud_max_runners) &&
		(sb_cloud_max_runners_per_role == 0 ||
		 sb_runner_count(sb_gc_role()) < sb_cloud_max_runners_per_role);
}

/* runner_objects names a runner run's objects (the token is known). */
static void
runner_objects(SbRun *run)
{
	run->inbox_object = psprintf("%srunners/%s/inbox/" INT64_FORMAT ".json", run->dir,
								 run->runner.token, run->id);
	run->claim_object = psprintf("%srunners/%s/claims/" INT64_FORMAT, run->dir,
								 run->runner.token, run->id);
}

/*
 * lease_parse reads a lease; false if it names no runner, or (job not NULL)
 * a runner of another job: the session's owner now uses another job.
 */
static bool
lease_parse(const char *data, size_t len, SbRunnerInfo *info, const char *job)
{
	json_t	   *j = json_loadb(data, len, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "token"));
	const char *e = json_string_value(json_object_get(j, "execution"));
	const char *lj = json_string_value(json_object_get(j, "job"));
	json_t	   *at = json_object_get(j, "started_at");
	bool		ok = t != NULL && strlen(t) == SB_RUNNER_TOKEN_LEN &&
		strspn(t, "0123456789abcdef") == SB_RUNNER_TOKEN_LEN;

	memset(info, 0, sizeof(*info));
	if (ok)
	{
		strlcpy(info->token, t, sizeof(info->token));
		if (e != NULL && strlen(e) < SB_RUNNER_EXEC_MAX)
			strlcpy(info->execution, e, sizeof(info->execution));
		if (lj != NULL && strlen(lj) < SB_RUNNER_EXEC_MAX)
			strlcpy(info->job, lj, sizeof(info->job));
		if (job != NULL && strcmp(info->job, job) != 0)
			ok = false;
		info->started_at = json_is_integer(at) ?
			time_t_to_timestamptz((pg_time_t) json_integer_value(at)) : GetCurrentTimestamp();
		/*
		 * Its starter writes the execution's name once jobs:run answers: a
		 * lease still without one long after is a start that failed.
		 */
		if (info->execution[0] == '\0' &&
			GetCurrentTimestamp() > TimestampTzPlusMilliseconds(info->started_at, LEASE_UNNAMED_MS))
			ok = false;
	}
	if (j != NULL)
		json_decref(j);
	return ok;
}

/* lease_text is the lease naming a run's runner (palloc'd). */
static char *
lease_text(SbRun *run)
{
	json_t	   *j = json_pack("{sssssssIsi}", "token", run->runner.token,
							  "execution", run->runner.execution, "job", run->job,
							  "started_at", (json_int_t) timestamptz_to_time_t(run->runner.started_at),
							  "idle_timeout_s", sb_cloud_warm_idle_timeout_s);
	char	   *text = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	return text;
}

/* new_runner gives a run a new runner's token. */
static void
new_runner(SbRun *run)
{
	uint8		bytes[SB_RUNNER_TOKEN_LEN / 2];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("could not generate a session runner's token")));
	memset(&run->runner, 0, sizeof(run->runner));
	for (int i = 0; i < (int) sizeof(bytes); i++)
		snprintf(run->runner.token + 2 * i, 3, "%02x", bytes[i]);
	run->runner.started_at = GetCurrentTimestamp();
	strlcpy(run->runner.job, run->job, sizeof(run->runner.job));
	strlcpy(run->mine, run->runner.token, sizeof(run->mine));
	run->fresh_runner = true;
}

/* runner_body is jobs:run's body for a new runner (palloc'd in the current context). */
static char *
runner_body(SbRun *run)
{
	char	   *dir = pnstrdup(run->dir, strlen(run->dir) - 1);
	json_t	   *args = json_pack("[sssss]", "runner", sb_bucket, dir, run->runner.token,
								 psprintf("%d", sb_cloud_warm_idle_timeout_s));
	json_t	   *body = json_pack("{s{s[{so}]s:s}}", "overrides", "containerOverrides", "args", args,
								 "timeout", RUNNER_TIMEOUT);
	char	   *text = json_dumps(body, JSON_COMPACT);

	json_decref(body);
	return text;
}

/*
 * runner_waiting: the request is in the runner's inbox; from now on the run
 * waits for its result, and the registry knows the runner.
 */
static void
runner_waiting(SbRun *run)
{
	MemoryContext cxt = GetMemoryChunkContext(run);

	run->execution = run->runner.execution[0] ? MemoryContextStrdup(cxt, run->runner.execution) : NULL;
	run->operation = NULL;
	run->batch_size = 2;		/* never cancelled by cancelling the runner: a marker */
	run->started = true;
	run->uploaded = true;
	run->ended_ms = 0;
	run->check_ms = CHECK_FIRST_MS;
	run->check.retry_at = sb_now_ms() + CHECK_FIRST_MS;
	run->next_check_ms = sb_now_ms() + CHECK_FIRST_MS;
	/* A runner it started is waited for as a cold execution is; another must take it in time. */
	run->take_deadline_ms = run->fresh_runner && run->execution != NULL ? 0 :
		sb_now_ms() + (int64) sb_cloud_runner_take_timeout_s * 1000;
	/* A call gives the runner a third of its time at most, so that a cold run still fits. */
	if (run->take_deadline_ms > 0 && !sb_driver_nonblocking && sb_gc_call_end() != DT_NOEND)
	{
		int64		left = (sb_gc_call_end() - GetCurrentTimestamp()) / 1000;

		run->take_deadline_ms = Min(run->take_deadline_ms, sb_now_ms() + Max(left / 3, 5000));
	}
	run->rstep = RN_WAIT;
	sb_runner_put(run->dir, run->session, sb_gc_role(), &run->runner);
}

/* revoke_async stops a runner given up: "{}" as the lease, its execution cancelled (not waited for). */
static void
revoke_async(SbRun *run)
{
	detach(true, psprintf("%srunner.json", run->dir));
	/* An execution that has ended is not cancelled (Cloud Run would refuse). */
	if (run->execution != NULL && run->ended_ms == 0)
		detach(false, psprintf("/v2/%s:cancel", run->execution));
}

/* lost_result fails a run whose request the runner took and never answered. */
static void
lost_result(SbRun *run)
{
	sb_runner_forget(run->dir, run->runner.token);
	/* The next call starts a new runner. */
	if (sb_driver_nonblocking)
		revoke_async(run);
	else
	{
		SbGcsConfig cfg;
		SbError		err;
		int64		saved = sb_gc_call_suspend();

		sb_gc_gcs(&cfg);
		cfg.timeout_ms = CANCEL_TIMEOUT_MS;
		(void) sb_gcs_upload(&cfg, run->lease_object, "{}", 2, SB_GCS_ANY_GENERATION, NULL, &err);
		sb_gc_call_resume(saved);
	}
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("the session runner stopped while it ran the command; its output is lost"),
			 errdetail("Execution %s took request " INT64_FORMAT " and ended without its result.",
					   run->execution ? run->execution : "(unknown)", run->id),
			 errhint("The command is not run again.  The session's files are as the last "
					 "command that finished left them; the next call starts a new runner.")));
}

/*
 * runner_gone: the runner ended without the result, or did not take the
 * request in time.  Taken: lost.  Otherwise the request is withdrawn.
 */
static void
runner_gone(SbRun *run)
{
	if (run->taken)
		lost_result(run);
	sb_runner_forget(run->dir, run->runner.token);
	run->rstep = RN_WITHDRAW;
}

/*
 * runner_fallback: the request runs as a cold execution of its own, the
 * request (run->request) uploaded to requests/<id>.json.
 */
static void
runner_fallback_async(SbRun *run)
{
	elog(LOG, "cloudrun_sandbox: session runner %s given up; execution " INT64_FORMAT
		 " runs as a Cloud Run execution of its own",
		 run->execution ? run->execution : "(not started)", run->id);
	/* One this run started that never took its request: back off (runners.c). */
	if (run->fresh_runner)
		sb_runner_failed(run->dir);
	run->rstep = RN_NONE;
	/* Nothing the runner's checks or lookups started may be read as the cold run's. */
	call_drop(&run->check);
	call_drop(&run->lookup);
	run->check.retry_at = 0;
	run->lookup.retry_at = 0;
	run->execution = NULL;
	run->operation = NULL;
	run->started = false;
	run->uploaded = false;
	run->ended_ms = 0;
	run->check_ms = CHECK_FIRST_MS;
	run->take_deadline_ms = 0;
	run->upload_object = run->request_object;
	upload_start(run);
	batch_new(&run, 1, true);
}

/*
 * runner_step_async makes progress on a runner run's steps in the worker
 * without waiting: true once the run waits for its result (RN_WAIT), or
 * its cold fallback has started.
 */
static bool
runner_step_async(SbRun *run)
{
	SbError		err;
	char	   *data;
	size_t		len;
	int			rc;

	for (;;)
	{
		switch ((RunnerStep) run->rstep)
		{
			case RN_NONE:
				return launch_step(run);
			case RN_WAIT:
				return true;
			case RN_LEASE_READ:
				if (call_answered(&run->rcall))
				{
					rc = call_end_download(&run->rcall, &data, &len, &err);
					if (rc == 0)
					{
						run->lease_existed = true;
						if (!lease_parse(data, len, &run->runner, run->job))
							new_runner(run);
						else if (run->mine[0] != '\0' && strcmp(run->runner.token, run->mine) == 0)
						{
							/* Our own lease, its write's answer lost: the runner is still to start. */
							run->fresh_runner = true;
							run->runner.started_at = GetCurrentTimestamp();
						}
						free(data);
					}
					else if (err.kind == SB_ERR_NOT_FOUND)
						new_runner(run);
					else if (!may_pass(&err))
						sb_gc_raise(&err, "could not read the session's runner lease",
									SB_GC_NOT_FOUND_BUCKET);
					else
						return false;
					runner_objects(run);
					run->rstep = run->fresh_runner ? RN_LEASE_WRITE : RN_POST;
					continue;
				}
				if (call_due(&run->rcall) &&
					!call_start_download(&run->rcall, run->lease_object, LEASE_MAX, &err) &&
					!may_pass(&err))
					sb_gc_raise(&err, "could not read the session's runner lease",
								SB_GC_NOT_FOUND_BUCKET);
				return false;
			case RN_LEASE_WRITE:
			case RN_NOTE:
				if (call_answered(&run->rcall))
				{
					rc = call_end_upload(&run->rcall, &err);
					if (run->rstep == RN_NOTE)
					{
						/* Only for psql and the next call's liveness checks: never fatal. */
						if (rc != 0 && may_pass(&err))
							return false;
						if (rc != 0)
							elog(LOG, "cloudrun_sandbox: could not note the runner's execution in %s: %s",
								 run->lease_object, err.message);
						runner_waiting(run);
						return true;
					}
					if (rc == 0)
						run->rstep = RN_POST;
					else if (err.kind == SB_ERR_PRECONDITION)
					{
						/*
						 * Another call wrote a lease meanwhile (use that one), or
						 * this very write succeeded and its answer was lost: the
						 * lease read next says which (its token is ours).
						 */
						run->fresh_runner = run->lease_existed = false;
						run->rstep = RN_LEASE_READ;
					}
					else if (!may_pass(&err))
						sb_gc_raise(&err, "could not write the session's runner lease",
									SB_GC_NOT_FOUND_BUCKET);
					else
						return false;
					continue;
				}
				if (call_due(&run->rcall))
				{
					MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(run));

					if (run->lease != NULL)
						pfree(run->lease);
					run->lease = lease_text(run);
					MemoryContextSwitchTo(old);
					if (!call_start_upload(&run->rcall, run->lease_object, run->lease,
										   strlen(run->lease),
										   run->rstep == RN_NOTE || run->lease_existed ?
										   SB_GCS_ANY_GENERATION : 0, &err) &&
						!may_pass(&err))
						sb_gc_raise(&err, "could not write the session's runner lease",
									SB_GC_NOT_FOUND_BUCKET);
				}
				return false;
			case RN_POST:
				run->upload_object = run->inbox_object;
				if (!upload_step(run))
					return false;
				if (!run->fresh_runner)
				{
					runner_waiting(run);
					return true;
				}
				{
					SbRun	   *one = run;
					MemoryContext old;

					batch_new(&one, 1, true);
					old = MemoryContextSwitchTo(run->batch->cxt);
					run->batch->runner_body = runner_body(run);
					run->batch->objects[0] = pstrdup(run->runner.token);
					MemoryContextSwitchTo(old);
				}
				run->rstep = RN_START;
				continue;
			case RN_START:
				/* A runner that cannot start: its lease goes (the next call starts another). */
				if (run->batch != NULL)
				{
					batch_drive(run->batch);
					if (run->batch->state == BATCH_FAILED)
						detach(true, run->lease_object);
				}
				if (!batch_step(run))
					return false;
				if (run->execution != NULL)
					strlcpy(run->runner.execution, run->execution, sizeof(run->runner.execution));
				run->rstep = RN_NOTE;
				continue;
			case RN_WITHDRAW:
				if (call_answered(&run->rcall))
				{
					rc = call_end_upload(&run->rcall, &err);
					if (rc == 0)
					{
						revoke_async(run);
						run->rstep = RN_REFETCH;
						continue;
					}
					if (err.kind == SB_ERR_PRECONDITION)
					{
						/* The runner's claim, or ours whose answer was lost: read it. */
						run->rstep = RN_WITHDRAW_CHECK;
						continue;
					}
					if (!may_pass(&err))
						sb_gc_raise(&err, "could not withdraw the request from the session runner",
									SB_GC_NOT_FOUND_BUCKET);
					return false;
				}
				if (call_due(&run->rcall) &&
					!call_start_upload(&run->rcall, run->claim_object, WITHDRAWN, strlen(WITHDRAWN), 0,
									   &err) &&
					!may_pass(&err))
					sb_gc_raise(&err, "could not withdraw the request from the session runner",
								SB_GC_NOT_FOUND_BUCKET);
				return false;
			case RN_WITHDRAW_CHECK:
				if (call_answered(&run->rcall))
				{
					rc = call_end_download(&run->rcall, &data, &len, &err);
					if (rc == 0 && len == strlen(WITHDRAWN) && memcmp(data, WITHDRAWN, len) == 0)
					{
						free(data);
						revoke_async(run);
						run->rstep = RN_REFETCH;
						continue;
					}
					if (rc == 0)
						free(data);
					else if (may_pass(&err))
						return false;
					/* It took the request after all: wait for its result. */
					run->taken = true;
					run->take_deadline_ms = 0;
					run->rstep = RN_WAIT;
					if (run->ended_ms > 0)
						lost_result(run);
					return true;
				}
				if (call_due(&run->rcall) &&
					!call_start_download(&run->rcall, run->claim_object, LEASE_MAX, &err) &&
					!may_pass(&err))
					sb_gc_raise(&err, "could not read the request's claim", SB_GC_NOT_FOUND_BUCKET);
				return false;
			case RN_REFETCH:
				if (call_answered(&run->rcall))
				{
					rc = call_end_download(&run->rcall, &data, &len, &err);
					if (rc == 0)
					{
						MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(run));

						run->request = pnstrdup(data, len);
						MemoryContextSwitchTo(old);
						free(data);
						runner_fallback_async(run);
						continue;
					}
					if (!may_pass(&err))
						sb_gc_raise(&err, "could not read back the request given to the session runner",
									SB_GC_NOT_FOUND_BUCKET);
					return false;
				}
				if (call_due(&run->rcall) &&
					!call_start_download(&run->rcall, run->inbox_object, REQUEST_MAX, &err) &&
					!may_pass(&err))
					sb_gc_raise(&err, "could not read back the request given to the session runner",
								SB_GC_NOT_FOUND_BUCKET);
				return false;
		}
	}
}

/* runner_stage_async makes a staged run of the worker a runner run (its steps start it). */
static void
runner_stage_async(SbRun *run)
{
	run->lease_object = psprintf("%srunner.json", run->dir);
	if (registry_hit(run, &run->runner))
	{
		runner_objects(run);
		run->rstep = RN_POST;
	}
	else
		run->rstep = RN_LEASE_READ;
}

/*
 * runner_launch_sync posts a request to the session's runner, starting one
 * if need be (synchronous callers); false if the run must be a cold one.
 */
static bool
runner_launch_sync(SbRun *run, const char *request)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;
	char	   *operation;
	char	   *execution;

	sb_gc_gcs(&cfg);
	run->lease_object = psprintf("%srunner.json", run->dir);
	run->request_ref = request;
	if (!registry_hit(run, &run->runner))
	{
		bool		ok = false;

		if (sb_gcs_download(&cfg, run->lease_object, LEASE_MAX, &data, &len, NULL, &err) == 0)
		{
			run->lease_existed = true;
			ok = lease_parse(data, len, &run->runner, run->job);
			free(data);
		}
		else if (err.kind != SB_ERR_NOT_FOUND)
			sb_gc_raise(&err, "could not read the session's runner lease", SB_GC_NOT_FOUND_BUCKET);
		if (!ok)
		{
			char	   *lease;

			new_runner(run);
			lease = lease_text(run);
			if (sb_gcs_upload(&cfg, run->lease_object, lease, strlen(lease),
							  run->lease_existed ? SB_GCS_ANY_GENERATION : 0, NULL, &err) != 0)
			{
				SbRunnerInfo there;
				bool		ours = false;

				if (err.kind != SB_ERR_PRECONDITION)
					sb_gc_raise(&err, "could not write the session's runner lease",
								SB_GC_NOT_FOUND_BUCKET);
				/* Ours, its answer lost (a retry found it), or another call's. */
				if (sb_gcs_download(&cfg, run->lease_object, LEASE_MAX, &data, &len, NULL, &err) == 0)
				{
					ours = lease_parse(data, len, &there, run->job) &&
						strcmp(there.token, run->runner.token) == 0;
					free(data);
				}
				if (!ours)
					return false;	/* another call's lease, just written: run cold this once */
			}
		}
	}
	runner_objects(run);
	if (sb_gcs_upload(&cfg, run->inbox_object, request, strlen(request), 0, NULL, &err) != 0 &&
		err.kind != SB_ERR_PRECONDITION)
		sb_gc_raise(&err, "could not give the request to the session runner", SB_GC_NOT_FOUND_BUCKET);
	if (run->fresh_runner)
	{
		char	   *lease;

		if (!run_sync(run->job, runner_body(run), run->runner.token, &operation, &execution, &err))
		{
			SbError		ignored;

			(void) sb_gcs_delete(&cfg, run->inbox_object, SB_GCS_ANY_GENERATION, &ignored);
			(void) sb_gcs_delete(&cfg, run->lease_object, SB_GCS_ANY_GENERATION, &ignored);
			sb_gc_raise(&err, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
		}
		if (execution != NULL && strlen(execution) < SB_RUNNER_EXEC_MAX)
			strlcpy(run->runner.execution, execution, sizeof(run->runner.execution));
		lease = lease_text(run);
		if (sb_gcs_upload(&cfg, run->lease_object, lease, strlen(lease), SB_GCS_ANY_GENERATION,
						  NULL, &err) != 0)
			elog(LOG, "cloudrun_sandbox: could not note the runner's execution in %s: %s",
				 run->lease_object, err.message);
	}
	runner_waiting(run);
	run->poll_from_ms = sb_now_ms();
	return true;
}

/*
 * own_withdrawal: a withdrawal's upload found the claim there (*err a
 * precondition failure); true if it is ours (an attempt whose answer was
 * lost, retried), not the runner's.
 */
static bool
own_withdrawal(SbRun *run, SbError *err)
{
	SbGcsConfig cfg;
	SbError		e;
	char	   *data;
	size_t		len;
	bool		ours;

	if (err->kind != SB_ERR_PRECONDITION)
		return false;
	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, run->claim_object, LEASE_MAX, &data, &len, NULL, &e) != 0)
		return false;			/* taken, as far as we can tell: wait for the result */
	ours = len == strlen(WITHDRAWN) && memcmp(data, WITHDRAWN, len) == 0;
	free(data);
	return ours;
}

/* runner_withdraw_sync gives the runner up (synchronous callers): a cold execution instead, or lost. */
static void
runner_withdraw_sync(SbRun *run)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *response;
	char	   *objects[1];
	int64		saved;

	sb_runner_forget(run->dir, run->runner.token);
	sb_gc_gcs(&cfg);
	if (sb_gcs_upload(&cfg, run->claim_object, WITHDRAWN, strlen(WITHDRAWN), 0, NULL, &err) != 0 &&
		!own_withdrawal(run, &err))
	{
		if (err.kind != SB_ERR_PRECONDITION)
			sb_gc_raise(&err, "could not withdraw the request from the session runner",
						SB_GC_NOT_FOUND_BUCKET);
		run->taken = true;
		run->take_deadline_ms = 0;
		if (run->ended_ms > 0)
			lost_result(run);
		return;
	}
	/* Never taken: the runner is stopped, the request runs on its own. */
	saved = sb_gc_call_suspend();
	cfg.timeout_ms = CANCEL_TIMEOUT_MS;
	if (sb_gcs_upload(&cfg, run->lease_object, "{}", 2, SB_GCS_ANY_GENERATION, NULL, &err) != 0)
		elog(LOG, "cloudrun_sandbox: could not revoke the lease %s: %s", run->lease_object,
			 err.message);
	if (run->execution != NULL && run->ended_ms == 0 &&
		sb_gc_run_call("POST", psprintf("/v2/%s:cancel", run->execution), "{}", CANCEL_TIMEOUT_MS,
					   &response, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND && err.kind != SB_ERR_PRECONDITION &&
		strcmp(err.reason, "FAILED_PRECONDITION") != 0)
		elog(LOG, "cloudrun_sandbox: could not cancel the session runner %s: %s", run->execution,
			 err.message);
	sb_gc_call_resume(saved);
	elog(LOG, "cloudrun_sandbox: session runner %s given up; execution " INT64_FORMAT
		 " runs as a Cloud Run execution of its own",
		 run->execution ? run->execution : "(not started)", run->id);
	if (run->fresh_runner)
		sb_runner_failed(run->dir);
	sb_gc_gcs(&cfg);
	if (sb_gcs_upload(&cfg, run->request_object, run->request_ref, strlen(run->request_ref),
					  SB_GCS_ANY_GENERATION, NULL, &err) != 0)
		sb_gc_raise(&err, "could not upload the request", SB_GC_NOT_FOUND_BUCKET);
	run->rstep = RN_NONE;
	run->execution = NULL;
	run->started = false;
	run->uploaded = true;
	run->ended_ms = 0;
	objects[0] = run->request_object;
	start_sync(&run, 1, run_body(objects, 1, run->timeout_s));
}

/* runner_step_sync makes progress on a runner run (synchronous callers): true once finished. */
static bool
runner_step_sync(SbRun *run)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;
	int64		now = sb_now_ms();
	int64		waited = now - run->poll_from_ms;

	/* Lookups back to back for 2 s, then every 100 ms, after 30 s every 500 ms. */
	if (run->execution != NULL && run->ended_ms == 0 && now >= run->next_check_ms)
	{
		run->next_check_ms = now + CHECK_FIRST_MS;
		if (poll_execution(run))
			run->ended_ms = now;
	}
	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, run->result_object, RESULT_MAX, &data, &len, NULL, &err) == 0)
	{
		keep_result(run, data, len);
		sb_runner_used(run->dir, run->runner.token);
		return true;
	}
	if (err.kind == SB_ERR_CANCELLED)
		return false;
	if (err.kind != SB_ERR_NOT_FOUND && !may_pass(&err))
		sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
	if (run->ended_ms > 0 || (run->take_deadline_ms > 0 && now > run->take_deadline_ms))
		runner_withdraw_sync(run);
	else if (waited > 2000)
		backoff_sleep(waited > 30000 ? 500 : 100);
	return false;
}

/*
 * step_async makes progress on a run in the worker without waiting: its
 * launch (launch_step), then lookups of its result (at the worker's pace)
 * and, now and then, a check of whether the execution ended without one.
 * Only an answer fails the run; a call that fails in a way that may pass is
 * tried again with backoff.
 */
static bool
step_async(SbRun *run)
{
	SbError		err;
	char	   *response;
	char	   *data;
	size_t		len;

	if (run->rstep != RN_NONE && run->rstep != RN_WAIT)
	{
		if (!runner_step_async(run))
			return false;
	}
	else if (!launch_step(run))
		return false;

	/* Its result (a task of a batch finishes on its own). */
	if (call_answered(&run->lookup))
	{
		int64		asked = run->lookup.started_ms;

		if (call_end_download(&run->lookup, &data, &len, &err) == 0)
		{
			keep_result(run, data, len);
			if (run->rstep == RN_WAIT)
				sb_runner_used(run->dir, run->runner.token);
			run_release(run);
			return true;
		}
		/* Not there, asked after the execution ended: there will be none. */
		if (err.kind == SB_ERR_NOT_FOUND && run->ended_ms > 0 && asked >= run->ended_ms)
		{
			if (run->rstep == RN_WAIT)
			{
				runner_gone(run);
				return false;
			}
			no_result(run);
		}
		if (err.kind != SB_ERR_NOT_FOUND && !may_pass(&err))
			sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
	}
	else if (call_due(&run->lookup) &&
			 !call_start_download(&run->lookup, run->result_object, RESULT_MAX, &err) &&
			 !may_pass(&err))
		sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);

	/* A runner that has not taken the request in time is given up. */
	if (run->rstep == RN_WAIT && run->take_deadline_ms > 0 && sb_now_ms() > run->take_deadline_ms)
	{
		runner_gone(run);
		return false;
	}

	/* Now and then: has the execution ended (perhaps without a result)? */
	if (run->execution == NULL || run->ended_ms > 0)
		return false;
	if (call_answered(&run->check))
	{
		int			rc = call_end_run(&run->check, &response, &err);
		bool		completed = rc == 0 && execution_completed(response);

		if (response != NULL)
			pfree(response);	/* in the flight's memory: one per check */
		if (completed)
			run->ended_ms = sb_now_ms();
		else if (rc != 0 && err.kind == SB_ERR_NOT_FOUND)
			run->ended_ms = sb_now_ms();	/* forgotten: it ended long ago */
		else if (rc != 0 && !may_pass(&err))
			sb_gc_raise(&err, "could not look at the Cloud Run execution", SB_GC_NOT_FOUND_OTHER);
		else if (rc == 0)
		{
			/* Still running: look again later, less and less often. */
			run->check.retry_at = sb_now_ms() + run->check_ms;
			run->check_ms = Min(run->check_ms * 2, CHECK_MAX_MS);
		}
	}
	else if (call_due(&run->check) &&
			 !call_start_run(&run->check, "GET", psprintf("/v2/%s", run->execution), NULL, &err) &&
			 !may_pass(&err))
		sb_gc_raise(&err, "could not look at the Cloud Run execution", SB_GC_NOT_FOUND_OTHER);
	return false;
}

/* cloud_ready says whether an answer the run waits for has arrived. */
static bool
cloud_ready(SbRun *run)
{
	return call_answered(&run->upload) || call_answered(&run->lookup) ||
		call_answered(&run->check) || call_answered(&run->rcall) ||
		(run->batch != NULL && call_answered(&run->batch->call));
}

/* sb_cloud_drive makes progress on the worker's asynchronous calls, without blocking. */
void
sb_cloud_drive(void)
{
	SbGcsConfig cfg;

	if (calls_in_progress > 0)
	{
		sb_gc_gcs(&cfg);

		/*
		 * Answers come in bursts (a batch's tasks end together, and their
		 * lookups were started together): once one is in, give the rest up to
		 * 20 ms, so that the burst is finished, and the next batch claimed, in
		 * one turn.
		 */
		(void) sb_http_client_drive(cfg.http, 20);
	}
	if (detached != NIL)
		detached_drive();
}

/*
 * sb_cloud_wait_fds lists the sockets the worker's asynchronous calls wait
 * on and sets *timeout_ms to when they must be driven anyway (-1: never).
 */
int
sb_cloud_wait_fds(SbHttpWaitFd *fds, int max_fds, long *timeout_ms)
{
	SbGcsConfig cfg;
	int			n = 0;

	*timeout_ms = detached_due_ms > 0 ? Max(detached_due_ms - sb_now_ms(), 0) : -1;
	if (calls_in_progress > 0)
	{
		long		t = -1;

		sb_gc_gcs(&cfg);
		n = sb_http_client_fds(cfg.http, fds, max_fds, &t);
		if (t >= 0 && (*timeout_ms < 0 || t < *timeout_ms))
			*timeout_ms = t;
	}
	return n;
}

static bool
cloud_step(SbRun *run)
{
	SbError		err;
	char	   *response;
	json_t	   *op;
	json_t	   *error;

	if (run->result != NULL)
		return true;
	if (sb_driver_nonblocking)
		return step_async(run);
	if (run->rstep == RN_WAIT)
		return runner_step_sync(run);
	if (run->operation == NULL)
	{
		/* Found by its request after jobs:run's answer was lost: look at the execution. */
		if (sb_now_ms() < run->next_check_ms)
			return false;
		run->next_check_ms = sb_now_ms() + 1000;
		if (!poll_execution(run))
			return false;
		fetch_result(run);
		return true;
	}
	if (sb_gc_run_call("POST", psprintf("/v2/%s:wait", run->operation),
					   /* A streamed exec looks at its output so far every second (live.c). */
					   sb_stream_active != NULL ? "{\"timeout\":\"1s\"}" :
					   "{\"timeout\":\"" WAIT_SLICE "\"}", CALL_TIMEOUT_MS, &response, &err) != 0)
	{
		if (err.kind == SB_ERR_CANCELLED)
			return false;		/* the caller's CHECK_FOR_INTERRUPTS raises the cancel */
		sb_gc_raise(&err, "could not wait for the Cloud Run execution", SB_GC_NOT_FOUND_OTHER);
	}
	op = json_loads(response, 0, NULL);
	if (op == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Cloud Run answered operations.wait with something that is not JSON")));
	run->done = json_is_true(json_object_get(op, "done"));
	error = json_object_get(op, "error");
	if (json_is_object(error))
		run->failure = pstrdup(json_string_value(json_object_get(error, "message")) ?: "failed");
	json_decref(op);
	if (!run->done)
		return false;
	fetch_result(run);
	return true;
}

/* cancel_async sends the worker's cancel of a run, without waiting for it. */
static void
cancel_async(SbRun *run)
{
	run_release(run);
	if (run->cancelled || run->result != NULL)
		return;
	run->cancelled = true;
	/* Nothing was stored: the request's upload was refused, or (a runner run) never began. */
	if (!run->uploaded && run->batch == NULL && !run->upload_unsure &&
		(run->upload_refused || run->rstep == RN_LEASE_READ || run->rstep == RN_LEASE_WRITE))
		return;
	/* A request a runner has not taken yet is withdrawn: it never runs. */
	if (run->rstep == RN_WAIT && !run->taken)
		detach_ex(true, true, run->claim_object);
	/*
	 * As cloud_cancel: a batched request gets a cancel marker, a run of its
	 * own a cancel; one whose execution is not known (its jobs:run may have
	 * happened, its answer lost) gets the marker, which its task, if there is
	 * one, finds before or while it runs the command.
	 */
	if (run->batch_size > 1 || run->execution == NULL)
		detach(true, psprintf("%srequests/" INT64_FORMAT ".cancel", run->dir, run->id));
	else
		detach(false, psprintf("/v2/%s:cancel", run->execution));
}


/*
 * cloud_cancel stops a run's execution (in its own short time, the call's
 * limit may have passed).  One that already ended, with or without a
 * result, has nothing to cancel: no request, no warning.
 */
static void
cloud_cancel(SbRun *run)
{
	SbError		err;
	char	   *response;
	int64		saved;

	if (sb_driver_nonblocking)
	{
		cancel_async(run);
		return;
	}
	if (run->cancelled || run->done || run->result != NULL)
		return;
	run->cancelled = true;
	saved = sb_gc_call_suspend();
	/*
	 * Cancelling the execution would stop every request of its batch, so a
	 * batched request gets a cancel marker instead: its task looks for it
	 * while the command runs, kills the command and leaves the session's
	 * state as it was.  So does a request whose execution is not known (its
	 * jobs:run's answer was lost).
	 */
	if (run->batch_size > 1 || run->execution == NULL)
	{
		SbGcsConfig cfg;

		sb_gc_gcs(&cfg);
		cfg.timeout_ms = CANCEL_TIMEOUT_MS;
		/* A request a runner has not taken yet is withdrawn: it never runs. */
		if (run->rstep == RN_WAIT && !run->taken &&
			sb_gcs_upload(&cfg, run->claim_object, WITHDRAWN, strlen(WITHDRAWN), 0, NULL, &err) == 0)
		{
			sb_gc_call_resume(saved);
			return;
		}
		if (sb_gcs_upload(&cfg, psprintf("%srequests/" INT64_FORMAT ".cancel", run->dir, run->id),
						  "{}", 2, SB_GCS_ANY_GENERATION, NULL, &err) != 0)
			elog(WARNING, "could not leave the cancel marker of execution " INT64_FORMAT ": %s",
				 run->id, err.message);
	}
	else if (sb_gc_run_call("POST", psprintf("/v2/%s:cancel", run->execution), "{}",
							CANCEL_TIMEOUT_MS, &response, &err) != 0 &&
			 err.kind != SB_ERR_NOT_FOUND && err.kind != SB_ERR_PRECONDITION &&
			 strcmp(err.reason, "FAILED_PRECONDITION") != 0)
		elog(WARNING, "could not cancel Cloud Run execution %s: %s", run->execution,
			 err.message);
	sb_gc_call_resume(saved);
}

static char *
cloud_finish(SbRun *run, size_t *len)
{
	*len = run->result_len;
	return run->result;
}

/* cloud_launched says whether the run's execution has started (its name is known). */
static bool
cloud_launched(SbRun *run)
{
	return run->started;
}

static const char *
cloud_remote_name(SbRun *run)
{
	return run != NULL ? run->execution : NULL;
}

static SbRun *
cloud_attach(const char *session, int64 id, const char *remote_name)
{
	SbRun	   *run = run_init(session, id);
	SbGcsConfig cfg;
	SbGcsObjectInfo info;
	SbError		err;

	/* Whether the execution carried other requests is not known: never cancel it for one. */
	run->batch_size = 2;
	run->uploaded = true;
	run->started = true;
	if (remote_name != NULL)
	{
		run->execution = pstrdup(remote_name);
		return run;
	}
	/* The launch may or may not have happened: a result, or an execution, says it did. */
	sb_gc_gcs(&cfg);
	if (sb_gcs_stat(&cfg, run->result_object, &info, &err) == 0)
		return run;
	if (sb_gcs_stat(&cfg, run->request_object, &info, &err) != 0)
		return NULL;			/* not even the request was written */
	run->execution = find_execution(run->job, run->request_object);
	return run->execution ? run : NULL;
}

/* cloud_batch_key: runs of one job may share an execution, runs of different jobs never. */
static const char *
cloud_batch_key(SbRun *run)
{
	if (run->rstep != RN_NONE)
		return run->lease_object;	/* never batched: one per session at a time anyway */
	return run->job;
}

const SbDriver sb_cloudrun_driver = {
	.name = "cloudrun",
	.binary_frames = false,
	.executor_writes_state = true,
	.slack_ms = EXECUTION_MARGIN_S * 1000,
	.prepare_session = cloud_prepare_session,
	.storage_location = cloud_storage_location,
	.delete_storage = cloud_delete_storage,
	.load_state = cloud_load_state,
	.store_state = cloud_store_state,
	.launch = cloud_launch,
	.wait_fds = cloud_wait_fds,
	.step = cloud_step,
	.finish = cloud_finish,
	.cancel = cloud_cancel,
	.ready = cloud_ready,
	.stage = cloud_stage,
	.launch_batch = cloud_launch_batch,
	.batch_key = cloud_batch_key,
	.launched = cloud_launched,
	.remote_name = cloud_remote_name,
	.attach = cloud_attach,
};

/*
 * Background processes on the cloud backend: each is its own long-running
 * Cloud Run execution of the executor, which supervises the process, saves
 * its output to sessions/<s>/background/<h>.log every few seconds and writes
 * sessions/<s>/background/<h>.exit when it ends.  A kill writes
 * <h>.kill (the supervisor stops the process: SIGTERM, then SIGKILL), then
 * cancels the execution.
 */
#define BG_TIMEOUT_S (24 * 3600)
#define BG_KILL_WAIT_MS 8000

/* bg_object names one of a background process's objects. */
static char *
bg_object(const char *session, int64 handle, const char *what)
{
	return sb_gc_object(session, psprintf("background/" INT64_FORMAT ".%s", handle, what));
}

/*
 * BgStart is the worker's launch of a background process: a run of its own
 * (its memory context holds it), whose request upload and jobs:run go
 * through launch_step like a flight's, in a batch no other run joins.
 */
typedef struct BgStart
{
	MemoryContext cxt;
	int64		handle;
	SbRun	   *run;
	int64		used_ms;		/* the last sb_cloud_bg_start() for it */
} BgStart;

static List *bg_starts = NIL;	/* in TopMemoryContext */

/* The worker's looks at a background process that it no longer asks for are forgotten after this. */
#define BG_POLL_FORGET_MS 60000

/* bg_start_free forgets a background launch: its calls in progress are abandoned. */
static void
bg_start_free(BgStart *s)
{
	run_release(s->run);
	bg_starts = list_delete_ptr(bg_starts, s);
	MemoryContextDelete(s->cxt);
}

/* bg_start_of returns the worker's launch of a background process (NULL: none); forgets unused ones. */
static BgStart *
bg_start_of(int64 handle)
{
	ListCell   *lc;

	foreach(lc, bg_starts)
	{
		BgStart    *s = lfirst(lc);

		if (s->handle == handle)
			return s;
		if (sb_now_ms() - s->used_ms > BG_POLL_FORGET_MS)
		{
			/* The worker no longer asks for it (it gave the process up). */
			bg_start_free(s);
			return bg_start_of(handle);
		}
	}
	return NULL;
}

/* bg_start_new begins the worker's launch of a background process: the request's upload. */
static BgStart *
bg_start_new(const char *session, int64 handle, const char *request)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cloudrun_sandbox background start",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BgStart    *s = palloc0(sizeof(BgStart));

	s->cxt = cxt;
	s->handle = handle;
	s->run = run_init(session, handle);
	s->run->request_object = bg_object(session, handle, "json");
	s->run->upload_object = s->run->request_object;
	s->run->timeout_s = BG_TIMEOUT_S;
	s->run->request = pstrdup(request);
	MemoryContextSwitchTo(TopMemoryContext);
	bg_starts = lappend(bg_starts, s);
	MemoryContextSwitchTo(old);
	return s;
}

/*
 * bg_start_async is sb_cloud_bg_start in the worker: it never waits on the
 * network.  The first call (with the request) starts the launch; each later
 * one (request NULL) reads what came in and starts what is due: NULL while
 * it is under way (an unreachable API is tried again with backoff, never a
 * failure), the execution's name once jobs:run has happened; it raises if
 * Cloud Run refused the launch.  jobs:run goes once: after an answer that
 * may have been lost, the execution is looked for by its request first.
 */
static char *
bg_start_async(const char *session, int64 handle, const char *request)
{
	BgStart    *volatile s = bg_start_of(handle);
	bool		launched = false;
	char	   *name;

	if (s == NULL)
	{
		if (request == NULL)
			elog(ERROR, "the launch of background process " INT64_FORMAT " was forgotten", handle);
		sb_gc_require_settings();
		s = bg_start_new(session, handle, request);
		PG_TRY();
		{
			upload_start(s->run);
			batch_new(&s->run, 1, true);
		}
		PG_CATCH();
		{
			bg_start_free(s);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	s->used_ms = sb_now_ms();
	PG_TRY();
	{
		launched = launch_step(s->run);
	}
	PG_CATCH();
	{
		bg_start_free(s);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!launched)
		return NULL;
	name = s->run->execution ? pstrdup(s->run->execution) : NULL;
	bg_start_free(s);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Cloud Run answered jobs.run without an execution name")));
	return name;
}

/*
 * sb_cloud_bg_start launches a background process: its execution's name.
 * In the worker it does not wait (see bg_start_async): call it again, with
 * request NULL, until it returns the name.
 */
char *
sb_cloud_bg_start(const char *session, int64 handle, const char *request)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *object;
	json_t	   *body;
	char	   *operation;
	char	   *name;

	if (sb_driver_nonblocking)
		return bg_start_async(session, handle, request);
	object = bg_object(session, handle, "json");
	sb_gc_require_settings();
	sb_gc_gcs(&cfg);
	if (sb_gcs_upload(&cfg, object, request, strlen(request), SB_GCS_ANY_GENERATION, NULL, &err) != 0)
		sb_gc_raise(&err, "could not upload the background request", SB_GC_NOT_FOUND_BUCKET);
	body = json_pack("{s{s[{s[sss]}]s:s}}", "overrides", "containerOverrides", "args", "cloud",
					 sb_bucket, object, "timeout", psprintf("%ds", BG_TIMEOUT_S));
	/* A lost answer is looked for, never run again (the executor's claim stops a twin). */
	if (!run_sync(job_path(), json_dumps(body, JSON_COMPACT), object, &operation, &name, &err))
		sb_gc_raise(&err, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
	json_decref(body);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Cloud Run answered jobs.run without an execution name")));
	return name;
}

/* sb_cloud_bg_abandon cancels, without waiting, an execution the worker started for a row that is gone. */
void
sb_cloud_bg_abandon(const char *execution)
{
	detach(false, psprintf("/v2/%s:cancel", execution));
}

/* exit_code reads a background process's exit object (malloc'd data, freed here). */
static int
exit_code(char *data, size_t len)
{
	json_t	   *root = json_loadb(data, len, 0, NULL);
	int			code = root ? (int) json_integer_value(json_object_get(root, "exit_code")) : -1;

	free(data);
	if (root)
		json_decref(root);
	return code;
}

/*
 * BgPoll is the worker's look at one background process: a download of its
 * exit object and, now and then, a GET of its execution, both asynchronous;
 * each sb_cloud_bg_poll() reads what came in since the last one.
 */
typedef struct BgPoll
{
	char	   *session;
	int64		handle;
	CloudCall	exit;
	CloudCall	check;
	int64		ended_ms;		/* when its execution was seen ended, or 0 */
	int64		used_ms;		/* the last poll */
} BgPoll;

static List *bg_polls = NIL;	/* in TopMemoryContext */

/* bg_poll_of returns the look at a background process, made on first use; forgets unused ones. */
static BgPoll *
bg_poll_of(const char *session, int64 handle)
{
	BgPoll	   *found = NULL;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, bg_polls)
	{
		BgPoll	   *p = lfirst(lc);

		if (p->handle == handle && strcmp(p->session, session) == 0)
			found = p;
		else if (sb_now_ms() - p->used_ms > BG_POLL_FORGET_MS)
		{
			/* Its process is no longer watched (killed, or the worker gave it up). */
			call_drop(&p->exit);
			call_drop(&p->check);
			pfree(p->session);
			pfree(p);
			bg_polls = foreach_delete_current(bg_polls, lc);
		}
	}
	if (found == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		found = palloc0(sizeof(BgPoll));
		found->session = pstrdup(session);
		found->handle = handle;
		bg_polls = lappend(bg_polls, found);
		MemoryContextSwitchTo(old);
	}
	found->used_ms = sb_now_ms();
	return found;
}

/* bg_poll_done forgets the look at a background process that has ended. */
static void
bg_poll_done(BgPoll *p)
{
	call_drop(&p->exit);
	call_drop(&p->check);
	bg_polls = list_delete_ptr(bg_polls, p);
	pfree(p->session);
	pfree(p);
}

/* bg_poll_async is sb_cloud_bg_poll in the worker: it never waits on the network. */
static int
bg_poll_async(const char *session, int64 handle, const char *execution, bool check_execution,
			  int *code)
{
	BgPoll	   *p = bg_poll_of(session, handle);
	SbError		err;
	char	   *data;
	size_t		len;
	char	   *response;

	if (call_answered(&p->exit))
	{
		int64		asked = p->exit.started_ms;

		if (call_end_download(&p->exit, &data, &len, &err) == 0)
		{
			*code = exit_code(data, len);
			bg_poll_done(p);
			return 1;
		}
		if (err.kind == SB_ERR_NOT_FOUND && p->ended_ms > 0 && asked >= p->ended_ms)
		{
			bg_poll_done(p);
			return -1;
		}
		if (err.kind != SB_ERR_NOT_FOUND && !may_pass(&err))
		{
			bg_poll_done(p);
			sb_gc_raise(&err, "could not look at a background process", SB_GC_NOT_FOUND_BUCKET);
		}
	}
	else if (call_due(&p->exit) &&
			 !call_start_download(&p->exit, bg_object(session, handle, "exit"), 4096, &err) &&
			 !may_pass(&err))
		sb_gc_raise(&err, "could not look at a background process", SB_GC_NOT_FOUND_BUCKET);
	if (execution == NULL || p->ended_ms > 0)
		return 0;
	if (call_answered(&p->check))
	{
		int			rc = call_end_run(&p->check, &response, &err);

		if ((rc == 0 && execution_completed(response)) || (rc != 0 && err.kind == SB_ERR_NOT_FOUND))
			p->ended_ms = sb_now_ms();
	}
	else if (check_execution && call_due(&p->check))
		(void) call_start_run(&p->check, "GET", psprintf("/v2/%s", execution), NULL, &err);
	return 0;
}

/*
 * sb_cloud_bg_poll says whether a background process has ended: 1 with its
 * exit code, -1 if its execution ended without one, 0 while it runs (or,
 * in the worker, while the answer has not come in yet).
 */
int
sb_cloud_bg_poll(const char *session, int64 handle, const char *execution, bool check_execution,
				 int *code)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;
	SbRun		run;

	if (sb_driver_nonblocking)
		return bg_poll_async(session, handle, execution, check_execution, code);
	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, bg_object(session, handle, "exit"), 4096, &data, &len, NULL, &err) == 0)
	{
		*code = exit_code(data, len);
		return 1;
	}
	if (err.kind != SB_ERR_NOT_FOUND)
		sb_gc_raise(&err, "could not look at a background process", SB_GC_NOT_FOUND_BUCKET);
	if (!check_execution || execution == NULL)
		return 0;
	memset(&run, 0, sizeof(run));
	run.execution = (char *) execution;
	return poll_execution(&run) ? -1 : 0;
}

/* sb_cloud_bg_kill asks the supervisor to stop, waits for it, then cancels the execution. */
void
sb_cloud_bg_kill(const char *session, int64 handle, const char *execution)
{
	SbGcsConfig cfg;
	SbError		err;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BG_KILL_WAIT_MS);
	int			code;
	char	   *response;

	sb_gc_gcs(&cfg);
	if (sb_gcs_upload(&cfg, bg_object(session, handle, "kill"), "{}", 2, SB_GCS_ANY_GENERATION,
					  NULL, &err) != 0)
		sb_gc_raise(&err, "could not ask a background process to stop", SB_GC_NOT_FOUND_BUCKET);
	while (GetCurrentTimestamp() < deadline && sb_cloud_bg_poll(session, handle, NULL, false, &code) == 0)
	{
		pg_usleep(200000);
		CHECK_FOR_INTERRUPTS();
	}
	/* An execution that already ended (the usual case) cannot be cancelled: fine. */
	if (execution != NULL &&
		sb_gc_run_call("POST", psprintf("/v2/%s:cancel", execution), "{}", 10000, &response, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND && err.kind != SB_ERR_PRECONDITION &&
		strcmp(err.reason, "FAILED_PRECONDITION") != 0)
		elog(WARNING, "could not cancel Cloud Run execution %s: %s", execution, err.message);
}

/* sb_cloud_bg_logs returns the saved output of a background process (the last max bytes). */
char *
sb_cloud_bg_logs(const char *session, int64 handle, size_t max, size_t *len)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	char	   *out;

	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, bg_object(session, handle, "log"), 64 * 1024 * 1024, &data, len, NULL,
						&err) != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND)
		{
			*len = 0;
			return pstrdup("");
		}
		sb_gc_raise(&err, "could not read a background process's output", SB_GC_NOT_FOUND_BUCKET);
	}
	if (*len > max)
	{
		out = pnstrdup(data + *len - max, max);
		*len = max;
	}
	else
		out = pnstrdup(data, *len);
	free(data);
	return out;
}

/*
 * sb_cloud_live_read returns what a running execution's executor has saved
 * of its output so far (live/<id>.out, stream 0, or .err), "" if nothing yet
 * (with quiet, also when it cannot be read).
 */
char *
sb_cloud_live_read(const char *session, int64 id, int stream, bool quiet, size_t *len)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	char	   *out;

	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, sb_gc_object(session, psprintf("live/" INT64_FORMAT ".%s", id,
															   stream == 0 ? "out" : "err")),
						(size_t) sb_max_output_bytes + 1, &data, len, NULL, &err) != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND || quiet)
		{
			*len = 0;
			return pstrdup("");
		}
		sb_gc_raise(&err, "could not read an execution's output so far", SB_GC_NOT_FOUND_BUCKET);
	}
	out = palloc(*len + 1);
	memcpy(out, data, *len);
	out[*len] = '\0';
	free(data);
	return out;
}
