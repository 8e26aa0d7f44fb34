/*
 * driver_local.c
 *		The local backend: sessions in a storage directory (src/local/storage.c,
 *		which also has its layout), commands run by the executor inside a
 *		bubblewrap sandbox spawned from the backend.
 *
 * The sandbox has its own user, PID, IPC, UTS and (unless
 * cloudrun_sandbox.local_network) network namespaces, cannot create more
 * (--disable-userns), runs under a seccomp filter (src/local/seccomp.c), sees
 * the system read-only and nothing of the data directory.  The executor runs as the
 * namespace's PID 1, so when it, or bwrap, dies every process in the sandbox
 * dies with it; bwrap dies with the backend (--die-with-parent).
 */
#include "driver.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "common/sbutil.h"
#include "local/seccomp.h"
#include "local/storage.h"

#define SB_STDERR_CAP 65536

/* Where the executor is inside every sandbox: a fixed path, not the host's. */
#define SB_SANDBOX_EXECUTOR "/run/sandbox/executor"

/* The descriptor on which bwrap reads the seccomp program (src/local/seccomp.c). */
#define SB_SECCOMP_CHILD_FD 4

typedef struct WarmSandbox WarmSandbox;

struct SbRun
{
	pid_t		pid;
	int			pid_fd;			/* pidfd of bwrap: readable once it has exited */
	int			out_fd;
	int			err_fd;
	SbBuf		out;
	SbBuf		err;
	bool		reaped;
	int			wstatus;
	WarmSandbox *warm;			/* the warm sandbox answering this run, if any */
	size_t		frame_start;	/* warm: where the result document starts in out */
	size_t		frame_len;		/* warm: its length, once the frame is complete */
	bool		complete;		/* warm: the whole result frame has arrived */
	bool		was_warm;		/* sent to a warm sandbox */
};

/*
 * A warm sandbox: one session's bubblewrap sandbox kept running by the
 * background worker, with the executor in serve mode as its PID 1, answering
 * one framed request after another (see executor.c).  It is reused only while
 * it was started with the same command line and binds the same session
 * directories; it is stopped after cloudrun_sandbox.local_warm_idle_timeout
 * unused, and dies with the worker.
 */
struct WarmSandbox
{
	char	   *session;
	char	   *signature;		/* the bwrap command line it was started with */
	dev_t		dev;			/* the session's workspace and tmp it binds */
	ino_t		ws_ino;
	ino_t		tmp_ino;
	pid_t		pid;
	int			in_fd;
	int			out_fd;
	int			err_fd;
	SbRun	   *busy;			/* the run it is answering, or NULL */
	TimestampTz last_used;
	bool		reaped;			/* bwrap has exited and been waited for */
};

/* Set by the background worker: local runs go to warm sandboxes. */
bool		sb_local_warm = false;

static List *warm_pool = NIL;	/* of WarmSandbox, in TopMemoryContext */


/* session_path returns a session's directory [/<sub>], for bwrap's binds. */
static char *
session_path(const char *session, const char *sub)
{
	return sb_storage_session_path(session, sub);
}

static void read_child_pid(int fd, pid_t *init_pid, int64 *init_start);

/* executor_path returns the executor program's path. */
static char *
executor_path(void)
{
	char		dir[MAXPGPATH];

	if (sb_executor_path != NULL && sb_executor_path[0] != '\0')
		return sb_executor_path;
	strlcpy(dir, my_exec_path, sizeof(dir));
	get_parent_directory(dir);
	return psprintf("%s/cloudrun-sandbox-executor", dir);
}

/* add_system_dir exposes a top-level system directory or its merged-/usr symlink. */
static List *
add_system_dir(List *args, const char *path)
{
	struct stat st;
	char		target[MAXPGPATH];
	ssize_t		n;

	if (lstat(path, &st) != 0)
		return args;
	if (S_ISLNK(st.st_mode) && (n = readlink(path, target, sizeof(target) - 1)) > 0)
	{
		target[n] = '\0';
		return lappend(lappend(lappend(args, "--symlink"), pstrdup(target)), (char *) path);
	}
	if (S_ISDIR(st.st_mode))
		return lappend(lappend(lappend(args, "--ro-bind"), (char *) path), (char *) path);
	return args;
}

/* hide_dir mounts an empty tmpfs over a host directory that must stay private. */
static List *
hide_dir(List *args, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		args = lappend(lappend(args, "--tmpfs"), (char *) path);
	return args;
}

/*
 * bwrap_args_for builds the bubblewrap command line for a session: a command
 * (background 0), a background process (its handle), or with serve a warm
 * sandbox.
 */
static char **
bwrap_args_for(const char *session, int64 background, bool serve)
{
	static const char *const sysdirs[] = {"/bin", "/sbin", "/lib", "/lib64", "/lib32",
	"/libx32"};
	List	   *a = NIL;
	char	   *exe = executor_path();
	char	  **argv;
	ListCell   *lc;
	int			i = 0;

	a = lappend(a, sb_bwrap_path);
	a = lappend(a, "--unshare-user");
	/* No nested user namespace, hence no nested mount or network namespace either. */
	a = lappend(a, "--disable-userns");
	a = lappend(lappend(a, "--seccomp"), CppAsString2(SB_SECCOMP_CHILD_FD));
	a = lappend(a, "--unshare-pid");
	a = lappend(a, "--unshare-ipc");
	a = lappend(a, "--unshare-uts");
	a = lappend(a, "--unshare-cgroup-try");
	if (!sb_local_network)
		a = lappend(a, "--unshare-net");
	/* A background process outlives the worker that started it; commands do not. */
	if (background == 0)
		a = lappend(a, "--die-with-parent");
	else
	{
		a = lappend(lappend(lappend(a, "--bind"), session_path(session, "background")),
					"/run/background");
		a = lappend(lappend(a, "--info-fd"), "3");
	}
	a = lappend(a, "--new-session");
	a = lappend(a, "--as-pid-1");
	a = lappend(a, "--hostname");
	a = lappend(a, "sandbox");
	a = lappend(a, "--clearenv");
	a = lappend(lappend(lappend(a, "--ro-bind"), "/usr"), "/usr");
	for (int d = 0; d < (int) lengthof(sysdirs); d++)
		a = add_system_dir(a, sysdirs[d]);
	a = lappend(lappend(lappend(a, "--ro-bind"), "/etc"), "/etc");
	a = hide_dir(a, "/etc/ssl/private");
	a = hide_dir(a, "/etc/postgresql");
	a = hide_dir(a, "/etc/postgresql-common");
	a = lappend(lappend(a, "--proc"), "/proc");
	a = lappend(lappend(a, "--dev"), "/dev");
	a = lappend(lappend(lappend(a, "--bind"), session_path(session, "workspace")), SB_WORKSPACE);
	a = lappend(lappend(lappend(a, "--bind"), session_path(session, "tmp")), "/tmp");
	a = lappend(lappend(lappend(a, "--ro-bind"), exe), SB_SANDBOX_EXECUTOR);
	a = lappend(lappend(a, "--remount-ro"), "/");
	a = lappend(lappend(a, "--chdir"), SB_WORKSPACE);
	a = lappend(a, "--");
	a = lappend(a, SB_SANDBOX_EXECUTOR);
	if (serve)
		a = lappend(a, "serve");
	if (background != 0)
	{
		a = lappend(a, "background");
		a = lappend(a, psprintf("/run/background/" INT64_FORMAT ".exit", background));
	}

	argv = palloc(sizeof(char *) * (list_length(a) + 1));
	foreach(lc, a)
		argv[i++] = lfirst(lc);
	argv[i] = NULL;
	return argv;
}

/* bwrap_args builds the bubblewrap command line for a command of a session. */
static char **
bwrap_args(const char *session)
{
	return bwrap_args_for(session, 0, false);
}

/* write_request hands the request to the executor, which reads it at once. */
static void
write_request(int fd, const char *request)
{
	size_t		len = strlen(request);

	if (len > 65536)
		(void) fcntl(fd, F_SETPIPE_SZ, len < 1048576 ? (int) len : 1048576);
	/* If the executor died, its stderr says why. */
	(void) sb_write_all(fd, request, len);
	close(fd);
}

/*
 * spawn_sandbox starts bwrap with the given descriptors as its 0, 1, 2 (and
 * 3, if extra >= 0), the seccomp program on SB_SECCOMP_CHILD_FD (bwrap reads
 * and closes it before the sandbox's first process starts), and nothing else
 * of the backend's: the client socket and every other descriptor stay behind.
 * It runs in a session of its own, with default signal handling.  Returns its
 * pid.
 */
static pid_t
spawn_sandbox(char **argv, int fd0, int fd1, int fd2, int extra)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t	none, all;
	char	   *empty_env[] = {NULL};
	pid_t		pid;
	int			rc;
	int			seccomp_fd;

	if (access(sb_bwrap_path, X_OK) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("bubblewrap is not available at \"%s\": %m", sb_bwrap_path),
				 errhint("Install the bubblewrap package, or set cloudrun_sandbox.bwrap_path.")));
	if (access(executor_path(), X_OK) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the sandbox executor is not available at \"%s\": %m", executor_path()),
				 errhint("Run make install, or set cloudrun_sandbox.executor_path.")));
	/* Above the descriptors dup'ed before it, so that none of them overwrites it. */
	seccomp_fd = sb_seccomp_open(SB_SECCOMP_CHILD_FD + 1);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd0, 0);
	posix_spawn_file_actions_adddup2(&fa, fd1, 1);
	posix_spawn_file_actions_adddup2(&fa, fd2, 2);
	if (extra >= 0)
		posix_spawn_file_actions_adddup2(&fa, extra, 3);
	else
		posix_spawn_file_actions_addclose(&fa, 3);
	posix_spawn_file_actions_adddup2(&fa, seccomp_fd, SB_SECCOMP_CHILD_FD);
	posix_spawn_file_actions_addclosefrom_np(&fa, SB_SECCOMP_CHILD_FD + 1);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
							 POSIX_SPAWN_SETSID);
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, empty_env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(seccomp_fd);
	if (rc != 0)
	{
		errno = rc;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start the sandbox \"%s\": %m", argv[0])));
	}
	return pid;
}

/*
 * spawn_piped starts bwrap (spawn_sandbox) with new pipes as its standard
 * input, output and error, and returns their ends on our side: in_fd
 * (blocking) for the request, out_fd and err_fd (non-blocking), and, unless
 * pid_fd is NULL, a pidfd.
 */
static pid_t
spawn_piped(char **argv, int *in_fd, int *out_fd, int *err_fd, int *pid_fd)
{
	int			in[2], out[2], err[2];
	pid_t		pid;

	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create pipes: %m")));
	PG_TRY();
	{
		pid = spawn_sandbox(argv, in[0], out[1], err[1], -1);
	}
	PG_CATCH();
	{
		close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(err[0]), close(err[1]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(in[0]);
	close(out[1]);
	close(err[1]);
	*in_fd = in[1];
	*out_fd = out[0];
	*err_fd = err[0];
	if (pid_fd != NULL)
		*pid_fd = (int) syscall(SYS_pidfd_open, pid, 0);
	fcntl(*out_fd, F_SETFL, O_NONBLOCK);
	fcntl(*err_fd, F_SETFL, O_NONBLOCK);
	return pid;
}

/*
 * init_result_buffers sizes a run's buffers.  Results are bounded: output is
 * capped and JSON escaping at most sextuples it; a file operation's payload
 * is capped and travels in base64.
 */
static void
init_result_buffers(SbRun *run)
{
	sb_buf_init(&run->out, Max((size_t) sb_max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES +
							   1024 * 1024, SB_FILE_RESULT_MAX(sb_max_transfer_bytes)));
	sb_buf_init(&run->err, SB_STDERR_CAP);
}

/* warm_signature joins a command line, to tell whether a warm sandbox still matches. */
static char *
warm_signature(char **argv)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; argv[i] != NULL; i++)
		appendStringInfo(&buf, "%s%c", argv[i], '\x1f');
	return buf.data;
}

/* warm_destroy stops a warm sandbox and everything in it, and forgets it. */
static void
warm_destroy(WarmSandbox *w)
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
	char	  **argv = bwrap_args_for(session, 0, true);
	char	   *signature = warm_signature(argv);
	struct stat ws, tmp;
	WarmSandbox *w = NULL, *lru = NULL;
	ListCell   *lc;
	WarmSandbox started;
	MemoryContext old;

	if (stat(session_path(session, "workspace"), &ws) != 0 ||
		stat(session_path(session, "tmp"), &tmp) != 0)
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
			w->dev == ws.st_dev && w->ws_ino == ws.st_ino && w->tmp_ino == tmp.st_ino)
			return w;
		w->busy = NULL;			/* a run that never finished: do not touch it */
		warm_destroy(w);
	}
	if (list_length(warm_pool) >= sb_warm_sessions)
	{
		if (lru == NULL)
			return NULL;
		warm_destroy(lru);
	}

	memset(&started, 0, sizeof(started));
	started.pid = spawn_piped(argv, &started.in_fd, &started.out_fd, &started.err_fd, NULL);
	started.dev = ws.st_dev;
	started.ws_ino = ws.st_ino;
	started.tmp_ino = tmp.st_ino;
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
 * warm_launch sends the request to the session's warm sandbox.  A sandbox
 * that turns out to be gone before it took the request is replaced once.
 * Returns NULL when no warm sandbox can take it.
 */
static SbRun *
warm_launch(const char *session, const char *request)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		WarmSandbox *w = warm_for(session);
		SbRun	   *run;

		if (w == NULL)
			return NULL;
		if (!warm_send(w, request))
		{
			warm_destroy(w);
			continue;
		}
		run = palloc0(sizeof(SbRun));
		/* The sandbox belongs to the pool: only warm_destroy() stops it. */
		run->reaped = true;
		run->pid_fd = run->out_fd = run->err_fd = -1;
		run->warm = w;
		run->was_warm = true;
		w->busy = run;
		init_result_buffers(run);
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
			warm_destroy(w);
			return sb_local_warm_tick();	/* the list changed */
		}
		{
			long		due = TimestampDifferenceMilliseconds(now, expires) + 1;

			next = next < 0 ? due : Min(next, due);
		}
	}
	return next;
}

static SbRun *
local_launch(const char *session, int64 id, const char *request)
{
	SbRun	   *run;
	int			in_fd;

	if (sb_local_warm && sb_warm_sessions > 0 && (run = warm_launch(session, request)) != NULL)
		return run;
	run = palloc0(sizeof(SbRun));
	run->pid = spawn_piped(bwrap_args(session), &in_fd, &run->out_fd, &run->err_fd,
						   &run->pid_fd);
	init_result_buffers(run);
	write_request(in_fd, request);
	return run;
}

static int
local_wait_fds(SbRun *run, int *fds, int max_fds)
{
	int			n = 0;

	if (run->was_warm)
	{
		if (run->warm != NULL && run->warm->out_fd >= 0 && n < max_fds)
			fds[n++] = run->warm->out_fd;
		if (run->warm != NULL && run->warm->err_fd >= 0 && n < max_fds)
			fds[n++] = run->warm->err_fd;
		return n;
	}
	if (run->out_fd >= 0 && n < max_fds)
		fds[n++] = run->out_fd;
	if (run->err_fd >= 0 && n < max_fds)
		fds[n++] = run->err_fd;
	/* Once the pipes are closed, what is left is the process's exit. */
	if (n == 0 && !run->reaped && run->pid_fd >= 0 && n < max_fds)
		fds[n++] = run->pid_fd;
	return n;
}

/* drain reads what is available; closes fd at EOF. */
static void
drain(int *fd, SbBuf *buf)
{
	char		chunk[65536];

	while (*fd >= 0)
	{
		ssize_t		n = read(*fd, chunk, sizeof(chunk));

		if (n > 0)
		{
			if (!sb_buf_append(buf, chunk, (size_t) n))
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		close(*fd);
		*fd = -1;
	}
}

/*
 * warm_step reads what the warm sandbox answered.  The run is over once the
 * whole frame arrived (the sandbox is then free for the session's next
 * command), or the sandbox died or overflowed (it is then stopped).
 */
static bool
warm_step(SbRun *run)
{
	WarmSandbox *w = run->warm;

	if (w == NULL)
		return true;			/* answered, or the sandbox is gone */
	drain(&w->out_fd, &run->out);
	drain(&w->err_fd, &run->err);
	if (warm_frame_done(run))
	{
		if (run->out.len > run->frame_start + run->frame_len)
			warm_destroy(w);	/* it said more than asked: do not trust it again */
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
		warm_destroy(w);
		return true;
	}
	return false;
}

static bool
local_step(SbRun *run)
{
	if (run->was_warm)
		return warm_step(run);
	drain(&run->out_fd, &run->out);
	drain(&run->err_fd, &run->err);
	if (run->out.truncated)
		return true;			/* a runaway result: finish() reports it */
	if (run->out_fd >= 0 || run->err_fd >= 0)
		return false;
	if (!run->reaped && waitpid(run->pid, &run->wstatus, WNOHANG) == run->pid)
		run->reaped = true;
	if (run->reaped && run->pid_fd >= 0)
		close(run->pid_fd), run->pid_fd = -1;
	return run->reaped;
}

static void
local_cancel(SbRun *run)
{
	if (run->warm != NULL)
		warm_destroy(run->warm);
	if (!run->reaped && run->pid > 0)
	{
		kill(-run->pid, SIGKILL);
		kill(run->pid, SIGKILL);
		while (waitpid(run->pid, &run->wstatus, 0) < 0 && errno == EINTR)
			;
		run->reaped = true;
	}
	if (run->out_fd >= 0)
		close(run->out_fd), run->out_fd = -1;
	if (run->err_fd >= 0)
		close(run->err_fd), run->err_fd = -1;
	if (run->pid_fd >= 0)
		close(run->pid_fd), run->pid_fd = -1;
}

static char *
local_finish(SbRun *run, size_t *len)
{
	if (run->complete)
	{
		*len = run->frame_len;
		run->out.data[run->frame_start + run->frame_len] = '\0';
		return run->out.data + run->frame_start;
	}
	if (run->was_warm && !run->out.truncated)
	{
		char	   *why = run->err.len ? run->err.data : "no message";

		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the session's warm sandbox stopped before it returned a result"),
				 errdetail("The sandbox said: %s", pnstrdup(why, strcspn(why, "\n"))),
				 errhint("Setting cloudrun_sandbox.local_warm_sessions to 0 starts a sandbox "
						 "per command.")));
	}
	if (run->out.truncated)
	{
		local_cancel(run);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the sandbox executor returned a result larger than allowed")));
	}
	if (run->out.len == 0)
	{
		char	   *why = run->err.len ? run->err.data : "no output";

		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the sandbox failed before running the command"),
				 errdetail("bubblewrap exited with status %d: %s",
						   WIFEXITED(run->wstatus) ? WEXITSTATUS(run->wstatus) : -1,
						   pnstrdup(why, strcspn(why, "\n"))),
				 errhint("Check that unprivileged user namespaces are enabled and that "
						 "cloudrun_sandbox.local_root is writable.")));
	}
	*len = run->out.len;
	return run->out.data;
}

const SbDriver sb_local_driver = {
	.name = "local",
	.executor_writes_state = false,
	.slack_ms = 10000,
	.prepare_session = sb_storage_prepare_session,
	.drop_session = sb_storage_drop_session,
	.load_state = sb_storage_load_state,
	.store_state = sb_storage_store_state,
	.launch = local_launch,
	.wait_fds = local_wait_fds,
	.step = local_step,
	.finish = local_finish,
	.cancel = local_cancel,
	.stage = NULL,
	.launch_batch = NULL,
	.remote_name = NULL,
	.attach = NULL,
};

/* sb_local_background_path returns background/<handle>.<what> of a session. */
char *
sb_local_background_path(const char *session, int64 handle, const char *what)
{
	return psprintf("%s/background/" INT64_FORMAT ".%s", session_path(session, NULL), handle, what);
}

/* sb_process_start_time returns a process's start time (clock ticks since boot), or -1. */
int64
sb_process_start_time(pid_t pid)
{
	char		path[64];
	char		buf[1024];
	FILE	   *f;
	char	   *p;
	long long	start = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
	{
		/* after "pid (comm)": field 3 is the state; the start time is field 22 */
		int			field = 2;

		for (p++; *p && field < 21; p++)
			if (*p == ' ')
				field++;
		if (field == 21)
			start = strtoll(p, NULL, 10);
	}
	fclose(f);
	return start;
}

/* sb_local_background_exit reads the exit code a background process left; false if none. */
bool
sb_local_background_exit(const char *session, int64 handle, int *code)
{
	FILE	   *f = fopen(sb_local_background_path(session, handle, "exit"), "r");
	bool		ok;

	if (f == NULL)
		return false;
	ok = fscanf(f, "%d", code) == 1;
	fclose(f);
	return ok;
}

/*
 * sb_local_background_spawn starts a background process: bwrap (without
 * --die-with-parent) runs the executor in background mode with the session's
 * sandbox, its output appended to background/<handle>.log.  Returns bwrap's
 * pid; *init_pid and *init_start identify the sandbox's first process (from
 * bwrap's --info-fd), which is what a kill signals.
 */
pid_t
sb_local_background_spawn(const char *session, int64 handle, const char *request,
						  pid_t *init_pid, int64 *init_start)
{
	int			in[2], info[2];
	int			logfd;
	char	  **argv;
	pid_t		pid;

	sb_storage_prepare_session(session, false);
	sb_storage_make_subdir(session, "background");
	argv = bwrap_args_for(session, handle, false);
	logfd = open(sb_local_background_path(session, handle, "log"),
				 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, S_IRUSR | S_IWUSR);
	if (logfd < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a background log: %m")));
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(info, O_CLOEXEC) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create pipes: %m")));
	PG_TRY();
	{
		pid = spawn_sandbox(argv, in[0], logfd, logfd, info[1]);
	}
	PG_CATCH();
	{
		close(in[0]), close(in[1]), close(info[0]), close(info[1]), close(logfd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(in[0]);
	close(info[1]);
	close(logfd);
	write_request(in[1], request);
	read_child_pid(info[0], init_pid, init_start);
	return pid;
}

/* read_child_pid reads bwrap's --info-fd report of the sandbox's first process. */
static void
read_child_pid(int fd, pid_t *init_pid, int64 *init_start)
{
	char		buf[256];
	ssize_t		n = 0;
	char	   *p;

	/* bwrap reports the sandbox's first process once it exists: {"child-pid": N}. */
	for (;;)
	{
		ssize_t		r = read(fd, buf + n, sizeof(buf) - 1 - n);

		if (r > 0 && (n += r) < (ssize_t) sizeof(buf) - 1)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	close(fd);
	buf[n] = '\0';
	p = strstr(buf, "\"child-pid\"");
	*init_pid = p ? (pid_t) strtol(strchr(p, ':') + 1, NULL, 10) : 0;
	*init_start = *init_pid > 0 ? sb_process_start_time(*init_pid) : -1;
}
