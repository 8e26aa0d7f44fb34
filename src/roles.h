/*
 * roles.h
 *		Sessions of dropped roles (roles.c).
 */
#ifndef SB_ROLES_H
#define SB_ROLES_H

/* Install the utility hook that notices DROP ROLE (from _PG_init while preloading). */
extern void sb_roles_init_hooks(void);

/*
 * In the worker, inside a transaction: remove every session whose owner no
 * longer exists, with its processes, queued commands, storage and history.
 * Returns how many sessions went.
 */
extern int	sb_sweep_dropped_roles(void);

#endif							/* SB_ROLES_H */
