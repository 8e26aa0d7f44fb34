/*
 * cloud.c
 *		The executor's cloud mode, what a Cloud Run Job task runs:
 *		`cloudrun-sandbox-executor cloud BUCKET REQUEST_OBJECT`.
 *
 * A session's objects live under P/sessions/<s>/, P being the request's
 * prefix ("" for none):
 *
 *		requests/<id>.json		the request (its cwd and env are ignored)
 *		state.json				cwd, env, last_execution, the name of the
 *								workspace snapshot and its increments; its GCS
 *								generation is the session's generation
 *		workspace/<id>.tar		the workspace as execution <id> left it
 *		workspace/<id>.inc.tar	what execution <id> changed (a session runner's
 *								increment, see runner.c and wsync.c)
 *		results/<id>.json		the result, written once
 *		requests/<id>.cancel	written by the extension to cancel one request of
 *								a batch: its task kills the command and leaves
 *								the session as it was
 *		transfer/<id>			a file operation's payload: the bytes to
 *								upload (written by the extension), or a
 *								result's data or items when too large to
 *								travel inside the result
 *
 * One run reads the request and the state, restores the snapshot and its
 * increments into the workspace directory with the system tar (wsync.c), runs the command exactly as local
 * mode does, archives the workspace, replaces state.json only if its
 * generation is still the one it read (a concurrent writer is detected,
 * never overwritten) and writes the result create-only (a second run of the
 * same request never replaces the first answer).  A file operation (see
 * fileops.c) runs the same way; only one that changed the workspace saves
 * a snapshot and a new state.json (with the cwd and env unchanged).  It
 * exits 0 whenever the request has a result, 1 when none could be written.
 * Running one exec or file request against a loaded state and a restored
 * workspace (sb_cloud_exec_request, sb_cloud_file_request) is shared with
 * runner mode; only how a change is saved differs (CloudRun.commit: here a
 * whole snapshot, increments [], the old base and increments deleted).
 *
 * Settings come from the environment:
 *
 *		STORAGE_EMULATOR_HOST				GCS endpoint; no auth by default
 *		CLOUDRUN_SANDBOX_STORAGE_ENDPOINT	GCS endpoint (wins over the above)
 *		CLOUDRUN_SANDBOX_CREDENTIALS		metadata, none, or a key file's path
 *		CLOUDRUN_SANDBOX_METADATA_HOST		metadata server, host[:port] or URL
 *		CLOUDRUN_SANDBOX_TOKEN_ENDPOINT		OAuth token endpoint (key files)
 *		CLOUDRUN_SANDBOX_WORKSPACE			workspace directory (/workspace)
 *		CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES	largest workspace snapshot (1 GiB)
 *		CLOUDRUN_SANDBOX_BWRAP				bubblewrap, for the command's sandbox
 *											(/usr/bin/bwrap)
 *
 * The user's command, and a background command, never run in the
 * executor's own process tree: unless the request's "isolation" is "none"
 * (an operator opted out), each runs in a sandbox of its own without the
 * executor's credentials, environment or network (see isolate.c).  If that
 * sandbox cannot be created the command is not run; its result is an error
 * saying why.  File operations are the executor's own code, confined to
 * the workspace and /tmp by path (fileops.c).
 *
 * Tokens and keys never reach standard error or a result.
 */
#define _GNU_SOURCE
#include "cloud.h"
#include "command.h"
#include "fileops.h"
#include "isolate.h"
#include "wsync.h"
#include "../common/gcs.h"
#include "../common/oauth.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROGNAME "cloudrun-sandbox-executor"
#define MAX_REQUEST_BYTES SB_CLOUD_MAX_REQUEST_BYTES
#define MAX_STATE_BYTES ((size_t) 16 * 1024 * 1024)
#define DEFAULT_MAX_SNAPSHOT_BYTES ((size_t) 1024 * 1024 * 1024)
#define SNAPSHOT_TIMEOUT_MS (15L * 60 * 1000)
#define MSG_SIZE SB_CLOUD_MSG_SIZE
/* How often a task of a batch looks for its request's cancel marker. */
#define CANCEL_POLL_MS 1000
#define CANCEL_CHECK_TIMEOUT_MS 5000
/* Why a command did not run: its sandbox could not be created (%s: what failed). */
#define NO_SANDBOX_FMT \
	"the command was not run: its sandbox inside the container could not be created (%s); " \
	"a superuser can set cloudrun_sandbox.cloud_isolation = 'none' to run commands without " \
	"it, with the job's credentials within their reach (see the README)"
/* A file operation's payload larger than this goes to a transfer object. */
#define INLINE_PAYLOAD_MAX ((size_t) 1024 * 1024)

#define say sb_cloud_say
#define strfmt sb_cloud_strfmt
#define set_error sb_cloud_set_error
#define delete_quietly sb_cloud_delete_quietly

/* say prints one diagnostic line on standard error. */
void
say(const char *fmt, ...)
{
	va_list ap;

	fputs(PROGNAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* strfmt returns a new string allocated with sb_malloc, or NULL. */
char *
strfmt(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = sb_malloc((size_t) n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* set_error turns res into an error result, keeping any output it has. */
void
set_error(SbExecResult *res, const char *fmt, ...)
{
	char msg[MSG_SIZE];
	size_t n;
	bool repaired;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	res->status = SB_STATUS_ERROR;
	sb_free(res->error);
	/* Object names and tar's complaints need not be UTF-8; JSON must be. */
	res->error = sb_utf8_repair(msg, strlen(msg), true, &n, &repaired);
}

/* drop_state removes the new cwd and env from a result whose state was not saved. */
static void
drop_state(SbExecResult *res)
{
	sb_free(res->cwd);
	res->cwd = NULL;
	if (res->env)
		json_decref(res->env);
	res->env = NULL;
	res->has_state = false;
	res->state_generation = 0;
}

/* setting returns an environment variable's value, or NULL if unset or empty. */
static const char *
setting(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* parse_size reads a positive decimal byte count. */
static bool
parse_size(const char *text, size_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > SIZE_MAX / 2)
		return false;
	*out = (size_t) v;
	return true;
}

/*
 * setup_storage reads the settings and makes the GCS client and the
 * credentials; false with msg set if that is impossible.
 */
bool
sb_cloud_setup_storage(CloudRun *run, char *msg, size_t msglen)
{
	const char *emulator = setting("STORAGE_EMULATOR_HOST");
	const char *endpoint = setting("CLOUDRUN_SANDBOX_STORAGE_ENDPOINT");
	const char *creds = setting("CLOUDRUN_SANDBOX_CREDENTIALS");
	const char *max = setting("CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES");
	SbAuthConfig acfg;
	SbError err;

	run->workspace_dir = setting("CLOUDRUN_SANDBOX_WORKSPACE");
	if (run->workspace_dir == NULL)
		run->workspace_dir = SB_WORKSPACE;
	run->max_snapshot = DEFAULT_MAX_SNAPSHOT_BYTES;
	if (max != NULL && !parse_size(max, &run->max_snapshot))
		snprintf(run->config_error, sizeof(run->config_error),
				 "CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES is not a positive number of bytes: "
				 "\"%.64s\"",
				 max);
	else if (run->workspace_dir[0] != '/')
		snprintf(run->config_error, sizeof(run->config_error),
				 "CLOUDRUN_SANDBOX_WORKSPACE is not an absolute path: \"%.64s\"",
				 run->workspace_dir);

	/* Like Google's clients: an emulator means no credentials unless told. */
	memset(&acfg, 0, sizeof(acfg));
	if (creds == NULL)
		acfg.mode = emulator != NULL ? SB_AUTH_NONE : SB_AUTH_METADATA;
	else if (strcmp(creds, "none") == 0)
		acfg.mode = SB_AUTH_NONE;
	else if (strcmp(creds, "metadata") == 0)
		acfg.mode = SB_AUTH_METADATA;
	else
	{
		acfg.mode = SB_AUTH_SERVICE_ACCOUNT;
		acfg.key_file = creds;
	}
	acfg.metadata_host = setting("CLOUDRUN_SANDBOX_METADATA_HOST");
	acfg.token_endpoint = setting("CLOUDRUN_SANDBOX_TOKEN_ENDPOINT");

	run->http = sb_http_client_new(&err);
	if (run->http == NULL)
	{
		snprintf(msg, msglen, "cannot start the HTTP client: %s", err.message);
		return false;
	}
	run->auth = sb_auth_new(&acfg, &err);
	if (run->auth == NULL)
	{
		snprintf(msg, msglen, "cannot set up credentials: %s", err.message);
		return false;
	}
	sb_auth_set_http(run->auth, run->http, NULL);
	run->gcs.storage_endpoint = endpoint != NULL ? endpoint : emulator;
	run->gcs.bucket = run->bucket;
	run->gcs.auth = run->auth;
	run->gcs.http = run->http;
	return true;
}

/*
 * result_name_for turns ".../requests/<x>.json" into ".../results/<x>.json";
 * NULL if the request object is not named that way.
 */
static char *
result_name_for(const char *request_name)
{
	const char *slash = strrchr(request_name, '/');
	const char *base;
	size_t blen;

	if (slash == NULL || slash - request_name < 9 ||
		memcmp(slash - 9, "/requests", 9) != 0)
		return NULL;
	base = slash + 1;
	blen = strlen(base);
	if (blen <= 5 || strcmp(base + blen - 5, ".json") != 0)
		return NULL;
	return strfmt("%.*s/results/%s", (int) (slash - 9 - request_name), request_name,
				  base);
}

/*
 * sb_cloud_check_request validates what cloud mode needs beyond the
 * protocol (a session, an id, a request object run->request_name named
 * dir/<id>.json under the session) and sets the session's object names; a
 * run that has them already (a runner) checks the request names the same
 * session.  False with msg set if the request is unusable.
 */
bool
sb_cloud_check_request(CloudRun *run, const char *dir, const char *session, const char *prefix,
					   long long id, char *msg, size_t msglen)
{
	size_t plen = strlen(prefix);
	char *session_dir;
	char *expected;
	bool same;

	if (session == NULL)
	{
		snprintf(msg, msglen, "the request names no session");
		return false;
	}
	if (id <= 0)
	{
		snprintf(msg, msglen, "the request has no execution id");
		return false;
	}
	while (plen > 0 && prefix[plen - 1] == '/')
		plen--;
	session_dir = plen > 0 ? strfmt("%.*s/sessions/%s", (int) plen, prefix, session)
						   : strfmt("sessions/%s", session);
	if (session_dir != NULL && run->session_dir != NULL &&
		strcmp(session_dir, run->session_dir) == 0)
	{
		sb_free(session_dir);	/* a runner's request for its own session */
		session_dir = NULL;
	}
	else if (session_dir != NULL && run->session_dir == NULL)
	{
		run->session_dir = session_dir;
		run->state_name = strfmt("%s/state.json", run->session_dir);
		session_dir = NULL;
	}
	expected = session_dir == NULL && run->session_dir != NULL ? strfmt("%s/%s/%lld.json", run->session_dir, dir, id) : NULL;
	if (expected == NULL || run->state_name == NULL)
	{
		if (session_dir != NULL)
			snprintf(msg, msglen, "the request names another session (%.200s) than this runner's (%.200s)",
					 session_dir, run->session_dir);
		else
			snprintf(msg, msglen, "out of memory");
		sb_free(session_dir);
		sb_free(expected);
		return false;
	}
	sb_free(session_dir);
	same = strcmp(expected, run->request_name) == 0;
	if (!same)
		snprintf(msg, msglen,
				 "the request object \"%s\" does not match its prefix, session and id "
				 "(expected \"%s\")",
				 run->request_name, expected);
	sb_free(expected);
	return same;
}

/*
 * load_state reads the session's state.json and its generation; a missing
 * one is the initial state (/workspace, no variables, generation 0).
 */
bool
sb_cloud_load_state(CloudRun *run, SbState *state, long long *generation, char *msg, size_t msglen)
{
	char *data;
	size_t len;
	int64_t gen = 0;
	SbError err;
	char errbuf[256];
	bool ok;

	memset(state, 0, sizeof(*state));
	*generation = 0;
	if (sb_gcs_download(&run->gcs, run->state_name, MAX_STATE_BYTES, &data, &len, &gen,
						&err) != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND)
		{
			state->cwd = sb_strdup(SB_WORKSPACE);
			state->env = json_object();
			return true;
		}
		snprintf(msg, msglen, "cannot read the session's state %s: %s", run->state_name,
				 err.message);
		return false;
	}
	ok = sb_state_decode(data, len, state, errbuf, sizeof(errbuf));
	free(data);
	if (!ok)
	{
		snprintf(msg, msglen, "the session's state %s is damaged: %s (repair or delete the "
				 "object, or drop the session and create it again)", run->state_name, errbuf);
		return false;
	}
	if (gen <= 0)
	{
		sb_state_clear(state);
		snprintf(msg, msglen, "storage reported no generation for %s", run->state_name);
		return false;
	}
	*generation = gen;
	return true;
}

/*
 * sb_cloud_state_records says whether state.json now records execution id
 * (written by this run, whose response was lost, or by a twin run of the
 * same request), and sets *generation to its generation if so.
 */
bool
sb_cloud_state_records(CloudRun *run, long long id, long long *generation)
{
	SbState state;
	long long gen;
	char msg[MSG_SIZE];
	bool yes;

	if (!sb_cloud_load_state(run, &state, &gen, msg, sizeof(msg)))
		return false;
	yes = gen > 0 && state.last_execution == id;
	sb_state_clear(&state);
	if (yes)
		*generation = gen;
	return yes;
}

/* delete_quietly deletes an object, only warning on standard error if that fails. */
void
delete_quietly(CloudRun *run, const char *name)
{
	SbError err;

	if (sb_gcs_delete(&run->gcs, name, SB_GCS_ANY_GENERATION, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND)
		say("warning: cannot delete gs://%s/%s: %s", run->bucket, name, err.message);
}

/* sb_cloud_add_obsolete notes an object to delete once the result is written. */
bool
sb_cloud_add_obsolete(CloudRun *run, const char *name)
{
	char	   *copy;

	if (run->n_obsolete >= SB_CLOUD_MAX_OBSOLETE || (copy = sb_strdup(name)) == NULL)
		return false;
	run->obsolete[run->n_obsolete++] = copy;
	return true;
}

/*
 * cold_commit is cold mode's CloudCommitFn: it archives the whole workspace
 * as snapshot workspace/<id>.tar and replaces state.json (if its generation
 * is still run->generation) with cwd, env, last_execution id and no
 * increments; the old base and increments become obsolete.
 */
static bool
cold_commit(CloudRun *run, long long id, const char *cwd, json_t *env, const char *what,
			long long *new_generation, char *msg, size_t msglen)
{
	const SbState *old = &run->state;
	long long generation = run->generation;
	SbBuf tarball;
	SbState state;
	SbError err;
	char *snapshot;
	char *text;
	int64_t written = 0;
	int rc;

	if (!sb_wsync_archive(run->workspace_dir, run->max_snapshot, &tarball, msg, msglen))
		return false;
	snapshot = strfmt("%s/workspace/%lld.tar", run->session_dir, id);
	if (snapshot == NULL)
	{
		sb_buf_free(&tarball);
		snprintf(msg, msglen, "out of memory");
		return false;
	}
	run->gcs.timeout_ms = SNAPSHOT_TIMEOUT_MS;
	rc = sb_gcs_upload(&run->gcs, snapshot, tarball.data ? tarball.data : "", tarball.len,
					   SB_GCS_ANY_GENERATION, NULL, &err);
	run->gcs.timeout_ms = 0;
	sb_buf_free(&tarball);
	if (rc != 0)
	{
		snprintf(msg, msglen, "cannot store the workspace snapshot %s: %s", snapshot,
				 err.message);
		sb_free(snapshot);
		return false;
	}

	memset(&state, 0, sizeof(state));
	state.generation = old->generation + 1;
	state.cwd = (char *) cwd;
	state.env = env;
	state.last_execution = id;
	state.workspace = snapshot;
	text = sb_state_encode(&state);
	if (text == NULL)
	{
		snprintf(msg, msglen, "cannot encode the session's state");
		delete_quietly(run, snapshot);
		sb_free(snapshot);
		return false;
	}
	rc = sb_gcs_upload(&run->gcs, run->state_name, text, strlen(text), generation,
					   &written, &err);
	sb_free(text);
	if (rc == 0)
		*new_generation = written;
	else if (err.kind == SB_ERR_PRECONDITION &&
			 sb_cloud_state_records(run, id, new_generation))
		rc = 0; /* our own write (or a twin run's) is there */
	if (rc != 0)
	{
		if (err.kind == SB_ERR_PRECONDITION)
		{
			snprintf(msg, msglen,
					 "the session's state changed while %s ran (generation %lld expected)",
					 what, generation);
			delete_quietly(run, snapshot);
		}
		else
			/* The write may have happened: keep the snapshot it would name. */
			snprintf(msg, msglen, "cannot save the session's state %s: %s", run->state_name,
					 err.message);
		sb_free(snapshot);
		return false;
	}
	/* The new state names neither the old base (unless it is this one) nor any increment. */
	if (old->workspace != NULL && strcmp(old->workspace, snapshot) != 0)
		(void) sb_cloud_add_obsolete(run, old->workspace);
	for (int i = 0; i < old->n_increments; i++)
		(void) sb_cloud_add_obsolete(run, old->increments[i]);
	sb_free(snapshot);
	return true;
}

/*
 * save_state saves the workspace and the state (what the command left, or
 * the old cwd/env if unknown) after the command ran, through run->commit;
 * on failure res becomes an error result without a state.
 */
static void
save_state(CloudRun *run, const SbExecRequest *req, SbExecResult *res)
{
	const SbState *old = &run->state;
	char msg[MSG_SIZE];
	long long new_generation = 0;
	bool had_state = res->has_state;

	if (!had_state)
	{
		res->has_state = true;
		res->cwd = sb_strdup(old->cwd);
		res->env = json_deep_copy(old->env);
	}
	if (res->cwd == NULL || res->env == NULL)
		snprintf(msg, sizeof(msg), "out of memory");
	if (res->cwd == NULL || res->env == NULL ||
		!run->commit(run, req->id, res->cwd, res->env, "the command", &new_generation, msg,
					 sizeof(msg)))
	{
		set_error(res, "%s", msg);
		drop_state(res);
		return;
	}
	res->state_generation = new_generation;
}

/*
 * sb_cloud_restore makes the workspace directory and unpacks into it the
 * base snapshot and the increments run->state names; false with msg set.
 */
bool
sb_cloud_restore(CloudRun *run, size_t *base_bytes, size_t *inc_bytes, char *msg, size_t msglen)
{
	if (!sb_wsync_check_names(run->session_dir, &run->state, msg, msglen))
		return false;
	if (!sb_wsync_make_dirs(run->workspace_dir))
	{
		snprintf(msg, msglen, "cannot create the workspace directory %s: %s",
				 run->workspace_dir, strerror(errno));
		return false;
	}
	return sb_wsync_restore(&run->gcs, run->workspace_dir, run->max_snapshot, &run->state,
							base_bytes, inc_bytes, msg, msglen);
}

/*
 * cancel_requested says whether the extension left the cancel marker of this
 * run's request (requests/<id>.cancel).  A task of a batch cannot be stopped
 * by cancelling its execution without stopping the other requests, and an
 * execution whose name the extension never learnt cannot be cancelled at
 * all, so the extension cancels one request this way; every task looks for
 * it once a second while its command runs.  A failed lookup is not a cancel.
 */
static bool
cancel_requested(void *arg)
{
	CloudRun *run = arg;
	SbGcsObjectInfo info;
	SbError err;
	int rc;

	if (run->cancel_name == NULL)
		return false;
	run->gcs.timeout_ms = CANCEL_CHECK_TIMEOUT_MS;
	rc = sb_gcs_stat(&run->gcs, run->cancel_name, &info, &err);
	run->gcs.timeout_ms = 0;
	return rc == 0;
}

/* How often the output so far is saved while a command runs. */
#define LIVE_SAVE_MS 1000

/*
 * live_save is the SbLiveHook of a cloud execution: every LIVE_SAVE_MS while
 * the command prints, its output so far (within max_output_bytes) replaces
 * live/<id>.out and .err under the session, for sandbox.read_output.  A
 * failed save is only a warning: the result still carries all of it.
 */
static void
live_save(void *arg, const char *out, size_t out_len, const char *err, size_t err_len,
		  bool final)
{
	CloudRun *run = arg;
	const char *data[2] = {out ? out : "", err ? err : ""};
	size_t len[2] = {out_len, err_len};

	if (final)
		return;					/* the result has it now */
	for (int i = 0; i < 2; i++)
	{
		SbError e;

		if (len[i] == run->live_sent[i] && run->live_saved)
			continue;
		if (sb_gcs_upload(&run->gcs, run->live_name[i], data[i], len[i], SB_GCS_ANY_GENERATION,
						  NULL, &e) != 0)
			say("warning: cannot save the output so far to gs://%s/%s: %s", run->bucket,
				run->live_name[i], e.message);
		else
			run->live_sent[i] = len[i];
	}
	run->live_saved = true;
}

/*
 * sb_cloud_exec_already_ran: true (with res the error saying so) when the
 * loaded state already records request req (a run of it saved the state,
 * then died before its result).
 */
bool
sb_cloud_exec_already_ran(CloudRun *run, const SbExecRequest *req, SbExecResult *res)
{
	if (run->generation <= 0 || run->state.last_execution != req->id)
		return false;
	set_error(res,
			  "execution %lld already ran in an earlier attempt that saved the "
			  "session's state but not its result; its output is lost",
			  req->id);
	res->has_state = true;
	res->cwd = sb_strdup(run->state.cwd);
	res->env = json_deep_copy(run->state.env);
	res->state_generation = run->generation;
	return true;
}

/*
 * sb_cloud_exec_request runs a valid exec request against the loaded state
 * (run->state: the session's cwd and env, never the request's) in the
 * restored workspace, exactly as a cold execution does: its isolation,
 * cancel marker watch, live output and limits; then saves what it changed
 * through run->commit.  It fills *res.
 */
void
sb_cloud_exec_request(CloudRun *run, SbExecRequest *req, SbExecResult *res)
{
	SbCancelWatch watch = {cancel_requested, run, CANCEL_POLL_MS};
	SbLiveHook live = {live_save, run, LIVE_SAVE_MS};
	char msg[MSG_SIZE];

	/* The session's cwd and env come from state.json, not the request. */
	req->cwd = run->state.cwd;
	req->env = run->state.env;
	sb_free(run->live_name[0]);
	sb_free(run->live_name[1]);
	run->live_name[0] = strfmt("%s/live/%lld.out", run->session_dir, req->id);
	run->live_name[1] = strfmt("%s/live/%lld.err", run->session_dir, req->id);
	run->live_sent[0] = run->live_sent[1] = 0;
	run->live_saved = false;
	req->live = &live;
	if (run->cancel_name != NULL && !run->no_cancel_precheck && cancel_requested(run))
		set_error(res, "cancelled by sandbox.cancel()");
	else if (req->isolation == SB_ISOLATION_NONE)
		sb_run_command_watched(req, res, run->cancel_name ? &watch : NULL);
	else if (!sb_isolate_ready(run->workspace_dir, msg, sizeof(msg)))
		set_error(res, NO_SANDBOX_FMT, msg);
	else
		sb_isolate_run(req, res, run->cancel_name ? &watch : NULL);
	req->cwd = NULL;
	req->env = NULL;
	req->live = NULL;
	/* An error means the command never properly ran: leave the session as is. */
	if (res->status != SB_STATUS_ERROR)
		save_state(run, req, res);
}

/*
 * run_execution applies a valid request to its session in cold mode: read
 * the state, restore the workspace, run the command, save the workspace
 * and the state.  It fills *res.
 */
static void
run_execution(CloudRun *run, SbExecRequest *req, SbExecResult *res)
{
	char msg[MSG_SIZE];

	memset(res, 0, sizeof(*res));
	if (!sb_cloud_load_state(run, &run->state, &run->generation, msg, sizeof(msg)))
		set_error(res, "%s", msg);
	else if (sb_cloud_exec_already_ran(run, req, res))
		;
	else if (!sb_cloud_restore(run, NULL, NULL, msg, sizeof(msg)))
		set_error(res, "%s", msg);
	else
		sb_cloud_exec_request(run, req, res);
}

/*
 * fetch_upload reads the bytes a file_upload request names (an object of
 * the session's transfer/ folder) into req; false with res set otherwise.
 * The caller frees req->owned.
 */
static bool
fetch_upload(CloudRun *run, SbFileRequest *req, SbFileResult *res)
{
	size_t dlen = strlen(run->session_dir);
	SbError err;
	size_t len;
	int rc;

	if (strncmp(req->transfer, run->session_dir, dlen) != 0 ||
		strncmp(req->transfer + dlen, "/transfer/", 10) != 0)
	{
		sb_file_set_error(res, SB_FERR_NONE, "the upload's object is outside the session: %s", req->transfer);
		return false;
	}
	run->gcs.timeout_ms = SNAPSHOT_TIMEOUT_MS;
	rc = sb_gcs_download(&run->gcs, req->transfer, (size_t) req->max_bytes, &req->owned,
						 &len, NULL, &err);
	run->gcs.timeout_ms = 0;
	if (rc != 0)
	{
		sb_file_set_error(res, SB_FERR_NONE, "cannot read the upload's object %s: %s", req->transfer,
				   err.message);
		return false;
	}
	req->data = req->owned;
	req->data_len = len;
	return true;
}

/*
 * move_payload moves a result's data or items to the object transfer/<id>
 * when they would make the result too large; on failure res becomes an
 * error result.
 */
static void
move_payload(CloudRun *run, const SbFileRequest *req, SbFileResult *res)
{
	char *text = NULL;
	const char *bytes;
	size_t len;
	char *name;
	SbError err;
	int rc;

	if (res->data != NULL && (res->data_len + 2) / 3 * 4 > INLINE_PAYLOAD_MAX)
	{
		bytes = res->data;
		len = res->data_len;
	}
	else if (res->items != NULL &&
			 (text = json_dumps(res->items, JSON_COMPACT)) != NULL &&
			 strlen(text) > INLINE_PAYLOAD_MAX)
	{
		bytes = text;
		len = strlen(text);
	}
	else
	{
		sb_free(text);
		return;
	}
	name = strfmt("%s/transfer/%lld", run->session_dir, req->id);
	run->gcs.timeout_ms = SNAPSHOT_TIMEOUT_MS;
	rc = name ? sb_gcs_upload(&run->gcs, name, bytes, len, SB_GCS_ANY_GENERATION, NULL, &err)
			  : -1;
	run->gcs.timeout_ms = 0;
	sb_free(text);
	if (rc != 0)
	{
		sb_file_set_error(res, SB_FERR_NONE, "cannot store the result's payload %s: %s",
				   name ? name : "(out of memory)", name ? err.message : "");
		sb_free(name);
	}
	else
		res->transfer = name;
	sb_free(res->data);
	res->data = NULL;
	res->data_len = 0;
	if (res->items)
		json_decref(res->items);
	res->items = NULL;
}

/*
 * sb_cloud_file_already_ran is sb_cloud_exec_already_ran for a file request.
 */
bool
sb_cloud_file_already_ran(CloudRun *run, const SbFileRequest *req, SbFileResult *res)
{
	if (run->generation <= 0 || run->state.last_execution != req->id)
		return false;
	sb_file_set_error(res, SB_FERR_NONE,
					  "file operation %lld already ran in an earlier attempt that saved the "
					  "session's state but not its result",
					  req->id);
	res->state_generation = run->generation;
	return true;
}

/*
 * sb_cloud_file_request applies a valid file request to the loaded state
 * and the restored workspace: fetch an upload's bytes, do the operation,
 * and if it changed the workspace save it through run->commit (cwd and env
 * as they were); a large answer goes to a transfer object.
 */
void
sb_cloud_file_request(CloudRun *run, SbFileRequest *req, SbFileResult *res)
{
	long long new_generation = 0;
	char msg[MSG_SIZE];

	if (req->op == SB_FILE_UPLOAD && req->transfer != NULL && !fetch_upload(run, req, res))
		return;
	/* The session's cwd comes from state.json, not the request. */
	req->cwd = run->state.cwd;
	sb_file_run(req, res);
	req->cwd = NULL;
	if (res->status == SB_STATUS_SUCCEEDED && res->changed)
	{
		if (run->commit(run, req->id, run->state.cwd, run->state.env, "the file operation",
						&new_generation, msg, sizeof(msg)))
			res->state_generation = new_generation;
		else
			sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
	}
	if (res->status == SB_STATUS_SUCCEEDED)
		move_payload(run, req, res);
}

/*
 * run_file_execution applies a valid file request to its session in cold
 * mode: read the state, restore the workspace, then sb_cloud_file_request.
 */
static void
run_file_execution(CloudRun *run, SbFileRequest *req, SbFileResult *res)
{
	char msg[MSG_SIZE];

	memset(res, 0, sizeof(*res));
	if (!sb_cloud_load_state(run, &run->state, &run->generation, msg, sizeof(msg)))
		sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
	else if (sb_cloud_file_already_ran(run, req, res))
		;
	else if (!sb_cloud_restore(run, NULL, NULL, msg, sizeof(msg)))
		sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
	else
		sb_cloud_file_request(run, req, res);
}

/*
 * write_result stores the result create-only: 0 when written, 1 when a
 * result was there already (a duplicate run), -1 with msg set on failure.
 */
int
sb_cloud_write_result(CloudRun *run, char *text, char *msg, size_t msglen)
{
	SbError err;
	int rc;

	if (text == NULL)
	{
		snprintf(msg, msglen, "cannot encode the result");
		return -1;
	}
	rc = sb_gcs_upload(&run->gcs, run->result_name, text, strlen(text), 0, NULL, &err);
	sb_free(text);
	if (rc == 0)
		return 0;
	if (err.kind == SB_ERR_PRECONDITION)
		return 1;
	snprintf(msg, msglen, "cannot write the result gs://%s/%s: %s", run->bucket,
			 run->result_name, err.message);
	return -1;
}


/*
 * sb_cloud_finish_request runs once the result is written: it deletes what
 * the new state no longer names and the output saved while the command ran
 * (the result has it now), and forgets them.
 */
void
sb_cloud_finish_request(CloudRun *run)
{
	for (int i = 0; i < run->n_obsolete; i++)
	{
		delete_quietly(run, run->obsolete[i]);
		sb_free(run->obsolete[i]);
		run->obsolete[i] = NULL;
	}
	run->n_obsolete = 0;
	if (run->live_saved)
		for (int i = 0; i < 2; i++)
			if (run->live_name[i] != NULL)
				delete_quietly(run, run->live_name[i]);
	run->live_saved = false;
}

/* Background processes in the cloud: how often the log is saved and the kill marker looked for. */
#define BG_TICK_MS 2000
#define BG_KILL_GRACE_MS 3000
#define BG_LOG_CAP ((size_t) 8 * 1024 * 1024)

/* bg_signal signals everything the background command started. */
static void
bg_signal(pid_t pgid, int sig)
{
	if (getpid() == 1)
		kill(-1, sig);
	else
		kill(-pgid, sig);
}

/*
 * run_background supervises one background process of a cloud session
 * (sandbox.start_background): it restores the session's workspace, runs the
 * command, saves its combined output to <base>.log every few seconds and at
 * the end, stops it (SIGTERM, then SIGKILL) when <base>.kill appears or the
 * execution is cancelled, and writes {"exit_code": N} to <base>.exit.  The
 * workspace it changes is its own copy; the session's state is not changed.
 */
static int
run_background(CloudRun *run, SbExecRequest *req, const char *base)
{
	char msg[MSG_SIZE];
	char *log_name = strfmt("%s.log", base);
	char *exit_name = strfmt("%s.exit", base);
	char *kill_name = strfmt("%s.kill", base);
	SbBuf out;
	size_t saved = (size_t) -1;
	int pipefd[2];
	sigset_t mask;
	int sigfd;
	pid_t child;
	pid_t inner = 0; /* isolated: the sandbox's first process */
	int wstatus = 0;
	bool exited = false;
	long long next_tick = 0, kill_at = 0, exited_at = 0;
	SbError err;
	char exit_text[64];
	int code;

	sb_buf_init(&out, BG_LOG_CAP);
	if (!sb_cloud_load_state(run, &run->state, &run->generation, msg, sizeof(msg)) ||
		!sb_cloud_restore(run, NULL, NULL, msg, sizeof(msg)))
	{
		say("%s", msg);
		sb_buf_append(&out, msg, strlen(msg));
		sb_buf_append(&out, "\n", 1);
		(void) sb_gcs_upload(&run->gcs, log_name, out.data, out.len, SB_GCS_ANY_GENERATION,
							 NULL, &err);
		snprintf(exit_text, sizeof(exit_text), "{\"exit_code\":127}");
		(void) sb_gcs_upload(&run->gcs, exit_name, exit_text, strlen(exit_text),
							 SB_GCS_ANY_GENERATION, NULL, &err);
		return 0;
	}
	req->cwd = run->state.cwd;
	req->env = run->state.env;
	if (req->isolation != SB_ISOLATION_NONE &&
		!sb_isolate_ready(run->workspace_dir, msg, sizeof(msg)))
	{
		char		line[MSG_SIZE + 512];

		snprintf(line, sizeof(line), NO_SANDBOX_FMT "\n", msg);
		say("%s", line);
		(void) sb_gcs_upload(&run->gcs, log_name, line, strlen(line), SB_GCS_ANY_GENERATION,
							 NULL, &err);
		snprintf(exit_text, sizeof(exit_text), "{\"exit_code\":127}");
		(void) sb_gcs_upload(&run->gcs, exit_name, exit_text, strlen(exit_text),
							 SB_GCS_ANY_GENERATION, NULL, &err);
		return 0;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (pipe2(pipefd, O_CLOEXEC) != 0 || sigfd < 0)
	{
		say("cannot create pipes: %s", strerror(errno));
		return 1;
	}
	if (req->isolation == SB_ISOLATION_NONE)
	{
		child = fork();
		if (child == 0)
			sb_background_child(req, pipefd[1], run->workspace_dir, -1);
	}
	else
		child = sb_isolate_background(req, pipefd[1], &inner, msg, sizeof(msg));
	close(pipefd[1]);
	if (child < 0)
	{
		say("cannot start the background command: %s",
			req->isolation == SB_ISOLATION_NONE ? strerror(errno) : msg);
		return 1;
	}
	setpgid(child, child);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);

	while (!exited || pipefd[0] >= 0)
	{
		struct pollfd pfd[2] = {{.fd = sigfd, .events = POLLIN}, {.fd = pipefd[0], .events = POLLIN}};
		long long now = sb_now_ms();
		char chunk[65536];
		ssize_t n = -1;
		struct signalfd_siginfo si;
		bool stop = false;

		if (now >= next_tick)
		{
			SbGcsObjectInfo info;

			/* Save the output so far, and look for a request to stop. */
			if (out.len != saved &&
				sb_gcs_upload(&run->gcs, log_name, out.data ? out.data : "", out.len,
							  SB_GCS_ANY_GENERATION, NULL, &err) == 0)
				saved = out.len;
			if (kill_at == 0 && sb_gcs_stat(&run->gcs, kill_name, &info, &err) == 0)
				stop = true;
			next_tick = now + BG_TICK_MS;
		}
		if (kill_at != 0 && now >= kill_at)
		{
			bg_signal(child, SIGKILL);
			kill_at = -1;
		}
		if (exited && pipefd[0] >= 0 && now >= exited_at + 500)
		{
			close(pipefd[0]);		/* leftovers of a finished command: stop waiting */
			pipefd[0] = -1;
		}
		if (!stop && poll(pfd, pipefd[0] >= 0 ? 2 : 1, 200) > 0)
		{
			while (read(sigfd, &si, sizeof(si)) == sizeof(si))
			{
				if (si.ssi_signo == SIGCHLD)
				{
					pid_t pid;
					int ws;

					while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
						if (pid == child)
						{
							wstatus = ws;
							exited = true;
							exited_at = sb_now_ms();
							bg_signal(child, SIGKILL);
						}
				}
				else
					stop = true;	/* the execution is being cancelled */
			}
			while (pipefd[0] >= 0 && (n = read(pipefd[0], chunk, sizeof(chunk))) != 0)
			{
				if (n < 0)
				{
					if (errno != EAGAIN && errno != EINTR)
						close(pipefd[0]), pipefd[0] = -1;
					break;
				}
				sb_buf_append(&out, chunk, (size_t) n);
			}
			if (n == 0 && pipefd[0] >= 0)
				close(pipefd[0]), pipefd[0] = -1;
		}
		if (stop && kill_at == 0 && !exited)
		{
			/*
			 * A sandbox's first process (the executor in background mode)
			 * passes SIGTERM on to everything inside; bwrap itself would just
			 * die and take the sandbox with it, without a grace period.
			 */
			if (inner > 0)
				kill(inner, SIGTERM);
			else
				bg_signal(child, SIGTERM);
			kill_at = sb_now_ms() + BG_KILL_GRACE_MS;
		}
	}
	code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	(void) sb_gcs_upload(&run->gcs, log_name, out.data ? out.data : "", out.len,
						 SB_GCS_ANY_GENERATION, NULL, &err);
	snprintf(exit_text, sizeof(exit_text), "{\"exit_code\":%d}", code);
	if (sb_gcs_upload(&run->gcs, exit_name, exit_text, strlen(exit_text), SB_GCS_ANY_GENERATION,
					  NULL, &err) != 0)
		say("cannot write gs://%s/%s: %s", run->bucket, exit_name, err.message);
	req->cwd = NULL;
	req->env = NULL;
	sb_buf_free(&out);
	sb_free(log_name);
	sb_free(exit_name);
	sb_free(kill_name);
	return 0;
}

/* background_base returns "P/sessions/S/background/H" for ".../background/H.json", or NULL. */
static char *
background_base(const char *request_name)
{
	const char *slash = strrchr(request_name, '/');
	size_t len = strlen(request_name);

	if (slash == NULL || slash - request_name < 11 || memcmp(slash - 11, "/background", 11) != 0 ||
		len < 6 || strcmp(request_name + len - 5, ".json") != 0)
		return NULL;
	return strfmt("%.*s", (int) (len - 5), request_name);
}

/*
 * claim makes this run the only one of its request: it writes
 * <base>.claim create-only, naming this execution and task.  A second
 * execution of the same request (jobs:run started twice, its first answer
 * lost) finds another's claim and must write nothing: 1 then.  A later
 * attempt of this same task (a retry after a crash) finds its own claim and
 * goes on: 0, as for a new claim.  -1 with msg set when storage fails.
 */
static int
claim(CloudRun *run, const char *base, char *msg, size_t msglen)
{
	const char *exec = getenv("CLOUD_RUN_EXECUTION");
	const char *task = getenv("CLOUD_RUN_TASK_INDEX");
	char *name = strfmt("%s.claim", base);
	char *mine = strfmt("{\"execution\":\"%s\",\"task\":\"%s\",\"pid\":%d}",
						exec ? exec : "", task ? task : "0", exec ? 0 : (int) getpid());
	char *theirs = NULL;
	size_t len = 0;
	SbError err;
	int rc = -1;

	if (name == NULL || mine == NULL)
		snprintf(msg, msglen, "out of memory");
	else if (sb_gcs_upload(&run->gcs, name, mine, strlen(mine), 0, NULL, &err) == 0)
		rc = 0;
	else if (err.kind != SB_ERR_PRECONDITION)
		snprintf(msg, msglen, "cannot claim the request gs://%s/%s: %s", run->bucket, name,
				 err.message);
	else if (sb_gcs_download(&run->gcs, name, 4096, &theirs, &len, NULL, &err) != 0)
		snprintf(msg, msglen, "cannot read the claim gs://%s/%s: %s", run->bucket, name,
				 err.message);
	else
		rc = len == strlen(mine) && memcmp(theirs, mine, len) == 0 ? 0 : 1;
	free(theirs);
	sb_free(mine);
	sb_free(name);
	return rc;
}

/* claimed runs claim() for a request, saying why when this run must stop (1 or -1). */
static int
claimed(CloudRun *run, const char *base)
{
	char msg[MSG_SIZE];
	int rc = claim(run, base, msg, sizeof(msg));

	if (rc > 0)
		say("another execution has claimed gs://%s/%s.json; not running it again", run->bucket,
			base);
	else if (rc < 0)
		say("%s", msg);
	return rc;
}

/* sb_cloud_background runs a background request object; see run_background. */
static int
sb_cloud_background(CloudRun *run, const char *base)
{
	SbExecRequest req;
	json_t *holder = NULL;
	char *text = NULL;
	size_t len = 0;
	char msg[MSG_SIZE];
	SbError err;
	int rc = 1;

	if (!sb_cloud_setup_storage(run, msg, sizeof(msg)))
		say("%s", msg);
	else if (sb_gcs_download(&run->gcs, run->request_name, MAX_REQUEST_BYTES, &text, &len, NULL,
							 &err) != 0)
		say("cannot read the request gs://%s/%s: %s", run->bucket, run->request_name,
			err.message);
	else if (!sb_request_decode(text, len, &req, &holder, msg, sizeof(msg)) ||
			 !sb_cloud_check_request(run, "background", req.session, req.prefix, req.id, msg,
							   sizeof(msg)))
		say("the request gs://%s/%s is invalid: %s", run->bucket, run->request_name, msg);
	else
	{
		int c = claimed(run, base);

		/* A twin (0: the first run supervises the process), or storage failed (1). */
		rc = c == 0 ? run_background(run, &req, base) : c > 0 ? 0 : 1;
	}
	if (holder)
		json_decref(holder);
	free(text);
	return rc;
}

/*
 * on_term ends the task when its execution is cancelled: Cloud Run sends
 * SIGTERM to the container's entrypoint, which is PID 1 there and would
 * otherwise ignore it.  What it started goes with it (a command's sandbox
 * dies with its parent).  A background run blocks SIGTERM and stops its
 * command gracefully instead.
 */
void
sb_cloud_on_term(int sig)
{
	if (getpid() == 1)
		kill(-1, SIGKILL);
	_exit(128 + sig);
}

int
sb_cloud_main(int argc, char **argv)
{
	CloudRun run;
	SbExecRequest req;
	SbExecResult res;
	SbFileRequest freq;
	SbFileResult fres;
	SbGcsObjectInfo info;
	SbError err;
	json_t *holder = NULL;
	char *text = NULL;
	size_t len = 0;
	char *result;
	char msg[MSG_SIZE];
	int kind;
	int rc = 1;

	if (argc != 3)
	{
		fprintf(stderr, "usage: " PROGNAME " cloud BUCKET REQUEST_OBJECT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, sb_cloud_on_term);
	/* Keep the sandboxed command out of our memory (credentials) and pipes. */
	prctl(PR_SET_DUMPABLE, 0);
	memset(&run, 0, sizeof(run));
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	memset(&freq, 0, sizeof(freq));
	memset(&fres, 0, sizeof(fres));
	run.bucket = argv[1];
	run.request_name = argv[2];
	run.commit = cold_commit;

	/* A background process: supervised here for as long as it runs. */
	{
		char *base = background_base(run.request_name);

		if (base != NULL)
		{
			rc = sb_cloud_background(&run, base);
			sb_free(base);
			goto done;
		}
	}

	run.result_name = result_name_for(run.request_name);
	if (run.result_name == NULL)
	{
		say("the request object \"%s\" is not named "
			"PREFIX/sessions/SESSION/requests/ID.json",
			run.request_name);
		goto done;
	}
	if (!sb_cloud_setup_storage(&run, msg, sizeof(msg)))
	{
		say("%s", msg);
		goto done;
	}
	/*
	 * Every task watches for its own request's cancel marker: a task of a
	 * batch cannot be cancelled alone, and the extension cannot cancel an
	 * execution whose name it has not learnt yet (jobs:run's answer lost).
	 */
	{
		size_t n = strlen(run.request_name);

		if (n > 5 && strcmp(run.request_name + n - 5, ".json") == 0)
			run.cancel_name = strfmt("%.*s.cancel", (int) (n - 5), run.request_name);
	}
	/* A request that already has its answer is not run again. */
	if (sb_gcs_stat(&run.gcs, run.result_name, &info, &err) == 0)
	{
		say("gs://%s/%s already exists; not running the request again", run.bucket,
			run.result_name);
		rc = 0;
		goto done;
	}
	/* A twin execution of the request (its jobs:run answer lost) writes nothing. */
	{
		size_t n = strlen(run.request_name);
		char *base = strfmt("%.*s", (int) (n - 5), run.request_name);
		int c = base != NULL ? claimed(&run, base) : -1;

		sb_free(base);
		if (c != 0)
		{
			rc = c > 0 ? 0 : 1;
			goto done;
		}
	}
	if (sb_gcs_download(&run.gcs, run.request_name, MAX_REQUEST_BYTES, &text, &len, NULL,
						&err) != 0)
	{
		say("cannot read the request gs://%s/%s: %s", run.bucket, run.request_name,
			err.message);
		goto done;
	}
	kind = sb_file_request_decode(text, len, &freq, &holder, msg, sizeof(msg));
	if (kind < 0 || (kind == 0 && !sb_request_decode(text, len, &req, &holder, msg,
													 sizeof(msg))))
	{
		say("the request gs://%s/%s is invalid: %s", run.bucket, run.request_name, msg);
		goto done;
	}
	if (kind > 0)
	{
		if (!sb_cloud_check_request(&run, "requests", freq.session, freq.prefix, freq.id, msg, sizeof(msg)))
			sb_file_set_error(&fres, SB_FERR_NONE, "%s", msg);
		else if (run.config_error[0] != '\0')
			sb_file_set_error(&fres, SB_FERR_NONE, "%s", run.config_error);
		else
			run_file_execution(&run, &freq, &fres);
		result = sb_file_result_encode(&fres);
	}
	else
	{
		/* The decoder makes an env of its own when the request has none. */
		if (req.env != NULL && req.env != json_object_get(holder, "env"))
			json_decref(req.env);
		req.env = NULL;

		if (!sb_cloud_check_request(&run, "requests", req.session, req.prefix, req.id, msg, sizeof(msg)))
			set_error(&res, "%s", msg);
		else if (run.config_error[0] != '\0')
			set_error(&res, "%s", run.config_error);
		else
			run_execution(&run, &req, &res);
		result = sb_result_encode(&res);
	}

	switch (sb_cloud_write_result(&run, result, msg, sizeof(msg)))
	{
		case 0:
			rc = 0;
			break;
		case 1:
			say("gs://%s/%s was written by another run of the request; keeping it",
				run.bucket, run.result_name);
			rc = 0;
			break;
		default:
			say("%s", msg);
			break;
	}
	sb_cloud_finish_request(&run);

done:
	sb_result_clear(&res);
	sb_file_result_clear(&fres);
	sb_file_request_clear(&freq, NULL);
	if (holder)
		json_decref(holder);
	free(text);
	sb_free(run.result_name);
	sb_free(run.cancel_name);
	sb_free(run.live_name[0]);
	sb_free(run.live_name[1]);
	sb_free(run.session_dir);
	sb_free(run.state_name);
	sb_state_clear(&run.state);
	sb_auth_free(run.auth);
	sb_http_client_free(run.http);
	sb_http_global_cleanup();
	if (getpid() == 1)
		kill(-1, SIGKILL);
	return rc;
}
