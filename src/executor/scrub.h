/*
 * scrub.h
 *		Between two commands of a warm sandbox: forget what the last one kept
 *		in memory outside its rlimits (see scrub.c).
 */
#ifndef SB_EXECUTOR_SCRUB_H
#define SB_EXECUTOR_SCRUB_H

extern void sb_scrub_sandbox(void);

#endif
