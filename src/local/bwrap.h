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

extern bool sb_bwrap_files_identity(const char *session, dev_t *dev, ino_t *a, ino_t *b);
extern char *sb_bwrap_executor_path(void);
extern char **sb_bwrap_args(const char *session, int64 background, bool serve);
extern void sb_bwrap_write_request(int fd, const char *request);
extern pid_t sb_bwrap_spawn(char **argv, int fd0, int fd1, int fd2, const int *extra, int nextra);
extern pid_t sb_bwrap_spawn_piped(char **argv, int *in_fd, int *out_fd, int *err_fd,
								  int *pid_fd);
extern int	sb_bwrap_background_watch_fd(void);

#endif							/* SB_LOCAL_BWRAP_H */
