/*
 * isolate.c
 *		The sandbox a cloud task runs user commands in.
 *
 * In a Cloud Run task the executor holds what a user command must never
 * get: the job's service-account token (from the metadata server, which
 * anything with network access in the container can ask), the settings in
 * its environment, any key file in the image.  So the executor does its
 * own work (Cloud Storage, the workspace snapshot) in the container, and
 * runs each user command -- and each background command -- in a sandbox of
 * its own, made with bubblewrap:
 *
 *		new user, PID, IPC, UTS and cgroup namespaces, and a new network
 *		namespace with nothing in it (no route to the metadata server, to
 *		Cloud Storage, or anywhere else); no further user namespaces
 *		(--disable-userns) where the kernel allows it;
 *		an empty environment (the command gets the session's variables only);
 *		/usr and /etc read-only, a key file named by CLOUDRUN_SANDBOX_CREDENTIALS
 *		or GOOGLE_APPLICATION_CREDENTIALS there replaced by an empty file;
 *		/dev minimal, /tmp a new tmpfs, the workspace directory read-write,
 *		nothing else of the container;
 *		the executor itself, in local mode, as the sandbox's PID 1: it runs the
 *		command exactly as the local backend does (timeout, output capping,
 *		cwd and env capture, every leftover process killed at the end) and
 *		reports on a pipe.
 *
 * A container may not let a sandbox mount a /proc of its own (runc-style
 * containers cover parts of theirs, and the kernel then refuses a new proc
 * mount in a nested user namespace).  The sandbox then gets the container's
 * /proc read-only: the command still has its own PID namespace (it can
 * signal nothing outside), but sees the container's process list; the
 * executor's own entries are unreadable to it (the executor is not
 * dumpable).  What works is found once per process by trying, in order: a
 * new /proc and --disable-userns; the container's /proc and
 * --disable-userns; then both again without --disable-userns.  If none
 * works, sb_isolate_ready says why and the caller refuses to run the
 * command.
 *
 * Settings from the environment: CLOUDRUN_SANDBOX_BWRAP (the bubblewrap
 * program, default /usr/bin/bwrap).
 */
#define _GNU_SOURCE
#include "isolate.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The size of /dev/shm in a cloud command's sandbox: 64 MB. */
#define SB_CLOUD_SHM_SIZE "67108864"

#define MAX_ARGS 128
#define Min(a, b) ((a) < (b) ? (a) : (b))
#define ERR_CAP 2048
#define PROBE_TIMEOUT_MS 30000
/* The inner executor enforces the command's timeout; this is only a backstop. */
#define BACKSTOP_MS 60000
#define INFO_TIMEOUT_MS 30000

/* The arguments that work here, up to and including the executor's path. */
static char *prefix[MAX_ARGS];
static int	nprefix = 0;
static bool probed = false;
static bool usable = false;
static char why[1024];
static char exe[PATH_MAX];

/* add appends one argument (kept for the life of the process). */
static void
add(const char *arg)
{
	if (nprefix < MAX_ARGS - 8)
		prefix[nprefix++] = sb_strdup(arg);
}

/* add3 appends an option with two values. */
static void
add3(const char *opt, const char *a, const char *b)
{
	add(opt);
	add(a);
	add(b);
}

/* add_system_dir exposes a top-level system directory, or its merged-/usr symlink. */
static void
add_system_dir(const char *path)
{
	struct stat st;
	char		target[PATH_MAX];
	ssize_t		n;

	if (lstat(path, &st) != 0)
		return;
	if (S_ISLNK(st.st_mode) && (n = readlink(path, target, sizeof(target) - 1)) > 0)
	{
		target[n] = '\0';
		add3("--symlink", target, path);
	}
	else if (S_ISDIR(st.st_mode))
		add3("--ro-bind", path, path);
}

/*
 * hide_secret replaces a key file the environment names with an empty file,
 * if it lies where the sandbox can see (under /usr or /etc).
 */
static void
hide_secret(const char *name)
{
	const char *path = getenv(name);
	char		real[PATH_MAX];
	struct stat st;

	if (path == NULL || path[0] != '/' || realpath(path, real) == NULL ||
		stat(real, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	if (strncmp(real, "/usr/", 5) == 0 || strncmp(real, "/etc/", 5) == 0)
		add3("--ro-bind", "/dev/null", real);
}

/* build makes the arguments of one variant: a new /proc or not, --disable-userns or not. */
static void
build(const char *workspace_dir, bool own_proc, bool no_userns)
{
	static const char *const sysdirs[] = {"/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"};
	const char *bwrap = getenv("CLOUDRUN_SANDBOX_BWRAP");
	struct stat st;

	for (int i = 0; i < nprefix; i++)
		sb_free(prefix[i]);
	nprefix = 0;
	add(bwrap != NULL && bwrap[0] != '\0' ? bwrap : "/usr/bin/bwrap");
	add("--unshare-user");
	add("--unshare-pid");
	add("--unshare-ipc");
	add("--unshare-uts");
	add("--unshare-cgroup-try");
	add("--unshare-net");
	if (no_userns)
		add("--disable-userns");
	add("--die-with-parent");
	add("--new-session");
	add("--as-pid-1");
	add("--hostname");
	add("sandbox");
	add("--clearenv");
	add3("--ro-bind", "/usr", "/usr");
	for (size_t d = 0; d < sizeof(sysdirs) / sizeof(sysdirs[0]); d++)
		add_system_dir(sysdirs[d]);
	add3("--ro-bind", "/etc", "/etc");
	if (stat("/etc/ssl/private", &st) == 0 && S_ISDIR(st.st_mode))
	{
		add("--tmpfs");
		add("/etc/ssl/private");
	}
	if (getenv("CLOUDRUN_SANDBOX_CREDENTIALS") != NULL &&
		strcmp(getenv("CLOUDRUN_SANDBOX_CREDENTIALS"), "metadata") != 0 &&
		strcmp(getenv("CLOUDRUN_SANDBOX_CREDENTIALS"), "none") != 0)
		hide_secret("CLOUDRUN_SANDBOX_CREDENTIALS");
	hide_secret("GOOGLE_APPLICATION_CREDENTIALS");
	if (own_proc)
	{
		add("--proc");
		add("/proc");
	}
	else
		add3("--ro-bind", "/proc", "/proc");
	/* A read-only /dev with a /dev/shm of limited size (memory no rlimit counts). */
	add("--dev");
	add("/dev");
	add("--size");
	add(SB_CLOUD_SHM_SIZE);
	add("--tmpfs");
	add("/dev/shm");
	add("--remount-ro");
	add("/dev");
	add("--tmpfs");
	add("/tmp");
	if (strcmp(workspace_dir, SB_WORKSPACE) != 0)
	{
		add("--dir");
		add(SB_WORKSPACE);
	}
	add3("--bind", workspace_dir, workspace_dir);
	add3("--ro-bind", exe, exe);
	add("--remount-ro");
	add("/");
	add("--chdir");
	add(workspace_dir);
	add("--");
	add(exe);
	prefix[nprefix] = NULL;
}

/*
 * argv_with makes the full command line: the prefix with extra options
 * before "--" (may be NULL) and arguments after the executor's path.
 */
static char **
argv_with(const char *const *options, const char *const *args)
{
	char	  **argv = sb_malloc(sizeof(char *) * (MAX_ARGS + 16));
	int			n = 0;

	for (int i = 0; i < nprefix; i++)
	{
		if (strcmp(prefix[i], "--") == 0 && options != NULL)
			for (int j = 0; options[j] != NULL; j++)
				argv[n++] = (char *) options[j];
		argv[n++] = prefix[i];
	}
	for (int j = 0; args != NULL && args[j] != NULL; j++)
		argv[n++] = (char *) args[j];
	argv[n] = NULL;
	return argv;
}

/*
 * spawn starts argv with the given descriptors as 0, 1, 2 (and 3 if
 * info_fd >= 0), everything else closed, default signals and an empty
 * environment; returns its pid, or -1 with errno set.
 */
static pid_t spawn4(char **argv, int in_fd, int out_fd, int err_fd, int info_fd, int fd4);

static pid_t
spawn(char **argv, int in_fd, int out_fd, int err_fd, int info_fd)
{
	return spawn4(argv, in_fd, out_fd, err_fd, info_fd, -1);
}

/* spawn4 is spawn with a descriptor 4 too (when fd4 >= 0; then info_fd must be given). */
static pid_t
spawn4(char **argv, int in_fd, int out_fd, int err_fd, int info_fd, int fd4)
{
	pid_t		pid = fork();

	if (pid != 0)
		return pid;
	{
		sigset_t	none;
		char	   *envp[] = {NULL};
		int			devnull = open("/dev/null", O_RDWR);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		setpgid(0, 0);
		if (devnull < 0 ||
			dup2(in_fd >= 0 ? in_fd : devnull, 0) < 0 ||
			dup2(out_fd >= 0 ? out_fd : devnull, 1) < 0 ||
			dup2(err_fd >= 0 ? err_fd : devnull, 2) < 0 ||
			(info_fd >= 0 && dup2(info_fd, 3) < 0) ||
			(fd4 >= 0 && dup2(fd4, 4) < 0))
			_exit(126);
		close_range(fd4 >= 0 ? 5 : info_fd >= 0 ? 4 : 3, ~0U, 0);
		execve(argv[0], argv, envp);
		dprintf(2, "cannot execute %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
}

/* close_fd closes a descriptor if open and marks it closed. */
static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* one_line turns what bwrap said into one line without a trailing newline. */
static void
one_line(SbBuf *buf)
{
	while (buf->len > 0 && (buf->data[buf->len - 1] == '\n' || buf->data[buf->len - 1] == ' '))
		buf->len--;
	for (size_t i = 0; i < buf->len; i++)
		if (buf->data[i] == '\n' || buf->data[i] == '\0')
			buf->data[i] = ' ';
}

/*
 * describe_exit formats how a sandbox that gave no answer ended: what it
 * said on standard error, else its exit status.
 */
static void
describe_exit(int status, SbBuf *err, char *msg, size_t msglen)
{
	one_line(err);
	if (err->len > 0)
		snprintf(msg, msglen, "%.*s", (int) err->len, err->data);
	else if (WIFSIGNALED(status))
		snprintf(msg, msglen, "bubblewrap was killed by signal %d", WTERMSIG(status));
	else
		snprintf(msg, msglen, "bubblewrap exited with status %d", WEXITSTATUS(status));
}

/* probe runs the current variant with `EXE --version`; true if it works, else msg says why. */
static bool
probe(char *msg, size_t msglen)
{
	static const char *const args[] = {"--version", NULL};
	char	  **argv = argv_with(NULL, args);
	int			ep[2];
	SbBuf		err;
	pid_t		pid;
	int			status = 0;
	long long	deadline = sb_now_ms() + PROBE_TIMEOUT_MS;

	if (pipe2(ep, O_CLOEXEC) != 0)
	{
		snprintf(msg, msglen, "cannot create a pipe: %s", strerror(errno));
		sb_free(argv);
		return false;
	}
	pid = spawn(argv, -1, -1, ep[1], -1);
	sb_free(argv);
	close(ep[1]);
	if (pid < 0)
	{
		snprintf(msg, msglen, "cannot start bubblewrap: %s", strerror(errno));
		close(ep[0]);
		return false;
	}
	sb_buf_init(&err, ERR_CAP);
	for (;;)
	{
		struct pollfd pfd = {.fd = ep[0], .events = POLLIN};
		char		chunk[1024];
		ssize_t		n;
		long long	left = deadline - sb_now_ms();

		if (left <= 0)
		{
			kill(pid, SIGKILL);
			sb_buf_append(&err, "(timed out) ", 12);
			break;
		}
		if (poll(&pfd, 1, (int) left) <= 0)
			continue;
		n = read(ep[0], chunk, sizeof(chunk));
		if (n > 0)
			sb_buf_append(&err, chunk, (size_t) n);
		else if (n == 0 || errno != EINTR)
			break;
	}
	close(ep[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
	{
		sb_buf_free(&err);
		return true;
	}
	describe_exit(status, &err, msg, msglen);
	sb_buf_free(&err);
	return false;
}

bool
sb_isolate_ready(const char *workspace_dir, char *msg, size_t msglen)
{
	static const bool variants[][2] = {{true, true}, {false, true}, {true, false}, {false, false}};
	char		first[sizeof(why)];

	if (!probed)
	{
		ssize_t		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		probed = true;
		if (n <= 0)
			snprintf(why, sizeof(why), "cannot find the executor's own path: %s", strerror(errno));
		else
		{
			exe[n] = '\0';
			first[0] = '\0';
			for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]) && !usable; v++)
			{
				build(workspace_dir, variants[v][0], variants[v][1]);
				usable = probe(why, sizeof(why));
				if (!usable && first[0] == '\0')
					strcpy(first, why);
				else if (usable && v > 0)
					fprintf(stderr, "cloudrun-sandbox-executor: command sandbox: %s, %s "
							"(the first choice failed: %s)\n",
							variants[v][0] ? "own /proc" : "the container's /proc",
							variants[v][1] ? "no nested user namespaces" : "nested user namespaces allowed",
							first);
			}
			if (!usable)
				strcpy(why, first);
		}
	}
	if (!usable)
		snprintf(msg, msglen, "%s", why);
	return usable;
}

/*
 * set_error fills res with an error; the message says whether the command
 * ran at all.
 */
static void
set_error(SbExecResult *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(SbExecResult *res, const char *fmt, ...)
{
	char		msg[1536];
	va_list		ap;
	size_t		n;
	bool		repaired;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sb_result_clear(res);
	res->status = SB_STATUS_ERROR;
	res->error = sb_utf8_repair(msg, strlen(msg), true, &n, &repaired);
}

/*
 * live_poll hands req's live hook what the inner executor has written of the
 * output so far to the memfds live[] (at most max_output_bytes of each),
 * when it has grown since seen[].
 */
static void
live_poll(const SbExecRequest *req, const int live[2], off_t seen[2])
{
	char	   *data[2] = {NULL, NULL};
	size_t		len[2] = {0, 0};
	bool		news = false;

	for (int i = 0; i < 2; i++)
	{
		struct stat st;

		if (fstat(live[i], &st) != 0)
			continue;
		news |= st.st_size != seen[i];
		seen[i] = st.st_size;
	}
	if (!news)
		return;
	for (int i = 0; i < 2; i++)
	{
		size_t		want = (size_t) seen[i];
		ssize_t		n;

		if (want > (size_t) req->max_output_bytes)
			want = (size_t) req->max_output_bytes;
		data[i] = sb_malloc(want + 1);
		n = pread(live[i], data[i], want, 0);
		len[i] = n > 0 ? (size_t) n : 0;
	}
	req->live->flush(req->live->arg, data[0], len[0], data[1], len[1], false);
	sb_free(data[0]);
	sb_free(data[1]);
}

void
sb_isolate_run(const SbExecRequest *req, SbExecResult *res, const SbCancelWatch *watch)
{
	static const char *const live_args[] = {"--live", "3", "4", NULL};
	SbExecRequest inner = *req;
	char	  **argv = argv_with(NULL, req->live ? live_args : NULL);
	int			live[2] = {-1, -1};	/* memfds the inner executor writes its output so far to */
	off_t		live_seen[2] = {0, 0};
	long long	next_live = 0;
	char	   *text;
	int			in[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
	SbBuf		out, err;
	size_t		cap;
	size_t		written = 0, text_len;
	pid_t		pid;
	int			status = 0;
	long long	start = sb_now_ms();
	long long	deadline = req->timeout_ms > 0
		? start + req->timeout_ms + req->kill_grace_ms + BACKSTOP_MS : LLONG_MAX;
	long long	next_check = watch ? start + watch->interval_ms : 0;
	bool		cancelled = false, overdue = false;
	char		errbuf[512];

	memset(res, 0, sizeof(*res));
	/* The inner executor's request: the session's cwd and env, no cloud members. */
	inner.session = NULL;
	inner.prefix = NULL;
	text = sb_request_encode(&inner);
	if (text == NULL || pipe2(in, O_CLOEXEC) != 0 || pipe2(op, O_CLOEXEC) != 0 ||
		pipe2(ep, O_CLOEXEC) != 0)
	{
		set_error(res, "cannot prepare the command's sandbox: %s",
				  text == NULL ? "out of memory" : strerror(errno));
		goto out_fds;
	}
	text_len = strlen(text);
	if (req->live != NULL)
	{
		live[0] = memfd_create("sandbox-live-out", MFD_CLOEXEC);
		live[1] = memfd_create("sandbox-live-err", MFD_CLOEXEC);
		if (live[0] < 0 || live[1] < 0)
		{
			/* Without them the command still runs, its output only at its end. */
			close_fd(&live[0]);
			close_fd(&live[1]);
			sb_free(argv);
			argv = argv_with(NULL, NULL);
		}
		next_live = start + req->live->interval_ms;
	}
	pid = spawn4(argv, in[0], op[1], ep[1], live[0], live[1]);
	close_fd(&in[0]);
	close_fd(&op[1]);
	close_fd(&ep[1]);
	if (pid < 0)
	{
		set_error(res, "cannot start the command's sandbox: %s", strerror(errno));
		goto out_fds;
	}
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(op[0], F_SETFL, O_NONBLOCK);
	fcntl(ep[0], F_SETFL, O_NONBLOCK);
	/* Both outputs escaped (at most sixfold), the environment, and room for the rest. */
	cap = (size_t) req->max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES + 1024 * 1024;
	sb_buf_init(&out, cap);
	sb_buf_init(&err, ERR_CAP);

	while (op[0] >= 0 || ep[0] >= 0)
	{
		struct pollfd pfd[3] = {
			{.fd = op[0], .events = POLLIN},
			{.fd = ep[0], .events = POLLIN},
			{.fd = in[1], .events = POLLOUT},
		};
		long long	now = sb_now_ms();
		long long	wake = deadline;
		char		chunk[65536];

		if (!cancelled && !overdue && watch != NULL && now >= next_check)
		{
			if (watch->check(watch->arg))
			{
				cancelled = true;
				kill(pid, SIGKILL);		/* the sandbox dies with it */
			}
			now = sb_now_ms();
			next_check = now + watch->interval_ms;
		}
		if (!cancelled && !overdue && now >= deadline)
		{
			overdue = true;
			kill(pid, SIGKILL);
		}
		if (live[0] >= 0 && now >= next_live)
		{
			live_poll(req, live, live_seen);
			now = sb_now_ms();
			next_live = now + req->live->interval_ms;
		}
		if (watch != NULL && !cancelled && next_check < wake)
			wake = next_check;
		if (live[0] >= 0 && next_live < wake)
			wake = next_live;
		if (cancelled || overdue)
			wake = now + 1000;
		if (poll(pfd, 3, wake == LLONG_MAX ? -1 : (int) Min(wake > now ? wake - now : 0, 60000)) < 0 &&
			errno != EINTR)
		{
			kill(pid, SIGKILL);
			break;
		}
		if (pfd[0].revents)
		{
			ssize_t		n = read(op[0], chunk, sizeof(chunk));

			if (n > 0 && (!sb_buf_append(&out, chunk, (size_t) n) || out.truncated))
			{
				kill(pid, SIGKILL);
				close_fd(&op[0]);
			}
			else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&op[0]);
		}
		if (pfd[1].revents)
		{
			ssize_t		n = read(ep[0], chunk, sizeof(chunk));

			if (n > 0)
				sb_buf_append(&err, chunk, (size_t) n);
			else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&ep[0]);
		}
		if (in[1] >= 0 && pfd[2].revents)
		{
			ssize_t		n = (pfd[2].revents & POLLOUT) ? write(in[1], text + written, text_len - written) : -1;

			if (n > 0)
				written += (size_t) n;
			if (written == text_len || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&in[1]);
		}
	}
	close_fd(&in[1]);
	close_fd(&op[0]);
	close_fd(&ep[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;

	if (cancelled)
		set_error(res, "cancelled by sandbox.cancel()");
	else if (overdue)
		set_error(res, "the command's sandbox did not end within %lld ms of its timeout; it was killed",
				  (long long) BACKSTOP_MS);
	else if (out.truncated)
		set_error(res, "the command's sandbox answered more than %zu bytes", cap);
	else if (out.len == 0)
	{
		describe_exit(status, &err, errbuf, sizeof(errbuf));
		set_error(res, "the command's sandbox ended without a result: %s", errbuf);
	}
	else if (!sb_result_decode(out.data, out.len, res, errbuf, sizeof(errbuf)))
		set_error(res, "the command's sandbox returned a malformed result: %s", errbuf);
	else
		res->state_generation = 0;	/* only this executor's own writes set one */
	sb_buf_free(&out);
	sb_buf_free(&err);
out_fds:
	close_fd(&live[0]);
	close_fd(&live[1]);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&op[0]);
	close_fd(&op[1]);
	close_fd(&ep[0]);
	close_fd(&ep[1]);
	sb_free(text);
	sb_free(argv);
}

pid_t
sb_isolate_background(const SbExecRequest *req, int out_fd, pid_t *inner, char *msg,
					  size_t msglen)
{
	static const char *const options[] = {"--info-fd", "3", NULL};
	/* No exit descriptor nor postmaster pipe: bwrap's exit status is the command's. */
	static const char *const args[] = {"background", "-", "-", NULL};
	SbExecRequest copy = *req;
	char	  **argv = argv_with(options, args);
	char	   *text;
	int			in[2] = {-1, -1}, info[2] = {-1, -1};
	char		buf[512];
	size_t		got = 0;
	pid_t		pid = -1;
	long long	deadline = sb_now_ms() + INFO_TIMEOUT_MS;
	char	   *p;

	*inner = 0;
	copy.session = NULL;
	copy.prefix = NULL;
	text = sb_request_encode(&copy);
	if (text == NULL || pipe2(in, O_CLOEXEC) != 0 || pipe2(info, O_CLOEXEC) != 0)
	{
		snprintf(msg, msglen, "cannot prepare the command's sandbox: %s",
				 text == NULL ? "out of memory" : strerror(errno));
		goto done;
	}
	pid = spawn(argv, in[0], out_fd, out_fd, info[1]);
	close_fd(&in[0]);
	close_fd(&info[1]);
	if (pid < 0)
	{
		snprintf(msg, msglen, "cannot start the command's sandbox: %s", strerror(errno));
		goto done;
	}
	/* The background executor reads its whole request before it starts anything. */
	if (!sb_write_all(in[1], text, strlen(text)))
	{
		snprintf(msg, msglen, "cannot hand the command to its sandbox: %s", strerror(errno));
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		pid = -1;
		goto done;
	}
	close_fd(&in[1]);
	/* bwrap reports the sandbox's first process once it exists: {"child-pid": N}. */
	while (got < sizeof(buf) - 1)
	{
		struct pollfd pfd = {.fd = info[0], .events = POLLIN};
		long long	left = deadline - sb_now_ms();
		ssize_t		n;

		if (left <= 0 || poll(&pfd, 1, (int) left) <= 0)
			break;
		n = read(info[0], buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	buf[got] = '\0';
	p = strstr(buf, "\"child-pid\"");
	if (p != NULL && strchr(p, ':') != NULL)
		*inner = (pid_t) strtol(strchr(p, ':') + 1, NULL, 10);
done:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&info[0]);
	close_fd(&info[1]);
	sb_free(text);
	sb_free(argv);
	return pid;
}
