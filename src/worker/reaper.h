/*
 * reaper.h
 *		Storage work that must wait for the end of a transaction, done by a
 *		short-lived process of its own (see reaper.c): deleting the storage of
 *		dropped sessions after the drop commits, and of sessions whose
 *		creation rolled back; refreshing a session's mirror after a command
 *		whose transaction rolled back.
 */
#ifndef SB_WORKER_REAPER_H
#define SB_WORKER_REAPER_H

#include "postgres.h"

#include "fmgr.h"

#include "cloudrun_sandbox.h"

/*
 * In the dropping transaction: record session's storage in
 * sandbox.dropped_storage (so a rollback forgets it) and start the reaper
 * once the transaction commits.
 */
extern void sb_reaper_drop(const SbSession *session);

/* session was created by this (sub)transaction: if it rolls back, its storage goes. */
extern void sb_reaper_if_creation_aborts(SbBackend backend, Oid owner, const char *key);

/* A command is about to change session's state: if it rolls back, the mirror follows the state. */
extern void sb_reaper_if_change_aborts(const SbSession *session);

/* In the background worker's loop, never waiting: starts a reaper now and then. */
extern void sb_reaper_tick(void);

/* The reaper process's entry point (bgw_function_name). */
extern PGDLLEXPORT void sb_reaper_main(Datum arg);

#endif							/* SB_WORKER_REAPER_H */
