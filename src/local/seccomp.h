/*
 * seccomp.h
 *		The system call filter of local sandboxes: a compiled seccomp program
 *		that bubblewrap installs (--seccomp FD) just before it starts the
 *		executor.
 */
#ifndef SB_LOCAL_SECCOMP_H
#define SB_LOCAL_SECCOMP_H

extern int	sb_seccomp_open(int min_fd);

#endif							/* SB_LOCAL_SECCOMP_H */
