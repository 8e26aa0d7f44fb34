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
 * In the background worker nothing waits: the result object is looked up
 * with downloads that run on the connection cache's curl multi handle,
 * whose sockets the worker's event loop waits on (sb_cloud_wait_fds,
 * sb_cloud_drive), so many runs are polled at once and a slow answer holds
 * up nothing else.
 */
#include "driver.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "gcloud.h"

/* How long one operations:wait call may block (the emulator and Google cap it). */
#define WAIT_SLICE "2s"
#define CALL_TIMEOUT_MS 60000
/* Cloud Run gets this much beyond the command's timeout for start-up and I/O. */
#define EXECUTION_MARGIN_S 120

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
	int			polls;			/* result lookups since the execution was last checked */
	SbHttpRequest *poll;		/* the worker's result lookup in progress, or NULL */
};

/* Result lookups the worker has in progress on the connection cache. */
static int	polls_in_progress = 0;


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

static void
cloud_prepare_session(const char *session, bool fresh)
{
	SbError		err;

	sb_gc_require_settings();
	/* A new session must not inherit objects left under its name. */
	if (fresh && !delete_prefix(sb_gc_session_prefix(session), &err))
		sb_gc_raise(&err, "could not clear the session's objects", SB_GC_NOT_FOUND_BUCKET);
}

/* cloud_storage_location is the session's object prefix under its owner's settings. */
static char *
cloud_storage_location(const char *session)
{
	return pstrdup(sb_gc_session_prefix(session));
}

/* cloud_delete_storage deletes the objects of a session that is gone. */
static void
cloud_delete_storage(const char *session, const char *location)
{
	SbError		err;

	sb_gc_require_settings();
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
	return run;
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

	sb_gc_gcs(&cfg);
	/* Ids are unique; a request already there is this one, re-launched after a restart. */
	if (sb_gcs_upload(&cfg, run->request_object, request, strlen(request), SB_GCS_ANY_GENERATION,
					  NULL, &err) != 0)
		sb_gc_raise(&err, "could not upload the request", SB_GC_NOT_FOUND_BUCKET);
	return run;
}

/*
 * cloud_launch_batch starts staged runs as one Cloud Run execution: the
 * container's arguments name every request, and task i runs the i-th.
 */
static void
cloud_launch_batch(SbRun **runs, int n)
{
	SbGcsConfig cfg;
	SbError		err;
	json_t	   *args = json_pack("[ss]", "cloud", sb_bucket);
	json_t	   *body;
	json_t	   *op;
	char	   *body_text;
	char	   *response;
	const char *name;
	int64		timeout_s = 0;

	for (int i = 0; i < n; i++)
	{
		if (strcmp(runs[i]->job, runs[0]->job) != 0)
			elog(ERROR, "runs of different Cloud Run jobs cannot share a batch");
		json_array_append_new(args, json_string(runs[i]->request_object));
		timeout_s = Max(timeout_s, runs[i]->timeout_s);
	}
	body = json_pack("{s{s[{so}]s:s}}", "overrides", "containerOverrides", "args", args,
					 "timeout", psprintf(INT64_FORMAT "s", timeout_s));
	if (n > 1)
		json_object_set_new(json_object_get(body, "overrides"), "taskCount", json_integer(n));
	body_text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (sb_gc_run_call("POST", psprintf("%s:run", runs[0]->job), body_text, CALL_TIMEOUT_MS,
					   &response, &err) != 0)
	{
		SbError		ignored;

		/* Leave nothing half-written: the requests go when their run cannot start. */
		sb_gc_gcs(&cfg);
		for (int i = 0; i < n; i++)
			(void) sb_gcs_delete(&cfg, runs[i]->request_object, SB_GCS_ANY_GENERATION, &ignored);
		sb_gc_raise(&err, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
	}
	op = json_loads(response, 0, NULL);
	name = json_string_value(json_object_get(op, "name"));
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Cloud Run answered jobs.run without an operation name")));
	for (int i = 0; i < n; i++)
	{
		const char *exec = json_string_value(json_object_get(json_object_get(op, "metadata"), "name"));
		/* Each run lives in its own memory context (the worker's flights outlive this call). */
		MemoryContext cxt = GetMemoryChunkContext(runs[i]);

		runs[i]->operation = MemoryContextStrdup(cxt, name);
		runs[i]->execution = exec ? MemoryContextStrdup(cxt, exec) : NULL;
		runs[i]->batch_size = n;
	}
	json_decref(op);
}

static SbRun *
cloud_launch(const char *session, int64 id, const char *request)
{
	SbRun	   *run = cloud_stage(session, id, request);

	cloud_launch_batch(&run, 1);
	return run;
}

static int
cloud_wait_fds(SbRun *run, int *fds, int max_fds)
{
	return 0;					/* calls block in short slices instead */
}

/* The largest result document: output capped, escaped at most sixfold, state. */
#define RESULT_MAX ((size_t) sb_max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES + 1024 * 1024)

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
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("the Cloud Run execution ended without a result"),
					 errdetail("Execution %s: %s", run->execution ? run->execution : "(unknown)",
							   run->failure ? run->failure : "no error was reported"),
					 errhint("Look at the execution's logs; check that the job's container "
							 "runs cloudrun-sandbox-executor.")));
		sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
	}
	keep_result(run, data, len);
}

/* poll_execution asks, without waiting, whether the run's execution has completed. */
static bool
poll_execution(SbRun *run)
{
	SbError		err;
	char	   *response;
	json_t	   *exec;
	bool		completed;

	if (run->execution == NULL)
		return true;			/* attached to a run whose result is already there */
	if (sb_gc_run_call("GET", psprintf("/v2/%s", run->execution), NULL, CALL_TIMEOUT_MS,
					   &response, &err) != 0)
	{
		if (err.kind == SB_ERR_CANCELLED)
			return false;
		sb_gc_raise(&err, "could not look at the Cloud Run execution", SB_GC_NOT_FOUND_OTHER);
	}
	exec = json_loads(response, 0, NULL);
	completed = exec != NULL && json_object_get(exec, "completionTime") != NULL;
	if (exec != NULL)
		json_decref(exec);
	return completed;
}

/* drop_poll abandons the run's result lookup in progress, if any. */
static void
drop_poll(SbRun *run)
{
	if (run->poll == NULL)
		return;
	sb_http_request_cleanup(run->poll);
	pfree(run->poll);
	run->poll = NULL;
	polls_in_progress--;
}

/*
 * poll_result looks for the result without blocking (in the worker): one
 * step starts a download of the result object, a later one reads how it
 * ended.  Returns true once the result is in.  Not there yet, or a failure
 * that may pass (the network, a 5xx, a 429, an expired token), means look
 * again later; anything else is an error.
 */
static bool
poll_result(SbRun *run)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *data;
	size_t		len;
	int			rc;

	sb_gc_gcs(&cfg);
	if (run->poll == NULL)
	{
		run->poll = palloc0(sizeof(SbHttpRequest));
		if (sb_gcs_download_start(&cfg, run->result_object, RESULT_MAX, run->poll, &err) != 0)
		{
			pfree(run->poll);
			run->poll = NULL;
			if (err.kind == SB_ERR_CANCELLED || err.kind == SB_ERR_NETWORK ||
				err.kind == SB_ERR_TIMEOUT)
				return false;
			sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
		}
		polls_in_progress++;
		return false;
	}
	if (!run->poll->finished)
		return false;
	rc = sb_gcs_download_end(&cfg, run->poll, &data, &len, &err);
	pfree(run->poll);
	run->poll = NULL;
	polls_in_progress--;
	if (rc == 0)
	{
		keep_result(run, data, len);
		return true;
	}
	switch (err.kind)
	{
		case SB_ERR_NOT_FOUND:
		case SB_ERR_NETWORK:
		case SB_ERR_TIMEOUT:
		case SB_ERR_HTTP:
		case SB_ERR_AUTH:
		case SB_ERR_CANCELLED:
			return false;
		default:
			sb_gc_raise(&err, "could not read the result", SB_GC_NOT_FOUND_BUCKET);
	}
}

/* cloud_ready says whether the run's result lookup has an answer to read. */
static bool
cloud_ready(SbRun *run)
{
	return run->poll != NULL && run->poll->finished;
}

/* sb_cloud_drive makes progress on the worker's result lookups, without blocking. */
void
sb_cloud_drive(void)
{
	SbGcsConfig cfg;

	if (polls_in_progress <= 0)
		return;
	sb_gc_gcs(&cfg);
	/*
	 * Answers come in bursts (a batch's tasks end together, and their lookups
	 * were started together): once one is in, give the rest up to 20 ms, so
	 * that the burst is finished, and the next batch claimed, in one turn.
	 */
	(void) sb_http_client_drive(cfg.http, 20);
}

/*
 * sb_cloud_wait_fds lists the sockets the worker's result lookups wait on
 * and sets *timeout_ms to when they must be driven anyway (-1: never).
 */
int
sb_cloud_wait_fds(SbHttpWaitFd *fds, int max_fds, long *timeout_ms)
{
	SbGcsConfig cfg;

	*timeout_ms = -1;
	if (polls_in_progress <= 0)
		return 0;
	sb_gc_gcs(&cfg);
	return sb_http_client_fds(cfg.http, fds, max_fds, timeout_ms);
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
	{
		/*
		 * Look for the result itself (a task of a batch finishes on its own);
		 * now and then ask whether the execution ended without one.
		 */
		bool		answered = cloud_ready(run);

		if (poll_result(run))
			return true;
		if (!answered || ++run->polls < 10)
			return false;
		run->polls = 0;
		if (!poll_execution(run))
			return false;
		fetch_result(run);		/* raises "ended without a result" if it is still missing */
		return true;
	}
	if (sb_gc_run_call("POST", psprintf("/v2/%s:wait", run->operation),
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

/* How long cancelling an execution may take, beyond the limit of the call that cancels it. */
#define CANCEL_TIMEOUT_MS 3000

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

	drop_poll(run);
	if (run->cancelled || run->done || run->result != NULL || run->execution == NULL)
		return;
	run->cancelled = true;
	saved = sb_gc_call_suspend();
	/*
	 * Cancelling the execution would stop every request of its batch, so a
	 * batched request gets a cancel marker instead: its task looks for it
	 * while the command runs, kills the command and leaves the session's
	 * state as it was.
	 */
	if (run->batch_size > 1)
	{
		SbGcsConfig cfg;

		sb_gc_gcs(&cfg);
		cfg.timeout_ms = CANCEL_TIMEOUT_MS;
		if (sb_gcs_upload(&cfg, psprintf("%srequests/" INT64_FORMAT ".cancel", run->dir, run->id),
						  "{}", 2, SB_GCS_ANY_GENERATION, NULL, &err) != 0)
			elog(WARNING, "could not cancel execution " INT64_FORMAT " of its batch: %s",
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

static const char *
cloud_remote_name(SbRun *run)
{
	return run != NULL ? run->execution : NULL;
}

/* find_execution looks through a job's recent executions for one that ran request_object. */
static char *
find_execution(const char *job, const char *request_object)
{
	char	   *page = NULL;

	for (int pages = 0; pages < 20; pages++)
	{
		SbError		err;
		char	   *response;
		json_t	   *list;
		json_t	   *items;
		json_t	   *item;
		size_t		i;
		char	   *found = NULL;
		const char *next;

		if (sb_gc_run_call("GET", psprintf("%s/executions?pageSize=100%s%s", job,
										   page ? "&pageToken=" : "", page ? page : ""),
						   NULL, CALL_TIMEOUT_MS, &response, &err) != 0)
			sb_gc_raise(&err, "could not list the job's executions", SB_GC_NOT_FOUND_JOB);
		list = json_loads(response, 0, NULL);
		items = json_object_get(list, "executions");
		json_array_foreach(items, i, item)
		{
			json_t	   *args = json_object_get(json_array_get(json_object_get(json_object_get(item, "template"),
																			  "containers"), 0), "args");
			json_t	   *a;
			size_t		j;

			json_array_foreach(args, j, a)
				if (json_is_string(a) && strcmp(json_string_value(a), request_object) == 0)
					found = pstrdup(json_string_value(json_object_get(item, "name")));
		}
		next = json_string_value(json_object_get(list, "nextPageToken"));
		page = next ? pstrdup(next) : NULL;
		json_decref(list);
		if (found != NULL || page == NULL)
			return found;
	}
	return NULL;
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
	return run->job;
}

const SbDriver sb_cloudrun_driver = {
	.name = "cloudrun",
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

/* sb_cloud_bg_start launches a background process; returns its execution's name. */
char *
sb_cloud_bg_start(const char *session, int64 handle, const char *request)
{
	SbGcsConfig cfg;
	SbError		err;
	char	   *object = bg_object(session, handle, "json");
	json_t	   *body;
	json_t	   *op;
	char	   *response;
	const char *exec;
	char	   *name;

	sb_gc_require_settings();
	sb_gc_gcs(&cfg);
	if (sb_gcs_upload(&cfg, object, request, strlen(request), SB_GCS_ANY_GENERATION, NULL, &err) != 0)
		sb_gc_raise(&err, "could not upload the background request", SB_GC_NOT_FOUND_BUCKET);
	body = json_pack("{s{s[{s[sss]}]s:s}}", "overrides", "containerOverrides", "args", "cloud",
					 sb_bucket, object, "timeout", psprintf("%ds", BG_TIMEOUT_S));
	if (sb_gc_run_call("POST", psprintf("%s:run", job_path()), json_dumps(body, JSON_COMPACT),
					   CALL_TIMEOUT_MS, &response, &err) != 0)
		sb_gc_raise(&err, "could not start a Cloud Run execution", SB_GC_NOT_FOUND_JOB);
	json_decref(body);
	op = json_loads(response, 0, NULL);
	exec = json_string_value(json_object_get(json_object_get(op, "metadata"), "name"));
	name = exec ? pstrdup(exec) : NULL;
	json_decref(op);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Cloud Run answered jobs.run without an execution name")));
	return name;
}

/*
 * sb_cloud_bg_poll says whether a background process has ended: 1 with its
 * exit code, -1 if its execution ended without one, 0 while it runs.
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

	sb_gc_gcs(&cfg);
	if (sb_gcs_download(&cfg, bg_object(session, handle, "exit"), 4096, &data, &len, NULL, &err) == 0)
	{
		json_t	   *root = json_loadb(data, len, 0, NULL);

		free(data);
		*code = root ? (int) json_integer_value(json_object_get(root, "exit_code")) : -1;
		if (root)
			json_decref(root);
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
