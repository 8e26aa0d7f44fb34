/*
 * xact.h
 *		The background worker's transaction steps and memory (see xact.c):
 *		what every other file of src/worker/ builds on.
 */
#ifndef SB_WORKER_XACT_H
#define SB_WORKER_XACT_H

#include "cloudrun_sandbox.h"

#include "nodes/pg_list.h"

/*
 * A step that found a row locked by another transaction (a user's, which may
 * stay open for as long as it likes) is tried again this soon; the worker
 * never waits for such a lock.
 */
#define SB_RETRY_LOCKED_MS 250

/* Long-lived lists of the worker live here; per-flight data in each flight's context. */
extern MemoryContext WorkerContext;

extern List *keep_list(List *list, void *item);
extern void begin(const char *what);
extern void commit(void);
extern char *caught(MemoryContext cxt);
extern char *caught_code(MemoryContext cxt, int *sqlerrcode);
extern bool session_lock(int64 session_id, bool take);

#endif							/* SB_WORKER_XACT_H */
