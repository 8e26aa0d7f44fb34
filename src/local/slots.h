/*
 * slots.h
 *		The per-role cap on local sandboxes running at once in a role's own
 *		backends (cloudrun_sandbox.max_sandboxes_per_role).
 */
#ifndef SB_LOCAL_SLOTS_H
#define SB_LOCAL_SLOTS_H

extern int	sb_sandbox_slot_take(void);
extern void sb_sandbox_slot_release(int holder);

#endif							/* SB_LOCAL_SLOTS_H */
