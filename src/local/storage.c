/*
 * storage.c
 *		The local backend's storage directory (layout in storage.h): session
 *		directories, their state.json, and deleting them.
 *
 * The sandbox sees, and can change at any moment (also while this code
 * runs), what is inside workspace/, tmp/ and background/ of its session:
 * symlinks, FIFOs, hard links, renames, directories without permissions.
 * Everything above those three is the host's.  So the host never opens, by
 * name, a path the sandbox can write:
 *  - the storage root is opened as a directory, and each level below it with
 *    openat(O_DIRECTORY|O_NOFOLLOW) relative to the one above; directories are
 *    made with mkdirat;
 *  - state.json (in sessions/<s>/, which no sandbox sees) is read with
 *    openat(O_NOFOLLOW|O_NONBLOCK) and fstat'ed to be a regular file, and
 *    replaced atomically: the new state is written into state.json.spare (the
 *    state before the last, kept for this; O_NOFOLLOW, a regular file with
 *    one link, flock'ed), synced, then exchanged with state.json
 *    (renameat2 RENAME_EXCHANGE); where that cannot be done, written as a new
 *    file (O_CREAT|O_EXCL|O_NOFOLLOW), synced, then renamed over it;
 *  - trees are deleted by rmtree.c, which never follows a symlink or crosses
 *    a mount;
 *  - a dropped session's directory stays as it is until the drop commits
 *    (so a rollback finds it untouched); then the reaper renames it into
 *    trash/ (renameat between two directory descriptors) and deletes it.
 * Paths built here only name things in messages, and the directories the
 * host owns that bwrap binds.  The root itself is configured by the
 * superuser: it may be reached through symlinks of theirs.
 */
#include "local/storage.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "driver.h"
#include "local/quota.h"
#include "local/rmtree.h"

#define SB_STATE_FILE "state.json"
#define SB_STATE_SPARE "state.json.spare"
#define SB_STATE_MAX_BYTES (64 * 1024 * 1024)

/*
 * default_storage_root returns, creating it (mode 0700) if missing, the
 * storage directory used when cloudrun_sandbox.local_root is empty:
 * cloudrun_sandbox/<name of the data directory> next to the data directory,
 * outside it (so that base backups, crash recovery and the data directory's
 * filesystem never see the workspaces), one per cluster even when several
 * data directories share a parent.
 */
static char *
default_storage_root(void)
{
	static char *root = NULL;
	char		parent[MAXPGPATH];
	char	   *name;
	char	   *dirs[2];

	if (root != NULL)
		return root;

	/*
	 * 0.1.0 kept sessions in the data directory.  An install that has them
	 * there keeps using them (its sessions stay where their files are), and
	 * the server log says how to move them out.
	 */
	{
		char	   *legacy = psprintf("%s/cloudrun_sandbox", DataDir);
		struct stat st;

		if (lstat(legacy, &st) == 0 && S_ISDIR(st.st_mode))
		{
			ereport(LOG,
					(errmsg("cloudrun_sandbox: sessions are kept in \"%s\", inside the data directory",
							legacy),
					 errdetail("This is where version 0.1.0 kept them; base backups and crash recovery "
							   "walk that directory."),
					 errhint("With the server stopped, move the directory out and set "
							 "cloudrun_sandbox.local_root to its new place.")));
			root = MemoryContextStrdup(TopMemoryContext, legacy);
			return root;
		}
	}
	strlcpy(parent, DataDir, sizeof(parent));
	canonicalize_path(parent);
	name = pstrdup(last_dir_separator(parent) ? last_dir_separator(parent) + 1 : parent);
	get_parent_directory(parent);
	dirs[0] = psprintf("%s/cloudrun_sandbox", parent);
	canonicalize_path(dirs[0]);
	dirs[1] = psprintf("%s/%s", dirs[0], name);
	for (int i = 0; i < 2; i++)
	{
		struct stat st;

		if (mkdir(dirs[i], S_IRWXU) != 0 && errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create the local backend's storage directory \"%s\": %m",
							dirs[i]),
					 errdetail("cloudrun_sandbox.local_root is empty, so sessions are kept in "
							   "\"%s\", next to the data directory.", dirs[1]),
					 errhint("Create \"%s\", owned by the server's operating-system user with mode 0700, "
							 "or set cloudrun_sandbox.local_root to a directory outside the data directory "
							 "that this user owns.", dirs[0])));
		if (stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
			(st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the local backend's storage directory \"%s\" is not a directory that only "
							"the server's operating-system user can write", dirs[i]),
					 errhint("Make it a directory owned by that user with mode 0700, or set "
							 "cloudrun_sandbox.local_root.")));
	}
	root = MemoryContextStrdup(TopMemoryContext, dirs[1]);
	return root;
}

/* storage_root returns cloudrun_sandbox.local_root or its default. */
static char *
storage_root(void)
{
	if (sb_local_root != NULL && sb_local_root[0] != '\0')
		return sb_local_root;
	return default_storage_root();
}

/* sb_storage_root_path is storage_root, for the warm pool's socket directory. */
char *
sb_storage_root_path(void)
{
	return storage_root();
}

/* db_dir_name is this database's directory under the root (the "bucket prefix"). */
static char *
db_dir_name(void)
{
	return psprintf("%u", MyDatabaseId);
}

char *
sb_storage_session_path(const char *session, const char *sub)
{
	return sub ? psprintf("%s/%u/sessions/%s/%s", storage_root(), MyDatabaseId, session, sub)
		: psprintf("%s/%u/sessions/%s", storage_root(), MyDatabaseId, session);
}

/* level_path names levels 0..n of a walk from the root, for messages. */
static char *
level_path(const char *const *names, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, storage_root());
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "/%s", names[i]);
	return buf.data;
}

/*
 * open_levels opens the root, then names[0..n-1] each relative to the one
 * before, with create making each first.  Returns the last descriptor, or -1
 * with errno set and *failed the number of names opened before the failure
 * (-1: the root itself).  Holds no descriptor on return but the result.
 */
static int
open_levels(const char *const *names, int n, bool create, int *failed)
{
	const char *root = storage_root();
	int			fd;

	if (create && mkdir(root, S_IRWXU) != 0 && errno != EEXIST)
	{
		*failed = -1;
		return -1;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
	{
		*failed = -1;
		return -1;
	}
	for (int i = 0; i < n; i++)
	{
		int			next;

		if (create && mkdirat(fd, names[i], S_IRWXU) != 0 && errno != EEXIST)
			next = -1;
		else
			next = openat(fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
		{
			int			save = errno;

			close(fd);
			errno = save;
			*failed = i;
			return -1;
		}
		close(fd);
		fd = next;
	}
	return fd;
}

/* report_level raises the ERROR for a failed open_levels (errno still set). */
static void
report_level(const char *const *names, int failed)
{
	char	   *path = level_path(names, failed + 1);

	if (errno == ELOOP || errno == ENOTDIR)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("\"%s\" in the sandbox storage is not a directory", path),
				 errdetail("Below cloudrun_sandbox.local_root, every level must be a directory, "
						   "not a symlink.")));
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not open directory \"%s\": %m", path),
			 errhint("Check cloudrun_sandbox.local_root; the server's operating-system user "
					 "must be able to write there.")));
}

/*
 * open_db_level opens <root>/<database oid>/<name> (name NULL: the database's
 * directory).  -1 (errno ENOENT) if missing and not create; other failures
 * are ERRORs.
 */
static int
open_db_level(const char *name, bool create)
{
	const char *names[2] = {db_dir_name(), name};
	int			n = name ? 2 : 1;
	int			failed;
	int			fd = open_levels(names, n, create, &failed);

	if (fd < 0 && !(errno == ENOENT && !create))
		report_level(names, failed);
	return fd;
}

int
sb_storage_open_session(const char *session, bool create)
{
	const char *names[3] = {db_dir_name(), "sessions", session};
	int			failed;
	int			fd = open_levels(names, 3, create, &failed);

	if (fd < 0 && !(errno == ENOENT && !create))
		report_level(names, failed);
	return fd;
}

int
sb_storage_try_open_session(const char *session)
{
	const char *names[3] = {db_dir_name(), "sessions", session};
	MemoryContext cxt = CurrentMemoryContext;
	volatile int fd = -1;
	volatile int save = 0;

	PG_TRY();
	{
		int			failed;

		fd = open_levels(names, session ? 3 : 2, false, &failed);
		save = errno;
	}
	PG_CATCH();
	{
		/* Only the default root's checks raise one: nothing to release. */
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		fd = -1;
		save = EACCES;
	}
	PG_END_TRY();
	errno = save;
	return fd;
}

const char *
sb_storage_files_dir(const char *session)
{
	int			fd = sb_storage_try_open_session(session);
	bool		image = fd >= 0 && sb_quota_has_image(fd);

	if (fd >= 0)
		close(fd);
	return image ? SB_QUOTA_MOUNT : "";
}

int64
sb_storage_quota_kb(const char *session)
{
	int			fd = sb_storage_try_open_session(session);
	int64		kb = fd >= 0 ? sb_quota_size_kb(fd) : 0;

	if (fd >= 0)
		close(fd);
	return kb;
}

/* make_subdir creates directory name in dirfd (mode 0700) unless it is one already. */
static bool
make_subdir(int dirfd, const char *name)
{
	struct stat st;

	if (mkdirat(dirfd, name, S_IRWXU) == 0)
		return true;
	if (errno != EEXIST)
		return false;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return false;
	if (!S_ISDIR(st.st_mode))
	{
		errno = ENOTDIR;
		return false;
	}
	return true;
}

void
sb_storage_make_subdir(const char *session, const char *sub)
{
	int			fd = sb_storage_open_session(session, true);

	if (!make_subdir(fd, sub))
	{
		int			save = errno;

		close(fd);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", sb_storage_session_path(session, sub))));
	}
	close(fd);
}

/* is_dir_at tells whether name in dirfd is a directory (not a symlink to one). */
static bool
is_dir_at(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/*
 * remove_tree_at deletes dirfd/name with everything below it (rmtree.c),
 * reporting what is left as a WARNING; true if it is gone.  what names the
 * tree in the message.
 */
static bool
remove_tree_at(int dirfd, const char *name, const char *what)
{
	SbRmtreeStats stats;

	if (sb_rmtree_at(dirfd, name, &stats))
		return true;
	if (stats.mounts > 0)
		ereport(WARNING,
				(errmsg("left %ld director%s on another file system in place in \"%s\"",
						stats.mounts, stats.mounts == 1 ? "y" : "ies", what),
				 errdetail("The first is \"%s\"; a session's deletion never crosses a mount.",
						   stats.first)));
	if (stats.failed > 0 || stats.mounts == 0)
	{
		errno = stats.first_errno;
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not delete all of \"%s\"", what),
				 errdetail("%ld entr%s could not be removed, the first \"%s\": %m.",
						   Max(stats.failed, 1L), stats.failed == 1 ? "y" : "ies", stats.first)));
	}
	return false;
}

/* trash_path names an entry of the trash, for messages. */
static char *
trash_path(const char *name)
{
	return psprintf("%s/%u/trash/%s", storage_root(), MyDatabaseId, name);
}

/*
 * move_to_trash renames sessions/<session> (sessions is its descriptor) to
 * trash/<session>.<pid>.<n>, a name no other drop (of this process, or of a
 * crashed one) has left there, and returns that name.  Closes sessions.
 */
static char *
move_to_trash(int sessions, const char *session)
{
	static uint32 counter = 0;
	int			trash;
	char	   *to = NULL;
	int			rc = -1;

	PG_TRY();
	{
		trash = open_db_level("trash", true);
	}
	PG_CATCH();
	{
		close(sessions);
		PG_RE_THROW();
	}
	PG_END_TRY();
	for (int tries = 0; tries < 100 && rc != 0; tries++)
	{
		to = psprintf("%s.%d.%u", session, MyProcPid, ++counter);
		rc = renameat2(sessions, session, trash, to, RENAME_NOREPLACE);
		if (rc != 0 && errno == EINVAL)
			rc = renameat(sessions, session, trash, to);	/* no RENAME_NOREPLACE here */
		if (rc != 0 && errno != EEXIST && errno != ENOTEMPTY)
			break;
	}
	if (rc != 0)
	{
		int			save = errno;

		close(sessions);
		close(trash);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not move session directory \"%s\" to \"%s\": %m",
						sb_storage_session_path(session, NULL), trash_path(to))));
	}
	close(sessions);
	close(trash);
	return to;
}

/*
 * unmount_at unmounts the disk image of the session directory dirfd/name
 * (path, its path), if it has one mounted: a tree is never deleted across a
 * mount.
 */
static void
unmount_at(int dirfd, const char *name, const char *path)
{
	int			fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return;
	(void) sb_quota_unmount(fd, path);
	close(fd);
}

/* unmount_session is unmount_at for sessions/<session> (sessions is its descriptor). */
static void
unmount_session(int sessions, const char *session)
{
	unmount_at(sessions, session, sb_storage_session_path(session, NULL));
}

/* remove_from_trash deletes trash/<name>, reporting what is left as a WARNING. */
static void
remove_from_trash(const char *name)
{
	int			trash = open_db_level("trash", false);

	if (trash < 0)
		return;
	/* Left mounted by a deletion that failed half-way. */
	unmount_at(trash, name, trash_path(name));
	(void) remove_tree_at(trash, name, trash_path(name));
	close(trash);
}

/*
 * with_image makes (make) or mounts the disk image of the session whose
 * directory is fd, and closes fd.  The worker never asks the mount itself
 * (see quota.c).
 */
static void
with_image(int fd, const char *session, bool make)
{
	PG_TRY();
	{
		if (make)
			sb_quota_make(fd, session, sb_quota_new_kb());
		else
			sb_quota_ensure_mounted(fd, session, !sb_driver_nonblocking);
	}
	PG_CATCH();
	{
		close(fd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	close(fd);
}

void
sb_storage_prepare_session(const char *session, bool fresh)
{
	int			sessions;
	int			fd;

	if (!fresh)
	{
		/*
		 * The common case: it is all there (with an image, mounted; the
		 * worker never asks the mount itself, see quota.c).
		 */
		fd = sb_storage_open_session(session, false);
		if (fd >= 0)
		{
			bool		ready;

			if (sb_quota_has_image(fd))
			{
				with_image(fd, session, false);
				return;
			}
			ready = is_dir_at(fd, "workspace") && is_dir_at(fd, "tmp");
			close(fd);
			if (ready)
				return;
		}
	}
	sessions = open_db_level("sessions", true);
	if (fresh && faccessat(sessions, session, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
	{
		/*
		 * Left under the name by an earlier session: out of the way at once
		 * (whatever of it cannot be deleted stays in the trash), then deleted.
		 */
		unmount_session(sessions, session);
		remove_from_trash(move_to_trash(sessions, session));
		sessions = open_db_level("sessions", true);
	}
	if (!make_subdir(sessions, session) ||
		(fd = openat(sessions, session, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
	{
		int			save = errno;

		close(sessions);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", sb_storage_session_path(session, NULL))));
	}
	close(sessions);
	if (sb_quota_new_kb() > 0)
	{
		/* A new session's files go into an image of the quota's size (quota.c). */
		with_image(fd, session, true);
		return;
	}
	if (!make_subdir(fd, "workspace") || !make_subdir(fd, "tmp"))
	{
		int			save = errno;

		close(fd);
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create the directories of \"%s\": %m",
						sb_storage_session_path(session, NULL))));
	}
	close(fd);
}

/*
 * sb_storage_delete_session deletes the directory of a session that is gone
 * (its drop committed, or its creation rolled back): out of the way into the
 * trash at once, then deleted; whatever cannot be deleted stays in the trash,
 * reported as a WARNING.
 */
void
sb_storage_delete_session(const char *session, const char *location)
{
	int			sessions = open_db_level("sessions", false);

	if (sessions < 0)
		return;
	if (faccessat(sessions, session, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
	{
		close(sessions);
		return;
	}
	unmount_session(sessions, session);
	remove_from_trash(move_to_trash(sessions, session));
}

bool
sb_storage_load_state(const char *session, SbState *state)
{
	int			dir = sb_storage_open_session(session, false);
	int			fd;
	int			save;
	struct stat st;
	char	   *text;
	size_t		len = 0;
	char		errbuf[256];

	memset(&st, 0, sizeof(st));
	if (dir < 0)
		return false;
	fd = openat(dir, SB_STATE_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	save = errno;
	close(dir);
	if (fd < 0 && save == ENOENT)
		return false;
	if (fd >= 0 && fstat(fd, &st) != 0)
	{
		save = errno;
		close(fd);
		fd = -1;
	}
	if ((fd < 0 && save == ELOOP) || (fd >= 0 && !S_ISREG(st.st_mode)))
	{
		if (fd >= 0)
			close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("session state file \"%s\" is not a regular file",
						sb_storage_session_path(session, SB_STATE_FILE)),
				 errhint("Remove it; without it the session starts in /workspace with an "
						 "empty environment.")));
	}
	if (fd < 0)
	{
		errno = save;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", sb_storage_session_path(session, SB_STATE_FILE))));
	}
	if (st.st_size > SB_STATE_MAX_BYTES)
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("session state file \"%s\" is too large",
						sb_storage_session_path(session, SB_STATE_FILE)),
				 errdetail("It is %lld bytes; a state file is read only up to %d bytes.",
						   (long long) st.st_size, SB_STATE_MAX_BYTES),
				 errhint("Fix or remove the file; without it the session starts in "
						 "/workspace with an empty environment.")));
	}
	text = palloc_extended(st.st_size + 1, MCXT_ALLOC_NO_OOM);
	while (text != NULL && len < (size_t) st.st_size)
	{
		ssize_t		n = read(fd, text + len, st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			save = n < 0 ? errno : 0;
			break;
		}
		len += n;
	}
	close(fd);
	if (text == NULL || len < (size_t) st.st_size)
	{
		errno = text == NULL ? ENOMEM : save != 0 ? save : EIO;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\": %m", sb_storage_session_path(session, SB_STATE_FILE))));
	}
	text[len] = '\0';
	if (!sb_state_decode(text, len, state, errbuf, sizeof(errbuf)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("session state file \"%s\" is damaged",
						sb_storage_session_path(session, SB_STATE_FILE)),
				 errdetail("%s", errbuf),
				 errhint("Fix or remove the file; without it the session starts in "
						 "/workspace with an empty environment.")));
	return true;
}

/*
 * store_by_exchange writes the state text into state.json.spare of the
 * session directory dir, syncs it and exchanges it with state.json: the same
 * atomic replace as a rename over it (a crash leaves the old state or the
 * new, never a torn one), without creating and deleting an inode per store,
 * which costs a filesystem far more than the write (ext4 also flushes the
 * replaced file's data on a rename over it).  The spare then holds the state
 * before, written over next time.  Stores of one session are serialized by
 * its session lock; the flock, taken without waiting, and the check that the
 * name still is the descriptor's file keep two stores apart all the same.
 * Returns 1 when stored, 0 when the spare cannot be used (the caller stores
 * by renaming a new file; a spare that is not a plain file of its own goes),
 * -1 on an error (errno set, *step what failed).
 */
static int
store_by_exchange(int dir, const char *text, size_t len, const char **step)
{
	int			fd = openat(dir, SB_STATE_SPARE,
							O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
							S_IRUSR | S_IWUSR);
	struct stat st;
	struct stat named;
	int			save;

	if (fd < 0 && errno == ELOOP)
		(void) unlinkat(dir, SB_STATE_SPARE, 0);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
	{
		close(fd);
		(void) unlinkat(dir, SB_STATE_SPARE, 0);
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 ||
		fstatat(dir, SB_STATE_SPARE, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
		named.st_dev != st.st_dev || named.st_ino != st.st_ino)
	{
		close(fd);
		return 0;
	}
	*step = "write";
	if (sb_write_all(fd, text, len) && ftruncate(fd, (off_t) len) == 0 &&
		(*step = "sync", pg_fsync(fd) == 0))
	{
		*step = "rename";
		if (renameat2(dir, SB_STATE_SPARE, dir, SB_STATE_FILE, RENAME_EXCHANGE) == 0 ||
			(errno == ENOENT && renameat(dir, SB_STATE_SPARE, dir, SB_STATE_FILE) == 0))
		{
			close(fd);
			return 1;
		}
		if (errno == EINVAL)
		{
			/* No RENAME_EXCHANGE on this filesystem. */
			close(fd);
			(void) unlinkat(dir, SB_STATE_SPARE, 0);
			return 0;
		}
	}
	save = errno;
	close(fd);
	errno = save;
	return -1;
}

void
sb_storage_store_state(const char *session, const SbState *state)
{
	char	   *text = sb_state_encode(state);
	size_t		len = strlen(text);
	char	   *tmp = psprintf(SB_STATE_FILE ".%d.tmp", MyProcPid);
	const char *step = "create";
	int			dir = sb_storage_open_session(session, false);
	int			fd;
	int			save;

	if (dir < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open directory \"%s\": %m", sb_storage_session_path(session, NULL))));
	switch (store_by_exchange(dir, text, len, &step))
	{
		case 1:
			close(dir);
			return;
		case -1:
			save = errno;
			close(dir);
			errno = save;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not %s \"%s\": %m", step,
							sb_storage_session_path(session, SB_STATE_SPARE))));
	}
	step = "create";
	fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
	if (fd < 0 && errno == EEXIST)
	{
		/* Left by a process of this pid that died: whatever it is, it goes. */
		(void) unlinkat(dir, tmp, 0);
		fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					S_IRUSR | S_IWUSR);
	}
	if (fd >= 0)
	{
		step = "write";
		if (sb_write_all(fd, text, len) && (step = "sync", pg_fsync(fd) == 0))
		{
			step = "close";
			if (close(fd) == 0)
			{
				step = "rename";
				if (renameat(dir, tmp, dir, SB_STATE_FILE) == 0)
				{
					close(dir);
					return;
				}
			}
			fd = -1;
		}
	}
	save = errno;
	if (fd >= 0)
		close(fd);
	if (strcmp(step, "create") != 0)
		(void) unlinkat(dir, tmp, 0);
	close(dir);
	errno = save;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not %s \"%s\": %m", step, sb_storage_session_path(session, tmp))));
}
