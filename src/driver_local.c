/*
 * driver_local.c
 *		The local backend's SbDriver: sessions in a storage directory
 *		(src/local/storage.c, which also has its layout), each request sent
 *		as one frame (src/common/frame.h) to the executor of a bubblewrap
 *		sandbox (src/local/bwrap.c): the session's warm sandbox when the
 *		pool has one (src/local/warm_client.c, owned by the worker in
 *		src/local/warm.c), or else a sandbox of the call's own running
 *		`executor serve` on a socketpair, which ends with the call (cold).
 *		Background processes are in src/local/bgfiles.c.
 *
 * A warm run closes its connection to cancel: the executor then kills the
 * command and everything it left.  After a cancel, a protocol error, bytes
 * beyond the result frame, or the sandbox hanging up, the warm sandbox is
 * retired, never used again.
 *
 * host/ is never bound into a sandbox: a background sandbox gets its log and
 * exit-code file as descriptors the host opened (src/local/bgfiles.c).
 */
#include "driver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "common/frame.h"
#include "common/sbutil.h"
#include "local/bwrap.h"
#include "local/cgroup.h"
#include "local/slots.h"
#include "local/storage.h"
#include "local/warm.h"
#include "live.h"

#define SB_STDERR_CAP 65536

struct SbRun
{
	int			sock;			/* to the executor; -1 once closed */
	SbFrameWriter writer;
	bool		written;		/* the whole request frame is out */
	SbFrameReader reader;
	bool		done;			/* the whole result frame is in */
	bool		broken;			/* the executor hung up or sent a bad frame */
	MemoryContext cxt;			/* where the result's parts go */
	/* warm: the registry slot claimed, or -1 (cold) */
	int			warm_slot;
	uint32		warm_generation;
	/* cold: the call's own sandbox */
	pid_t		pid;
	int			pid_fd;			/* readable once bwrap has exited */
	int			err_fd;
	SbBuf		err;
	bool		reaped;
	int			wstatus;
	int			slot;			/* its hold on a role's sandbox slot (local/slots.c), or 0 */
	int			live[2];		/* live output files sent with the request, until sent */
};

/*
 * part_alloc gives the frame reader a buffer for a result part in the run's
 * context; a payload's with VARHDRSZ bytes free before it, so that it
 * becomes a text or bytea datum without a copy.
 */
static void *
part_alloc(void *arg, int part, size_t len)
{
	SbRun	   *run = arg;

	/* The JSON is the result document finish() returns: the caller pfree()s it. */
	if (part == 0)
		return MemoryContextAllocHuge(run->cxt, len + 1);
	return (char *) MemoryContextAllocHuge(run->cxt, VARHDRSZ + len + 1) + VARHDRSZ;
}

/*
 * init_frames prepares the run's request frame and its result reader.
 * Results are bounded: output is capped (in a payload, or escaped at most
 * sixfold in the JSON of an executor that does not frame it), a file
 * operation's content too.
 */
static void
init_frames(SbRun *run, const char *request, const SbPayload *upload)
{
	size_t		max[3];
	SbFramePart json = {request, strlen(request)};
	SbFramePart none = {NULL, 0};
	SbFramePart p0 = {upload ? upload->data : NULL, upload ? upload->len : 0};

	max[0] = Max((size_t) sb_max_output_bytes * 12 + 2 * SB_MAX_ENV_BYTES + 1024 * 1024,
				 SB_FILE_RESULT_MAX(sb_max_transfer_bytes));
	/* The worker runs only commands: their stdout is capped by max_output_bytes. */
	max[1] = (sb_driver_nonblocking ? (size_t) sb_max_output_bytes :
			  Max((size_t) sb_max_output_bytes, (size_t) sb_max_transfer_bytes)) + 65536;
	max[2] = (size_t) sb_max_output_bytes + 65536;
	sb_frame_writer_init(&run->writer, json, p0, none);
	sb_frame_reader_init(&run->reader, max, part_alloc, run);
}

/* release_slot gives back the role's sandbox slot once the run's sandbox is gone. */
static void
release_slot(SbRun *run)
{
	sb_sandbox_slot_release(run->slot);
	run->slot = 0;
}

/* close_live closes the host's copies of the live output files. */
static void
close_live(SbRun *run)
{
	for (int i = 0; i < 2; i++)
	{
		if (run->live[i] >= 0)
			close(run->live[i]);
		run->live[i] = -1;
	}
}

/* close_sock closes the run's connection (for a busy executor: cancel its command). */
static void
close_sock(SbRun *run)
{
	close_live(run);
	if (run->sock >= 0)
		close(run->sock);
	run->sock = -1;
}

/* warm_done gives the run's warm sandbox back (ok: it answered in full) or retires it. */
static void
warm_done(SbRun *run, bool ok)
{
	if (run->warm_slot < 0)
		return;
	sb_warm_release(run->warm_slot, run->warm_generation, ok);
	run->warm_slot = -1;
}

/*
 * launch_cold starts the call's own sandbox, the executor serving frames on
 * one end of a socketpair (its descriptors 0 and 1), stderr on a pipe.
 */
static void
launch_cold(SbRun *run, const char *session, Oid owner)
{
	int			sv[2], err[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		ereport(ERROR, (errcode_for_socket_access(), errmsg("could not create a socket pair: %m")));
	if (pipe2(err, O_CLOEXEC) != 0)
	{
		int			save = errno;

		close(sv[0]), close(sv[1]);
		errno = save;
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a pipe: %m")));
	}
	/* A call in a role's own backend holds one of its slots while its sandbox runs. */
	run->slot = sb_sandbox_slot_take();
	PG_TRY();
	{
		sb_cgroup_use_role(owner);
		run->pid = sb_bwrap_spawn(sb_bwrap_args(session, 0, SB_BWRAP_SERVE), sv[1], sv[1], err[1],
								  NULL, 0);
	}
	PG_CATCH();
	{
		close(sv[0]), close(sv[1]), close(err[0]), close(err[1]);
		release_slot(run);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(sv[1]);
	close(err[1]);
	run->sock = sv[0];
	run->err_fd = err[0];
	run->pid_fd = (int) syscall(SYS_pidfd_open, run->pid, 0);
	fcntl(run->sock, F_SETFL, O_NONBLOCK);
	fcntl(run->err_fd, F_SETFL, O_NONBLOCK);
}

static bool local_step(SbRun *run);

/*
 * local_launch sends the request (with upload, a file write's content, as
 * the frame's payload 0) to the session's warm sandbox, or, when
 * there is none this call may use, to a sandbox of its own (and asks the
 * worker to start a warm one for the next call).
 */
static SbRun *
local_launch(const char *session, int64 id, const char *request, const SbPayload *upload)
{
	SbRun	   *run = palloc0(sizeof(SbRun));
	Oid			owner = sb_cgroup_role();	/* the session's owner */
	int			warm;

	run->cxt = CurrentMemoryContext;
	run->sock = run->pid_fd = run->err_fd = -1;
	run->warm_slot = -1;
	run->reaped = true;
	sb_buf_init(&run->err, SB_STDERR_CAP);
	init_frames(run, request, upload);
	run->live[0] = run->live[1] = -1;
	/* A queued command's output is followed while it runs: see sb_local_live_open(). */
	if (sb_driver_nonblocking && id > 0)
	{
		if (sb_local_live_create(session, id, run->live))
		{
			run->writer.fds[0] = run->live[0];
			run->writer.fds[1] = run->live[1];
			run->writer.nfds = 2;
		}
	}
	else if (!sb_driver_nonblocking && sb_stream_fds(run->writer.fds))
		run->writer.nfds = 2;	/* a streamed exec's output: to its memfds (live.c) */
	warm = sb_warm_claim(session, owner, &run->warm_generation);
	run->warm_slot = Max(warm, -1);
	if (run->warm_slot >= 0)
	{
		run->slot = sb_sandbox_slot_take();
		run->sock = sb_warm_connect(run->warm_slot, run->warm_generation);
		if (run->sock < 0)
		{
			/* Its sandbox is gone (killed): this call runs cold, the next one warm again. */
			warm_done(run, false);
			release_slot(run);
			warm = -1;
		}
	}
	if (run->sock < 0)
	{
		if (warm == -1)
			sb_warm_request(session, owner);
		run->reaped = false;
		launch_cold(run, session, owner);
	}
	(void) local_step(run);
	return run;
}

static int
local_wait_fds(SbRun *run, int *fds, int max_fds)
{
	int			n = 0;

	if (run->sock >= 0 && n < max_fds)
		fds[n++] = run->sock;
	if (run->err_fd >= 0 && n < max_fds)
		fds[n++] = run->err_fd;
	/* Once the descriptors are closed, what is left is the process's exit. */
	if (n == 0 && !run->reaped && run->pid_fd >= 0 && n < max_fds)
		fds[n++] = run->pid_fd;
	return n;
}

/* drain_err reads what the cold sandbox wrote on stderr; closes it at EOF. */
static void
drain_err(SbRun *run)
{
	char		chunk[8192];

	while (run->err_fd >= 0)
	{
		ssize_t		n = read(run->err_fd, chunk, sizeof(chunk));

		if (n > 0)
		{
			(void) sb_buf_append(&run->err, chunk, (size_t) n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		close(run->err_fd);
		run->err_fd = -1;
	}
}

/*
 * write_request writes what the socket takes of the request frame.  A
 * backend waits for room (the executor reads a request whole before it acts
 * on it); the worker never waits, and comes back at its next turn.
 */
static void
write_request(SbRun *run)
{
	while (!run->written && run->sock >= 0)
	{
		int			r = sb_frame_write(&run->writer, run->sock);
		struct pollfd p = {run->sock, POLLOUT, 0};

		if (r == 1)
		{
			run->written = true;
			close_live(run);	/* the executor has its own copies now */
		}
		else if (r < 0 && errno != EINTR)
		{
			run->broken = true;
			close_sock(run);
		}
		else if (r == 0 && sb_driver_nonblocking)
			return;
		else if (r == 0)
		{
			(void) poll(&p, 1, 1000);
			CHECK_FOR_INTERRUPTS();
		}
	}
}

/* local_request_sent: the frame writer no longer needs the payload. */
static bool
local_request_sent(SbRun *run)
{
	return run->written || run->sock < 0;
}

/*
 * local_step makes progress: the request out, the result frame in.  A warm
 * run is over with the frame (its sandbox is then free for the session's
 * next request) or when the sandbox fails; a cold one once its sandbox has
 * also exited.
 */
static bool
local_step(SbRun *run)
{
	write_request(run);
	if (run->written && run->sock >= 0 && !run->done)
	{
		int			r = sb_frame_read(&run->reader, run->sock);

		/* A result brings no descriptors: any that came are closed. */
		for (int i = 0; i < run->reader.nfds; i++)
			close(run->reader.fds[i]), run->reader.fds[i] = -1;
		run->reader.nfds = 0;
		if (r == SB_FRAME_DONE)
		{
			run->done = true;
			/* More than one answer: the sandbox is not trusted again. */
			warm_done(run, !run->reader.extra);
			close_sock(run);	/* a cold executor ends at EOF */
		}
		else if (r != SB_FRAME_MORE)
		{
			run->broken = true;
			warm_done(run, false);
			close_sock(run);
		}
	}
	if (run->broken && run->sock >= 0)
		close_sock(run);
	if (run->broken)
		warm_done(run, false);
	if (run->pid > 0)
	{
		drain_err(run);
		if (run->sock >= 0 || run->err_fd >= 0)
			return false;
		if (!run->reaped && waitpid(run->pid, &run->wstatus, WNOHANG) == run->pid)
			run->reaped = true;
		if (run->reaped && run->pid_fd >= 0)
			close(run->pid_fd), run->pid_fd = -1;
		if (run->reaped)
			release_slot(run);
		return run->reaped;
	}
	if (run->done || run->broken || run->sock < 0)
	{
		release_slot(run);
		return true;
	}
	return false;
}

/*
 * local_cancel stops the run: closing its connection makes the executor kill
 * the command; a warm sandbox is then retired, a cold one killed.
 */
static void
local_cancel(SbRun *run)
{
	close_sock(run);
	if (!run->done)
		warm_done(run, false);
	if (!run->reaped && run->pid > 0)
	{
		kill(-run->pid, SIGKILL);
		kill(run->pid, SIGKILL);
		while (waitpid(run->pid, &run->wstatus, 0) < 0 && errno == EINTR)
			;
		run->reaped = true;
	}
	if (run->err_fd >= 0)
		close(run->err_fd), run->err_fd = -1;
	if (run->pid_fd >= 0)
		close(run->pid_fd), run->pid_fd = -1;
	release_slot(run);
}

static char *
local_finish(SbRun *run, size_t *len)
{
	if (run->done)
	{
		*len = run->reader.len[0];
		return run->reader.part[0];
	}
	if (run->pid <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the session's warm sandbox stopped before it returned a result"),
				 run->reader.error[0] ? errdetail("%s", run->reader.error) : 0,
				 errhint("Setting cloudrun_sandbox.local_warm_sessions to 0 starts a sandbox "
						 "per command.")));
	if (run->reader.started)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the sandbox executor returned a malformed or too large result"),
				 run->reader.error[0] ? errdetail("%s", run->reader.error) : 0));
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
	return NULL;				/* keep compiler quiet */
}

/*
 * local_delete_storage retires the session's warm sandbox (it binds what is
 * about to go), then deletes the session's storage.
 */
static void
local_delete_storage(const char *session, const char *location)
{
	sb_warm_retire_session(session);
	sb_storage_delete_session(session, location);
}

/*
 * local_payloads hands out the result frame's payloads: a command's stdout
 * and stderr, or a file's content, as the sandbox sent them.
 */
static int
local_payloads(SbRun *run, SbPayload *out, int max)
{
	int			n = 0;

	if (!run->done)
		return 0;
	for (int i = 1; i <= 2 && n < max; i++, n++)
	{
		out[n].data = run->reader.part[i];
		out[n].len = run->reader.len[i];
	}
	return n;
}

const SbDriver sb_local_driver = {
	.name = "local",
	.binary_frames = true,
	.executor_writes_state = false,
	.slack_ms = 10000,
	.prepare_session = sb_storage_prepare_session,
	.disk_quota_kb = sb_storage_quota_kb,
	.delete_storage = local_delete_storage,
	.load_state = sb_storage_load_state,
	.store_state = sb_storage_store_state,
	.launch = local_launch,
	.request_sent = local_request_sent,
	.wait_fds = local_wait_fds,
	.step = local_step,
	.finish = local_finish,
	.cancel = local_cancel,
	.payloads = local_payloads,
	.stage = NULL,
	.launch_batch = NULL,
	.remote_name = NULL,
	.attach = NULL,
};
