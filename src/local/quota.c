/*
 * quota.c
 *		The local backend's per-session disk quota (layout in quota.h): an
 *		ext4 image per session, made with mkfs.ext4 and mounted by fuse2fs.
 *
 * Why an image: every write to it is checked by the kernel and fuse2fs
 * against the image's free blocks, so a session can never hold more than its
 * image, with no race and no overshoot; an unprivileged server user can make
 * and mount one (fusermount3 is setuid); it survives restarts; it costs one
 * mkfs (~20 ms) when a session's storage is made and one mount (~30 ms) per
 * boot.  Quotas measured by polling overshoot at the disk's speed, and
 * project quotas need root.
 *
 * The programs (mkfs.ext4, e2fsck, fuse2fs, fusermount3) are started without
 * a shell, with nothing of ours but their arguments, and waited for with a
 * time limit.  fuse2fs runs in the foreground of a process of its own
 * (started through an intermediate child that exits at once, so that it is
 * nobody's child here); its pid and start time are kept in disk.pid, so
 * that whether it still serves the image is a question for /proc, never for
 * the mount.  Whether the image is mounted is asked with statx and
 * AT_STATX_DONT_SYNC, which FUSE answers from the kernel's cache: nothing
 * here makes the background worker wait for a fuse2fs a user keeps busy.
 * disk.lock (flock) keeps two processes from mounting one image at once.
 */
#include "local/quota.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "cloudrun_sandbox.h"
#include "driver.h"
#include "common/sbutil.h"
#include "gcloud.h"
#include "local/storage.h"

#define SB_QUOTA_LOCK "disk.lock"
#define SB_QUOTA_PID "disk.pid"
#define SB_QUOTA_SKEL "disk.skel"
#define SB_QUOTA_SIZE "disk.quota"
/* How long a program, or a wait for the lock or the mount, may take. */
#define SB_QUOTA_TIMEOUT_MS 30000

int			sb_local_disk_quota_kb = 1024 * 1024;
Oid			sb_quota_owner = InvalidOid;
static char *sb_fuse2fs_path = NULL;
static char *sb_fusermount_path = NULL;
static char *sb_mkfs_path = NULL;
static char *sb_e2fsck_path = NULL;

/* The programs' settings: name, description, variable, default. */
static const struct
{
	const char *name;
	const char *what;
	char	  **value;
	const char *path;
}			programs[] = {
	{"cloudrun_sandbox.fuse2fs_path", "Path of fuse2fs, which mounts a local session's disk image.",
	&sb_fuse2fs_path, "/usr/bin/fuse2fs"},
	{"cloudrun_sandbox.fusermount_path", "Path of fusermount3, which unmounts a local session's disk image.",
	&sb_fusermount_path, "/usr/bin/fusermount3"},
	{"cloudrun_sandbox.mkfs_path", "Path of mkfs.ext4, which makes a local session's disk image.",
	&sb_mkfs_path, "/sbin/mkfs.ext4"},
	{"cloudrun_sandbox.e2fsck_path", "Path of e2fsck, which checks a disk image before it is mounted.",
	&sb_e2fsck_path, "/sbin/e2fsck"},
};

void
sb_quota_init(void)
{
	DefineCustomIntVariable("cloudrun_sandbox.local_disk_quota",
							"Disk space of a local session (workspace, /tmp, background logs); 0 = none.",
							"Applies when a session's storage is made, with its owner's value.",
							&sb_local_disk_quota_kb, 1024 * 1024, 0, INT_MAX, PGC_SUSET,
							GUC_UNIT_KB, NULL, NULL, NULL);
	for (int i = 0; i < (int) lengthof(programs); i++)
		DefineCustomStringVariable(programs[i].name, programs[i].what, NULL, programs[i].value,
								   programs[i].path, PGC_SUSET, 0, NULL, NULL, NULL);
}

/* What the worker read of roles' quotas (ALTER ROLE ... SET), for use outside a transaction. */
typedef struct RoleQuota
{
	Oid			role;
	int64		kb;
} RoleQuota;

static List *role_quotas = NIL;	/* of RoleQuota, in TopMemoryContext */

/* role_quota returns the remembered entry of role, or NULL. */
static RoleQuota *
role_quota(Oid role)
{
	ListCell   *lc;

	foreach(lc, role_quotas)
		if (((RoleQuota *) lfirst(lc))->role == role)
			return lfirst(lc);
	return NULL;
}

void
sb_quota_read_role(Oid role)
{
	RoleQuota  *q = role_quota(role);
	char	   *v;
	int			kb;

	if (!OidIsValid(role) || !IsTransactionState())
		return;
	if (q == NULL)
	{
		MemoryContext old;

		q = MemoryContextAlloc(TopMemoryContext, sizeof(RoleQuota));
		q->role = role;
		old = MemoryContextSwitchTo(TopMemoryContext);
		role_quotas = lappend(role_quotas, q);
		MemoryContextSwitchTo(old);
	}
	v = sb_role_setting(role, "cloudrun_sandbox.local_disk_quota");
	q->kb = v != NULL && parse_int(v, &kb, GUC_UNIT_KB, NULL) && kb >= 0 ? kb : sb_local_disk_quota_kb;
}

int64
sb_quota_new_kb(void)
{
	RoleQuota  *q;

	/* A user's backend has its role's setting already; the worker reads the owner's. */
	if (!sb_driver_nonblocking || !OidIsValid(sb_quota_owner))
		return sb_local_disk_quota_kb;
	sb_quota_read_role(sb_quota_owner);
	q = role_quota(sb_quota_owner);
	return q != NULL ? q->kb : sb_local_disk_quota_kb;
}

/*
 * run_program runs argv[0] with argv, no environment and stdin /dev/null,
 * its output collected into out (NUL-terminated, truncated to outlen), for
 * at most SB_QUOTA_TIMEOUT_MS (then it is killed).  Returns its exit code,
 * or -1 (it could not start, was killed, or ran too long; out says which).
 */
static int
run_program(char **argv, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t	none, all;
	char	   *empty_env[] = {NULL};
	int			pipefd[2];
	pid_t		pid;
	int			rc, wstatus = 0;
	size_t		len = 0;
	int64		deadline = sb_now_ms() + SB_QUOTA_TIMEOUT_MS;
	bool		eof = false;

	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) != 0)
	{
		snprintf(out, outlen, "could not create a pipe: %m");
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
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
	close(pipefd[1]);
	if (rc != 0)
	{
		close(pipefd[0]);
		errno = rc;
		snprintf(out, outlen, "could not run \"%s\": %m", argv[0]);
		return -1;
	}
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	while (!eof)
	{
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		int64		left = deadline - sb_now_ms();
		char		chunk[1024];
		ssize_t		n;

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int) Min(left, 1000)) < 0 && errno != EINTR)
			break;
		while ((n = read(pipefd[0], chunk, sizeof(chunk))) > 0)
		{
			size_t		take = Min((size_t) n, outlen - 1 - len);

			memcpy(out + len, chunk, take);
			len += take;
			out[len] = '\0';
		}
		if (n == 0)
			eof = true;
	}
	close(pipefd[0]);
	/* Its output ended (it exited, or passed it on); it gets what is left of the time. */
	for (;;)
	{
		pid_t		r = waitpid(pid, &wstatus, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (sb_now_ms() >= deadline)
		{
			kill(pid, SIGKILL);
			while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
				;
			snprintf(out, outlen, "\"%s\" did not finish within %d s", argv[0],
					 SB_QUOTA_TIMEOUT_MS / 1000);
			return -1;
		}
		pg_usleep(2000);
	}
	if (!WIFEXITED(wstatus))
	{
		snprintf(out + len, outlen - len, "%s\"%s\" was killed by signal %d", len ? "; " : "",
				 argv[0], WTERMSIG(wstatus));
		return -1;
	}
	return WEXITSTATUS(wstatus);
}

/* first_line returns the first line of a program's output, for a message. */
static char *
first_line(const char *out)
{
	return out[0] ? pnstrdup(out, strcspn(out, "\n")) : pstrdup("no message");
}

/*
 * is_mounted tells whether session_fd/fs is a mount point (its device is not
 * the session directory's), asking the kernel's cache only.
 */
static bool
is_mounted(int session_fd)
{
	struct stat dir;
	struct statx mnt;

	if (fstat(session_fd, &dir) != 0)
		return false;
	if (statx(session_fd, SB_QUOTA_MOUNT, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
			  STATX_TYPE, &mnt) != 0)
		return errno == ENOTCONN;	/* a dead fuse2fs's mount */
	return makedev(mnt.stx_dev_major, mnt.stx_dev_minor) != dir.st_dev;
}

/*
 * read_line reads the start of the host-only file name of the session
 * directory (never through a symlink, never waiting), NUL-terminated; false
 * if there is none.
 */
static bool
read_line(int session_fd, const char *name, char *buf, size_t len)
{
	int			fd = openat(session_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t		n = fd >= 0 ? read(fd, buf, len - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* read_pid reads disk.pid: true with the fuse2fs's pid and start time. */
static bool
read_pid(int session_fd, pid_t *pid, int64 *start)
{
	char		buf[64];
	long long	s;
	int			p;

	if (!read_line(session_fd, SB_QUOTA_PID, buf, sizeof(buf)) ||
		sscanf(buf, "%d %lld", &p, &s) != 2 || p <= 0)
		return false;
	*pid = p;
	*start = s;
	return true;
}

/*
 * write_line replaces the host-only file name of the session directory with
 * line; false (errno set) if it cannot.
 */
static bool
write_line(int session_fd, const char *name, const char *line)
{
	size_t		len = strlen(line);
	int			fd = openat(session_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
							S_IRUSR | S_IWUSR);
	bool		ok = fd >= 0 && write(fd, line, len) == (ssize_t) len;
	int			save = errno;

	if (fd >= 0)
		close(fd);
	errno = save;
	return ok;
}

/* write_pid records the fuse2fs serving the image in disk.pid. */
static void
write_pid(int session_fd, pid_t pid)
{
	char		line[64];

	snprintf(line, sizeof(line), "%d " INT64_FORMAT "\n", (int) pid, sb_process_start_time(pid));
	if (!write_line(session_fd, SB_QUOTA_PID, line))
		elog(WARNING, "could not record the fuse2fs of a session's disk image: %m");
}

/*
 * process_runs tells whether process pid, started at start, still runs: not
 * gone, not another process, and not a zombie nobody has reaped yet.
 */
static bool
process_runs(pid_t pid, int64 start)
{
	char		path[64];
	char		buf[512];
	int			fd;
	ssize_t		n;
	char	   *p;

	if (start < 0 || sb_process_start_time(pid) != start)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' && p[2] != 'x';
}

/* fuse2fs_alive tells whether the fuse2fs recorded in disk.pid still runs. */
static bool
fuse2fs_alive(int session_fd)
{
	pid_t		pid;
	int64		start;

	return read_pid(session_fd, &pid, &start) && process_runs(pid, start);
}

/* lock_session takes disk.lock (waiting at most SB_QUOTA_TIMEOUT_MS); returns its descriptor. */
static int
lock_session(int session_fd, const char *session)
{
	int			fd = openat(session_fd, SB_QUOTA_LOCK,
							O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, S_IRUSR | S_IWUSR);
	int64		deadline = sb_now_ms() + SB_QUOTA_TIMEOUT_MS;

	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", sb_storage_session_path(session, SB_QUOTA_LOCK))));
	while (flock(fd, LOCK_EX | LOCK_NB) != 0)
	{
		if ((errno != EWOULDBLOCK && errno != EINTR) || sb_now_ms() >= deadline)
		{
			int			save = errno;

			close(fd);
			errno = save;
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not lock the disk image of session \"%s\": %m", session)));
		}
		pg_usleep(5000);
	}
	return fd;
}

/* path_of returns sessions/<session>/<sub> as a string argument for a program. */
static char *
path_of(const char *session, const char *sub)
{
	return sb_storage_session_path(session, sub);
}

/* detach unmounts dir_path/fs: normally, and lazily if that fails (it is busy, or dead). */
static bool
detach(const char *dir_path, char *out, size_t outlen)
{
	char	   *mnt = psprintf("%s/%s", dir_path, SB_QUOTA_MOUNT);
	char	   *argv[] = {sb_fusermount_path, "-u", "-q", mnt, NULL};
	char	   *lazy[] = {sb_fusermount_path, "-u", "-q", "-z", mnt, NULL};

	return run_program(argv, out, outlen) == 0 || run_program(lazy, out, outlen) == 0;
}

/*
 * start_fuse2fs starts fuse2fs -f on the image in a session of its own,
 * through a child that exits at once (so that it is nobody's child here),
 * and waits until the mount is there.  Records it in disk.pid.
 */
static void
start_fuse2fs(int session_fd, const char *session)
{
	/* Absolute: it runs in /, holding no directory of the server's. */
	char	   *image = make_absolute_path(path_of(session, SB_QUOTA_IMAGE));
	char	   *mnt = make_absolute_path(path_of(session, SB_QUOTA_MOUNT));
	/*
	 * fakeroot: fuse2fs does not check permissions against the session's one
	 * user (who owns every file in it; only that user may reach the mount), as
	 * a kernel file system lets a process write a file it created read-only
	 * (git does), which fuse2fs's own checks refuse.
	 */
	char	   *argv[] = {sb_fuse2fs_path, image, mnt, "-f", "-o", "nosuid,nodev,fakeroot", NULL};
	int			errpipe[2], pidpipe[2];
	pid_t		mid, pid = 0;
	char		out[1024];
	size_t		len = 0;
	int64		deadline = sb_now_ms() + SB_QUOTA_TIMEOUT_MS;

	if (image == NULL || mnt == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (access(sb_fuse2fs_path, X_OK) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("fuse2fs is not available at \"%s\": %m", sb_fuse2fs_path),
				 errdetail("Session \"%s\" keeps its files in a disk image (cloudrun_sandbox.local_disk_quota).",
						   session),
				 errhint("Install the packages fuse2fs and fuse3, or set cloudrun_sandbox.fuse2fs_path.")));
	if (pipe2(errpipe, O_CLOEXEC) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a pipe: %m")));
	if (pipe2(pidpipe, O_CLOEXEC) != 0)
	{
		close(errpipe[0]), close(errpipe[1]);
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a pipe: %m")));
	}
	fflush(NULL);
	mid = fork();
	if (mid == 0)
	{
		/* The intermediate child: only async-signal-safe calls from here on. */
		pid_t		daemon;
		sigset_t	nomask;

		setsid();
		daemon = fork();
		if (daemon == 0)
		{
			int			devnull = open("/dev/null", O_RDWR);
			char	   *empty_env[] = {NULL};

			for (int s = 1; s < NSIG; s++)
				signal(s, SIG_DFL);
			/* Once nobody reads its output, writing it must not kill it. */
			signal(SIGPIPE, SIG_IGN);
			sigemptyset(&nomask);
			sigprocmask(SIG_SETMASK, &nomask, NULL);
			/* It does the sandbox's file work: at the sandboxes' priority, not the server's. */
			if (sb_local_nice > 0)
				(void) setpriority(PRIO_PROCESS, 0, sb_local_nice);
			if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(errpipe[1], 1) < 0 ||
				dup2(errpipe[1], 2) < 0 || chdir("/") != 0)
				_exit(126);
			close_range(3, ~0U, 0);
			execve(argv[0], argv, empty_env);
			_exit(127);
		}
		if (write(pidpipe[1], &daemon, sizeof(daemon)) != sizeof(daemon))
			_exit(1);
		_exit(daemon > 0 ? 0 : 1);
	}
	close(errpipe[1]);
	close(pidpipe[1]);
	if (mid > 0)
	{
		while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
			;
		if (read(pidpipe[0], &pid, sizeof(pid)) != sizeof(pid))
			pid = 0;
	}
	close(pidpipe[0]);
	if (pid <= 0)
	{
		close(errpipe[0]);
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start fuse2fs for session \"%s\": %m", session)));
	}
	/* Recorded before it mounts: whatever happens next, it can be found. */
	write_pid(session_fd, pid);
	fcntl(errpipe[0], F_SETFL, O_NONBLOCK);
	out[0] = '\0';
	for (;;)
	{
		ssize_t		n;
		char		chunk[512];

		while ((n = read(errpipe[0], chunk, sizeof(chunk))) > 0)
		{
			size_t		take = Min((size_t) n, sizeof(out) - 1 - len);

			memcpy(out + len, chunk, take);
			len += take;
			out[len] = '\0';
		}
		if (is_mounted(session_fd))
			break;
		if (n == 0 || sb_now_ms() >= deadline)
		{
			/* It exited (its output ended) without mounting, or is too slow. */
			kill(pid, SIGKILL);
			close(errpipe[0]);
			(void) unlinkat(session_fd, SB_QUOTA_PID, 0);
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not mount the disk image of session \"%s\"", session),
					 errdetail("fuse2fs said: %s", first_line(out)),
					 errhint("fuse2fs needs /dev/fuse readable and writable by the server's "
							 "operating-system user, and fusermount3 (package fuse3).")));
		}
		pg_usleep(2000);
	}
	close(errpipe[0]);
}

/* check_image runs e2fsck -p on the image (an image not cleanly unmounted is repaired). */
static void
check_image(const char *session)
{
	char	   *argv[] = {sb_e2fsck_path, "-p", path_of(session, SB_QUOTA_IMAGE), NULL};
	char		out[1024];
	int			rc = run_program(argv, out, sizeof(out));

	/* 0: clean, 1: errors corrected, 2: corrected (a reboot is advised for a root fs). */
	if (rc < 0 || rc > 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the disk image of session \"%s\" is damaged", session),
				 errdetail("e2fsck -p exited with %d: %s", rc, first_line(out)),
				 errhint("Repair \"%s\" with e2fsck, or drop the session.",
						 path_of(session, SB_QUOTA_IMAGE))));
}

/*
 * serving tells whether the image is mounted and its fuse2fs alive; with
 * probe, also whether the mount answers (ENOTCONN: its fuse2fs is gone).
 */
static bool
serving(int session_fd, bool probe)
{
	struct statfs sf;
	int			fd;
	bool		ok;

	if (!is_mounted(session_fd) || !fuse2fs_alive(session_fd))
		return false;
	if (!probe)
		return true;
	fd = openat(session_fd, SB_QUOTA_MOUNT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ok = fd >= 0 && fstatfs(fd, &sf) == 0;
	if (!ok && errno != ENOTCONN)
		ok = true;				/* not a sign of a dead fuse2fs */
	if (fd >= 0)
		close(fd);
	return ok;
}

/* mount_locked mounts the image, disk.lock held: a dead fuse2fs's mount goes first. */
static void
mount_locked(int session_fd, const char *session, bool probe)
{
	bool		mounted = is_mounted(session_fd);

	if (serving(session_fd, probe))
		return;
	{
		pid_t		pid;
		int64		start;

		/*
		 * What still runs of an earlier fuse2fs (its mount dead, or gone) must
		 * not write the image while the next one does.
		 */
		if (read_pid(session_fd, &pid, &start) && process_runs(pid, start))
		{
			kill(pid, SIGKILL);
			for (int i = 0; i < 500 && process_runs(pid, start); i++)
				pg_usleep(2000);
		}
	}
	if (mounted)
	{
		char		out[1024];

		if (!detach(sb_storage_session_path(session, NULL), out, sizeof(out)))
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not unmount the disk image of session \"%s\"", session),
					 errdetail("fusermount3 said: %s", first_line(out))));
	}
	check_image(session);
	start_fuse2fs(session_fd, session);
}

bool
sb_quota_has_image(int session_fd)
{
	struct stat st;

	return fstatat(session_fd, SB_QUOTA_IMAGE, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		S_ISREG(st.st_mode);
}

void
sb_quota_ensure_mounted(int session_fd, const char *session, bool probe)
{
	int			lock;

	/* The common case, without the lock: mounted, and its fuse2fs alive. */
	if (serving(session_fd, probe))
		return;
	lock = lock_session(session_fd, session);
	PG_TRY();
	{
		mount_locked(session_fd, session, probe);
	}
	PG_CATCH();
	{
		close(lock);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(lock);
}

/*
 * image_bytes is the size of an image with about quota_kb usable: ext4 takes
 * 1/32 for inodes (one of 256 bytes per 8 kB), 1% is reserved (fuse2fs
 * reports a tenth of the image as reserved when nothing is; writes may use
 * it either way), and a little for the rest of its metadata.
 */
static int64
image_bytes(int64 quota_kb)
{
	int64		bytes = quota_kb * 1024;

	bytes += bytes / 31 + 256 * 1024;
	return (bytes + 4095) & ~(int64) 4095;
}

int64
sb_quota_size_kb(int session_fd)
{
	char		buf[32];

	return read_line(session_fd, SB_QUOTA_SIZE, buf, sizeof(buf)) ? strtoll(buf, NULL, 10) : 0;
}

/* write_size records the quota in disk.quota, for messages. */
static void
write_size(int session_fd, const char *session, int64 quota_kb)
{
	char		line[32];

	snprintf(line, sizeof(line), INT64_FORMAT "\n", quota_kb);
	if (!write_line(session_fd, SB_QUOTA_SIZE, line))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", path_of(session, SB_QUOTA_SIZE))));
}

/* make_skeleton makes disk.skel/{workspace,tmp,background}, what mkfs copies into the image. */
static void
make_skeleton(int session_fd, const char *session)
{
	static const char *const dirs[] = {"workspace", "tmp", "background"};
	int			skel;

	if (mkdirat(session_fd, SB_QUOTA_SKEL, S_IRWXU) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", path_of(session, SB_QUOTA_SKEL))));
	skel = openat(session_fd, SB_QUOTA_SKEL, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (skel < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path_of(session, SB_QUOTA_SKEL))));
	for (int i = 0; i < (int) lengthof(dirs); i++)
		if (mkdirat(skel, dirs[i], S_IRWXU) != 0 && errno != EEXIST)
		{
			int			save = errno;

			close(skel);
			errno = save;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create a directory in \"%s\": %m",
							path_of(session, SB_QUOTA_SKEL))));
		}
	close(skel);
}

/* remove_skeleton removes disk.skel and its (empty) directories. */
static void
remove_skeleton(int session_fd)
{
	static const char *const dirs[] = {"workspace", "tmp", "background"};
	int			skel = openat(session_fd, SB_QUOTA_SKEL, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (skel >= 0)
	{
		for (int i = 0; i < (int) lengthof(dirs); i++)
			(void) unlinkat(skel, dirs[i], AT_REMOVEDIR);
		close(skel);
	}
	(void) unlinkat(session_fd, SB_QUOTA_SKEL, AT_REMOVEDIR);
}

void
sb_quota_make(int session_fd, const char *session, int64 quota_kb)
{
	char	   *image = path_of(session, SB_QUOTA_IMAGE);
	char	   *owner = psprintf("root_owner=%d:%d,lazy_itable_init=1", (int) geteuid(),
								 (int) getegid());
	char	   *skel = path_of(session, SB_QUOTA_SKEL);
	char	   *argv[] = {sb_mkfs_path, "-q", "-F", "-t", "ext4", "-b", "4096", "-i", "8192",
		"-I", "256", "-m", "1", "-O", "^has_journal,^resize_inode", "-E", owner, "-d", skel,
	image, NULL};
	char		out[1024];
	int			lock;
	int			fd;
	int			rc;

	lock = lock_session(session_fd, session);
	PG_TRY();
	{
		fd = openat(session_fd, SB_QUOTA_IMAGE,
					O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
		if (fd < 0 || ftruncate(fd, image_bytes(quota_kb)) != 0)
		{
			int			save = errno;

			if (fd >= 0)
				close(fd);
			errno = save;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create the disk image \"%s\": %m", image)));
		}
		close(fd);
		write_size(session_fd, session, quota_kb);
		if (mkdirat(session_fd, SB_QUOTA_MOUNT, S_IRWXU) != 0 && errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create \"%s\": %m", path_of(session, SB_QUOTA_MOUNT))));
		make_skeleton(session_fd, session);
		if (access(sb_mkfs_path, X_OK) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("mkfs.ext4 is not available at \"%s\": %m", sb_mkfs_path),
					 errhint("Install the package e2fsprogs, set cloudrun_sandbox.mkfs_path, or "
							 "set cloudrun_sandbox.local_disk_quota to 0 (no quota).")));
		rc = run_program(argv, out, sizeof(out));
		remove_skeleton(session_fd);
		if (rc != 0)
		{
			(void) unlinkat(session_fd, SB_QUOTA_IMAGE, 0);
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not make the disk image of session \"%s\"", session),
					 errdetail("mkfs.ext4 exited with %d: %s", rc, first_line(out))));
		}
		start_fuse2fs(session_fd, session);
	}
	PG_CATCH();
	{
		close(lock);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(lock);
}

bool
sb_quota_unmount(int dir_fd, const char *dir_path)
{
	char		out[1024];
	pid_t		pid;
	int64		start;
	bool		gone = !is_mounted(dir_fd) || detach(dir_path, out, sizeof(out));

	/*
	 * The image goes with its session: a sandbox of it still running (a warm
	 * one, or one being stopped) must not keep it, nor its space, alive.
	 */
	if (gone && read_pid(dir_fd, &pid, &start) && process_runs(pid, start))
		kill(pid, SIGKILL);
	if (!gone)
		ereport(WARNING,
				(errmsg("could not unmount \"%s/%s\"", dir_path, SB_QUOTA_MOUNT),
				 errdetail("fusermount3 said: %s", first_line(out))));
	return gone;
}
