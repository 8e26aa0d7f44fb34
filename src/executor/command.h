/*
 * command.h
 *		Running one shell command for a session inside the sandbox.
 */
#ifndef SB_COMMAND_H
#define SB_COMMAND_H

#include "../common/protocol.h"

/*
 * sb_run_command runs req->command with bash in the session's cwd and
 * environment and fills *res.  It never exits the process; failures of the
 * sandbox itself come back as SB_STATUS_ERROR.
 */
extern void sb_run_command(const SbExecRequest *req, SbExecResult *res);

/*
 * A cancel watch: while the command runs, check(arg) is called about every
 * interval_ms; once it returns true the command and everything it started
 * are killed and the result is an error saying it was cancelled.
 */
typedef struct SbCancelWatch
{
	bool		(*check) (void *arg);
	void	   *arg;
	int			interval_ms;
} SbCancelWatch;

/*
 * SbLiveHook is told the command's output so far while it runs (live
 * output, issue 14 part 4): flush(arg, out, out_len, err, err_len, final)
 * gets everything captured until now (within max_output_bytes, as the
 * result will have it), at most every interval_ms while there is news, and
 * once with final set after the command's end.  It must not block for long.
 */
typedef struct SbLiveHook
{
	void		(*flush) (void *arg, const char *out, size_t out_len, const char *err,
						  size_t err_len, bool final);
	void	   *arg;
	int			interval_ms;
} SbLiveHook;

/* sb_run_command_watched is sb_run_command with a cancel watch (or NULL). */
extern void sb_run_command_watched(const SbExecRequest *req, SbExecResult *res,
								   const SbCancelWatch *watch);

/*
 * sb_run_command_conn runs a request that came on connection conn_fd (a
 * frame): the output is kept as captured (the host repairs it), and if the
 * peer hangs up meanwhile the command and everything it started are killed
 * and false is returned, with *res cleared.
 */
extern bool sb_run_command_conn(const SbExecRequest *req, SbExecResult *res, int conn_fd);

/*
 * sb_command_prestart starts the shell of the next command ahead of its
 * request, if none is waiting (a warm sandbox calls it once a request is
 * answered and the sandbox cleaned; see command.c).  The next
 * sb_run_command* takes it.  Nothing else may run in the sandbox while it
 * waits: sb_command_has_spare tells whether one does, so that cleaning up
 * after a file operation leaves it alone.
 */
extern void sb_command_prestart(void);
extern bool sb_command_has_spare(void);
extern void sb_command_drop_spare(void);

/* sb_command_env returns the environment a command of req starts with (sb_malloc'd). */
extern char **sb_command_env(const SbExecRequest *req);

/* sb_command_limits applies req's resource limits to the calling process. */
extern void sb_command_limits(const SbExecRequest *req);

/*
 * The session's disk quota (a local session's disk image, see
 * src/local/quota.c): sb_quota_full tells whether the disk behind
 * /workspace is full (less than a small slack free, or no inode left);
 * sb_quota_message says so, with the quota and how to free space.
 */
extern bool sb_quota_full(long long quota_bytes);
extern void sb_quota_message(char *buf, size_t len, long long quota_bytes);
/* How often a running command's disk is looked at, with a quota. */
#define SB_QUOTA_POLL_MS 100

/*
 * sb_background_child runs a background command in a forked child, its
 * stdin from stdin_fd (-1: the request's stdin bytes, or /dev/null); never
 * returns.
 */
extern void sb_background_child(const SbExecRequest *req, int out_fd, const char *fallback_cwd,
								int stdin_fd)
			__attribute__((noreturn));

/* sb_background_main runs req's command as a background process; see background.c. */
extern int	sb_background_main(const SbExecRequest *req, int exit_fd, int watch_fd,
							   const char *log);

#endif							/* SB_COMMAND_H */
