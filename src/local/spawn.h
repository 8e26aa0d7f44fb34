/*
 * spawn.h
 *		Starting the bwrap process of a local sandbox: the one fork and exec
 *		every local sandbox goes through.
 */
#ifndef SB_LOCAL_SPAWN_H
#define SB_LOCAL_SPAWN_H

#include <sys/types.h>

#include "local/cgroup.h"

extern pid_t sb_spawn_sandbox_process(char **argv, const int *fds, int nfds,
									  const SbCgroupJoin *cg, int *failed_cgroup);

#endif							/* SB_LOCAL_SPAWN_H */
