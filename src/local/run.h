/*
 * run.h
 *		What the local driver's files share about a run (src/driver_local.c)
 *		and the worker's warm sandboxes (src/local/warm.c).
 */
#ifndef SB_LOCAL_RUN_H
#define SB_LOCAL_RUN_H

#include "driver.h"

#include "common/sbutil.h"

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

extern void sb_local_init_result_buffers(SbRun *run);
extern void sb_local_drain(int *fd, SbBuf *buf);
extern SbRun *sb_warm_launch(const char *session, const char *request);
extern bool sb_warm_step(SbRun *run);
extern void sb_warm_destroy(WarmSandbox *w);

#endif							/* SB_LOCAL_RUN_H */
