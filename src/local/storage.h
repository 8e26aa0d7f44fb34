/*
 * storage.h
 *		The local backend's storage directory: session directories, their
 *		state.json, and deleting them, all through directory descriptors so
 *		that nothing a sandbox plants makes the host touch anything else.
 *
 * Layout, under cloudrun_sandbox.local_root (by default
 * <data directory>/cloudrun_sandbox), per database:
 *		<database oid>/sessions/<s>/state.json	cwd, env, generation (replaced atomically)
 *		<database oid>/sessions/<s>/workspace/	bound read-write at /workspace
 *		<database oid>/sessions/<s>/tmp/		bound read-write at /tmp
 *		<database oid>/sessions/<s>/host/background/<h>.log	a background process's output
 *		<database oid>/sessions/<s>/host/background/<h>.exit	its exit code
 *		<database oid>/sessions/<s>/host/background/<h>.pid		its sandbox's first process
 *		<database oid>/sessions/<s>/background/	0.1.0's background files (read, never written)
 *		<database oid>/trash/					what is being deleted, and what could not be
 * A session made with a disk quota (0.4.0 on) has instead its workspace/,
 * tmp/ and background/ (its processes' logs) in a disk image, mounted at
 * sessions/<s>/fs/ (layout in quota.h); state.json and host/ stay outside it.
 * host/ is never bound into a sandbox (driver_local.c hands a background
 * sandbox its files as descriptors); 0.1.0 bound background/ at
 * /run/background, so its sandboxes could write there.
 * <s> is the session argument the driver gets, an opaque path component.
 */
#ifndef SB_LOCAL_STORAGE_H
#define SB_LOCAL_STORAGE_H

#include "cloudrun_sandbox.h"

/* The path of sessions/<s>[/<sub>], for bwrap's binds and for messages only. */
extern char *sb_storage_root_path(void);
extern char *sb_storage_session_path(const char *session, const char *sub);

/*
 * A descriptor (O_DIRECTORY, close-on-exec; the caller closes it) of
 * sessions/<s>, each level opened without following symlinks; with create,
 * the levels are made first.  Without create, -1 (errno ENOENT) if it does
 * not exist.  Any other failure is an ERROR.
 */
extern int	sb_storage_open_session(const char *session, bool create);

/*
 * Like sb_storage_open_session without create, for sessions/<s> (or with
 * session NULL sessions/ itself), but never an ERROR: -1 with errno set on
 * any failure.  For the worker, which reads background processes' files
 * outside any transaction.
 */
extern int	sb_storage_try_open_session(const char *session);

/* Creates directory sub of sessions/<s> (mode 0700) unless it exists. */
extern void sb_storage_make_subdir(const char *session, const char *sub);

/*
 * sb_storage_files_dir returns the directory below sessions/<s> that holds
 * workspace/, tmp/ and background/: "fs" for a session with a disk image,
 * "" for one without (made before 0.4.0, or with no quota).
 */
extern const char *sb_storage_files_dir(const char *session);

/* sb_storage_quota_kb is the disk quota of a session (0: none). */
extern int64 sb_storage_quota_kb(const char *session);

/* The driver's storage callbacks (see driver.h). */
extern void sb_storage_prepare_session(const char *session, bool fresh);
extern void sb_storage_delete_session(const char *session, const char *location);
extern bool sb_storage_load_state(const char *session, SbState *state);
extern void sb_storage_store_state(const char *session, const SbState *state);

#endif							/* SB_LOCAL_STORAGE_H */
