/*
 * bwrap.c
 *		A local sandbox: its bubblewrap command line and starting it.
 *
 * The sandbox has its own user, PID, IPC, UTS and (unless
 * cloudrun_sandbox.local_network) network namespaces, cannot create more
 * (--disable-userns), runs under a seccomp filter (src/local/seccomp.c), sees
 * the system read-only and nothing of the data directory.  The executor runs
 * as the namespace's PID 1, so when it, or bwrap, dies every process in the
 * sandbox dies with it; bwrap dies with its parent (--die-with-parent),
 * except for background processes, which survive the worker and stop with
 * the postmaster (they watch its death pipe) or when the extension is
 * dropped (the worker stops them, see src/worker/bgwatch.c).
 */
#include "local/bwrap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/postmaster.h"

#include "common/sbutil.h"
#include "local/cgroup.h"
#include "local/quota.h"
#include "local/seccomp.h"
#include "local/spawn.h"
#include "local/storage.h"

/* session_path returns a session's directory [/<sub>], for bwrap's binds. */
static char *
session_path(const char *session, const char *sub)
{
	return sb_storage_session_path(session, sub);
}

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
bool
sb_bwrap_files_identity(const char *session, dev_t *dev, ino_t *a, ino_t *b)
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
char *
sb_bwrap_executor_path(void)
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
 * sb_bwrap_args builds the bubblewrap command line for a session: a command
 * (background 0; the executor in mode), or a background process (its
 * handle; mode SB_BWRAP_ONESHOT).
 */
char **
sb_bwrap_args(const char *session, int64 background, SbBwrapMode mode)
{
	static const char *const sysdirs[] = {"/bin", "/sbin", "/lib", "/lib64", "/lib32",
	"/libx32"};
	List	   *a = NIL;
	char	   *exe = sb_bwrap_executor_path();
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
	/*
	 * The IPC namespace's POSIX message queues, visible so that a warm
	 * sandbox's executor can remove what a command left there (scrub.c).
	 */
	a = lappend(lappend(a, "--mqueue"), "/dev/mqueue");
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
	if (mode != SB_BWRAP_ONESHOT)
		a = lappend(a, "serve");
	if (mode == SB_BWRAP_LISTEN)
		a = lappend(lappend(a, "--listen"), CppAsString2(SB_WARM_LISTEN_FD));
	if (background != 0)
	{
		a = lappend(a, "background");
		a = lappend(a, CppAsString2(SB_BG_EXIT_FD));
		a = lappend(a, sb_bwrap_background_watch_fd() >= 0 ? CppAsString2(SB_BG_WATCH_FD) : "-");
		if (image)
			a = lappend(a, psprintf("%s/" INT64_FORMAT ".log", SB_SANDBOX_BACKGROUND, background));
	}

	argv = palloc(sizeof(char *) * (list_length(a) + 1));
	foreach(lc, a)
		argv[i++] = lfirst(lc);
	argv[i] = NULL;
	return argv;
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
pid_t
sb_bwrap_spawn(char **argv, int fd0, int fd1, int fd2, const int *extra, int nextra)
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
	if (access(sb_bwrap_executor_path(), X_OK) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the sandbox executor is not available at \"%s\": %m", sb_bwrap_executor_path()),
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
 * sb_bwrap_background_watch_fd returns the read end of the postmaster-death pipe,
 * which every child of the postmaster inherits (only the postmaster holds
 * the write end), or -1 outside a postmaster child.  A background sandbox
 * that holds it sees it hang up when the postmaster exits, however it exits,
 * and not when the worker does.
 */
int
sb_bwrap_background_watch_fd(void)
{
	if (!IsUnderPostmaster)
		return -1;
	return postmaster_alive_fds[POSTMASTER_FD_WATCH];
}
