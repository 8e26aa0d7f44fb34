/*
 * recover.h
 *		Resolving what a previous worker left in flight (see recover.c).
 */
#ifndef SB_WORKER_RECOVER_H
#define SB_WORKER_RECOVER_H

extern void recover(void);
extern bool recover_pending(void);
extern void recover_committed(void);

#endif							/* SB_WORKER_RECOVER_H */
