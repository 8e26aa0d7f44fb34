/*
 * scrub.c
 *		What a warm sandbox's executor does after each command, so that the
 *		next one starts as in a fresh sandbox and nothing a command left
 *		behind keeps holding memory: it empties /dev/shm (a tmpfs, counted in
 *		no process's RLIMIT_AS) and removes the System V shared memory
 *		segments, semaphore sets and message queues of the sandbox's own IPC
 *		namespace (bwrap --unshare-ipc; a cold sandbox's vanish with it).
 *
 * It runs inside the sandbox, as the sandbox's user, after the command's
 * processes were killed and reaped (command.c); nothing here is the host's.
 */
#define _GNU_SOURCE
#include "scrub.h"

#include <dirent.h>
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

/* empty_dir removes everything inside the directory open as fd (which it closes); stays on dev. */
static void
empty_dir(int fd, dev_t dev, int depth)
{
	DIR		   *d = fdopendir(fd);
	struct dirent *e;

	if (d == NULL)
	{
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL)
	{
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev)
			continue;
		if (S_ISDIR(st.st_mode))
		{
			int			sub;

			if (depth >= 64)
				continue;
			/* A directory the command made unreadable is made readable first. */
			(void) fchmodat(dirfd(d), e->d_name, 0700, 0);
			sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				empty_dir(sub, dev, depth + 1);
			(void) unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
		}
		else
			(void) unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
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

/* sb_scrub_sandbox empties /dev/shm and the sandbox's System V IPC namespace. */
void
sb_scrub_sandbox(void)
{
	int			fd = open(SHM_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd >= 0 && fstat(fd, &st) == 0)
		empty_dir(fd, st.st_dev, 0);
	else if (fd >= 0)
		close(fd);
	remove_ipc("shm", rm_shm);
	remove_ipc("sem", rm_sem);
	remove_ipc("msg", rm_msg);
}
