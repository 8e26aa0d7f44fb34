/*
 * rmtree.c
 *		Deleting a directory tree that a sandbox may still be changing.
 *
 * While the host deletes, a process of the sandbox may swap any directory of
 * the tree for a symlink (to anywhere on the host) and back, plant FIFOs,
 * take its own permissions away from directories, and nest directories
 * deeper than any path can name.  So every step names an entry relative to a
 * descriptor of the directory that holds it, and:
 *  - an entry that is not a directory is unlinked: a symlink itself, never
 *    what it points to; nothing but directories is ever opened;
 *  - a directory is opened with O_PATH|O_DIRECTORY|O_NOFOLLOW (which fails on
 *    a symlink swapped in since the directory was read), checked to be on the
 *    tree's own mount (device and mount id: a directory on another one is
 *    left alone), given back its owner's permissions through that descriptor,
 *    reopened as "." relative to it, emptied, and removed with
 *    unlinkat(AT_REMOVEDIR), which never follows a symlink either;
 *  - at most RMTREE_MAX_DEPTH directory descriptors are held at once: a
 *    directory deeper than that is moved up, with renameat2 between the two
 *    descriptors, into the top-level directory of the tree it is under (so it
 *    stays inside what the sandbox could reach anyway), and emptied from there;
 *  - a directory is read again until it is empty or a pass changed nothing,
 *    and all passes together are bounded, so a process that keeps adding
 *    entries cannot keep the caller busy forever.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "local/rmtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directory descriptors held at once (besides the one being opened). */
#define RMTREE_MAX_DEPTH 8

/* Re-reads of directories, over the whole walk, before it gives up. */
#define RMTREE_MAX_PASSES 1000000

typedef struct Walk
{
	int			fds[RMTREE_MAX_DEPTH + 1];	/* fds[0]: the tree; fds[d]: depth d */
	dev_t		dev;			/* the tree's device */
	bool		has_mnt_id;
	uint64_t	mnt_id;			/* and mount */
	long		passes_left;
	unsigned	next_name;		/* for names of moved directories */
	char		path[4096];		/* the directory being emptied, for messages */
	SbRmtreeStats *stats;
} Walk;

typedef enum
{
	DIR_OPENED,
	DIR_GONE,
	DIR_NOT_DIR,
	DIR_MOUNT,
	DIR_FAILED
} DirOpen;

static bool empty_dir(Walk *w, int d);

/* left_behind records an entry of the current directory (NULL: itself) that stays. */
static void
left_behind(Walk *w, const char *name, int err)
{
	if (err != 0)
		w->stats->failed++;
	if (w->stats->first[0] != '\0')
		return;
	w->stats->first_errno = err;
	/* cut to fit (the result is looked at, as -Wformat-truncation wants) */
	if (snprintf(w->stats->first, sizeof(w->stats->first), "%s%s%s", w->path,
				 name ? "/" : "", name ? name : "") < 0)
		w->stats->first[0] = '\0';
}

/* mount_of reads the mount id of an open file; false if the kernel cannot tell. */
static bool
mount_of(int fd, uint64_t *id)
{
#ifdef STATX_MNT_ID
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) == 0 &&
		(stx.stx_mask & STATX_MNT_ID) != 0)
	{
		*id = stx.stx_mnt_id;
		return true;
	}
#endif
	return false;
}

/* on_tree_mount tells whether an open directory is on the tree's own mount. */
static bool
on_tree_mount(Walk *w, int fd, const struct stat *st)
{
	uint64_t	id;

	if (st->st_dev != w->dev)
		return false;
	if (!w->has_mnt_id)
		return true;
	return mount_of(fd, &id) && id == w->mnt_id;
}

/*
 * chmod_fd changes the mode of the file an O_PATH descriptor refers to.
 * fchmod() refuses O_PATH descriptors, and a directory without permissions
 * cannot be opened otherwise; /proc/self/fd/N names that very file, whatever
 * is renamed meanwhile.
 */
static int
chmod_fd(int fd, mode_t mode)
{
	char		proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return chmod(proc, mode);
}

/*
 * open_dir opens directory name of parent for reading, if it is one, on the
 * tree's mount (with check_mount), with its owner's permissions restored.
 */
static DirOpen
open_dir(Walk *w, int parent, const char *name, bool check_mount, int *out, int *err)
{
	struct stat st;
	int			pfd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	*err = 0;
	if (pfd < 0)
	{
		*err = errno;
		if (errno == ENOENT)
			return DIR_GONE;
		if (errno == ENOTDIR || errno == ELOOP)
			return DIR_NOT_DIR;
		return DIR_FAILED;
	}
	if (fstat(pfd, &st) != 0)
	{
		*err = errno;
		close(pfd);
		return DIR_FAILED;
	}
	if (!S_ISDIR(st.st_mode))
	{
		close(pfd);
		return DIR_NOT_DIR;
	}
	if (check_mount && !on_tree_mount(w, pfd, &st))
	{
		close(pfd);
		return DIR_MOUNT;
	}
	if ((st.st_mode & S_IRWXU) != S_IRWXU &&
		chmod_fd(pfd, (st.st_mode & 07777) | S_IRWXU) != 0)
	{
		*err = errno;
		close(pfd);
		return DIR_FAILED;
	}
	*out = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*out < 0)
		*err = errno;
	close(pfd);
	return *out < 0 ? DIR_FAILED : DIR_OPENED;
}

/*
 * move_up moves entry name of the directory at depth d (the deepest held)
 * into the top-level directory it is under, under a name of its own; true if
 * it is no longer there.
 */
static bool
move_up(Walk *w, int d, const char *name)
{
	for (int tries = 0; tries < 1000; tries++)
	{
		char		to[64];
		int			rc;

		snprintf(to, sizeof(to), ".sb-rmtree-%u", w->next_name++);
		rc = renameat2(w->fds[d], name, w->fds[1], to, RENAME_NOREPLACE);
		if (rc != 0 && errno == EINVAL)
			rc = renameat(w->fds[d], name, w->fds[1], to);	/* no RENAME_NOREPLACE here */
		if (rc == 0)
		{
			w->stats->moved++;
			return true;
		}
		if (errno == ENOENT)
			return true;		/* gone meanwhile */
		if (errno != EEXIST && errno != ENOTEMPTY)
			break;
	}
	left_behind(w, name, errno);
	return false;
}

/*
 * remove_entry removes one entry of the directory at depth d, whatever it is
 * by now; true if that changed the directory (it went, or was swapped).
 */
static bool
remove_entry(Walk *w, int d, const char *name, unsigned char type)
{
	int			parent = w->fds[d];
	int			fd;
	int			err;
	size_t		saved;
	long		left_before;

	if (type != DT_DIR)
	{
		if (unlinkat(parent, name, 0) == 0)
		{
			w->stats->removed++;
			return true;
		}
		if (errno == ENOENT)
			return true;		/* gone meanwhile */
		if (errno != EISDIR)
		{
			left_behind(w, name, errno);
			return false;
		}
		/* a directory (by now) */
	}
	if (d == RMTREE_MAX_DEPTH)
		return move_up(w, d, name);
	switch (open_dir(w, parent, name, true, &fd, &err))
	{
		case DIR_OPENED:
			break;
		case DIR_GONE:
			return true;
		case DIR_NOT_DIR:
			/* Swapped for a symlink or a file since it was read: that goes. */
			if (unlinkat(parent, name, 0) == 0)
			{
				w->stats->removed++;
				return true;
			}
			if (errno == ENOENT || errno == EISDIR)
				return true;	/* swapped again: the next pass sees it */
			left_behind(w, name, errno);
			return false;
		case DIR_MOUNT:
			w->stats->mounts++;
			left_behind(w, name, 0);
			return false;
		case DIR_FAILED:
			left_behind(w, name, err);
			return false;
	}

	left_before = w->stats->failed + w->stats->mounts;
	saved = strlen(w->path);
	if (snprintf(w->path + saved, sizeof(w->path) - saved, "/%s", name) < 0)
		w->path[saved] = '\0';
	w->fds[d + 1] = fd;
	(void) empty_dir(w, d + 1);
	w->path[saved] = '\0';
	if (unlinkat(parent, name, AT_REMOVEDIR) == 0)
	{
		w->stats->removed++;
		return true;
	}
	if (errno == ENOENT || errno == ENOTDIR)
		return true;			/* moved or swapped meanwhile: the next pass sees it */
	/* Not empty: what is left inside was counted there, unless it came since. */
	if ((errno != ENOTEMPTY && errno != EEXIST) ||
		w->stats->failed + w->stats->mounts == left_before)
		left_behind(w, name, errno);
	return false;
}

/*
 * empty_dir removes everything in the directory at depth d, and closes its
 * descriptor; true if it was found empty.
 */
static bool
empty_dir(Walk *w, int d)
{
	DIR		   *dir = fdopendir(w->fds[d]);
	bool		empty = false;
	long		base_failed = w->stats->failed;
	long		base_mounts = w->stats->mounts;
	bool		had_first = w->stats->first[0] != '\0';

	if (dir == NULL)
	{
		left_behind(w, NULL, errno);
		close(w->fds[d]);
		return false;
	}
	for (;;)
	{
		bool		progress = false;
		bool		seen = false;
		struct dirent *de;

		errno = 0;
		while ((de = readdir(dir)) != NULL)
		{
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			seen = true;
			if (remove_entry(w, d, de->d_name, de->d_type))
				progress = true;
			errno = 0;
		}
		if (errno != 0 && errno != ENOENT)
		{
			left_behind(w, NULL, errno);
			break;
		}
		if (!seen)
		{
			empty = true;
			break;
		}
		if (!progress || w->passes_left-- <= 0)
			break;
		/* The next pass looks at what is left again: count it once. */
		w->stats->failed = base_failed;
		w->stats->mounts = base_mounts;
		if (!had_first)
			w->stats->first[0] = '\0';
		rewinddir(dir);
	}
	closedir(dir);
	return empty;
}

bool
sb_rmtree_at(int parentfd, const char *name, SbRmtreeStats *stats)
{
	Walk		w;
	struct stat st;
	int			fd;
	int			err;

	memset(stats, 0, sizeof(*stats));
	memset(&w, 0, sizeof(w));
	w.stats = stats;
	w.passes_left = RMTREE_MAX_PASSES;
	snprintf(w.path, sizeof(w.path), "%s", name);
	switch (open_dir(&w, parentfd, name, false, &fd, &err))
	{
		case DIR_OPENED:
			break;
		case DIR_GONE:
			return true;
		case DIR_NOT_DIR:
			if (unlinkat(parentfd, name, 0) == 0 || errno == ENOENT)
				return true;
			left_behind(&w, NULL, errno);
			return false;
		case DIR_MOUNT:
		case DIR_FAILED:
			left_behind(&w, NULL, err);
			return false;
	}
	if (fstat(fd, &st) != 0)
	{
		left_behind(&w, NULL, errno);
		close(fd);
		return false;
	}
	w.dev = st.st_dev;
	w.has_mnt_id = mount_of(fd, &w.mnt_id);
	w.fds[0] = fd;
	(void) empty_dir(&w, 0);
	if (unlinkat(parentfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
		return true;
	if (stats->failed + stats->mounts == 0)
		left_behind(&w, NULL, errno);
	return false;
}
