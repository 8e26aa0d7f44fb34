/*
 * spawn.c
 *		Starting the bwrap process of a local sandbox: fork, the child's setup,
 *		execve.  Every local sandbox (a command in a caller's backend, a file
 *		operation, a warm sandbox or a flight of the worker, a background
 *		process) starts here, so what applies to a whole sandbox from outside
 *		(its CPU priority, and whatever else has to be set between fork and
 *		exec) is applied in one place: sandbox_child_limits().
 *
 * posix_spawn() cannot set a child's niceness, and setting it from the parent
 * after the spawn races with the processes the sandbox starts (they inherit
 * the niceness they are forked with), hence a fork: _Fork(), which runs no
 * atfork handlers of the libraries loaded (OpenSSL, libcurl).  Between it
 * and execve() the child makes system calls only: no allocation, no
 * PostgreSQL code, _exit() on failure.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloudrun_sandbox.h"
#include "local/cgroup.h"
#include "local/spawn.h"

/* What a child that could not exec says through its report pipe. */
typedef struct SpawnReport
{
	int			err;			/* its errno */
	int			cgroup;			/* the index of the cgroup.procs file it failed on, or -1 */
} SpawnReport;

/*
 * sandbox_child_limits applies, in the forked child, the limits of the whole
 * sandbox: cloudrun_sandbox.local_nice (never below the server's own
 * niceness, which an unprivileged process cannot go under anyway), and
 * RLIMIT_NICE and RLIMIT_RTPRIO of 0, so that nothing in the sandbox can
 * lower its niceness or take a real-time policy, whatever limits the server
 * was started with.  False (errno set) if that fails.
 */
static bool
sandbox_child_limits(void)
{
	struct rlimit none = {0, 0};
	int			current;

	errno = 0;
	current = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		return false;
	if (sb_local_nice > current && setpriority(PRIO_PROCESS, 0, sb_local_nice) != 0)
		return false;
	return setrlimit(RLIMIT_NICE, &none) == 0 && setrlimit(RLIMIT_RTPRIO, &none) == 0;
}

/*
 * child_exec is the forked child: default signal handling, a session of its
 * own, its role's cgroups (cg, src/local/cgroup.c), the sandbox's limits,
 * fds[i] as descriptor i (closed where fds[i] < 0;
 * every fds[i] is at least nfds) and nothing else open but report_fd, which
 * closes on exec.  On failure it writes errno to report_fd and exits.
 */
static void
pg_attribute_noreturn()
child_exec(char **argv, const int *fds, int nfds, const SbCgroupJoin *cg, int report_fd)
{
	char	   *empty_env[] = {NULL};
	struct sigaction dfl;
	sigset_t	none;
	SpawnReport report = {0, -1};
	int			r;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void) sigaction(s, &dfl, NULL);	/* SIGKILL, SIGSTOP: refused, harmless */
	if (setsid() < 0)
		goto fail;
	if (cg != NULL && (r = sb_cgroup_join_child(cg)) != 0)
	{
		report.cgroup = -1 - r;
		goto fail;
	}
	if (!sandbox_child_limits())
		goto fail;
	for (int i = 0; i < nfds; i++)
	{
		if (fds[i] < 0)
			(void) close(i);
		else if (dup2(fds[i], i) < 0)
			goto fail;
	}
	if ((report_fd > nfds && close_range(nfds, report_fd - 1, 0) != 0) ||
		close_range(report_fd + 1, ~0U, 0) != 0)
		goto fail;
	sigemptyset(&none);
	(void) sigprocmask(SIG_SETMASK, &none, NULL);
	execve(argv[0], argv, empty_env);
fail:
	report.err = errno;
	if (write(report_fd, &report, sizeof(report)) < 0)
		_exit(126);
	_exit(127);
}

/*
 * sb_spawn_sandbox_process starts argv[0] with an empty environment, fds[i]
 * (each at least nfds, or -1: closed) as its descriptor i and no other
 * descriptor of ours, in a session of its own, with default signal handling,
 * in the cgroups of cg (NULL or n = 0: none) and with the sandbox's limits
 * (sandbox_child_limits).  Returns its pid once it has exec'd, or -1 with
 * errno set if it could not be started; *failed_cgroup is then the index in
 * cg->procs of the file the child could not join, else -1.
 */
pid_t
sb_spawn_sandbox_process(char **argv, const int *fds, int nfds, const SbCgroupJoin *cg,
						 int *failed_cgroup)
{
	sigset_t	all, old;
	int			report[2];
	SpawnReport child_report = {0, -1};
	ssize_t		n;
	pid_t		pid;
	int			save;

	if (pipe2(report, O_CLOEXEC) != 0)
		return -1;
	/* The report end must survive the child's dup2s: above every target. */
	if (report[1] < nfds)
	{
		int			raised = fcntl(report[1], F_DUPFD_CLOEXEC, nfds);

		save = errno;
		close(report[1]);
		if (raised < 0)
		{
			close(report[0]);
			errno = save;
			return -1;
		}
		report[1] = raised;
	}

	/* No handler of ours may run in the child before it resets them. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = _Fork();
	if (pid == 0)
		child_exec(argv, fds, nfds, cg, report[1]);
	save = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(report[1]);
	if (pid > 0)
	{
		/* End of file: the child exec'd.  Otherwise it says why it could not. */
		do
			n = read(report[0], &child_report, sizeof(child_report));
		while (n < 0 && errno == EINTR);
		if (n == sizeof(child_report))
		{
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			save = child_report.err;
			pid = -1;
		}
	}
	close(report[0]);
	*failed_cgroup = pid < 0 ? child_report.cgroup : -1;
	errno = save;
	return pid;
}
