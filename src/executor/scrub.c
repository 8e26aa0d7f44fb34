/*
 * scrub.c
 *		What a warm sandbox's executor does after each command, so that the
 *		next one starts as in a fresh sandbox and nothing a command left
 *		behind keeps holding memory: it empties /dev/shm (a tmpfs, counted in
 *		no process's RLIMIT_AS) and removes the System V shared memory
 *		segments, semaphore sets and message queues of the sandbox's own IPC
 *		namespace (bwrap --unshare-ipc; a cold sandbox's vanish with it), and
 *		its POSIX message queues (bwrap mounts them on /dev/mqueue).
 *
 * It runs inside the sandbox, as the sandbox's user, after the command's
 * processes were killed and reaped (command.c); nothing here is the host's.
 */
#define _GNU_SOURCE
#include "scrub.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define MQUEUE_DIR "/dev/mqueue"

/*
 * empty_level unlinks the non-directories in the directory open as fd (on
 * dev) and copies the name of one subdirectory into sub (empty if none).
 */
static void
empty_level(int fd, dev_t dev, char *sub, size_t subsize)
{
	int			dfd = dup(fd);
	DIR		   *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;

	sub[0] = '\0';
	if (d == NULL)
	{
		if (dfd >= 0)
			close(dfd);
		return;
	}
	/* A dup shares fd's position, which an earlier round left at the end. */
	rewinddir(d);
	while ((e = readdir(d)) != NULL)
	{
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev)
			continue;
		if (!S_ISDIR(st.st_mode))
			(void) unlinkat(fd, e->d_name, 0);
		else if (sub[0] == '\0' && strlen(e->d_name) < subsize)
			strcpy(sub, e->d_name);
	}
	closedir(d);
}

/*
 * empty_tree removes everything below the directory open as top, however
 * deep: each round walks down to a directory without subdirectories,
 * holding two descriptors at most, empties it, and removes it from its
 * parent.  Directories the command made unwritable or unsearchable are made
 * usable first (they are the sandbox user's own).
 */
static void
empty_tree(int top, dev_t dev)
{
	char		name[NAME_MAX + 1];
	char		last[NAME_MAX + 1];
	struct stat top_st;

	if (fstat(top, &top_st) != 0)
		return;
	/* Bounded, in case a directory cannot be removed (it is then left). */
	for (long round = 0; round < 1000000; round++)
	{
		int			fd = dup(top);
		int			parent;

		last[0] = '\0';
		if (fd < 0)
			return;
		for (;;)
		{
			int			sub;

			(void) fchmod(fd, S_IRWXU);
			empty_level(fd, dev, name, sizeof(name));
			if (name[0] == '\0')
				break;
			(void) fchmodat(fd, name, S_IRWXU, 0);
			sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
			{
				(void) unlinkat(fd, name, AT_REMOVEDIR);
				break;
			}
			close(fd);
			fd = sub;
			strcpy(last, name);
		}
		if (last[0] == '\0')
		{
			/* top itself has nothing left below it. */
			close(fd);
			return;
		}
		parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (parent < 0)
			return;
		if (unlinkat(parent, last, AT_REMOVEDIR) != 0 && errno != ENOENT)
		{
			close(parent);
			return;
		}
		close(parent);
	}
}

/* remove_ipc removes every object listed in /proc/sysvipc/WHAT with rm(id). */
static void
remove_ipc(const char *what, void (*rm) (int id))
{
	char		path[64];
	char		line[512];
	FILE	   *f;

	snprintf(path, sizeof(path), "/proc/sysvipc/%s", what);
	f = fopen(path, "re");
	if (f == NULL)
		return;
	/* The first line is a header; the second column of the others is the id. */
	if (fgets(line, sizeof(line), f) != NULL)
		while (fgets(line, sizeof(line), f) != NULL)
		{
			int			key,
						id;

			if (sscanf(line, "%d %d", &key, &id) == 2)
				rm(id);
		}
	fclose(f);
}

static void
rm_shm(int id)
{
	(void) shmctl(id, IPC_RMID, NULL);
}

static void
rm_sem(int id)
{
	(void) semctl(id, 0, IPC_RMID);
}

static void
rm_msg(int id)
{
	(void) msgctl(id, IPC_RMID, NULL);
}

/*
 * sb_scrub_sandbox empties /dev/shm, /dev/mqueue and the sandbox's System V IPC namespace,
 * only as the sandbox's PID 1 (as in command.c's kill_all): an executor run
 * anywhere else (by hand, or by a unit test, on the host) would empty the
 * host's /dev/shm and remove every segment it may, PostgreSQL's among them.
 */
void
sb_scrub_sandbox(void)
{
	int			fd;
	struct stat st;

	if (getpid() != 1)
		return;
	fd = open(SHM_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0 && fstat(fd, &st) == 0)
	{
		empty_tree(fd, st.st_dev);
		/* As bwrap made it, whatever mode the command gave it. */
		(void) fchmod(fd, S_IRWXU | S_IRGRP | S_IXGRP | S_IROTH | S_IXOTH);
	}
	if (fd >= 0)
		close(fd);
	/* POSIX message queues: mq_open needs no mount, the executor sees them here. */
	fd = open(MQUEUE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0)
		empty_tree(fd, st.st_dev);
	if (fd >= 0)
		close(fd);
	remove_ipc("shm", rm_shm);
	remove_ipc("sem", rm_sem);
	remove_ipc("msg", rm_msg);
}
