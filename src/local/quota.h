/*
 * quota.h
 *		The local backend's per-session disk quota: one ext4 image per
 *		session, mounted with fuse2fs, holding the directories the sandbox
 *		writes.  See quota.c.
 *
 * Layout of a session with a quota (storage.h has the rest):
 *		sessions/<s>/disk.img			the image (never seen by a sandbox)
 *		sessions/<s>/disk.lock			flock'ed while the image is made, mounted or unmounted
 *		sessions/<s>/disk.pid			"<pid> <start time>" of the fuse2fs serving it
 *		sessions/<s>/disk.quota			the quota it was made with, in kB
 *		sessions/<s>/fs/				the mount point; in the image:
 *		sessions/<s>/fs/workspace/		bound at /workspace
 *		sessions/<s>/fs/tmp/			bound at /tmp
 *		sessions/<s>/fs/background/		background processes' logs, bound at /run/background
 *										in a background sandbox
 * A session without disk.img (made before 0.4.0, or with the quota 0) keeps
 * its plain directories, unbounded.
 */
#ifndef SB_LOCAL_QUOTA_H
#define SB_LOCAL_QUOTA_H

#include "postgres.h"

#define SB_QUOTA_IMAGE "disk.img"
#define SB_QUOTA_MOUNT "fs"

/* cloudrun_sandbox.local_disk_quota, in kB (0: none), and the programs' paths. */
extern int	sb_local_disk_quota_kb;

/*
 * sb_quota_owner is the role whose session the next storage is made for (set
 * by sb_prepare_exec); sb_quota_new_kb is the quota it gets: the role's own
 * setting (ALTER ROLE ... SET) when the background worker makes it, else
 * this backend's.
 */
extern Oid	sb_quota_owner;
extern int64 sb_quota_new_kb(void);

/* sb_quota_read_role reads (in a transaction) role's quota for the worker's later use. */
extern void sb_quota_read_role(Oid role);

/* sb_quota_init defines the settings (from _PG_init). */
extern void sb_quota_init(void);

/* sb_quota_has_image tells whether the session whose directory is session_fd has an image. */
extern bool sb_quota_has_image(int session_fd);

/*
 * sb_quota_make makes the image of a new session (session_fd, its directory;
 * session, its storage key), sized for quota_kb of usable space, with
 * workspace/, tmp/ and background/ in it, and mounts it.
 */
extern void sb_quota_make(int session_fd, const char *session, int64 quota_kb);

/*
 * sb_quota_ensure_mounted mounts the session's image unless a live fuse2fs
 * serves it already; a dead one's mount is detached and the image checked
 * first.  With probe (never in the background worker's loop) the mount is
 * also asked (statfs) whether it answers.
 */
extern void sb_quota_ensure_mounted(int session_fd, const char *session, bool probe);

/*
 * sb_quota_unmount unmounts dir/fs (dir_fd is dir, dir_path its path) if it
 * is a mount, lazily when it is busy, and stops its fuse2fs: for a session
 * being deleted.  Never an ERROR: false (with a WARNING) if it stays mounted.
 */
extern bool sb_quota_unmount(int dir_fd, const char *dir_path);

/* sb_quota_size_kb reads the quota the session's image was made with (disk.quota); 0 if none. */
extern int64 sb_quota_size_kb(int session_fd);

#endif							/* SB_LOCAL_QUOTA_H */
