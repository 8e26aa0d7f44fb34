/*
 * cgroup.h
 *		Per-role control groups for local sandboxes (memory, pids, cpu), where
 *		an operator delegated a cgroup subtree to the server's OS user.
 */
#ifndef SB_LOCAL_CGROUP_H
#define SB_LOCAL_CGROUP_H

#include "postgres.h"

/* memory, pids and cpu: at most one cgroup.procs file per controller. */
#define SB_CGROUP_MAX_JOIN 3

/*
 * Where a sandbox about to be spawned goes: the cgroup.procs files its first
 * process writes "0" to, built before the fork.  n = 0: cgroups are off.
 */
typedef struct SbCgroupJoin
{
	int			n;
	char		procs[SB_CGROUP_MAX_JOIN][MAXPGPATH];
} SbCgroupJoin;

/* Settings, defined by sb_cgroup_define_settings(). */
extern char *sb_local_cgroup;
extern int	sb_role_memory_max_mb;
extern int	sb_role_pids_max;
extern int	sb_role_cpu_weight;

extern void sb_cgroup_define_settings(void);
extern void sb_cgroup_use_role(Oid role);
extern Oid	sb_cgroup_role(void);
extern void sb_cgroup_prepare(Oid role, SbCgroupJoin *out);
extern int	sb_cgroup_join_child(const SbCgroupJoin *join);
extern char *sb_cgroup_describe(bool *in_force);
extern void sb_cgroup_log_if_changed(void);

#endif							/* SB_LOCAL_CGROUP_H */
