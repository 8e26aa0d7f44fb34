/*
 * bgfiles.c
 *		The local backend's background processes: starting their sandbox and
 *		the host-side files that record them.
 */
#include "driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/frame.h"

#include "local/bwrap.h"
#include "local/quota.h"
#include "local/storage.h"

static void read_child_pid(int fd, pid_t *init_pid, int64 *init_start);

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

/*
 * open_session_key opens the directory of a session named by its storage
 * key, which is one path component, never a way up or down; -1 with errno
 * set if it cannot.
 */
static int
open_session_key(const char *session)
{
	if (session[0] == '\0' || strchr(session, '/') != NULL || strcmp(session, ".") == 0 ||
		strcmp(session, "..") == 0)
	{
		errno = EINVAL;
		return -1;
	}
	return sb_storage_try_open_session(session);
}

/* open_bg_dir is open_bg_dir_at for a session named by its storage key. */
static int
open_bg_dir(const char *session, bool create, bool legacy)
{
	int			dir, bg;
	int			save;

	dir = open_session_key(session);
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

/* stdin_addr is the address of a writable process's stdin socket, <handle>.stdin in dir. */
static void
stdin_addr(struct sockaddr_un *addr, int dir, int64 handle)
{
	char		name[64];

	bg_name(name, sizeof(name), handle, "stdin");
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", dir, name);
}

/*
 * stdin_listen makes the listening socket of a writable process's stdin in
 * the host-only directory dir (the sandbox gets the descriptor, never the
 * path); -1 with errno set if it cannot.
 */
static int
stdin_listen(int dir, int64 handle)
{
	struct sockaddr_un addr;
	char		name[64];
	int			sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	bg_name(name, sizeof(name), handle, "stdin");
	(void) unlinkat(dir, name, 0);
	stdin_addr(&addr, dir, handle);
	if (sock >= 0 && (bind(sock, (struct sockaddr *) &addr, sizeof(addr)) != 0 ||
					  listen(sock, 8) != 0))
	{
		int			save = errno;

		close(sock);
		errno = save;
		return -1;
	}
	return sock;
}

/*
 * sb_local_background_stdin_connect connects (without blocking) to the stdin
 * socket of a writable background process; -1 with errno set if there is
 * none (the process has ended, or was not started writable).
 */
int
sb_local_background_stdin_connect(const char *session, int64 handle)
{
	struct sockaddr_un addr;
	int			dir = open_bg_dir(session, false, false);
	int			sock, save;

	if (dir < 0)
		return -1;
	stdin_addr(&addr, dir, handle);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sock >= 0 && connect(sock, (struct sockaddr *) &addr, sizeof(addr)) != 0 &&
		errno != EINPROGRESS)
	{
		save = errno;
		close(sock);
		sock = -1;
		errno = save;
	}
	save = errno;
	close(dir);
	errno = save;
	return sock;
}

/*
 * request_memfd puts the background executor's request in a memfd, which
 * becomes its standard input: the JSON document, or with stdin a frame whose
 * payload 0 is the stdin (raw bytes).  Written before the sandbox starts, to
 * memory: whoever spawns it (the background worker) never waits on a
 * sandbox that reads slowly, however large the stdin.  Returns the memfd,
 * read from its start, or -1 (errno set).
 */
static int
request_memfd(const char *request, const SbCallInput *in)
{
	SbFrameWriter w;
	SbFramePart none = {NULL, 0};
	int			fd = memfd_create("cloudrun_sandbox_request", MFD_CLOEXEC);
	int			r;
	bool		ok;

	if (fd < 0)
		return -1;
	if (!in->has_stdin)
		ok = sb_write_all(fd, request, strlen(request));
	else
	{
		sb_frame_writer_init(&w, (SbFramePart) {request, strlen(request)},
							 (SbFramePart) {in->stdin_data, in->stdin_len}, none);
		while ((r = sb_frame_write(&w, fd)) == 0 || (r < 0 && errno == EINTR))
			;
		ok = r == 1;
	}
	if (!ok || lseek(fd, 0, SEEK_SET) != 0)
	{
		int			save = errno;

		close(fd);
		errno = save ? save : EIO;
		return -1;
	}
	return fd;
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
						  const SbCallInput *input, pid_t *init_pid, int64 *init_start)
{
	int			reqfd, info[2];
	int			dir, logfd, exitfd;
	volatile int stdin_sock = -1;
	int			extra[SB_STDIN_LISTEN_FD - 2];
	char		name[64];
	char	  **argv;
	pid_t		pid;

	sb_storage_prepare_session(session, false);
	argv = sb_bwrap_args(session, handle, SB_BWRAP_ONESHOT);
	dir = open_bg_dir(session, true, false);
	if (dir < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the background-process directory of session \"%s\": %m",
						session)));
	bg_name(name, sizeof(name), handle, "log");
	/* With a disk image, the executor opens the log in it (sb_bwrap_args). */
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
	if (input->stdin_open)
		stdin_sock = stdin_listen(dir, handle);
	reqfd = -1;
	if ((input->stdin_open && stdin_sock < 0) ||
		(reqfd = request_memfd(request, input)) < 0 || pipe2(info, O_CLOEXEC) != 0)
	{
		int			save = errno;

		if (stdin_sock >= 0)
			close(stdin_sock);
		if (reqfd >= 0)
			close(reqfd);
		close(logfd), close(exitfd), close(dir);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not prepare the start of background process " INT64_FORMAT ": %m",
						handle)));
	}
	extra[SB_BG_INFO_FD - 3] = info[1];
	extra[SB_SECCOMP_CHILD_FD - 3] = -1;	/* spawn_sandbox's */
	extra[SB_BG_EXIT_FD - 3] = exitfd;
	extra[SB_BG_WATCH_FD - 3] = sb_bwrap_background_watch_fd();
	extra[SB_STDIN_LISTEN_FD - 3] = stdin_sock;
	PG_TRY();
	{
		pid = sb_bwrap_spawn(argv, reqfd, logfd, logfd, extra, lengthof(extra));
	}
	PG_CATCH();
	{
		close(reqfd), close(info[0]), close(info[1]);
		close(logfd), close(exitfd), close(dir);
		if (stdin_sock >= 0)
			close(stdin_sock);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(reqfd);
	close(info[1]);
	close(logfd);
	close(exitfd);
	if (stdin_sock >= 0)
		close(stdin_sock);
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
	bg_name(name, sizeof(name), handle, "stdin");
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

/*
 * Live output of queued executions (issue 14, part 4): the worker creates
 * sessions/<s>/host/live/<id>.out and <id>.err, in a directory no sandbox
 * sees, and hands the executor the descriptors with the request; readers
 * (sandbox.read_output, result) open them the same safe way as the
 * background files.  They go when the execution is recorded.
 */

/* open_live_dir opens a session's host/live directory (made if create); -1 if none. */
static int
open_live_dir(const char *session, bool create)
{
	int			dir, host, live;
	int			save;

	dir = open_session_key(session);
	if (dir < 0)
		return -1;
	host = open_dir_at(dir, "host", create);
	save = errno;
	close(dir);
	if (host < 0)
	{
		errno = save;
		return -1;
	}
	live = open_dir_at(host, "live", create);
	save = errno;
	close(host);
	errno = save;
	return live;
}

/*
 * sb_local_live_open opens execution id's live output file (stream 0 its
 * stdout, 1 its stderr): with create, made empty for writing; else for
 * reading.  -1 with errno set if it cannot (ENOENT: there is none).
 */
int
sb_local_live_open(const char *session, int64 id, int stream, bool create)
{
	char		name[64];
	int			dir = open_live_dir(session, create);
	int			fd;
	int			save;

	if (dir < 0)
		return -1;
	bg_name(name, sizeof(name), id, stream == 0 ? "out" : "err");
	fd = open_bg_file(dir, name, create ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY);
	save = errno;
	close(dir);
	errno = save;
	return fd;
}

/*
 * sb_local_live_create makes execution id's two live output files, empty,
 * for writing (fds[0] its stdout, fds[1] its stderr), opening the session's
 * directory once for both.  false, with fds[] -1 and errno set, if it cannot.
 */
bool
sb_local_live_create(const char *session, int64 id, int fds[2])
{
	char		name[64];
	int			dir = open_live_dir(session, true);
	int			save;

	fds[0] = fds[1] = -1;
	if (dir < 0)
		return false;
	for (int i = 0; i < 2; i++)
	{
		bg_name(name, sizeof(name), id, i == 0 ? "out" : "err");
		fds[i] = open_bg_file(dir, name, O_WRONLY | O_CREAT | O_TRUNC);
		if (fds[i] < 0)
		{
			save = errno;
			if (i == 1)
				close(fds[0]), fds[0] = -1;
			close(dir);
			errno = save;
			return false;
		}
	}
	close(dir);
	return true;
}

/* sb_local_live_forget removes execution id's live output files, if any. */
void
sb_local_live_forget(const char *session, int64 id)
{
	char		name[64];
	int			dir = open_live_dir(session, false);

	if (dir < 0)
		return;
	bg_name(name, sizeof(name), id, "out");
	(void) unlinkat(dir, name, 0);
	bg_name(name, sizeof(name), id, "err");
	(void) unlinkat(dir, name, 0);
	close(dir);
}
