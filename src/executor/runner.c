/*
 * runner.c
 *		The executor's runner mode, a session runner on Cloud Run (issue 13):
 *		`cloudrun-sandbox-executor runner BUCKET D TOKEN IDLE_TIMEOUT_S`,
 *		D being the session's object prefix P/sessions/S (no trailing slash).
 *
 * One long-running execution serves one session's requests: it restores the
 * workspace once (base + increments, wsync.c), then takes each request the
 * extension puts in D/runners/<T>/inbox/<id>.json and runs it exactly as a
 * cold execution does (cloud.c's sb_cloud_exec_request and
 * sb_cloud_file_request), saving what each command changed as an
 * incremental archive D/workspace/<id>.inc.tar.  The hand-off, fixed with
 * the extension (see the README's "Session runners"):
 *
 *		D/runner.json			the lease, written by the extension: the runner
 *								whose token it names is the session's runner;
 *								missing, unparsable or another token: stop
 *		D/runners/<T>/owner		written create-only at start; a second runner
 *								with the same token (or a retried task) finds
 *								another owner there and exits having written
 *								nothing else
 *		D/runners/<T>/claims/<id>	created before request <id> runs, by the
 *								runner ({"taken": owner}) or by the extension
 *								({"withdrawn": true}); whoever is first decides,
 *								so a request is never run twice
 *		D/results/<id>.json		the result, create-only, after the workspace
 *								increment and state.json (ifGenerationMatch)
 *
 * Commit order per request: increment → state.json with the generation the
 * runner last read or wrote as precondition → result create-only → deletes.
 * A precondition failure means another writer replaced the state (the
 * runner was replaced): the result says so and the runner exits.  A command
 * that changed nothing (tree fingerprint, cwd and env as they were) uploads
 * nothing and writes no state.
 *
 * GCS requests while idle: one inbox list per poll (every 10 ms for 2 s
 * after a request, then backing off to one a second) and one lease read
 * every 10 s: at most 60 + 6 a minute.  It exits after IDLE_TIMEOUT_S
 * without a request, after 23 h of life (the execution's timeout is 24 h),
 * or when the lease is revoked; idle, it compacts (a new base, increments
 * []) when there are 32 increments or more, or when they are at least as
 * large as the base (and 1 MiB or more).  Tokens are never printed.
 *
 * From an attacker review: the ids this process took or skipped are kept
 * (the last 256): a served id's inbox object that reappears is deleted, never
 * run again; a withdrawn one's is left for the extension to run cold.  Only a
 * served request restarts the idle clock.  A file operation gets a /tmp of
 * its own, fresh for each request (not the container's, which holds the
 * snapshot file).  An idle or age exit replaces runner.json with {} if it
 * still names us (ifGenerationMatch).  state.json is fetched with each
 * claim: a generation not ours means the state is restored again first.
 */
#define _GNU_SOURCE
#include "cloud.h"
#include "fileops.h"
#include "wsync.h"

#include <dirent.h>
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROGNAME "cloudrun-sandbox-executor"
#define MSG_SIZE SB_CLOUD_MSG_SIZE
#define LEASE_CHECK_MS 10000
#define LEASE_MAX_BYTES 4096
#define POLL_FAST_MS 3
#define POLL_FAST_FOR_MS 2000
#define POLL_MAX_MS 1000
#define COMPACT_IDLE_MS 1000
#define COMPACT_INCREMENTS 32
#define COMPACT_MIN_BYTES ((size_t) 1024 * 1024)
#define MAX_LIFE_MS (23LL * 3600 * 1000)
#define SNAPSHOT_TIMEOUT_MS (15L * 60 * 1000)
#define FTMP_MAX_DEPTH 128		/* deeper directories of a file /tmp are left */
#define STATE_FENCE_MAX_BYTES ((size_t) 16 * 1024 * 1024)
#define SEEN_MAX 256			/* ids this process took or skipped, remembered */
#define SEEN_DELETE_MAX 8		/* reappeared inbox objects deleted per poll */

/*
 * The ids this process has taken or skipped, the last SEEN_MAX of them: an
 * inbox object of one of them is never claimed or run again (an upload the
 * extension retried after a lost answer re-creates an inbox object the
 * runner deleted, and our claim text is the same for every request).
 * delete: the inbox object goes when it shows again (a request we ran or
 * settled); not for a withdrawn one, which the extension reads back to run
 * it cold.
 */
typedef struct SeenIds
{
	long long	id[SEEN_MAX];
	bool		del[SEEN_MAX];
	int			n;
	int			next;
} SeenIds;

/* One runner: the shared run context plus what runner mode keeps. */
typedef struct Runner
{
	CloudRun	run;
	const char *token;
	long		idle_timeout_s;
	char	   *owner;			/* our owner document */
	char		nonce[17];		/* this process's, in each claim it makes */
	char	   *owner_name;
	char	   *lease_name;
	char	   *inbox_prefix;	/* D/runners/<T>/inbox/ */
	char	   *inbox_dir;		/* runners/<T>/inbox, under D */
	char	   *claims_prefix;	/* D/runners/<T>/claims/ */
	SbWsync		ws;
	size_t		base_bytes;		/* size of the base snapshot */
	size_t		inc_bytes;		/* sizes of the increments, together */
	SeenIds		seen;
} Runner;

#define strfmt sb_cloud_strfmt

/* The runner's token, hidden in every message (object names under runners/<T>/ hold it). */
static const char *hidden_token;

/* redact replaces the token in msg (in place) with "<token>". */
static void
redact(char *msg)
{
	size_t		tlen = hidden_token ? strlen(hidden_token) : 0;
	char	   *p;

	while (tlen > 0 && (p = strstr(msg, hidden_token)) != NULL)
	{
		memcpy(p, "<token>", 7);
		memmove(p + 7, p + tlen, strlen(p + tlen) + 1);
	}
}

/* say prints one diagnostic line on standard error, without the token. */
static void say(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt,...)
{
	char		line[MSG_SIZE * 2];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	redact(line);
	sb_cloud_say("%s", line);
}

/* delete_quietly deletes an object, warning (without the token) if that fails. */
static void
delete_quietly(CloudRun *run, const char *name)
{
	SbError		err;

	if (sb_gcs_delete(&run->gcs, name, SB_GCS_ANY_GENERATION, &err) != 0 &&
		err.kind != SB_ERR_NOT_FOUND)
		say("warning: cannot delete gs://%s/%s: %s", run->bucket, name, err.message);
}

/* lease_state: 1 the lease names us, 0 revoked (missing, unparsable, another token), -1 unknown. */
static int
lease_state(Runner *r)
{
	char	   *data = NULL;
	size_t		len = 0;
	SbError		err;
	json_t	   *root;
	const char *tok;
	int			rc;

	r->run.gcs.timeout_ms = 5000;
	rc = sb_gcs_download(&r->run.gcs, r->lease_name, LEASE_MAX_BYTES, &data, &len, NULL, &err);
	r->run.gcs.timeout_ms = 0;
	if (rc != 0)
		return err.kind == SB_ERR_NOT_FOUND ? 0 : -1;
	root = json_loadb(data, len, 0, NULL);
	free(data);
	tok = json_string_value(json_object_get(root, "token"));
	rc = tok != NULL && strcmp(tok, r->token) == 0 ? 1 : 0;
	if (root)
		json_decref(root);
	return rc;
}

/*
 * let_go_lease: before an idle (or age) exit, replace runner.json with "{}"
 * if it still names us, with its generation as precondition, so that the
 * next call starts a runner instead of posting to one that is gone.  A
 * precondition failure means someone rewrote it: it is left as it is.
 */
static void
let_go_lease(Runner *r)
{
	char	   *data = NULL;
	size_t		len = 0;
	int64_t		gen = 0;
	SbError		err;
	json_t	   *root;
	const char *tok;
	bool		ours;

	r->run.gcs.timeout_ms = 5000;
	if (sb_gcs_download(&r->run.gcs, r->lease_name, LEASE_MAX_BYTES, &data, &len, &gen,
						&err) != 0)
	{
		r->run.gcs.timeout_ms = 0;
		return;
	}
	root = json_loadb(data, len, 0, NULL);
	free(data);
	tok = json_string_value(json_object_get(root, "token"));
	ours = tok != NULL && strcmp(tok, r->token) == 0;
	if (root)
		json_decref(root);
	if (ours && gen > 0 &&
		sb_gcs_upload(&r->run.gcs, r->lease_name, "{}", 2, gen, NULL, &err) != 0 &&
		err.kind != SB_ERR_PRECONDITION)
		say("runner: warning: cannot let the session's lease go: %s", err.message);
	r->run.gcs.timeout_ms = 0;
}

/* make_owner builds our owner document from the task's environment. */
static char *
make_owner(void)
{
	const char *e = getenv("CLOUD_RUN_EXECUTION");
	const char *t = getenv("CLOUD_RUN_TASK_INDEX");
	const char *a = getenv("CLOUD_RUN_TASK_ATTEMPT");
	json_t	   *o = json_pack("{sssssssi}", "execution", e ? e : "", "task", t ? t : "0",
							  "attempt", a ? a : "0", "pid", (int) getpid());
	char	   *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	if (o)
		json_decref(o);
	return text;
}

/*
 * claim_create writes name create-only with text: 0 created, 1 there already
 * with the same bytes, 2 there with other bytes, -1 storage failed.
 */
static int
claim_create(Runner *r, const char *name, const char *text)
{
	SbError		err;
	char	   *theirs = NULL;
	size_t		len = 0;
	int			rc;

	if (sb_gcs_upload(&r->run.gcs, name, text, strlen(text), 0, NULL, &err) == 0)
		return 0;
	if (err.kind != SB_ERR_PRECONDITION)
	{
		say("cannot write gs://%s/%s: %s", r->run.bucket, name, err.message);
		return -1;
	}
	if (sb_gcs_download(&r->run.gcs, name, 4096, &theirs, &len, NULL, &err) != 0)
		return err.kind == SB_ERR_NOT_FOUND ? 2 : -1;
	rc = len == strlen(text) && memcmp(theirs, text, len) == 0 ? 1 : 2;
	free(theirs);
	return rc;
}

/* fill_state makes an owned copy of a state's strings into out; false when out of memory. */
static bool
fill_state(SbState *out, const char *cwd, json_t *env, long long last, const char *workspace,
		   char *const *incs, int n, const char *extra)
{
	memset(out, 0, sizeof(*out));
	out->cwd = sb_strdup(cwd);
	out->env = json_deep_copy(env);
	out->last_execution = last;
	out->workspace = workspace ? sb_strdup(workspace) : NULL;
	if (n + (extra != NULL) > 0)
	{
		out->increments = sb_malloc(sizeof(char *) * (size_t) (n + 1));
		if (out->increments == NULL)
			return false;
		for (int i = 0; i < n; i++)
			if ((out->increments[out->n_increments++] = sb_strdup(incs[i])) == NULL)
				return false;
		if (extra != NULL && (out->increments[out->n_increments++] = sb_strdup(extra)) == NULL)
			return false;
	}
	return out->cwd != NULL && out->env != NULL && (workspace == NULL || out->workspace != NULL);
}

/*
 * save saves the session: if archive, first the workspace (full: a level-0
 * base workspace/<id>.tar, increments []; else the increment
 * workspace/<id>.inc.tar), then state.json with cwd, env, last_execution
 * id, with run->generation as precondition.  True with *new_generation and
 * the runner's state updated; false with msg set (and run->replaced when
 * the state is no longer ours to write).
 */
static bool
save(Runner *r, long long id, const char *cwd, json_t *env, bool archive, bool full,
	 bool compaction, const char *what, long long *new_generation, char *msg, size_t msglen)
{
	CloudRun   *run = &r->run;
	SbBuf		ar;
	char	   *obj = NULL;
	SbState		next;
	SbError		err;
	char	   *text;
	int64_t		written = 0;
	size_t		ar_len = 0;
	int			rc;

	if (archive)
	{
		if (!(full ? sb_wsync_level0(&r->ws, &ar, msg, msglen)
			  : sb_wsync_increment(&r->ws, &ar, msg, msglen)))
			return false;
		obj = strfmt(full ? "%s/workspace/%lld.tar" : "%s/workspace/%lld.inc.tar",
					 run->session_dir, id);
		if (obj == NULL)
		{
			sb_buf_free(&ar);
			snprintf(msg, msglen, "out of memory");
			return false;
		}
		ar_len = ar.len;
		run->gcs.timeout_ms = SNAPSHOT_TIMEOUT_MS;
		rc = sb_gcs_upload(&run->gcs, obj, ar.data ? ar.data : "", ar.len,
						   SB_GCS_ANY_GENERATION, NULL, &err);
		run->gcs.timeout_ms = 0;
		sb_buf_free(&ar);
		if (rc != 0)
		{
			snprintf(msg, msglen, "cannot store the workspace %s %s: %s",
					 full ? "snapshot" : "increment", obj, err.message);
			sb_free(obj);
			return false;
		}
	}
	if (!(full ? fill_state(&next, cwd, env, id, obj, NULL, 0, NULL)
		  : fill_state(&next, cwd, env, id, run->state.workspace, run->state.increments,
					   run->state.n_increments, obj)) ||
		(text = sb_state_encode(&next)) == NULL)
	{
		sb_state_clear(&next);
		snprintf(msg, msglen, "out of memory");
		if (obj)
			delete_quietly(run, obj);
		sb_free(obj);
		return false;
	}
	rc = sb_gcs_upload(&run->gcs, run->state_name, text, strlen(text), run->generation,
					   &written, &err);
	sb_free(text);
	if (rc != 0 && err.kind == SB_ERR_PRECONDITION && !compaction &&
		sb_cloud_state_records(run, id, new_generation))
	{
		/* Our own write, whose answer was lost. */
		written = *new_generation;
		rc = 0;
	}
	if (rc != 0)
	{
		if (err.kind == SB_ERR_PRECONDITION)
		{
			snprintf(msg, msglen,
					 "the session's state changed while %s ran (generation %lld expected)",
					 what, run->generation);
			if (obj)
				delete_quietly(run, obj);
		}
		else
			snprintf(msg, msglen, "cannot save the session's state %s: %s", run->state_name,
					 err.message);
		/* Either way this runner no longer knows the state: it stops. */
		run->replaced = true;
		sb_state_clear(&next);
		sb_free(obj);
		return false;
	}
	if (archive)
		sb_wsync_accept(&r->ws);
	if (full)
	{
		/* The new base replaces the old one and every increment. */
		if (run->state.workspace != NULL && strcmp(run->state.workspace, obj) != 0)
			(void) sb_cloud_add_obsolete(run, run->state.workspace);
		for (int i = 0; i < run->state.n_increments; i++)
			(void) sb_cloud_add_obsolete(run, run->state.increments[i]);
		r->base_bytes = ar_len;
		r->inc_bytes = 0;
	}
	else
		r->inc_bytes += ar_len;
	next.generation = run->state.generation + 1;
	sb_state_clear(&run->state);
	run->state = next;
	run->generation = written;
	*new_generation = written;
	sb_free(obj);
	return true;
}

/*
 * runner_commit is runner mode's CloudCommitFn: nothing changed (tree, cwd,
 * env) → nothing written, the generation stays; otherwise an increment (a
 * new base when the increments are at their limit) and state.json.
 */
static bool
runner_commit(CloudRun *run, long long id, const char *cwd, json_t *env, const char *what,
			  long long *new_generation, char *msg, size_t msglen)
{
	Runner	   *r = run->commit_arg;
	bool		changed = sb_wsync_changed(&r->ws);
	bool		full = run->state.n_increments >= SB_MAX_INCREMENTS - 1 ||
		run->state.workspace == NULL;

	if (!changed && run->generation > 0 && strcmp(cwd, run->state.cwd) == 0 &&
		json_equal(env, run->state.env))
	{
		*new_generation = run->generation;
		return true;
	}
	return save(r, id, cwd, env, changed || full, full, false, what, new_generation, msg,
				msglen);
}

/* worth_compacting: 32 increments or more, or increments as large as the base (and >= 1 MiB). */
static bool
worth_compacting(Runner *r)
{
	int			n = r->run.state.n_increments;

	return n >= COMPACT_INCREMENTS ||
		(n > 0 && r->inc_bytes >= r->base_bytes && r->inc_bytes >= COMPACT_MIN_BYTES);
}

/* compact writes a new level-0 base and state.json with increments [], then deletes the old ones. */
static bool
compact(Runner *r)
{
	CloudRun   *run = &r->run;
	char		msg[MSG_SIZE];
	long long	gen;
	char		name[64];

	snprintf(name, sizeof(name), "/%lld.tar", run->state.last_execution);
	if (run->state.last_execution <= 0 ||
		(run->state.workspace != NULL && strlen(run->state.workspace) >= strlen(name) &&
		 strcmp(run->state.workspace + strlen(run->state.workspace) - strlen(name), name) == 0))
		return true;			/* the base has that name already: nothing to gain */
	(void) sb_wsync_changed(&r->ws);
	if (!save(r, run->state.last_execution, run->state.cwd, run->state.env, true, true, true,
			  "the compaction", &gen, msg, sizeof(msg)))
	{
		say("runner: cannot compact the workspace: %s", msg);
		return false;
	}
	say("runner: compacted the workspace into %s", run->state.workspace);
	sb_cloud_finish_request(run);
	return true;
}

/* seen_find: the slot of id in the ring, -1 if not there. */
static int
seen_find(const SeenIds *s, long long id)
{
	for (int i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return i;
	return -1;
}

/* seen_add remembers id (the oldest is forgotten when the ring is full). */
static void
seen_add(SeenIds *s, long long id, bool del)
{
	int			i = seen_find(s, id);

	if (i < 0)
	{
		i = s->next;
		s->next = (s->next + 1) % SEEN_MAX;
		if (s->n < SEEN_MAX)
			s->n++;
	}
	s->id[i] = id;
	s->del[i] = del;
}

/* Lowest request id in the inbox not seen yet, found by list_fn. */
typedef struct InboxScan
{
	size_t		prefix_len;
	long long	lowest;
	const SeenIds *seen;
	long long	stale[SEEN_DELETE_MAX];	/* seen ids whose inbox object is back */
	int			n_stale;
} InboxScan;

/* list_fn keeps the lowest id of the inbox objects named <id>.json. */
static int
list_fn(void *arg, const char *name, int64_t generation, int64_t size)
{
	InboxScan  *scan = arg;
	const char *p = name + scan->prefix_len;
	char	   *end;
	long long	id;
	int			i;

	if (strlen(name) <= scan->prefix_len || *p < '1' || *p > '9')
		return 0;
	errno = 0;
	id = strtoll(p, &end, 10);
	if (errno != 0 || strcmp(end, ".json") != 0 || id <= 0)
		return 0;
	if ((i = seen_find(scan->seen, id)) >= 0)
	{
		if (scan->seen->del[i] && scan->n_stale < SEEN_DELETE_MAX)
			scan->stale[scan->n_stale++] = id;
		return 0;
	}
	if (scan->lowest == 0 || id < scan->lowest)
		scan->lowest = id;
	return 0;
}

/* next_request: the lowest id in the inbox, 0 for none, -1 if listing failed. */
static long long
next_request(Runner *r)
{
	InboxScan	scan;
	SbError		err;
	int			rc;

	memset(&scan, 0, sizeof(scan));
	scan.prefix_len = strlen(r->inbox_prefix);
	scan.seen = &r->seen;

	r->run.gcs.timeout_ms = 10000;
	rc = sb_gcs_list(&r->run.gcs, r->inbox_prefix, list_fn, &scan, &err);
	r->run.gcs.timeout_ms = 0;
	if (rc != 0)
	{
		say("runner: cannot list gs://%s/%s: %s", r->run.bucket, r->inbox_prefix, err.message);
		/* Never allowed to list (a service account limited to object names): it cannot serve. */
		return err.kind == SB_ERR_FORBIDDEN || err.kind == SB_ERR_AUTH ? -2 : -1;
	}
	/* A request we ran or settled, put in the inbox again: it goes, quietly. */
	for (int i = 0; i < scan.n_stale; i++)
	{
		char	   *name = strfmt("%s%lld.json", r->inbox_prefix, scan.stale[i]);

		if (name != NULL)
			(void) sb_gcs_delete(&r->run.gcs, name, SB_GCS_ANY_GENERATION, &err);
		sb_free(name);
	}
	return scan.lowest;
}

/* reset_request forgets the names of the previous request. */
static void
reset_request(CloudRun *run)
{
	sb_free(run->result_name);
	sb_free(run->cancel_name);
	sb_free(run->live_name[0]);
	sb_free(run->live_name[1]);
	run->result_name = run->cancel_name = run->live_name[0] = run->live_name[1] = NULL;
	run->live_sent[0] = run->live_sent[1] = 0;
	run->live_saved = false;
	run->request_name = NULL;
}

/* put_result writes a result create-only, saying why on failure. */
static void
put_result(CloudRun *run, char *text)
{
	char		msg[MSG_SIZE];

	switch (sb_cloud_write_result(run, text, msg, sizeof(msg)))
	{
		case 0:
			break;
		case 1:
			say("gs://%s/%s exists already; keeping it", run->bucket, run->result_name);
			break;
		default:
			say("%s", msg);
			break;
	}
}

/* error_result writes an exec error result for the current request. */
static void
error_result(CloudRun *run, const char *fmt, long long id, const char *detail)
{
	SbExecResult res;

	char		msg[MSG_SIZE];

	memset(&res, 0, sizeof(res));
	snprintf(msg, sizeof(msg), fmt, id, detail);
	redact(msg);
	sb_cloud_set_error(&res, "%s", msg);
	put_result(run, sb_result_encode(&res));
	sb_result_clear(&res);
}

/*
 * empty_dir removes everything in the directory dfd, by descriptors only
 * (never following a symbolic link), FTMP_MAX_DEPTH levels deep at most.
 */
static void
empty_dir(int dfd, int depth)
{
	int			dup_fd = dup(dfd);
	DIR		   *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	struct dirent *e;

	if (d == NULL)
	{
		if (dup_fd >= 0)
			close(dup_fd);
		return;
	}
	rewinddir(d);
	while ((e = readdir(d)) != NULL)
	{
		struct stat st;
		int			sub;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (!S_ISDIR(st.st_mode))
		{
			(void) unlinkat(dfd, e->d_name, 0);
			continue;
		}
		if (depth >= FTMP_MAX_DEPTH)
			continue;
		sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (sub < 0)
			continue;
		(void) fchmod(sub, S_IRWXU);
		empty_dir(sub, depth + 1);
		close(sub);
		(void) unlinkat(dfd, e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

/*
 * A file operation's own /tmp, fresh for each request (a cold execution's
 * /tmp is fresh each time): the container's real /tmp holds the runner's
 * snapshot file and would keep one request's files for the next.
 */
typedef struct FileTmp
{
	char		dir[PATH_MAX];
	char	   *old;			/* CLOUDRUN_SANDBOX_TMP before, or NULL */
	int			fd;
} FileTmp;

/* ftmp_begin makes the directory and points the file operations' /tmp at it. */
static bool
ftmp_begin(FileTmp *t, char *msg, size_t msglen)
{
	const char *base = getenv("CLOUDRUN_SANDBOX_TMP");

	t->fd = -1;
	t->old = base ? sb_strdup(base) : NULL;
	if (t->old == NULL && base != NULL)
	{
		snprintf(msg, msglen, "out of memory");
		t->dir[0] = '\0';
		return false;
	}
	if (base == NULL || base[0] != '/')
		base = "/tmp";
	snprintf(t->dir, sizeof(t->dir), "%s/cloudrun-sandbox-ftmp.XXXXXX", base);
	if (mkdtemp(t->dir) == NULL)
	{
		snprintf(msg, msglen, "cannot make the file operation's /tmp: %s", strerror(errno));
		t->dir[0] = '\0';
		return false;
	}
	t->fd = open(t->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (t->fd < 0 || setenv("CLOUDRUN_SANDBOX_TMP", t->dir, 1) != 0)
	{
		snprintf(msg, msglen, "cannot make the file operation's /tmp: %s", strerror(errno));
		return false;
	}
	return true;
}

/* ftmp_end removes the directory and everything in it, and puts the setting back. */
static void
ftmp_end(FileTmp *t)
{
	if (t->old != NULL)
		(void) setenv("CLOUDRUN_SANDBOX_TMP", t->old, 1);
	else
		(void) unsetenv("CLOUDRUN_SANDBOX_TMP");
	sb_free(t->old);
	t->old = NULL;
	if (t->fd >= 0)
	{
		empty_dir(t->fd, 0);
		close(t->fd);
		t->fd = -1;
	}
	if (t->dir[0] != '\0' && rmdir(t->dir) != 0)
		say("runner: warning: cannot remove %s: %s", t->dir, strerror(errno));
	t->dir[0] = '\0';
}

/*
 * serve runs request id taken from the inbox (its claim is ours): download
 * it, delete the inbox object, run it, write its result.  Returns false
 * when the runner must stop serving (its state was replaced, or the
 * workspace holds changes that were not saved).
 */
static bool
serve(Runner *r, long long id, const char *inbox_name, char *text, size_t len)
{
	CloudRun   *run = &r->run;
	SbExecRequest req;
	SbExecResult res;
	SbFileRequest freq;
	SbFileResult fres;
	json_t	   *holder = NULL;
	SbError		err;
	char		msg[MSG_SIZE];
	char	   *result;
	bool		saved = true;
	int			kind;

	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	memset(&freq, 0, sizeof(freq));
	memset(&fres, 0, sizeof(fres));
	if (text == NULL &&
		sb_gcs_download(&run->gcs, inbox_name, SB_CLOUD_MAX_REQUEST_BYTES, &text, &len, NULL,
						&err) != 0)
	{
		error_result(run, "execution %lld was not run: its request could not be read (%s)", id,
					 err.message);
		delete_quietly(run, inbox_name);
		return true;
	}
	kind = sb_file_request_decode(text, len, &freq, &holder, msg, sizeof(msg));
	if (kind < 0 || (kind == 0 && !sb_request_decode(text, len, &req, &holder, msg, sizeof(msg))))
	{
		error_result(run, "execution %lld was not run: its request is invalid (%s)", id, msg);
		goto done;
	}
	if (kind > 0)
	{
		if (freq.id != id)
			sb_file_set_error(&fres, SB_FERR_NONE, "the request's id is not %lld", id);
		else if (!sb_cloud_check_request(run, r->inbox_dir,
										 freq.session, freq.prefix, freq.id, msg, sizeof(msg)))
			redact(msg), sb_file_set_error(&fres, SB_FERR_NONE, "%s", msg);
		else if (run->config_error[0] != '\0')
			sb_file_set_error(&fres, SB_FERR_NONE, "%s", run->config_error);
		else if (!sb_cloud_file_already_ran(run, &freq, &fres))
		{
			FileTmp		ftmp;

			if (ftmp_begin(&ftmp, msg, sizeof(msg)))
				sb_cloud_file_request(run, &freq, &fres);
			else
				sb_file_set_error(&fres, SB_FERR_NONE, "%s", msg);
			ftmp_end(&ftmp);
		}
		saved = fres.status == SB_STATUS_SUCCEEDED;
		result = sb_file_result_encode(&fres);
	}
	else
	{
		/* The decoder makes an env of its own when the request has none. */
		if (req.env != NULL && req.env != json_object_get(holder, "env"))
			json_decref(req.env);
		req.env = NULL;
		if (req.id != id)
			sb_cloud_set_error(&res, "the request's id is not %lld", id);
		else if (!sb_cloud_check_request(run, r->inbox_dir,
										 req.session, req.prefix, req.id, msg, sizeof(msg)))
			redact(msg), sb_cloud_set_error(&res, "%s", msg);
		else if (run->config_error[0] != '\0')
			sb_cloud_set_error(&res, "%s", run->config_error);
		else if (!sb_cloud_exec_already_ran(run, &req, &res))
			sb_cloud_exec_request(run, &req, &res);
		saved = res.status != SB_STATUS_ERROR;
		result = sb_result_encode(&res);
	}
	put_result(run, result);
	/* The claim is what counts; the inbox object goes once the answer is out. */
	delete_quietly(run, inbox_name);
	sb_cloud_finish_request(run);

done:
	sb_result_clear(&res);
	sb_file_result_clear(&fres);
	sb_file_request_clear(&freq, NULL);
	if (holder)
		json_decref(holder);
	free(text);
	if (run->replaced)
	{
		say("runner: the session's state was written by another writer; exiting");
		return false;
	}
	/* A request that saved nothing must have left the workspace as it was saved. */
	if (!saved && sb_wsync_changed(&r->ws))
	{
		say("runner: execution %lld left unsaved changes in the workspace; exiting", id);
		return false;
	}
	return true;
}

/* earlier_self says whether a claim there was made by a process with our owner document. */
static bool
earlier_self(Runner *r, const char *claim_name)
{
	SbError		err;
	char	   *theirs = NULL;
	size_t		len = 0;
	json_t	   *claim;
	json_t	   *mine;
	bool		same;

	if (sb_gcs_download(&r->run.gcs, claim_name, 4096, &theirs, &len, NULL, &err) != 0)
		return false;
	claim = json_loadb(theirs, len, 0, NULL);
	mine = json_loads(r->owner, 0, NULL);
	same = claim != NULL && mine != NULL && json_equal(json_object_get(claim, "taken"), mine);
	if (claim)
		json_decref(claim);
	if (mine)
		json_decref(mine);
	free(theirs);
	return same;
}

/* drive_all waits until every started attempt on the runner's connections has ended. */
static void
drive_all(CloudRun *run, SbHttpRequest *const *reqs, const bool *started, int n_reqs)
{
	for (;;)
	{
		SbHttpWaitFd fds[8];
		struct pollfd pfd[8];
		long		timeout = -1;
		bool		pending = false;
		int			n;

		for (int i = 0; i < n_reqs; i++)
			if (started[i] && !reqs[i]->finished)
				pending = true;
		if (!pending)
			break;
		if (sb_http_client_drive(run->http, 0) > 0)
			continue;
		n = sb_http_client_fds(run->http, fds, 8, &timeout);
		for (int i = 0; i < n; i++)
		{
			pfd[i].fd = fds[i].fd;
			pfd[i].events = (fds[i].readable ? POLLIN : 0) | (fds[i].writable ? POLLOUT : 0);
			pfd[i].revents = 0;
		}
		if (timeout < 0 || timeout > 10)
			timeout = 10;
		(void) poll(pfd, n, (int) timeout);
	}
}

/*
 * claim_and_fetch claims request id and downloads it at the same time (two
 * requests in flight on the runner's connection cache: one round trip
 * instead of two): 0 taken (*text holds the request, malloc'd, or NULL when
 * its download must be tried again), 2 claimed or withdrawn by another, -1
 * storage failed.  An attempt that fails is settled the careful way,
 * claim_create with its retries; finding our own claim there (the same
 * bytes: our owner document holds our pid) means its answer was lost, and
 * the request is ours.
 */
static int
claim_and_fetch(Runner *r, const char *claim_name, const char *claim_text, const char *inbox_name,
				char **text, size_t *len, int64_t *state_gen)
{
	CloudRun   *run = &r->run;
	SbHttpRequest creq;
	SbHttpRequest dreq;
	SbHttpRequest sreq;
	SbHttpRequest *reqs[3] = {&creq, &dreq, &sreq};
	bool		started[3];
	SbError		cerr;
	SbError		derr;
	SbError		serr;
	bool		c_started;
	bool		d_started;
	bool		s_started;
	int			c = -1;

	*text = NULL;
	*len = 0;
	*state_gen = 0;
	c_started = sb_gcs_upload_start(&run->gcs, claim_name, claim_text, strlen(claim_text), 0,
									&creq, &cerr) == 0;
	d_started = sb_gcs_download_start(&run->gcs, inbox_name, SB_CLOUD_MAX_REQUEST_BYTES, &dreq,
									  &derr) == 0;
	/* The third: state.json's generation, a fence against a stale state in memory. */
	s_started = sb_gcs_download_start(&run->gcs, run->state_name, STATE_FENCE_MAX_BYTES, &sreq,
									  &serr) == 0;
	started[0] = c_started;
	started[1] = d_started;
	started[2] = s_started;
	drive_all(run, reqs, started, 3);
	if (s_started)
	{
		char	   *gen = sb_http_response_header(&sreq, "x-goog-generation");
		char	   *sdata = NULL;
		size_t		slen = 0;

		if (sb_gcs_download_end(&run->gcs, &sreq, &sdata, &slen, &serr) == 0 && gen != NULL)
			*state_gen = strtoll(gen, NULL, 10);
		free(gen);
		free(sdata);
	}
	if (c_started && sb_gcs_upload_end(&run->gcs, &creq, NULL, &cerr) == 0)
		c = 0;
	if (d_started && sb_gcs_download_end(&run->gcs, &dreq, text, len, &derr) != 0)
		*text = NULL;
	if (c != 0)
	{
		c = claim_create(r, claim_name, claim_text);
		if (c == 1)
			c = 0;
	}
	if (c != 0)
	{
		free(*text);
		*text = NULL;
	}
	return c;
}

/*
 * refresh: state.json's generation is not the one this runner last read or
 * wrote (another writer, a cold execution after a withdrawal for one): load
 * the state again and restore the workspace from it (emptied first), as
 * start() does.  False with msg set; the runner then stops.
 */
static bool
refresh(Runner *r, int64_t seen_gen, char *msg, size_t msglen)
{
	CloudRun   *run = &r->run;
	int			fd;

	say("runner: the session's state is at generation %lld, not %lld; restoring it",
		(long long) seen_gen, (long long) run->generation);
	sb_wsync_end(&r->ws);
	fd = open(run->workspace_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
	{
		empty_dir(fd, 0);
		close(fd);
	}
	sb_state_clear(&run->state);
	if (!sb_cloud_load_state(run, &run->state, &run->generation, msg, msglen) ||
		!sb_cloud_restore(run, &r->base_bytes, &r->inc_bytes, msg, msglen))
	{
		run->replaced = true;
		return false;
	}
	return sb_wsync_begin(&r->ws, msg, msglen);
}

/*
 * take tries to take request id: claim it, then serve it.  Returns 1 when it
 * served it, 0 when it did not (claimed or withdrawn by another, or the
 * claim could not be written), -1 when the runner must stop.
 */
static int
take(Runner *r, long long id)
{
	CloudRun   *run = &r->run;
	char	   *claim_name = strfmt("%s%lld", r->claims_prefix, id);
	char	   *inbox_name = strfmt("%s%lld.json", r->inbox_prefix, id);
	/* The nonce tells this process's claim from one an earlier process with our owner made. */
	char	   *claim_text = strfmt("{\"taken\":%s,\"nonce\":\"%s\"}", r->owner, r->nonce);
	char	   *text = NULL;
	size_t		len = 0;
	bool		go_on = true;
	bool		served = false;
	int64_t		state_gen = 0;
	int			c;

	reset_request(run);
	run->result_name = strfmt("%s/results/%lld.json", run->session_dir, id);
	run->cancel_name = strfmt("%s/requests/%lld.cancel", run->session_dir, id);
	run->request_name = inbox_name;
	if (claim_name == NULL || inbox_name == NULL || claim_text == NULL ||
		run->result_name == NULL || run->cancel_name == NULL)
	{
		say("runner: out of memory");
		go_on = false;
	}
	else if ((c = claim_and_fetch(r, claim_name, claim_text, inbox_name, &text, &len,
								  &state_gen)) == 0)
	{
		char		msg[MSG_SIZE];

		say("runner: took execution %lld", id);
		seen_add(&r->seen, id, true);
		served = true;
		if (state_gen > 0 && state_gen != run->generation && !refresh(r, state_gen, msg, sizeof(msg)))
		{
			error_result(run, "execution %lld was not run: the session runner could not restore "
						 "the session's state (%s)", id, msg);
			delete_quietly(run, inbox_name);
			go_on = false;
		}
		else
		{
			go_on = serve(r, id, inbox_name, text, len);
			text = NULL;		/* serve's now */
		}
	}
	else if (c == 2 && earlier_self(r, claim_name))
	{
		/* Taken by an earlier process with our very owner (restarted in place): lost. */
		seen_add(&r->seen, id, true);
		error_result(run, "the session runner stopped while it ran execution %lld; its output is lost",
					 id, NULL);
		delete_quietly(run, inbox_name);
	}
	else if (c == 2)
	{
		/*
		 * Withdrawn by the extension (or claimed by another): the inbox
		 * object stays, the extension reads the request back from it to run
		 * it cold; remembered, so that we do not come back to it.
		 */
		say("runner: execution %lld was claimed (or withdrawn) already; not running it", id);
		seen_add(&r->seen, id, false);
	}
	reset_request(run);
	free(text);
	sb_free(claim_name);
	sb_free(inbox_name);
	sb_free(claim_text);
	return !go_on ? -1 : served ? 1 : 0;
}

/* valid_token: 32 hex digits. */
static bool
valid_token(const char *t)
{
	if (strlen(t) != 32)
		return false;
	for (const char *p = t; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
			return false;
	return true;
}

/* sleep_ms sleeps ms milliseconds. */
static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* start sets the runner up: lease, owner, state, workspace; 0 to serve, else the exit status. */
static int
start(Runner *r, const char *dir)
{
	CloudRun   *run = &r->run;
	char		msg[MSG_SIZE];
	int			c;

	run->session_dir = sb_strdup(dir);
	run->state_name = strfmt("%s/state.json", dir);
	r->lease_name = strfmt("%s/runner.json", dir);
	r->owner_name = strfmt("%s/runners/%s/owner", dir, r->token);
	r->inbox_prefix = strfmt("%s/runners/%s/inbox/", dir, r->token);
	r->claims_prefix = strfmt("%s/runners/%s/claims/", dir, r->token);
	r->inbox_dir = strfmt("runners/%s/inbox", r->token);
	r->owner = make_owner();
	run->no_cancel_precheck = true;
	{
		unsigned char b[8] = {0};
		FILE	   *f = fopen("/dev/urandom", "rb");

		if (f == NULL || fread(b, 1, sizeof(b), f) != sizeof(b))
			for (int i = 0; i < 8; i++)
				b[i] = (unsigned char) (sb_now_ms() >> (i * 5)) ^ (unsigned char) getpid();
		if (f)
			fclose(f);
		for (int i = 0; i < 8; i++)
			snprintf(r->nonce + 2 * i, 3, "%02x", b[i]);
	}
	if (!run->session_dir || !run->state_name || !r->lease_name || !r->owner_name ||
		!r->inbox_prefix || !r->claims_prefix || !r->owner || !r->inbox_dir)
	{
		say("runner: out of memory");
		return 1;
	}
	if (!sb_cloud_setup_storage(run, msg, sizeof(msg)))
	{
		say("%s", msg);
		return 1;
	}
	if (lease_state(r) != 1)
	{
		say("runner: the session's lease does not name this runner; exiting");
		return 0;
	}
	c = claim_create(r, r->owner_name, r->owner);
	if (c == 2)
	{
		say("runner: another runner owns this token; exiting");
		return 0;
	}
	if (c < 0)
		return 1;
	if (run->config_error[0] != '\0')
	{
		say("runner: %s", run->config_error);
		return 1;
	}
	if (!sb_cloud_load_state(run, &run->state, &run->generation, msg, sizeof(msg)) ||
		!sb_cloud_restore(run, &r->base_bytes, &r->inc_bytes, msg, sizeof(msg)))
	{
		say("runner: %s", msg);
		return 1;
	}
	r->ws.workspace_dir = run->workspace_dir;
	r->ws.max_snapshot = run->max_snapshot;
	if (!sb_wsync_begin(&r->ws, msg, sizeof(msg)))
	{
		say("runner: %s", msg);
		return 1;
	}
	return -1;
}

/* loop serves requests until the runner must exit; returns the exit status. */
static int
loop(Runner *r)
{
	long long	born = sb_now_ms();
	long long	last_request = born;
	long long	last_lease = born;
	long		interval = POLL_FAST_MS;
	bool		compacted_idle = false;

	for (;;)
	{
		long long	now = sb_now_ms();
		long long	id;

		if (now - last_lease >= LEASE_CHECK_MS)
		{
			last_lease = now;
			if (lease_state(r) == 0)
			{
				say("runner: the session's lease was revoked; exiting");
				return 0;
			}
		}
		id = next_request(r);
		if (id == -2)
		{
			say("runner: the job's service account may not list the inbox; exiting "
				"(the extension runs the session's requests as executions of their own)");
			return 1;
		}
		if (id > 0)
		{
			int			t = take(r, id);

			if (t < 0)
				return 0;
			if (t > 0)
			{
				/* Only a served request is work: the idle clock restarts. */
				last_request = sb_now_ms();
				interval = POLL_FAST_MS;
				compacted_idle = false;
				continue;
			}
			/* Skipped, or the claim could not be written: sleep as an empty poll does. */
		}
		now = sb_now_ms();
		/* An idle moment: compact, or leave. */
		if (now - last_request >= COMPACT_IDLE_MS && !compacted_idle && worth_compacting(r))
		{
			compacted_idle = true;
			if (!compact(r) && r->run.replaced)
				return 0;
		}
		if (now - last_request >= r->idle_timeout_s * 1000LL || now - born >= MAX_LIFE_MS)
		{
			if (worth_compacting(r))
				(void) compact(r);
			let_go_lease(r);
			say("runner: %s; exiting", now - born >= MAX_LIFE_MS ? "23 hours of life"
				: "idle timeout");
			return 0;
		}
		if (now - last_request >= POLL_FAST_FOR_MS)
			interval = interval * 2 > POLL_MAX_MS ? POLL_MAX_MS : interval * 2;
		sleep_ms(interval);
	}
}

int
sb_runner_main(int argc, char **argv)
{
	Runner		r;
	char	   *end;
	int			rc;

	if (argc != 5)
	{
		fprintf(stderr, "usage: " PROGNAME " runner BUCKET SESSION_PREFIX TOKEN IDLE_TIMEOUT_S\n");
		return 2;
	}
	memset(&r, 0, sizeof(r));
	r.run.bucket = argv[1];
	r.token = argv[3];
	hidden_token = r.token;
	errno = 0;
	r.idle_timeout_s = strtol(argv[4], &end, 10);
	if (argv[1][0] == '\0' || argv[2][0] == '\0' || argv[2][strlen(argv[2]) - 1] == '/' ||
		strstr(argv[2], "sessions/") == NULL || !valid_token(r.token) || errno != 0 ||
		*end != '\0' || end == argv[4] || r.idle_timeout_s < 1 || r.idle_timeout_s > 86400)
	{
		fprintf(stderr, PROGNAME ": runner: bad arguments (SESSION_PREFIX is P/sessions/S without "
				"a trailing slash, TOKEN 32 hex digits, IDLE_TIMEOUT_S 1 to 86400)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, sb_cloud_on_term);
	/* Keep the sandboxed commands out of our memory (credentials) and pipes. */
	prctl(PR_SET_DUMPABLE, 0);
	r.run.commit = runner_commit;
	r.run.commit_arg = &r;

	rc = start(&r, argv[2]);
	if (rc < 0)
		rc = loop(&r);

	sb_wsync_end(&r.ws);
	reset_request(&r.run);
	sb_cloud_finish_request(&r.run);
	sb_free(r.run.session_dir);
	sb_free(r.run.state_name);
	sb_state_clear(&r.run.state);
	sb_free(r.lease_name);
	sb_free(r.owner_name);
	sb_free(r.inbox_prefix);
	sb_free(r.claims_prefix);
	sb_free(r.inbox_dir);
	free(r.owner);
	sb_auth_free(r.run.auth);
	sb_http_client_free(r.run.http);
	sb_http_global_cleanup();
	if (getpid() == 1)
		kill(-1, SIGKILL);
	return rc;
}
