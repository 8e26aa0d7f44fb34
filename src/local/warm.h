/*
 * warm.h
 *		The warm pool of the local backend: one sandbox per session in use,
 *		owned by the background worker (src/local/warm.c), used by every
 *		caller of the session (src/local/warm_client.c) over a socket the
 *		worker made and handed into the sandbox as descriptor 3.
 */
#ifndef SB_LOCAL_WARM_H
#define SB_LOCAL_WARM_H

#include "cloudrun_sandbox.h"

#include <sys/types.h>
#include <sys/un.h>

#include "datatype/timestamp.h"
#include "storage/lwlock.h"

/* Entries in the registry: the most warm sandboxes there can be (and requests for more). */
#define SB_WARM_CAPACITY 1024
/* A storage key longer than this never gets a warm sandbox (sessions of 0.1.0 with long names). */
#define SB_WARM_KEY_MAX 128

typedef enum SbWarmState
{
	SB_WARM_FREE = 0,
	SB_WARM_REQUESTED,			/* a caller asked the worker to start one */
	SB_WARM_STARTING,			/* the worker is starting it */
	SB_WARM_READY,				/* running, idle: a caller may claim it */
	SB_WARM_BUSY,				/* a caller (busy_pid) is talking to it */
	SB_WARM_RETIRE				/* not to be used again: the worker stops it */
} SbWarmState;

/* What a warm sandbox binds: its workspace's (or disk image mount's) device and inodes. */
typedef struct SbWarmIdentity
{
	dev_t		dev;
	ino_t		a;
	ino_t		b;
} SbWarmIdentity;

typedef struct SbWarmEntry
{
	SbWarmState state;
	uint32		generation;		/* names its socket, w<slot>.<generation> */
	Oid			database;
	Oid			owner;
	char		key[SB_WARM_KEY_MAX];	/* the session's storage key */
	uint64		signature;		/* hash of what shapes the sandbox (warm_signature) */
	SbWarmIdentity identity;
	pid_t		pid;			/* bwrap's pid */
	pid_t		busy_pid;		/* with BUSY: the process talking to it */
	TimestampTz started_at;
	TimestampTz last_used_at;
	int64		served;			/* requests answered */
} SbWarmEntry;

typedef struct SbWarmRegistry
{
	LWLock	   *lock;			/* held only for a scan or an update, never across I/O */
	uint32		next_generation;
	pid_t		owner_pid;		/* the worker that owns the sandboxes, 0 if none */
	Oid			owner_database; /* its database: the only one with warm sandboxes */
	SbWarmEntry entries[SB_WARM_CAPACITY];
} SbWarmRegistry;

extern SbWarmRegistry *sb_warm;

/* Shared memory (src/shared.c calls these). */
extern Size sb_warm_shmem_size(void);
extern void sb_warm_shmem_request(void);
extern void sb_warm_shmem_startup(void);

/* Both sides. */
extern uint64 sb_warm_signature(const char *session);
extern char *sb_warm_dir(void);
extern bool sb_warm_identity(const char *session, SbWarmIdentity *id);
extern void sb_warm_socket_path(struct sockaddr_un *addr, int dirfd, int slot, uint32 generation);

/* The owner: the background worker (src/local/warm.c). */
extern void sb_warm_owner_start(void);
extern long sb_warm_owner_tick(void);
extern void sb_warm_owner_stop(void);
extern void sb_warm_owner_settings_changed(void);

/* The callers (src/local/warm_client.c). */
extern bool sb_warm_usable(void);
extern int	sb_warm_claim(const char *session, Oid owner, uint32 *generation);
extern void sb_warm_release(int slot, uint32 generation, bool ok);
extern void sb_warm_request(const char *session, Oid owner);
extern int	sb_warm_connect(int slot, uint32 generation);
extern void sb_warm_retire_session(const char *session);

#endif							/* SB_LOCAL_WARM_H */
