/*
 * background.c
 *		Background mode of the executor: run one command for as long as it
 *		lives, as the sandbox's PID 1, with its output going straight to the
 *		log file the supervisor opened as our stdout and stderr.
 *
 * The supervisor (the database's background worker) also hands us, as open
 * descriptors, the file for the exit code and the read end of PostgreSQL's
 * postmaster-death pipe; we never open a file of the host by name, and the
 * command inherits neither descriptor.
 *
 * SIGTERM (from sandbox.kill_background_process) is passed on to every
 * process of the sandbox; after the grace period they get SIGKILL.  So is the
 * end of the postmaster (its pipe reports a hang-up once the postmaster, the
 * only holder of the write end, has gone): background processes stop with
 * the server, not with the worker, which can restart.  When the command ends,
 * its exit status is written to the exit descriptor (so a supervisor that
 * restarted and is no longer our parent still learns it) and becomes ours.
 *
 * A process started to be written to (start_background_writable: the
 * request's "stdin_open") has a stdin pipe we keep: its first bytes come
 * with the request, then each connection to the listening socket on
 * SB_STDIN_LISTEN_FD (made by the host in a directory no sandbox sees) brings
 * "W <length> <close>\n" and that many bytes, which we pass on as the
 * command takes them (the writer waits, never we), answering "ok\n" once all
 * are in the pipe, or "closed\n" if its stdin is closed already; with close
 * 1 the pipe is closed after them.  One connection at a time.
 */
#define _GNU_SOURCE
#include "command.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* signal_all sends sig to everything we started. */
static void
signal_all(pid_t pgid, int sig)
{
	if (getpid() == 1)
		kill(-1, sig);
	else
		kill(-pgid, sig);
}

/*
 * write_exit records the exit code for the supervisor in the exit descriptor:
 * "<code>\n", or "<code> server-stopped\n" when we stopped because the
 * postmaster had gone.
 */
static void
write_exit(int exit_fd, int code, bool server_stopped, bool quota_exceeded)
{
	char		line[64];
	int			len;

	if (exit_fd < 0)
		return;
	len = snprintf(line, sizeof(line), "%d%s\n", code, server_stopped ? " server-stopped"
				   : quota_exceeded ? " quota-exceeded" : "");
	if (ftruncate(exit_fd, 0) == 0)
		(void) pwrite(exit_fd, line, (size_t) len, 0);
}

/*
 * stop_all asks everything we started to stop: SIGTERM now, SIGKILL once the
 * grace period is over (*kill_at, in sb_now_ms() time).
 */
static void
stop_all(const SbExecRequest *req, pid_t child, long long *kill_at)
{
	if (*kill_at != 0)
		return;
	signal_all(child, SIGTERM);
	*kill_at = sb_now_ms() + (req->kill_grace_ms > 0 ? req->kill_grace_ms : 2000);
}

/*
 * explain_end says in the log (our stderr) why the command ended, when its
 * exit code alone would not: killed by a signal, above all SIGXFSZ, the
 * file-size limit, and bash's 128+N for a program it ran that was.
 */
static void
explain_end(const SbExecRequest *req, int wstatus)
{
	int			sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus)
		: WEXITSTATUS(wstatus) > 128 ? WEXITSTATUS(wstatus) - 128 : 0;
	const char *who = WIFSIGNALED(wstatus) ? "the command was" : "a program of the command was";

	if (sig == SIGXFSZ && req->limits.fsize_bytes > 0)
		fprintf(stderr, "cloudrun-sandbox: %s killed by SIGXFSZ: it wrote past the file-size "
				"limit of %lld bytes (cloudrun_sandbox.file_size_limit)\n", who,
				req->limits.fsize_bytes);
	else if (WIFSIGNALED(wstatus) && sig != SIGTERM && sig != SIGKILL)
		fprintf(stderr, "cloudrun-sandbox: the command was killed by signal %d (%s)\n", sig,
				strsignal(sig));
}

#define Min(a, b) ((a) < (b) ? (a) : (b))

/* The stdin of a writable process: see the file header. */
typedef struct StdinPipe
{
	int			pipe_w;			/* the command's stdin; -1 once closed */
	int			listen_fd;		/* -1: not writable, or not before the first bytes are in */
	int			conn;			/* the connection being served, or -1 */
	char		hdr[64];
	size_t		hdr_len;
	bool		have_hdr;
	long long	want;			/* bytes of the connection still to pass on */
	bool		close_after;
	const char *data;			/* bytes to write into the pipe */
	size_t		left;
	char		chunk[65536];
} StdinPipe;

/* stdin_end_conn answers the connection (best effort) and closes it. */
static void
stdin_end_conn(StdinPipe *s, const char *answer)
{
	if (answer != NULL)
		(void) send(s->conn, answer, strlen(answer), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(s->conn);
	s->conn = -1;
}

/* stdin_close closes the command's stdin. */
static void
stdin_close(StdinPipe *s)
{
	if (s->pipe_w >= 0)
		close(s->pipe_w);
	s->pipe_w = -1;
}

/*
 * stdin_events fills the poll entries of a writable stdin (three: the pipe,
 * the listening socket, the connection), for what it waits on now.
 */
static void
stdin_events(StdinPipe *s, struct pollfd *p, int listen_fd)
{
	p[0] = (struct pollfd) {.fd = s->left > 0 && s->pipe_w >= 0 ? s->pipe_w : -1, .events = POLLOUT};
	/* The first bytes go in before anyone else's. */
	if (s->listen_fd < 0 && s->left == 0)
		s->listen_fd = listen_fd;
	p[1] = (struct pollfd) {.fd = s->conn < 0 ? s->listen_fd : -1, .events = POLLIN};
	p[2] = (struct pollfd) {.fd = s->conn >= 0 && s->left == 0 ? s->conn : -1, .events = POLLIN};
}

/* stdin_header parses "W <length> <close>\n" at the start of s->hdr; false if malformed. */
static bool
stdin_header(StdinPipe *s, size_t *used)
{
	char	   *nl = memchr(s->hdr, '\n', s->hdr_len);
	long long	len;
	int			close_after, n = 0;

	if (nl == NULL)
		return s->hdr_len < sizeof(s->hdr) - 1;
	*nl = '\0';
	if (sscanf(s->hdr, "W %lld %d%n", &len, &close_after, &n) != 2 || s->hdr + n != nl ||
		len < 0 || (close_after != 0 && close_after != 1))
		return false;
	s->have_hdr = true;
	s->want = len;
	s->close_after = close_after == 1;
	*used = nl + 1 - s->hdr;
	return true;
}

/*
 * stdin_step does what the poll entries p[0..2] (stdin_events) allow: writes
 * into the pipe, accepts a connection, reads its header and bytes, and ends
 * it once all of them are in.
 */
static void
stdin_step(StdinPipe *s, const struct pollfd *p)
{
	if (p[0].revents && s->pipe_w >= 0)
	{
		ssize_t		n = write(s->pipe_w, s->data, s->left);

		if (n > 0)
		{
			s->data += n;
			s->left -= n;
		}
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			stdin_close(s);		/* the command closed its stdin: what is left goes nowhere */
	}
	if (s->pipe_w < 0)
		s->left = 0;
	if (p[1].revents & POLLIN)
	{
		s->conn = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		s->hdr_len = 0;
		s->have_hdr = false;
	}
	if (s->conn >= 0 && p[2].revents)
	{
		ssize_t		n;

		if (!s->have_hdr)
		{
			size_t		used = 0;

			n = read(s->conn, s->hdr + s->hdr_len, sizeof(s->hdr) - 1 - s->hdr_len);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			{
				stdin_end_conn(s, NULL);
				return;
			}
			if (n > 0)
				s->hdr_len += n;
			if (!stdin_header(s, &used))
			{
				stdin_end_conn(s, "malformed\n");
				return;
			}
			if (s->have_hdr)
			{
				/* Bytes after the header are the first of the data. */
				s->left = Min((long long) (s->hdr_len - used), s->want);
				memcpy(s->chunk, s->hdr + used, s->left);
				s->data = s->chunk;
				s->want -= s->left;
			}
		}
		else if (s->want > 0)
		{
			n = read(s->conn, s->chunk, Min((long long) sizeof(s->chunk), s->want));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			{
				stdin_end_conn(s, NULL);	/* cut short: what came is passed on */
				return;
			}
			if (n > 0)
			{
				s->data = s->chunk;
				s->left = n;
				s->want -= n;
			}
		}
	}
	if (s->pipe_w < 0)
		s->left = 0;
	if (s->conn >= 0 && s->have_hdr && s->want == 0 && s->left == 0)
	{
		bool		was_open = s->pipe_w >= 0;

		if (s->close_after)
			stdin_close(s);
		stdin_end_conn(s, was_open ? "ok\n" : "closed\n");
	}
}

/*
 * sb_background_main runs req's command until it ends.  exit_fd receives its
 * exit code; watch_fd, if >= 0, is the postmaster-death pipe.  Returns the
 * command's exit status.
 */
int
sb_background_main(const SbExecRequest *req, int exit_fd, int watch_fd, const char *log)
{
	sigset_t	mask;
	int			sigfd;
	pid_t		child;
	int			wstatus = 0;
	long long	kill_at = 0;
	bool		server_stopped = false;
	int			code;
	bool		quota_watch, quota_room, quota_hit = false;
	StdinPipe	in = {.pipe_w = -1, .listen_fd = -1, .conn = -1};
	int			stdin_r = -1;

	/*
	 * With a disk image, the log is ours to make, in it: a new file, never
	 * through a symlink, whatever an earlier command planted under its name.
	 */
	if (log != NULL)
	{
		int			fd = -1;

		for (int tries = 0; tries < 10 && fd < 0; tries++)
		{
			(void) unlink(log);
			fd = open(log, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (fd < 0 && errno != EEXIST)
				break;
		}
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		{
			bool		full = errno == ENOSPC || errno == EDQUOT;

			write_exit(exit_fd, 127, false, full || sb_quota_full(req->disk_quota_bytes));
			return 127;
		}
		close(fd);
	}
	quota_watch = req->disk_quota_bytes > 0;
	quota_room = quota_watch && !sb_quota_full(req->disk_quota_bytes);

	/* Ours only: the command must not write our exit code nor hold the pipe. */
	if (exit_fd >= 0)
		(void) fcntl(exit_fd, F_SETFD, FD_CLOEXEC);
	if (watch_fd >= 0)
		(void) fcntl(watch_fd, F_SETFD, FD_CLOEXEC);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (req->stdin_open)
	{
		int			p[2];

		(void) fcntl(SB_STDIN_LISTEN_FD, F_SETFD, FD_CLOEXEC);
		(void) fcntl(SB_STDIN_LISTEN_FD, F_SETFL, O_NONBLOCK);
		if (pipe2(p, O_CLOEXEC) == 0)
		{
			stdin_r = p[0];
			in.pipe_w = p[1];
			(void) fcntl(in.pipe_w, F_SETFL, O_NONBLOCK);
			in.data = req->stdin_data;
			in.left = req->stdin_len;
		}
	}
	child = fork();
	if (child < 0)
	{
		fprintf(stderr, "cloudrun-sandbox: cannot start the background command: %s\n",
				strerror(errno));
		write_exit(exit_fd, 127, false, false);
		return 127;
	}
	if (child == 0)
		sb_background_child(req, -1, SB_WORKSPACE, stdin_r);
	setpgid(child, child);
	if (stdin_r >= 0)
		close(stdin_r);

	for (;;)
	{
		/* The pipe is watched, never read: its O_NONBLOCK flag is the server's. */
		struct pollfd pfd[5] = {{.fd = sigfd, .events = POLLIN},
		{.fd = watch_fd, .events = POLLIN}};
		int			timeout = kill_at > 0 ? (int) (kill_at - sb_now_ms()) : -1;
		struct signalfd_siginfo si;
		bool		exited = false;

		/* A command that fills the quota is stopped (never one that only found it full). */
		if (quota_watch && !quota_hit)
		{
			if (!sb_quota_full(req->disk_quota_bytes))
				quota_room = true;
			else if (quota_room)
			{
				quota_hit = true;
				signal_all(child, SIGKILL);
			}
		}
		if (quota_watch && !quota_hit && (timeout < 0 || timeout > SB_QUOTA_POLL_MS))
			timeout = SB_QUOTA_POLL_MS;

		if (kill_at > 0 && timeout <= 0)
		{
			signal_all(child, SIGKILL);
			kill_at = -1;		/* done: no more timer */
			timeout = -1;
		}
		if (in.listen_fd >= 0 || in.pipe_w >= 0 || in.conn >= 0)
			stdin_events(&in, &pfd[2], SB_STDIN_LISTEN_FD);
		else
			pfd[2].fd = pfd[3].fd = pfd[4].fd = -1;
		if (poll(pfd, 5, timeout) <= 0)
			continue;
		if (in.listen_fd >= 0 || in.pipe_w >= 0 || in.conn >= 0)
			stdin_step(&in, &pfd[2]);
		if (watch_fd >= 0 && (pfd[1].revents & POLLNVAL))
			watch_fd = -1;		/* not a descriptor after all: nothing to watch */
		else if (watch_fd >= 0 && pfd[1].revents != 0)
		{
			/* The postmaster has gone: stop with the server. */
			server_stopped = true;
			watch_fd = -1;
			stop_all(req, child, &kill_at);
		}
		if ((pfd[0].revents & POLLIN) == 0)
			continue;
		while (read(sigfd, &si, sizeof(si)) == sizeof(si))
		{
			if (si.ssi_signo == SIGCHLD)
			{
				pid_t		pid;
				int			ws;

				while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
					if (pid == child)
					{
						wstatus = ws;
						exited = true;
					}
			}
			else
			{
				/* Asked to stop: everyone gets SIGTERM, then SIGKILL after the grace period. */
				stop_all(req, child, &kill_at);
			}
			if (exited)
				break;
			/* signalfd is blocking: read only what one poll() saw */
			break;
		}
		if (exited)
			break;
	}
	code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	explain_end(req, wstatus);
	signal_all(child, SIGKILL);
	/* Stopped at the quota, or failed with the disk full. */
	if (!server_stopped && !quota_hit && code != 0)
		quota_hit = sb_quota_full(req->disk_quota_bytes);
	write_exit(exit_fd, code, server_stopped, quota_hit);
	return code;
}
