/*
 * cloud.c
 *		The executor's cloud mode, what a Cloud Run Job task runs:
 *		`cloudrun-sandbox-executor cloud BUCKET REQUEST_OBJECT`.
 *
 * A session's objects live under P/sessions/<s>/, P being the request's
 * prefix ("" for none):
 *
 *		requests/<id>.json		the request (its cwd and env are ignored)
 *		state.json				cwd, env, last_execution and the name of the
 *								workspace snapshot; its GCS generation is the
 *								session's generation
 *		workspace/<id>.tar		the workspace as execution <id> left it
 *		results/<id>.json		the result, written once
 *		requests/<id>.cancel	written by the extension to cancel one request of
 *								a batch: its task kills the command and leaves
 *								the session as it was
 *		transfer/<id>			a file operation's payload: the bytes to
 *								upload (written by the extension), or a
 *								result's data or items when too large to
 *								travel inside the result
 *
 * One run reads the request and the state, restores the snapshot into the
 * workspace directory with the system tar, runs the command exactly as local
 * mode does, archives the workspace, replaces state.json only if its
 * generation is still the one it read (a concurrent writer is detected,
 * never overwritten) and writes the result create-only (a second run of the
 * same request never replaces the first answer).  A file operation (see
 * fileops.c) runs the same way; only one that changed the workspace saves
 * a snapshot and a new state.json (with the cwd and env unchanged).  It
 * exits 0 whenever the request has a result, 1 when none could be written.
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
#define MAX_REQUEST_BYTES ((size_t) 64 * 1024 * 1024)
#define MAX_STATE_BYTES ((size_t) 16 * 1024 * 1024)
#define DEFAULT_MAX_SNAPSHOT_BYTES ((size_t) 1024 * 1024 * 1024)
#define SNAPSHOT_TIMEOUT_MS (15L * 60 * 1000)
#define TAR_STDERR_CAP 2048
#define MSG_SIZE 1024
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

/* Everything one run needs besides the request; see sb_cloud_main. */
typedef struct CloudRun
{
	SbGcsConfig gcs;
	SbHttpClient *http;
	SbAuth *auth;
	const char *bucket;
	const char *request_name;
	char *result_name; /* next to the request: .../results/<id>.json */
	char *session_dir; /* P/sessions/<s> */
	char *state_name;
	const char *workspace_dir;
	size_t max_snapshot;
	char config_error[256]; /* a setting that fails every execution, or "" */
	char *cancel_name;		/* watched for while the command runs, or NULL */
	/* Live output (issue 14, part 4): live/<id>.out and .err, saved while it runs. */
	char *live_name[2];
	size_t live_sent[2];	/* the bytes of each saved last */
	bool live_saved;		/* any was saved: deleted once the result is written */
} CloudRun;

/* say prints one diagnostic line on standard error. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
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
static char *strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
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
static void set_error(SbExecResult *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
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

/* free_state releases what a decoded or built state owns. */
static void
free_state(SbState *state)
{
	sb_free(state->cwd);
	if (state->env)
		json_decref(state->env);
	sb_free(state->workspace);
	memset(state, 0, sizeof(*state));
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
static bool
setup_storage(CloudRun *run, char *msg, size_t msglen)
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
 * check_request validates what cloud mode needs beyond the protocol (a
 * session, an id, a request object named after them) and sets the
 * session's object names; false with msg set if the request is unusable.
 */
static bool
check_request_in(CloudRun *run, const char *dir, const char *session, const char *prefix,
				 long long id, char *msg, size_t msglen)
{
	size_t plen = strlen(prefix);
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
	run->session_dir = plen > 0 ? strfmt("%.*s/sessions/%s", (int) plen, prefix, session)
								: strfmt("sessions/%s", session);
	run->state_name = run->session_dir ? strfmt("%s/state.json", run->session_dir) : NULL;
	expected =
		run->session_dir ? strfmt("%s/%s/%lld.json", run->session_dir, dir, id) : NULL;
	if (expected == NULL || run->state_name == NULL)
	{
		sb_free(expected);
		snprintf(msg, msglen, "out of memory");
		return false;
	}
	same = strcmp(expected, run->request_name) == 0;
	if (!same)
		snprintf(msg, msglen,
				 "the request object \"%s\" does not match its prefix, session and id "
				 "(expected \"%s\")",
				 run->request_name, expected);
	sb_free(expected);
	return same;
}

/* check_request is check_request_in for a command or file request (requests/<id>.json). */
static bool
check_request(CloudRun *run, const char *session, const char *prefix, long long id,
			  char *msg, size_t msglen)
{
	return check_request_in(run, "requests", session, prefix, id, msg, msglen);
}

/*
 * load_state reads the session's state.json and its generation; a missing
 * one is the initial state (/workspace, no variables, generation 0).
 */
static bool
load_state(CloudRun *run, SbState *state, long long *generation, char *msg, size_t msglen)
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
		free_state(state);
		snprintf(msg, msglen, "storage reported no generation for %s", run->state_name);
		return false;
	}
	*generation = gen;
	return true;
}

/* encode_state is sb_state_encode plus the name of the workspace snapshot. */
static char *
encode_state(const SbState *state)
{
	char *base = sb_state_encode(state);
	json_t *root;
	char *text;

	if (base == NULL)
		return NULL;
	root = json_loads(base, 0, NULL);
	sb_free(base);
	if (root == NULL)
		return NULL;
	if (state->workspace != NULL)
		json_object_set_new(root, "workspace", json_string(state->workspace));
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

/* make_dirs creates a directory and its missing parents, like mkdir -p. */
static bool
make_dirs(const char *path)
{
	char *copy = sb_strdup(path);
	bool ok = true;

	if (copy == NULL)
		return false;
	for (char *p = copy + 1; ok; p++)
	{
		if (*p != '/' && *p != '\0')
			continue;
		{
			char c = *p;

			*p = '\0';
			if (mkdir(copy, 0755) != 0 && errno != EEXIST)
				ok = false;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	sb_free(copy);
	return ok;
}

/* close_fd closes a descriptor if it is open and marks it closed. */
static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* close_pipes closes both ends of three pipes. */
static void
close_pipes(int in[2], int op[2], int ep[2])
{
	for (int i = 0; i < 2; i++)
	{
		close_fd(&in[i]);
		close_fd(&op[i]);
		close_fd(&ep[i]);
	}
}

/* describe_tar_failure formats tar's exit status and what it said into msg. */
static void
describe_tar_failure(int status, SbBuf *errb, char *msg, size_t msglen)
{
	size_t n = errb->len;

	while (n > 0 && (errb->data[n - 1] == '\n' || errb->data[n - 1] == ' '))
		n--;
	for (size_t i = 0; i < n; i++)
		if (errb->data[i] == '\n' || errb->data[i] == '\0')
			errb->data[i] = ' ';
	if (status > 128)
		snprintf(msg, msglen, "tar was killed by signal %d%s%.*s", status - 128,
				 n > 0 ? ": " : "", (int) n, errb->data);
	else
		snprintf(msg, msglen, "tar exited with status %d%s%.*s", status,
				 n > 0 ? ": " : "", (int) n, n > 0 ? errb->data : "");
}

/*
 * run_tar runs the system tar with argv (never through a shell), feeding it
 * input (may be NULL) on standard input and collecting its standard output
 * into out (may be NULL: discarded); tar is killed if out fills up.  Returns
 * tar's exit status (128 + signal if killed) with its complaints in msg, or
 * -1 with msg set if tar could not be run.
 */
static int
run_tar(char *const argv[], const char *input, size_t input_len, SbBuf *out, char *msg,
		size_t msglen)
{
	int in[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
	SbBuf errb;
	pid_t pid;
	pid_t w;
	int status = 0;
	size_t written = 0;
	char chunk[65536];

	msg[0] = '\0';
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
	{
		snprintf(msg, msglen, "cannot create pipes for tar: %s", strerror(errno));
		close_pipes(in, op, ep);
		return -1;
	}
	pid = fork();
	if (pid < 0)
	{
		snprintf(msg, msglen, "cannot start tar: %s", strerror(errno));
		close_pipes(in, op, ep);
		return -1;
	}
	if (pid == 0)
	{
		if (dup2(in[0], 0) < 0 || dup2(op[1], 1) < 0 || dup2(ep[1], 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		signal(SIGPIPE, SIG_DFL);
		execvp("tar", argv);
		dprintf(2, "cannot execute tar: %s", strerror(errno));
		_exit(127);
	}
	close_fd(&in[0]);
	close_fd(&op[1]);
	close_fd(&ep[1]);
	if (input == NULL || input_len == 0)
		close_fd(&in[1]);
	for (int i = 0; i < 3; i++)
	{
		int fd = i == 0 ? in[1] : i == 1 ? op[0] : ep[0];

		if (fd >= 0)
			fcntl(fd, F_SETFL, O_NONBLOCK);
	}
	(void) fcntl(op[0], F_SETPIPE_SZ, 1024 * 1024);
	sb_buf_init(&errb, TAR_STDERR_CAP);

	while (in[1] >= 0 || op[0] >= 0 || ep[0] >= 0)
	{
		struct pollfd pfd[3] = {
			{.fd = in[1], .events = POLLOUT},
			{.fd = op[0], .events = POLLIN},
			{.fd = ep[0], .events = POLLIN},
		};

		if (poll(pfd, 3, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			snprintf(msg, msglen, "poll failed while running tar: %s", strerror(errno));
			kill(pid, SIGKILL);
			break;
		}
		if (pfd[0].revents)
		{
			size_t left = input_len - written;
			ssize_t n = write(in[1], input + written, left < 1048576 ? left : 1048576);

			if (n > 0)
				written += (size_t) n;
			if (written == input_len || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&in[1]);
		}
		if (pfd[1].revents)
		{
			ssize_t n = read(op[0], chunk, sizeof(chunk));

			if (n > 0 && out != NULL &&
				(!sb_buf_append(out, chunk, (size_t) n) || out->truncated))
			{
				/* Too big (or out of memory): stop tar, the caller reports it. */
				out->truncated = true;
				kill(pid, SIGKILL);
				close_fd(&op[0]);
			}
			else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&op[0]);
		}
		if (pfd[2].revents)
		{
			ssize_t n = read(ep[0], chunk, sizeof(chunk));

			if (n > 0)
				sb_buf_append(&errb, chunk, (size_t) n);
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				close_fd(&ep[0]);
		}
	}
	close_fd(&in[1]);
	close_fd(&op[0]);
	close_fd(&ep[0]);
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w < 0)
		status = 127 << 8;
	status = WIFEXITED(status)	   ? WEXITSTATUS(status)
			 : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
								   : 127;
	if (msg[0] == '\0')
		describe_tar_failure(status, &errb, msg, msglen);
	sb_buf_free(&errb);
	return status;
}

/*
 * restore_workspace downloads the snapshot named by the state and unpacks
 * it into the workspace directory; false with msg set on failure.
 */
static bool
restore_workspace(CloudRun *run, const char *snapshot, char *msg, size_t msglen)
{
	char *data;
	size_t len;
	SbError err;
	char tarmsg[MSG_SIZE / 2];
	char *argv[] = {"tar", "-x", "-f", "-", "-C", (char *) run->workspace_dir, NULL};
	int status;

	run->gcs.timeout_ms = SNAPSHOT_TIMEOUT_MS;
	status =
		sb_gcs_download(&run->gcs, snapshot, run->max_snapshot, &data, &len, NULL, &err);
	run->gcs.timeout_ms = 0;
	if (status != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND)
			snprintf(msg, msglen, "workspace snapshot %s is missing", snapshot);
		else
			snprintf(msg, msglen, "cannot read workspace snapshot %s: %s", snapshot,
					 err.message);
		return false;
	}
	status = run_tar(argv, data, len, NULL, tarmsg, sizeof(tarmsg));
	free(data);
	if (status != 0)
	{
		snprintf(msg, msglen, "cannot unpack workspace snapshot %.400s: %s", snapshot,
				 tarmsg);
		return false;
	}
	return true;
}

/*
 * archive_workspace packs the workspace directory into out with the system
 * tar, at most max_snapshot bytes; false with msg set on failure.
 */
static bool
archive_workspace(CloudRun *run, SbBuf *out, char *msg, size_t msglen)
{
	char *argv[] = {"tar", "-c", "-f", "-", "-C", (char *) run->workspace_dir, ".", NULL};
	char tarmsg[MSG_SIZE / 2];
	int status;

	sb_buf_init(out, run->max_snapshot);
	status = run_tar(argv, NULL, 0, out, tarmsg, sizeof(tarmsg));
	if (out->truncated)
		snprintf(msg, msglen,
				 "the workspace is larger than %zu bytes "
				 "(CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES); its changes were not saved",
				 run->max_snapshot);
	/* GNU tar's status 1 means a file changed while it was read: still an archive. */
	else if (status != 0 && status != 1)
		snprintf(msg, msglen, "cannot archive the workspace: %s", tarmsg);
	else
		return true;
	sb_buf_free(out);
	return false;
}

/*
 * state_records says whether state.json now records execution id (written
 * by this run, whose response was lost, or by a twin run of the same
 * request), and sets *generation to its generation if so.
 */
static bool
state_records(CloudRun *run, long long id, long long *generation)
{
	SbState state;
	long long gen;
	char msg[MSG_SIZE];
	bool yes;

	if (!load_state(run, &state, &gen, msg, sizeof(msg)))
		return false;
	yes = gen > 0 && state.last_execution == id;
	free_state(&state);
	if (yes)
		*generation = gen;
	return yes;
}

/* delete_quietly deletes an object, only warning on standard error if that fails. */
static void
delete_quietly(CloudRun *run, const char *name)
{
	SbError err;

	if (sb_gcs_delete(&run->gcs, name, SB_GCS_ANY_GENERATION, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND)
		say("warning: cannot delete gs://%s/%s: %s", run->bucket, name, err.message);
}

/*
 * commit_state archives the workspace as snapshot workspace/<id>.tar and
 * replaces state.json (if its generation is still `generation`) with cwd,
 * env and last_execution id; true with *new_generation set, or false with
 * msg set.  `what` names the work in messages ("the command").
 */
static bool
commit_state(CloudRun *run, long long id, const SbState *old, long long generation,
			 const char *cwd, json_t *env, const char *what, long long *new_generation,
			 char *msg, size_t msglen)
{
	SbBuf tarball;
	SbState state;
	SbError err;
	char *snapshot;
	char *text;
	int64_t written = 0;
	int rc;

	if (!archive_workspace(run, &tarball, msg, msglen))
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
	text = encode_state(&state);
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
	else if (err.kind == SB_ERR_PRECONDITION && state_records(run, id, new_generation))
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
	sb_free(snapshot);
	return true;
}

/*
 * save_state saves the workspace and the state (what the command left, or
 * the old cwd/env if unknown) after the command ran; on failure res
 * becomes an error result without a state.
 */
static void
save_state(CloudRun *run, const SbExecRequest *req, const SbState *old,
		   long long generation, SbExecResult *res)
{
	char msg[MSG_SIZE];
	long long new_generation = 0;

	if (!commit_state(run, req->id, old, generation, res->has_state ? res->cwd : old->cwd,
					  res->has_state ? res->env : old->env, "the command", &new_generation,
					  msg, sizeof(msg)))
	{
		set_error(res, "%s", msg);
		drop_state(res);
		return;
	}
	if (!res->has_state)
	{
		res->has_state = true;
		res->cwd = sb_strdup(old->cwd);
		res->env = json_deep_copy(old->env);
	}
	res->state_generation = new_generation;
}

/*
 * restore_session makes the workspace directory and unpacks the snapshot
 * the state names into it; false with msg set on failure.
 */
static bool
restore_session(CloudRun *run, const SbState *state, char *msg, size_t msglen)
{
	size_t dlen = strlen(run->session_dir);

	if (state->workspace != NULL &&
		(strncmp(state->workspace, run->session_dir, dlen) != 0 ||
		 strncmp(state->workspace + dlen, "/workspace/", 11) != 0))
		snprintf(msg, msglen,
				 "the session's state names a workspace snapshot outside the session: %s",
				 state->workspace);
	else if (!make_dirs(run->workspace_dir))
		snprintf(msg, msglen, "cannot create the workspace directory %s: %s",
				 run->workspace_dir, strerror(errno));
	else if (state->workspace != NULL &&
			 !restore_workspace(run, state->workspace, msg, msglen))
		; /* msg says why */
	else
		return true;
	return false;
}

/*
 * take_obsolete returns the snapshot the state named before a new state was
 * saved by execution id (to delete once the result is written), or NULL.
 */
static char *
take_obsolete(CloudRun *run, SbState *state, long long id)
{
	size_t dlen = strlen(run->session_dir);
	char name[64];
	char *old = state->workspace;

	snprintf(name, sizeof(name), "%lld.tar", id);
	if (old == NULL || strcmp(old + dlen + 11, name) == 0)
		return NULL;
	state->workspace = NULL;
	return old;
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
 * run_execution applies a valid request to its session: read the state,
 * restore the workspace, run the command, save the workspace and the state.
 * It fills *res; *obsolete receives the snapshot the new state replaced (to
 * delete once the result is written), or NULL.
 */
static void
run_execution(CloudRun *run, SbExecRequest *req, SbExecResult *res, char **obsolete)
{
	SbState state;
	long long generation;
	char msg[MSG_SIZE];

	*obsolete = NULL;
	memset(res, 0, sizeof(*res));
	if (!load_state(run, &state, &generation, msg, sizeof(msg)))
	{
		set_error(res, "%s", msg);
		return;
	}
	if (generation > 0 && state.last_execution == req->id)
	{
		/* A run of this request saved the state, then died before its result. */
		set_error(res,
				  "execution %lld already ran in an earlier attempt that saved the "
				  "session's state but not its result; its output is lost",
				  req->id);
		res->has_state = true;
		res->cwd = sb_strdup(state.cwd);
		res->env = json_deep_copy(state.env);
		res->state_generation = generation;
		free_state(&state);
		return;
	}
	if (!restore_session(run, &state, msg, sizeof(msg)))
		set_error(res, "%s", msg);
	else
	{
		SbCancelWatch watch = {cancel_requested, run, CANCEL_POLL_MS};
		SbLiveHook live = {live_save, run, LIVE_SAVE_MS};

		/* The session's cwd and env come from state.json, not the request. */
		req->cwd = state.cwd;
		req->env = state.env;
		run->live_name[0] = strfmt("%s/live/%lld.out", run->session_dir, req->id);
		run->live_name[1] = strfmt("%s/live/%lld.err", run->session_dir, req->id);
		req->live = &live;
		if (run->cancel_name != NULL && cancel_requested(run))
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
			save_state(run, req, &state, generation, res);
		if (res->state_generation > 0)
			*obsolete = take_obsolete(run, &state, req->id);
	}
	free_state(&state);
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
 * run_file_execution applies a valid file request to its session: read
 * the state, restore the workspace, do the operation, and if it changed
 * the workspace save the workspace and the state (cwd and env as they
 * were).  *obsolete is as for run_execution.
 */
static void
run_file_execution(CloudRun *run, SbFileRequest *req, SbFileResult *res, char **obsolete)
{
	SbState state;
	long long generation;
	long long new_generation = 0;
	char msg[MSG_SIZE];

	*obsolete = NULL;
	memset(res, 0, sizeof(*res));
	if (!load_state(run, &state, &generation, msg, sizeof(msg)))
	{
		sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
		return;
	}
	if (generation > 0 && state.last_execution == req->id)
	{
		sb_file_set_error(res, SB_FERR_NONE,
				   "file operation %lld already ran in an earlier attempt that saved the "
				   "session's state but not its result",
				   req->id);
		res->state_generation = generation;
	}
	else if (!restore_session(run, &state, msg, sizeof(msg)))
		sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
	else if (req->op != SB_FILE_UPLOAD || req->transfer == NULL ||
			 fetch_upload(run, req, res))
	{
		/* The session's cwd comes from state.json, not the request. */
		req->cwd = state.cwd;
		sb_file_run(req, res);
		req->cwd = NULL;
		if (res->status == SB_STATUS_SUCCEEDED && res->changed)
		{
			if (commit_state(run, req->id, &state, generation, state.cwd, state.env,
							 "the file operation", &new_generation, msg, sizeof(msg)))
			{
				res->state_generation = new_generation;
				*obsolete = take_obsolete(run, &state, req->id);
			}
			else
				sb_file_set_error(res, SB_FERR_NONE, "%s", msg);
		}
		if (res->status == SB_STATUS_SUCCEEDED)
			move_payload(run, req, res);
	}
	free_state(&state);
}

/*
 * write_result stores the result create-only: 0 when written, 1 when a
 * result was there already (a duplicate run), -1 with msg set on failure.
 */
static int
write_result(CloudRun *run, char *text, char *msg, size_t msglen)
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
	SbState state;
	long long generation;
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
	if (!load_state(run, &state, &generation, msg, sizeof(msg)) ||
		!restore_session(run, &state, msg, sizeof(msg)))
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
	req->cwd = state.cwd;
	req->env = state.env;
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
	free_state(&state);
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

	if (!setup_storage(run, msg, sizeof(msg)))
		say("%s", msg);
	else if (sb_gcs_download(&run->gcs, run->request_name, MAX_REQUEST_BYTES, &text, &len, NULL,
							 &err) != 0)
		say("cannot read the request gs://%s/%s: %s", run->bucket, run->request_name,
			err.message);
	else if (!sb_request_decode(text, len, &req, &holder, msg, sizeof(msg)) ||
			 !check_request_in(run, "background", req.session, req.prefix, req.id, msg,
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
static void
on_term(int sig)
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
	char *obsolete = NULL;
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
	signal(SIGTERM, on_term);
	/* Keep the sandboxed command out of our memory (credentials) and pipes. */
	prctl(PR_SET_DUMPABLE, 0);
	memset(&run, 0, sizeof(run));
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	memset(&freq, 0, sizeof(freq));
	memset(&fres, 0, sizeof(fres));
	run.bucket = argv[1];
	run.request_name = argv[2];

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
	if (!setup_storage(&run, msg, sizeof(msg)))
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
		if (!check_request(&run, freq.session, freq.prefix, freq.id, msg, sizeof(msg)))
			sb_file_set_error(&fres, SB_FERR_NONE, "%s", msg);
		else if (run.config_error[0] != '\0')
			sb_file_set_error(&fres, SB_FERR_NONE, "%s", run.config_error);
		else
			run_file_execution(&run, &freq, &fres, &obsolete);
		result = sb_file_result_encode(&fres);
	}
	else
	{
		/* The decoder makes an env of its own when the request has none. */
		if (req.env != NULL && req.env != json_object_get(holder, "env"))
			json_decref(req.env);
		req.env = NULL;

		if (!check_request(&run, req.session, req.prefix, req.id, msg, sizeof(msg)))
			set_error(&res, "%s", msg);
		else if (run.config_error[0] != '\0')
			set_error(&res, "%s", run.config_error);
		else
			run_execution(&run, &req, &res, &obsolete);
		result = sb_result_encode(&res);
	}

	switch (write_result(&run, result, msg, sizeof(msg)))
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
	/* The new state no longer names the old snapshot. */
	if (obsolete != NULL)
		delete_quietly(&run, obsolete);
	/* The output so far is in the result now. */
	if (run.live_saved)
		for (int i = 0; i < 2; i++)
			delete_quietly(&run, run.live_name[i]);

done:
	sb_free(obsolete);
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
	sb_auth_free(run.auth);
	sb_http_client_free(run.http);
	sb_http_global_cleanup();
	if (getpid() == 1)
		kill(-1, SIGKILL);
	return rc;
}
