/*
 * background.c
 *		Background mode of the executor: run one command for as long as it
 *		lives, as the sandbox's PID 1, with its output going straight to the
 *		log file the supervisor opened as our stdout and stderr.
 *
 * SIGTERM (from sandbox.kill_background_process) is passed on to every
 * process of the sandbox; after the grace period they get SIGKILL.  When the
 * command ends, its exit status is written to exit_file (so a supervisor that
 * restarted and is no longer our parent still learns it) and becomes ours.
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

/* now_ms reads the monotonic clock in milliseconds. */
static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* write_exit records the exit code for the supervisor. */
static void
write_exit(const char *exit_file, int code)
{
	char		tmp[4096];
	FILE	   *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", exit_file);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fprintf(f, "%d\n", code);
	if (fclose(f) == 0)
		(void) rename(tmp, exit_file);
}

int
sb_background_main(const SbExecRequest *req, const char *exit_file)
{
	sigset_t	mask;
	int			sigfd;
	pid_t		child;
	int			wstatus = 0;
	long long	kill_at = 0;
	int			code;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
	child = fork();
	if (child < 0)
	{
		fprintf(stderr, "cloudrun-sandbox: cannot start the background command: %s\n",
				strerror(errno));
		write_exit(exit_file, 127);
		return 127;
	}
	if (child == 0)
		sb_background_child(req, -1, SB_WORKSPACE);
	setpgid(child, child);

	for (;;)
	{
		struct pollfd pfd = {.fd = sigfd, .events = POLLIN};
		int			timeout = kill_at ? (int) (kill_at - now_ms()) : -1;
		struct signalfd_siginfo si;
		bool		exited = false;

		if (kill_at && timeout <= 0)
		{
			signal_all(child, SIGKILL);
			kill_at = 0;
			timeout = -1;
		}
		if (poll(&pfd, 1, timeout) <= 0)
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
			else if (kill_at == 0)
			{
				/* Asked to stop: everyone gets SIGTERM, then SIGKILL after the grace period. */
				signal_all(child, SIGTERM);
				kill_at = now_ms() + (req->kill_grace_ms > 0 ? req->kill_grace_ms : 2000);
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
	signal_all(child, SIGKILL);
	write_exit(exit_file, code);
	return code;
}
