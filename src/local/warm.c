/*
 * warm.c
 *		The background worker's warm sandboxes: one per session in use, kept
 *		running between the worker's queued commands.
 */
#include "local/run.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "utils/memutils.h"

#include "local/bwrap.h"
#include "local/cgroup.h"


/* Set by the background worker: local runs go to warm sandboxes. */
bool		sb_local_warm = false;

static List *warm_pool = NIL;	/* of WarmSandbox, in TopMemoryContext */

/*
 * warm_signature joins a command line, the niceness and the cgroup parent a
 * sandbox starts with, to tell whether a warm sandbox still matches.
 */
static char *
warm_signature(char **argv)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; argv[i] != NULL; i++)
		appendStringInfo(&buf, "%s%c", argv[i], '\x1f');
	appendStringInfo(&buf, "nice=%d", sb_local_nice);
	/* A sandbox joins its role's cgroup when it starts: a changed parent needs a new one. */
	appendStringInfo(&buf, "%ccgroup=%s", '\x1f', sb_local_cgroup ? sb_local_cgroup : "");
	return buf.data;
}

/* sb_warm_destroy stops a warm sandbox and everything in it, and forgets it. */
void
sb_warm_destroy(WarmSandbox *w)
{
	if (!w->reaped)
	{
		kill(-w->pid, SIGKILL);
		kill(w->pid, SIGKILL);
		while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (w->in_fd >= 0)
		close(w->in_fd);
	if (w->out_fd >= 0)
		close(w->out_fd);
	if (w->err_fd >= 0)
		close(w->err_fd);
	if (w->busy != NULL)
		w->busy->warm = NULL;
	warm_pool = list_delete_ptr(warm_pool, w);
	pfree(w->session);
	pfree(w->signature);
	pfree(w);
}

/* warm_alive tells whether a warm sandbox's bwrap is still running. */
static bool
warm_alive(WarmSandbox *w)
{
	if (!w->reaped && waitpid(w->pid, NULL, WNOHANG) == w->pid)
		w->reaped = true;
	return !w->reaped && w->out_fd >= 0;
}

/*
 * warm_for returns the session's warm sandbox, starting one if needed, or
 * NULL when the pool is full of busy sandboxes (the run then starts a sandbox
 * of its own).  A sandbox that died, was started with other settings, or binds
 * directories a dropped session left behind is replaced.
 */
static WarmSandbox *
warm_for(const char *session)
{
	char	  **argv = sb_bwrap_args(session, 0, true);
	char	   *signature = warm_signature(argv);
	dev_t		dev;
	ino_t		ws_ino, tmp_ino;
	WarmSandbox *w = NULL, *lru = NULL;
	ListCell   *lc;
	WarmSandbox started;
	MemoryContext old;

	if (!sb_bwrap_files_identity(session, &dev, &ws_ino, &tmp_ino))
		return NULL;			/* the cold path reports it */
	foreach(lc, warm_pool)
	{
		WarmSandbox *c = lfirst(lc);

		if (strcmp(c->session, session) == 0)
			w = c;
		else if (c->busy == NULL && (lru == NULL || c->last_used < lru->last_used))
			lru = c;
	}
	if (w != NULL)
	{
		/* Busy means its last run never finished: only one run per session is in flight. */
		if (w->busy == NULL && warm_alive(w) && strcmp(w->signature, signature) == 0 &&
			w->dev == dev && w->ws_ino == ws_ino && w->tmp_ino == tmp_ino)
			return w;
		w->busy = NULL;			/* a run that never finished: do not touch it */
		sb_warm_destroy(w);
	}
	if (list_length(warm_pool) >= sb_warm_sessions)
	{
		if (lru == NULL)
			return NULL;
		sb_warm_destroy(lru);
	}

	memset(&started, 0, sizeof(started));
	started.pid = sb_bwrap_spawn_piped(argv, &started.in_fd, &started.out_fd, &started.err_fd, NULL);
	started.dev = dev;
	started.ws_ino = ws_ino;
	started.tmp_ino = tmp_ino;
	old = MemoryContextSwitchTo(TopMemoryContext);
	w = palloc(sizeof(WarmSandbox));
	*w = started;
	w->session = pstrdup(session);
	w->signature = pstrdup(signature);
	warm_pool = lappend(warm_pool, w);
	MemoryContextSwitchTo(old);
	return w;
}

/* warm_send writes one framed request; false if the sandbox is gone. */
static bool
warm_send(WarmSandbox *w, const char *request)
{
	char		header[32];
	size_t		len = strlen(request);

	snprintf(header, sizeof(header), "%zu\n", len);
	return sb_write_all(w->in_fd, header, strlen(header)) && sb_write_all(w->in_fd, request, len);
}

/*
 * sb_warm_launch sends the request to the session's warm sandbox.  A sandbox
 * that turns out to be gone before it took the request is replaced once.
 * Returns NULL when no warm sandbox can take it.
 */
SbRun *
sb_warm_launch(const char *session, const char *request)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		WarmSandbox *w = warm_for(session);
		SbRun	   *run;

		if (w == NULL)
			return NULL;
		if (!warm_send(w, request))
		{
			sb_warm_destroy(w);
			continue;
		}
		run = palloc0(sizeof(SbRun));
		/* The sandbox belongs to the pool: only sb_warm_destroy() stops it. */
		run->reaped = true;
		run->pid_fd = run->out_fd = run->err_fd = -1;
		run->warm = w;
		run->was_warm = true;
		w->busy = run;
		sb_local_init_result_buffers(run);
		return run;
	}
	return NULL;
}

/*
 * warm_frame_done tells whether out holds a whole result frame,
 * "<length>\n<document>", and records where the document is.
 */
static bool
warm_frame_done(SbRun *run)
{
	const char *nl;
	char	   *end;
	unsigned long long len;

	if (run->out.len == 0)
		return false;
	nl = memchr(run->out.data, '\n', Min(run->out.len, (size_t) 24));
	if (nl == NULL)
		return false;
	errno = 0;
	len = strtoull(run->out.data, &end, 10);
	if (end != nl || errno != 0)
		return false;
	run->frame_start = (size_t) (nl - run->out.data) + 1;
	run->frame_len = (size_t) len;
	return run->out.len >= run->frame_start + run->frame_len;
}

/*
 * sb_local_warm_tick stops warm sandboxes that have been idle longer than
 * cloudrun_sandbox.local_warm_idle_timeout (or that are over the pool's
 * size), and returns the milliseconds until the next one expires, or -1 if
 * none is idle.  The worker calls it before it sleeps.
 */
long
sb_local_warm_tick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		next = -1;
	ListCell   *lc;

	foreach(lc, warm_pool)
	{
		WarmSandbox *w = lfirst(lc);
		TimestampTz expires = TimestampTzPlusMilliseconds(w->last_used,
														  (int64) sb_warm_idle_timeout_s * 1000);

		if (w->busy != NULL)
			continue;
		if (expires <= now || list_length(warm_pool) > sb_warm_sessions)
		{
			sb_warm_destroy(w);
			return sb_local_warm_tick();	/* the list changed */
		}
		{
			long		due = TimestampDifferenceMilliseconds(now, expires) + 1;

			next = next < 0 ? due : Min(next, due);
		}
	}
	return next;
}

/*
 * sb_warm_step reads what the warm sandbox answered.  The run is over once the
 * whole frame arrived (the sandbox is then free for the session's next
 * command), or the sandbox died or overflowed (it is then stopped).
 */
bool
sb_warm_step(SbRun *run)
{
	WarmSandbox *w = run->warm;

	if (w == NULL)
		return true;			/* answered, or the sandbox is gone */
	sb_local_drain(&w->out_fd, &run->out);
	sb_local_drain(&w->err_fd, &run->err);
	if (warm_frame_done(run))
	{
		if (run->out.len > run->frame_start + run->frame_len)
			sb_warm_destroy(w);	/* it said more than asked: do not trust it again */
		else
		{
			w->busy = NULL;
			w->last_used = GetCurrentTimestamp();
		}
		run->warm = NULL;
		run->complete = true;
		return true;
	}
	if (run->out.truncated || w->out_fd < 0)
	{
		sb_warm_destroy(w);
		return true;
	}
	return false;
}
