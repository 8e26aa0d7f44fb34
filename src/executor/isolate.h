/*
 * isolate.h
 *		The sandbox a cloud task runs user commands in: the command never
 *		shares the executor's credentials, environment, network or processes.
 */
#ifndef SB_ISOLATE_H
#define SB_ISOLATE_H

#include "command.h"

#include <sys/types.h>

/*
 * sb_isolate_ready finds, once per process, bubblewrap arguments that work
 * in this container (see isolate.c) for a workspace directory; false with
 * msg set if no sandbox can be created here.
 */
extern bool sb_isolate_ready(const char *workspace_dir, char *msg, size_t msglen);

/*
 * sb_isolate_run runs req (whose cwd and env are the session's) in a new
 * sandbox with the executor's local mode, and fills *res as
 * sb_run_command_watched would: watch (or NULL) can cancel it.  Needs
 * sb_isolate_ready first.
 */
extern void sb_isolate_run(const SbExecRequest *req, SbExecResult *res,
						   const SbCancelWatch *watch);

/*
 * sb_isolate_background starts req as a background process in a new
 * sandbox, with its output to out_fd; returns bubblewrap's pid (the
 * process to wait for: its exit status is the command's) with the
 * sandbox's first process, to signal for a graceful stop, in *inner; -1
 * with msg set on failure.  Needs sb_isolate_ready first.
 */
extern pid_t sb_isolate_background(const SbExecRequest *req, int out_fd, pid_t *inner,
								   char *msg, size_t msglen);

#endif							/* SB_ISOLATE_H */
