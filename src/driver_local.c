/*
 * driver_local.c
 *		The local backend: sessions in a storage directory (src/local/storage.c,
 *		which also has its layout), commands run by the executor inside a
 *		bubblewrap sandbox spawned from the backend.
 *
 * host/ is never bound into a sandbox: a background sandbox gets its log and
 * exit-code file as descriptors the host opened (see "Background processes'
 * files" below).
 *
 * The sandbox has its own user, PID, IPC, UTS and (unless
 * cloudrun_sandbox.local_network) network namespaces, cannot create more
 * (--disable-userns), runs under a seccomp filter (src/local/seccomp.c), sees
 * the system read-only and nothing of the data directory.  The executor runs as the
 * namespace's PID 1, so when it, or bwrap, dies every process in the sandbox
 * dies with it; bwrap dies with the backend (--die-with-parent), except for
 * background processes, which survive the worker and stop with the
 * postmaster (they watch its death pipe) or when the extension is dropped
 * (the worker stops them, see worker.c).
 */
#include "driver.h"
#include "common/frame.h"

#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "utils/memutils.h"

#include "common/sbutil.h"
#include "local/cgroup.h"
#include "local/quota.h"
#include "local/seccomp.h"
#include "local/slots.h"
#include "local/spawn.h"
#include "local/storage.h"

#define SB_STDERR_CAP 65536

/* Where the executor is inside every sandbox: a fixed path, not the host's. */
#define SB_SANDBOX_EXECUTOR "/run/sandbox/executor"
/* Where a sandbox of a session with a disk image sees its background processes' logs. */
#define SB_SANDBOX_BACKGROUND "/run/background"

/*
 * The descriptors a sandbox gets besides 0, 1 and 2: bwrap's --info-fd (a
 * background sandbox only; closed otherwise), the seccomp program (bwrap
 * reads and closes it before the sandbox's first process starts), and for a
 * background sandbox the exit-code file and the postmaster-death pipe.
 */
#define SB_BG_INFO_FD 3
#define SB_SECCOMP_CHILD_FD 4
#define SB_BG_EXIT_FD 5
#define SB_BG_WATCH_FD 6

static int	background_watch_fd(void);

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
	size_t		payload_len[2]; /* warm: the result frame's payloads, after the JSON */
	SbPayload	payload[2];		/* warm: their copies, made by finish() */
	int			slot;			/* its hold on a role's sandbox slot (local/slots.c), or 0 */
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

/*
 * files_path returns the path of a session's workspace, tmp or background
 * directory: in its disk image's mount, or for a session without one (made
 * before 0.4.0, or with no quota) in its directory.
 */
static char *
files_path(const char *session, const char *sub)
{
	const char *files = sb_storage_files_dir(session);

	return session_path(session, files[0] ? psprintf("%s/%s", files, sub) : sub);
}

/*
 * files_identity identifies what a sandbox of the session binds, without
 * asking a FUSE mount anything (the worker calls it): the mount's device
 * (from the kernel's cache) and the image's inode, or the directories'
 * device and inodes.  False if they are not there.
 */
static bool
files_identity(const char *session, dev_t *dev, ino_t *a, ino_t *b)
{
	struct stat ws, tmp;
	struct statx mnt;

	if (sb_storage_files_dir(session)[0] != '\0')
	{
		if (statx(AT_FDCWD, session_path(session, SB_QUOTA_MOUNT),
				  AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_INO, &mnt) != 0 ||
			stat(session_path(session, SB_QUOTA_IMAGE), &ws) != 0)
			return false;
		*dev = makedev(mnt.stx_dev_major, mnt.stx_dev_minor);
		*a = ws.st_ino;
		*b = 0;
		return true;
	}
	if (stat(session_path(session, "workspace"), &ws) != 0 ||
		stat(session_path(session, "tmp"), &tmp) != 0)
		return false;
	*dev = ws.st_dev;
	*a = ws.st_ino;
	*b = tmp.st_ino;
	return true;
}

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
	bool		image = sb_storage_files_dir(session)[0] != '\0';

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
	/*
	 * A background process outlives the worker that started it (it stops with
	 * the postmaster instead, see sb_local_background_spawn); commands do not.
	 */
	if (background == 0)
		a = lappend(a, "--die-with-parent");
	else
		a = lappend(lappend(a, "--info-fd"), CppAsString2(SB_BG_INFO_FD));
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
	/*
	 * A new /dev (device nodes of null, zero, random, tty...), read-only, with
	 * a /dev/shm of limited size: both are memory no rlimit counts.
	 */
	a = lappend(lappend(a, "--dev"), "/dev");
	a = lappend(lappend(a, "--size"), psprintf("%lld", (long long) sb_shm_size_mb * 1024 * 1024));
	a = lappend(lappend(a, "--tmpfs"), "/dev/shm");
	a = lappend(lappend(a, "--remount-ro"), "/dev");
	a = lappend(lappend(lappend(a, "--bind"), files_path(session, "workspace")), SB_WORKSPACE);
	a = lappend(lappend(lappend(a, "--bind"), files_path(session, "tmp")), "/tmp");
	/*
	 * With a disk image, background processes' logs are in it: written by the
	 * executor of a background sandbox, and deletable by every sandbox of the
	 * session (they count in its quota).
	 */
	if (image)
		a = lappend(lappend(lappend(a, "--bind"), files_path(session, "background")),
					SB_SANDBOX_BACKGROUND);
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
		a = lappend(a, CppAsString2(SB_BG_EXIT_FD));
		a = lappend(a, background_watch_fd() >= 0 ? CppAsString2(SB_BG_WATCH_FD) : "-");
		if (image)
			a = lappend(a, psprintf("%s/" INT64_FORMAT ".log", SB_SANDBOX_BACKGROUND, background));
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
 * spawn_sandbox starts bwrap with the given descriptors as its 0, 1, 2 and
 * extra[i] as its 3 + i (left closed where extra[i] < 0), the seccomp
 * program on SB_SECCOMP_CHILD_FD (whose slot in extra, if it has one, must
 * be -1), and nothing else of the backend's: the client socket and every
 * other descriptor stay behind.  It runs in a session of its own, with
 * default signal handling and the sandbox's limits (sb_spawn_sandbox_process),
 * in its role's cgroup (src/local/cgroup.c) when cloudrun_sandbox.local_cgroup
 * is set.  Returns its pid.
 */
static pid_t
spawn_sandbox(char **argv, int fd0, int fd1, int fd2, const int *extra, int nextra)
{
	pid_t		pid;
	int			save;
	int			src[SB_SECCOMP_CHILD_FD + 1 + 8];
	int			raised[SB_SECCOMP_CHILD_FD + 1 + 8];
	int			nfds = Max(3 + nextra, SB_SECCOMP_CHILD_FD + 1);
	int			seccomp_fd;
	int			failed_cgroup;
	SbCgroupJoin cg;

	Assert(nextra >= 0 && nextra <= 8);
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
	sb_cgroup_prepare(sb_cgroup_role(), &cg);
	src[0] = fd0;
	src[1] = fd1;
	src[2] = fd2;
	for (int i = 3; i < nfds; i++)
		src[i] = i - 3 < nextra ? extra[i - 3] : -1;
	Assert(src[SB_SECCOMP_CHILD_FD] < 0);
	/* Above every target, so that no dup2 overwrites it. */
	seccomp_fd = sb_seccomp_open(nfds);

	/*
	 * The dup2s run in order: a source numbered like an earlier target would
	 * be overwritten first, so such sources are copied above every target.
	 */
	for (int i = 0; i < nfds; i++)
	{
		raised[i] = -1;
		if (src[i] >= 0 && src[i] < nfds)
		{
			raised[i] = fcntl(src[i], F_DUPFD_CLOEXEC, nfds);
			if (raised[i] < 0)
			{
				int			save = errno;

				for (int j = 0; j < i; j++)
					if (raised[j] >= 0)
						close(raised[j]);
				close(seccomp_fd);
				errno = save;
				ereport(ERROR,
						(errcode_for_file_access(), errmsg("could not duplicate a descriptor: %m")));
			}
			src[i] = raised[i];
		}
	}
	src[SB_SECCOMP_CHILD_FD] = seccomp_fd;
	pid = sb_spawn_sandbox_process(argv, src, nfds, &cg, &failed_cgroup);
	save = errno;
	close(seccomp_fd);
	for (int i = 0; i < nfds; i++)
		if (raised[i] >= 0)
			close(raised[i]);
	if (pid >= 0)
		return pid;
	errno = save;
	if (failed_cgroup >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not put the sandbox into its role's cgroup: %m"),
				 errdetail("Writing to %s failed; cloudrun_sandbox.local_cgroup is \"%s\".",
						   cg.procs[Min(failed_cgroup, SB_CGROUP_MAX_JOIN - 1)], sb_local_cgroup),
				 errhint("On cgroup v2 the server's own processes must be in the delegated "
						 "subtree too (see the README's \"Per-role cgroups\" section); or set "
						 "cloudrun_sandbox.local_cgroup to ''.")));
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("could not start the sandbox \"%s\": %m", argv[0])));
	return -1;					/* keep compiler quiet */
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
		pid = spawn_sandbox(argv, in[0], out[1], err[1], NULL, 0);
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
	dev_t		dev;
	ino_t		ws_ino, tmp_ino;
	WarmSandbox *w = NULL, *lru = NULL;
	ListCell   *lc;
	WarmSandbox started;
	MemoryContext old;

	if (!files_identity(session, &dev, &ws_ino, &tmp_ino))
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

/* warm_send writes one request frame (common/frame.h); false if the sandbox is gone. */
static bool
warm_send(WarmSandbox *w, const char *request)
{
	char		header[SB_FRAME_HEADER_MAX];
	size_t		len = strlen(request);

	snprintf(header, sizeof(header), "SBF %zu 0 0\n", len);
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
 * warm_frame_done tells whether out holds a whole result frame, "SBF
 * <json_len> <len0> <len1>\n" and the parts, and records where they are.
 */
static bool
warm_frame_done(SbRun *run)
{
	const char *nl;
	const char *p;
	unsigned long long v[3];

	if (run->out.len == 0)
		return false;
	nl = memchr(run->out.data, '\n', Min(run->out.len, (size_t) SB_FRAME_HEADER_MAX));
	if (nl == NULL || run->out.len < 4 || memcmp(run->out.data, "SBF ", 4) != 0)
		return false;
	p = run->out.data + 4;
	for (int i = 0; i < 3; i++)
	{
		char	   *end;

		if (*p < '0' || *p > '9')
			return false;
		errno = 0;
		v[i] = strtoull(p, &end, 10);
		if (errno != 0 || end > nl || *end != (i < 2 ? ' ' : '\n') || v[i] > run->out.cap)
			return false;
		p = end + 1;
	}
	run->frame_start = (size_t) (nl - run->out.data) + 1;
	run->frame_len = (size_t) v[0];
	run->payload_len[0] = (size_t) v[1];
	run->payload_len[1] = (size_t) v[2];
	return run->out.len >= run->frame_start + v[0] + v[1] + v[2];
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
local_launch(const char *session, int64 id, const char *request, const SbPayload *upload)
{
	SbRun	   *run;
	SbRun	   *volatile cold;
	int			in_fd;

	/* Not binary_frames (yet): an upload is always inside the request. */
	if (upload != NULL)
		elog(ERROR, "the local driver takes no frame payload yet");

	if (sb_local_warm && sb_warm_sessions > 0 && (run = warm_launch(session, request)) != NULL)
		return run;
	cold = palloc0(sizeof(SbRun));
	/* A call in a role's own backend holds one of its slots while its sandbox runs. */
	cold->slot = sb_sandbox_slot_take();
	PG_TRY();
	{
		cold->pid = spawn_piped(bwrap_args(session), &in_fd, &cold->out_fd, &cold->err_fd,
								&cold->pid_fd);
	}
	PG_CATCH();
	{
		sb_sandbox_slot_release(cold->slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
	init_result_buffers(cold);
	write_request(in_fd, request);
	return cold;
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
		if (run->out.len > run->frame_start + run->frame_len + run->payload_len[0] +
			run->payload_len[1])
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

/* release_slot gives back the role's sandbox slot once the run's sandbox is gone. */
static void
release_slot(SbRun *run)
{
	sb_sandbox_slot_release(run->slot);
	run->slot = 0;
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
	if (run->reaped)
		release_slot(run);
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
	release_slot(run);
}

static char *
local_finish(SbRun *run, size_t *len)
{
	if (run->complete)
	{
		const char *p = run->out.data + run->frame_start + run->frame_len;

		/* Copies of the payloads, as SbPayload wants them, before the NUL below. */
		for (int i = 0; i < 2; i++)
		{
			char	   *buf = palloc(VARHDRSZ + run->payload_len[i] + 1);

			memcpy(buf + VARHDRSZ, p, run->payload_len[i]);
			buf[VARHDRSZ + run->payload_len[i]] = '\0';
			run->payload[i].data = buf + VARHDRSZ;
			run->payload[i].len = run->payload_len[i];
			p += run->payload_len[i];
		}
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

/* local_payloads hands out a warm result frame's payloads (none for a cold run). */
static int
local_payloads(SbRun *run, SbPayload *out, int max)
{
	int			n = 0;

	for (; run->complete && n < 2 && n < max; n++)
		out[n] = run->payload[n];
	return n;
}

const SbDriver sb_local_driver = {
	.name = "local",
	.binary_frames = false,
	.payloads = local_payloads,
	.executor_writes_state = false,
	.slack_ms = 10000,
	.prepare_session = sb_storage_prepare_session,
	.disk_quota_kb = sb_storage_quota_kb,
	.delete_storage = sb_storage_delete_session,
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

/*
 * Background processes' files.  The host keeps them in
 * sessions/<s>/host/background/, a directory no sandbox sees, and gives the
 * sandbox open descriptors instead: the log as its standard output and error,
 * the exit-code file, and the read end of the postmaster-death pipe.  Every
 * file there is opened with openat() on directory descriptors opened with
 * O_NOFOLLOW, itself with O_NOFOLLOW|O_NONBLOCK, and used only if fstat()
 * says it is a regular file: nothing planted anywhere can redirect the host
 * or make it wait.  Processes started before 0.2.0 kept their files in
 * sessions/<s>/background/, which their sandbox can write; they are read
 * there the same way, and only when the host directory has no such file.
 */

/* open_dir_at opens (with create, first making) a directory below dirfd, never through a symlink. */
static int
open_dir_at(int dirfd, const char *name, bool create)
{
	if (create && mkdirat(dirfd, name, S_IRWXU) != 0 && errno != EEXIST)
		return -1;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * open_bg_dir_at opens, below a session's directory, its directory of
 * background-process files: the host-only one (made if create), or with
 * legacy the one of 0.1.0.  Returns -1 with errno set if it cannot.
 */
static int
open_bg_dir_at(int session_fd, bool create, bool legacy)
{
	int			host, bg;
	int			save;

	if (legacy)
		return open_dir_at(session_fd, "background", false);
	host = open_dir_at(session_fd, "host", create);
	if (host < 0)
		return -1;
	bg = open_dir_at(host, "background", create);
	save = errno;
	close(host);
	errno = save;
	return bg;
}

/* open_bg_dir is open_bg_dir_at for a session named by its storage key. */
static int
open_bg_dir(const char *session, bool create, bool legacy)
{
	int			dir, bg;
	int			save;

	/* The session is one path component, never a way up or down. */
	if (session[0] == '\0' || strchr(session, '/') != NULL || strcmp(session, ".") == 0 ||
		strcmp(session, "..") == 0)
	{
		errno = EINVAL;
		return -1;
	}
	dir = sb_storage_try_open_session(session);
	if (dir < 0)
		return -1;
	bg = open_bg_dir_at(dir, create, legacy);
	save = errno;
	close(dir);
	errno = save;
	return bg;
}

/*
 * open_bg_file opens a file of a directory of background-process files:
 * never through a symlink, never waiting (on a FIFO), and only if it is a
 * regular file.  flags are open(2)'s access and creation flags.  Returns -1
 * with errno set otherwise.
 */
static int
open_bg_file(int dirfd, const char *name, int flags)
{
	struct stat st;
	int			fd;

	fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, S_IRUSR | S_IWUSR);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		errno = EINVAL;
		return -1;
	}
	/* Meaningless for a regular file, but the flag would reach the sandbox. */
	(void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* bg_name formats a background process's file name, <handle>.<what>. */
static void
bg_name(char *name, size_t len, int64 handle, const char *what)
{
	snprintf(name, len, INT64_FORMAT ".%s", handle, what);
}

/*
 * open_bg_reading opens a background process's file for reading: in the
 * host-only directory, or, for processes started before 0.2.0, in the legacy
 * one.  -1 if there is none (or it is not a regular file).
 */
static int
open_bg_reading(const char *session, int64 handle, const char *what)
{
	char		name[64];
	int			dir = open_bg_dir(session, false, false);
	int			fd;

	bg_name(name, sizeof(name), handle, what);
	if (dir >= 0)
	{
		fd = open_bg_file(dir, name, O_RDONLY);
		close(dir);
		if (fd >= 0 || errno != ENOENT)
			return fd;
	}
	dir = open_bg_dir(session, false, true);
	if (dir < 0)
		return -1;
	fd = open_bg_file(dir, name, O_RDONLY);
	close(dir);
	return fd;
}

/* read_small reads up to len - 1 bytes from the start of fd, NUL-terminated; false on failure. */
static bool
read_small(int fd, char *buf, size_t len)
{
	ssize_t		n;

	do
		n = pread(fd, buf, len - 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

/*
 * sb_local_background_open_log opens a background process's log for
 * reading; -1 if it has none.  The caller closes it.
 */
int
sb_local_background_open_log(const char *session, int64 handle)
{
	int			fd = open_bg_reading(session, handle, "log");
	int			dir, bg;
	char		name[64];

	if (fd >= 0 || errno != ENOENT)
		return fd;
	/* In the session's disk image (mounted first), where the executor writes it. */
	dir = sb_storage_try_open_session(session);
	if (dir < 0)
		return -1;
	if (!sb_quota_has_image(dir))
	{
		close(dir);
		errno = ENOENT;
		return -1;
	}
	PG_TRY();
	{
		sb_quota_ensure_mounted(dir, session, true);
	}
	PG_CATCH();
	{
		close(dir);
		PG_RE_THROW();
	}
	PG_END_TRY();
	bg = open_dir_at(dir, SB_QUOTA_MOUNT, false);
	close(dir);
	dir = bg < 0 ? -1 : open_dir_at(bg, "background", false);
	if (bg >= 0)
		close(bg);
	if (dir < 0)
		return -1;
	bg_name(name, sizeof(name), handle, "log");
	fd = open_bg_file(dir, name, O_RDONLY);
	close(dir);
	return fd;
}

/*
 * sb_local_background_exit reads the exit code a background process left;
 * false if none.  *server_stopped says whether it was stopped because the
 * postmaster had gone, *quota_exceeded whether it filled (or failed on) the
 * session's full disk quota.
 */
bool
sb_local_background_exit(const char *session, int64 handle, int *code, bool *server_stopped,
						 bool *quota_exceeded)
{
	int			fd = open_bg_reading(session, handle, "exit");
	char		buf[64];
	char	   *end;
	long		v;
	bool		ok;

	*server_stopped = false;
	*quota_exceeded = false;
	if (fd < 0)
		return false;
	ok = read_small(fd, buf, sizeof(buf));
	close(fd);
	if (!ok)
		return false;
	errno = 0;
	v = strtol(buf, &end, 10);
	if (end == buf || errno != 0 || v < INT_MIN || v > INT_MAX)
		return false;
	*code = (int) v;
	*server_stopped = strncmp(end, " server-stopped", 15) == 0;
	*quota_exceeded = strncmp(end, " quota-exceeded", 15) == 0;
	return true;
}

/*
 * background_watch_fd returns the read end of the postmaster-death pipe,
 * which every child of the postmaster inherits (only the postmaster holds
 * the write end), or -1 outside a postmaster child.  A background sandbox
 * that holds it sees it hang up when the postmaster exits, however it exits,
 * and not when the worker does.
 */
static int
background_watch_fd(void)
{
	if (!IsUnderPostmaster)
		return -1;
	return postmaster_alive_fds[POSTMASTER_FD_WATCH];
}

/*
 * write_pid_file records in <handle>.pid the identity of a background
 * sandbox's first process, "<pid> <start time>", so that whatever no row
 * tracks any more (the extension was dropped) can still be found and
 * stopped.
 */
static void
write_pid_file(int dir, int64 handle, pid_t pid, int64 start)
{
	char		name[64];
	char		line[64];
	int			fd;
	int			len;

	bg_name(name, sizeof(name), handle, "pid");
	fd = open_bg_file(dir, name, O_WRONLY | O_CREAT | O_TRUNC);
	if (fd < 0)
	{
		elog(WARNING, "could not record background process " INT64_FORMAT ": %m", handle);
		return;
	}
	len = snprintf(line, sizeof(line), "%d " INT64_FORMAT "\n", (int) pid, start);
	if (write(fd, line, len) != len)
		elog(WARNING, "could not record background process " INT64_FORMAT ": %m", handle);
	close(fd);
}

/*
 * sb_local_background_spawn starts a background process: bwrap (without
 * --die-with-parent) runs the executor in background mode with the session's
 * sandbox.  The host opens the process's log (appended to) and exit-code
 * file in the host-only directory and hands them in as descriptors, with the
 * postmaster-death pipe.  Returns bwrap's pid; *init_pid and *init_start
 * identify the sandbox's first process (from bwrap's --info-fd), which is
 * what a kill signals.
 */
pid_t
sb_local_background_spawn(const char *session, int64 handle, const char *request,
						  pid_t *init_pid, int64 *init_start)
{
	int			in[2], info[2];
	int			dir, logfd, exitfd;
	int			extra[SB_BG_WATCH_FD - 2];
	char		name[64];
	char	  **argv;
	pid_t		pid;

	sb_storage_prepare_session(session, false);
	argv = bwrap_args_for(session, handle, false);
	dir = open_bg_dir(session, true, false);
	if (dir < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the background-process directory of session \"%s\": %m",
						session)));
	bg_name(name, sizeof(name), handle, "log");
	/* With a disk image, the executor opens the log in it (bwrap_args_for). */
	if (sb_storage_files_dir(session)[0] != '\0')
		logfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	else
		logfd = open_bg_file(dir, name, O_WRONLY | O_CREAT | O_APPEND);
	bg_name(name, sizeof(name), handle, "exit");
	exitfd = logfd < 0 ? -1 : open_bg_file(dir, name, O_WRONLY | O_CREAT | O_TRUNC);
	if (logfd < 0 || exitfd < 0)
	{
		int			save = errno;

		if (logfd >= 0)
			close(logfd);
		close(dir);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create the files of background process " INT64_FORMAT ": %m",
						handle)));
	}
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(info, O_CLOEXEC) != 0)
	{
		int			save = errno;

		close(logfd), close(exitfd), close(dir);
		errno = save;
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create pipes: %m")));
	}
	extra[SB_BG_INFO_FD - 3] = info[1];
	extra[SB_SECCOMP_CHILD_FD - 3] = -1;	/* spawn_sandbox's */
	extra[SB_BG_EXIT_FD - 3] = exitfd;
	extra[SB_BG_WATCH_FD - 3] = background_watch_fd();
	PG_TRY();
	{
		pid = spawn_sandbox(argv, in[0], logfd, logfd, extra, lengthof(extra));
	}
	PG_CATCH();
	{
		close(in[0]), close(in[1]), close(info[0]), close(info[1]);
		close(logfd), close(exitfd), close(dir);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(in[0]);
	close(info[1]);
	close(logfd);
	close(exitfd);
	write_request(in[1], request);
	read_child_pid(info[0], init_pid, init_start);
	if (*init_pid > 0)
		write_pid_file(dir, handle, *init_pid, *init_start);
	close(dir);
	return pid;
}

/*
 * sb_local_background_forget removes a background process's <handle>.pid
 * once its end is recorded (or it was stopped for good), so that
 * sb_local_background_live reads only the files of what may still run.  Its
 * log and exit code stay until the session is dropped.
 */
void
sb_local_background_forget(const char *session, int64 handle)
{
	char		name[64];
	int			dir = open_bg_dir(session, false, false);

	if (dir < 0)
		return;
	bg_name(name, sizeof(name), handle, "pid");
	(void) unlinkat(dir, name, 0);
	close(dir);
}

/*
 * sb_local_background_live lists the background sandboxes of this database
 * whose first process, recorded in a <handle>.pid file, still runs (same pid,
 * same start time): a list of SbBgLive.  Sessions whose directory cannot be
 * read are skipped.
 */
List *
sb_local_background_live(void)
{
	List	   *live = NIL;
	int			sessions = sb_storage_try_open_session(NULL);
	DIR		   *sd;
	struct dirent *se;

	if (sessions < 0)
		return NIL;
	sd = fdopendir(sessions);
	if (sd == NULL)
	{
		close(sessions);
		return NIL;
	}
	while ((se = readdir(sd)) != NULL)
	{
		int			dir, bg;
		DIR		   *bd;
		struct dirent *be;

		if (se->d_name[0] == '.')
			continue;
		dir = open_dir_at(dirfd(sd), se->d_name, false);
		if (dir < 0)
			continue;
		bg = open_bg_dir_at(dir, false, false);
		close(dir);
		if (bg < 0)
			continue;
		bd = fdopendir(bg);
		if (bd == NULL)
		{
			close(bg);
			continue;
		}
		while ((be = readdir(bd)) != NULL)
		{
			size_t		len = strlen(be->d_name);
			char		buf[64];
			long long	handle, start;
			int			pid;
			int			fd;
			bool		ok;

			if (len < 5 || strcmp(be->d_name + len - 4, ".pid") != 0)
				continue;
			fd = open_bg_file(dirfd(bd), be->d_name, O_RDONLY);
			if (fd < 0)
				continue;
			ok = read_small(fd, buf, sizeof(buf)) && sscanf(buf, "%d %lld", &pid, &start) == 2 &&
				sscanf(be->d_name, "%lld", &handle) == 1;
			close(fd);
			if (ok && pid > 0 && start >= 0 && sb_process_start_time(pid) == start)
			{
				SbBgLive   *l = palloc(sizeof(SbBgLive));

				l->session = pstrdup(se->d_name);
				l->handle = handle;
				l->pid = pid;
				l->start = start;
				live = lappend(live, l);
			}
		}
		closedir(bd);
	}
	closedir(sd);
	return live;
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
