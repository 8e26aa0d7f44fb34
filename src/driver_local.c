/*
 * driver_local.c
 *		The local backend's SbDriver: sessions in a storage directory
 *		(src/local/storage.c, which also has its layout), commands run by the
 *		executor inside a bubblewrap sandbox (src/local/bwrap.c), in the
 *		worker through its warm sandboxes (src/local/warm.c).  Background
 *		processes are in src/local/bgfiles.c.
 *
 * host/ is never bound into a sandbox: a background sandbox gets its log and
 * exit-code file as descriptors the host opened (src/local/bgfiles.c).
 */
#include "local/run.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "local/bwrap.h"
#include "local/slots.h"
#include "local/storage.h"

#define SB_STDERR_CAP 65536

/*
 * sb_local_init_result_buffers sizes a run's buffers.  Results are bounded: output is
 * capped and JSON escaping at most sextuples it; a file operation's payload
 * is capped and travels in base64.
 */
void
sb_local_init_result_buffers(SbRun *run)
{
	sb_buf_init(&run->out, Max((size_t) sb_max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES +
							   1024 * 1024, SB_FILE_RESULT_MAX(sb_max_transfer_bytes)));
	sb_buf_init(&run->err, SB_STDERR_CAP);
}

static SbRun *
local_launch(const char *session, int64 id, const char *request)
{
	SbRun	   *run;
	SbRun	   *volatile cold;
	int			in_fd;

	if (sb_local_warm && sb_warm_sessions > 0 && (run = sb_warm_launch(session, request)) != NULL)
		return run;
	cold = palloc0(sizeof(SbRun));
	/* A call in a role's own backend holds one of its slots while its sandbox runs. */
	cold->slot = sb_sandbox_slot_take();
	PG_TRY();
	{
		cold->pid = sb_bwrap_spawn_piped(sb_bwrap_args(session, 0, false), &in_fd, &cold->out_fd, &cold->err_fd,
								&cold->pid_fd);
	}
	PG_CATCH();
	{
		sb_sandbox_slot_release(cold->slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sb_local_init_result_buffers(cold);
	sb_bwrap_write_request(in_fd, request);
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

/* sb_local_drain reads what is available; closes fd at EOF. */
void
sb_local_drain(int *fd, SbBuf *buf)
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
		return sb_warm_step(run);
	sb_local_drain(&run->out_fd, &run->out);
	sb_local_drain(&run->err_fd, &run->err);
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
		sb_warm_destroy(run->warm);
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
