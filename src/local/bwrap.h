/*
 * bwrap.h
 *		A local sandbox's bubblewrap command line and starting it
 *		(src/local/bwrap.c).
 */
#ifndef SB_LOCAL_BWRAP_H
#define SB_LOCAL_BWRAP_H

#include "cloudrun_sandbox.h"

#include <sys/types.h>

/* Where the executor is inside every sandbox: a fixed path, not the host's. */
#define SB_SANDBOX_EXECUTOR "/run/sandbox/executor"
/* Where a sandbox of a session with a disk image sees its background processes' logs. */
#define SB_SANDBOX_BACKGROUND "/run/background"

/*
 * The descriptors a sandbox gets besides 0, 1 and 2: bwrap's --info-fd (a
 * background sandbox only; closed otherwise), the seccomp program (bwrap
 * reads and closes it before the sandbox's first process starts), and for a
 * background sandbox the exit-code file and the postmaster-death pipe.
 */
#define SB_BG_INFO_FD 3
#define SB_SECCOMP_CHILD_FD 4
#define SB_BG_EXIT_FD 5
#define SB_BG_WATCH_FD 6

/* The listening socket of a warm sandbox, for `executor serve --listen 3`. */
#define SB_WARM_LISTEN_FD 3

/* How the executor of a command's sandbox takes its requests. */
typedef enum SbBwrapMode
{
	SB_BWRAP_ONESHOT,			/* one JSON request on stdin (background processes) */
	SB_BWRAP_SERVE,				/* frames on stdin/stdout, a socket (a cold call) */
	SB_BWRAP_LISTEN				/* frames on connections to SB_WARM_LISTEN_FD (warm) */
} SbBwrapMode;

extern bool sb_bwrap_files_identity(const char *session, dev_t *dev, ino_t *a, ino_t *b);
extern char *sb_bwrap_executor_path(void);
extern char **sb_bwrap_args(const char *session, int64 background, SbBwrapMode mode);
extern pid_t sb_bwrap_spawn(char **argv, int fd0, int fd1, int fd2, const int *extra, int nextra);
extern int	sb_bwrap_background_watch_fd(void);

#endif							/* SB_LOCAL_BWRAP_H */
