/*
 * test_rmtree.c
 *		Unit tests of src/local/rmtree.c, the deletion of session directories,
 *		under AddressSanitizer: trees with symlinks out of them, FIFOs, hard
 *		links, directories without permissions, directories nested deeper than
 *		a path can name, a process swapping directories for symlinks while the
 *		deletion runs, and mounts inside the tree.  Prints TAP.
 *
 * Run as root, the tests that need an ordinary owner run in a child that
 * becomes nobody (root ignores permissions), and the mount test runs in a
 * mount namespace of its own; the children report back through a pipe.
 */
#define _GNU_SOURCE
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "local/rmtree.h"

static char base[64];			/* this run's directory */
static int	report_fd = -1;		/* in a child: where its results go */
static int	ready_fd = -1;		/* in a racer: tells the parent it runs */

/* ready tells the parent that a racer has started racing. */
static void
ready(void)
{
	if (ready_fd >= 0)
	{
		(void) !write(ready_fd, "r", 1);
		close(ready_fd);
		ready_fd = -1;
	}
}

/* check records one result: printed here, or sent to the parent from a child. */
static void
check(int cond, const char *name)
{
	if (report_fd >= 0)
	{
		dprintf(report_fd, "%d %s\n", cond ? 1 : 0, name);
		return;
	}
	ok(cond, "%s", name);
}

/* path_of returns base/rel in a static buffer (one of a few, in turn). */
static const char *
path_of(const char *rel)
{
	static char bufs[4][4096];
	static int	next = 0;
	char	   *b = bufs[next++ % 4];

	snprintf(b, 4096, "%s/%s", base, rel);
	return b;
}

/* count_entries counts the entries of a directory, -1 if it cannot be read. */
static int
count_entries(const char *dir)
{
	DIR		   *d = opendir(dir);
	struct dirent *de;
	int			n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* make_files creates n empty files prefix1..prefixN in dir. */
static void
make_files(const char *dir, const char *prefix, int n)
{
	char		p[4096];

	for (int i = 1; i <= n; i++)
	{
		snprintf(p, sizeof(p), "%s/%s%d", dir, prefix, i);
		close(open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	}
}

/* make_target (re)creates base/target with 300 files and a file "keep" with content. */
static void
make_target(void)
{
	int			fd;

	mkdir(path_of("target"), 0755);
	make_files(path_of("target"), "t", 300);
	fd = open(path_of("target/keep"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	(void) !write(fd, "precious", 8);
	close(fd);
}

/* target_intact tells whether base/target still has its 301 files and "keep" its content. */
static int
target_intact(void)
{
	char		buf[16] = {0};
	int			fd = open(path_of("target/keep"), O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	(void) !read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return count_entries(path_of("target")) == 301 && strcmp(buf, "precious") == 0;
}

/* open_fds counts this process's open descriptors. */
static int
open_fds(void)
{
	return count_entries("/proc/self/fd");
}

/* rm removes base/rel with sb_rmtree_at. */
static int
rm(const char *rel, SbRmtreeStats *stats)
{
	int			dir = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int			r = sb_rmtree_at(dir, rel, stats);

	close(dir);
	return r;
}

/* A tree with every kind of entry a sandbox can make, pointing out of it. */
static void
test_kinds(void)
{
	SbRmtreeStats st;
	struct sockaddr_un sa;
	int			s;
	struct stat before, after;
	int			fds = open_fds();

	make_target();
	mkdir(path_of("t1"), 0700);
	mkdir(path_of("t1/a"), 0700);
	mkdir(path_of("t1/a/b"), 0700);
	make_files(path_of("t1/a/b"), "f", 50);
	make_files(path_of("t1"), "g", 50);
	symlink(path_of("target"), path_of("t1/dirlink"));
	symlink(path_of("target"), path_of("t1/a/b/dirlink"));
	symlink(path_of("target/keep"), path_of("t1/filelink"));
	symlink("loop", path_of("t1/loop"));
	symlink("/nonexistent", path_of("t1/dangling"));
	link(path_of("target/keep"), path_of("t1/hardlink"));
	mkfifo(path_of("t1/fifo"), 0600);
	mkfifo(path_of("t1/a/fifo"), 0000);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path_of("t1/sock"));
	(void) !bind(s, (struct sockaddr *) &sa, sizeof(sa));
	close(s);
	stat(path_of("target"), &before);

	check(rm("t1", &st) && st.failed == 0 && st.mounts == 0,
		  "a tree of files, FIFOs, a socket and symlinks is removed");
	check(access(path_of("t1"), F_OK) != 0 && errno == ENOENT, "nothing of it is left");
	check(st.removed == 111, "every entry was counted once");
	check(target_intact(), "what its symlinks and hard link point to is untouched");
	stat(path_of("target"), &after);
	check(before.st_mode == after.st_mode, "and the target's mode is unchanged");
	check(rm("t1", &st), "removing a tree that is not there succeeds");
	symlink(path_of("target"), path_of("t2"));
	check(rm("t2", &st) && access(path_of("t2"), F_OK) != 0 && target_intact(),
		  "a tree that is a symlink: the symlink goes, not its target");
	check(open_fds() == fds, "no descriptor is left open");
}

/* Directories whose owner took every permission away. */
static void
test_permissions(void)
{
	SbRmtreeStats st;

	make_target();
	mkdir(path_of("p"), 0700);
	mkdir(path_of("p/locked"), 0700);
	mkdir(path_of("p/locked/a"), 0700);
	mkdir(path_of("p/locked/a/b"), 0700);
	make_files(path_of("p/locked/a/b"), "f", 20);
	symlink(path_of("target"), path_of("p/locked/a/b/out"));
	chmod(path_of("p/locked/a/b"), 0);
	chmod(path_of("p/locked/a"), 0);
	chmod(path_of("p/locked"), 0);
	mkdir(path_of("p/ro"), 0700);
	make_files(path_of("p/ro"), "r", 20);
	chmod(path_of("p/ro"), 0500);
	mkdir(path_of("p/wo"), 0700);
	make_files(path_of("p/wo"), "w", 20);
	chmod(path_of("p/wo"), 0300);
	mkdir(path_of("p/sticky"), 0700);
	make_files(path_of("p/sticky"), "s", 5);
	chmod(path_of("p/sticky"), 01000);
	chmod(path_of("p"), 0);

	check(rm("p", &st) && st.failed == 0, "directories with mode 000, 0500, 0300 and 01000 are removed");
	check(access(path_of("p"), F_OK) != 0, "nothing of them is left");
	check(target_intact(), "the target a locked directory pointed to is untouched");
	check(geteuid() == 0 || access(path_of("target"), W_OK) == 0, "and still writable");
}

/* A chain of directories far deeper than the walk holds descriptors, and than PATH_MAX. */
static void
test_deep(void)
{
	SbRmtreeStats st;
	int			fd;
	int			fds = open_fds();
	int			depth = 0;

	mkdir(path_of("deep"), 0700);
	fd = open(path_of("deep"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (depth = 0; depth < 1500; depth++)
	{
		int			next;

		if (mkdirat(fd, "a-long-directory-name", 0700) != 0)
			break;
		next = openat(fd, "a-long-directory-name", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(openat(fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		if (depth % 300 == 150)
			symlinkat(path_of("target"), fd, "out");
		if (depth % 400 == 200)
			fchmod(fd, 0);
		close(fd);
		fd = next;
	}
	close(fd);
	make_target();
	check(depth == 1500, "a chain of 1,500 directories (paths of 33,000 bytes) is made");
	check(rm("deep", &st) && st.failed == 0, "and removed");
	check(st.moved > 0, "moving the too-deep parts up as it goes");
	check(access(path_of("deep"), F_OK) != 0, "nothing of it is left");
	check(target_intact(), "the target its symlinks pointed to is untouched");
	check(open_fds() == fds, "no descriptor is left open");
}

/*
 * racer swaps dI and lI (a symlink to the target) in dir, as fast as it can,
 * until killed: what a sandbox process does to a walk that goes by path.
 */
static void
racer(const char *dir, int n)
{
	char		d[16][16], l[16][16];
	int			fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	for (int i = 0; i < n; i++)
	{
		snprintf(d[i], 16, "d%d", i + 1);
		snprintf(l[i], 16, "l%d", i + 1);
	}
	for (;;)
	{
		for (int i = 0; i < n; i++)
			(void) renameat2(fd, d[i], fd, l[i], RENAME_EXCHANGE);
		ready();
	}
}

/* mover moves a directory up and down the tree and fills it, until killed. */
static void
mover(const char *dir)
{
	int			fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	unsigned	n = 0;

	for (;;)
	{
		char		name[32];

		(void) renameat(fd, "m", fd, "a/b/m");
		(void) renameat(fd, "a/b/m", fd, "a/m");
		(void) renameat(fd, "a/m", fd, "m");
		snprintf(name, sizeof(name), "m/f%u", n++ % 1000);
		close(openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		(void) mkdirat(fd, "a", 0700);
		(void) mkdirat(fd, "a/b", 0700);
		(void) mkdirat(fd, "m", 0700);
		ready();
	}
}

/* start starts fn(dir) in a child; returns its pid. */
static pid_t
start(void (*fn) (const char *, int), const char *dir, int n)
{
	int			p[2];
	pid_t		pid;
	char		c;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid == 0)
	{
		close(p[0]);
		ready_fd = p[1];
		fn(dir, n);
		_exit(0);
	}
	close(p[1]);
	(void) !read(p[0], &c, 1);	/* until it runs */
	close(p[0]);
	return pid;
}

/* stop kills a child started by start(). */
static void
stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* mover_fn adapts mover() to start(). */
static void
mover_fn(const char *dir, int n)
{
	mover(dir);
}

/* make_race_tree makes r/ws: directories d1..d10 of files, symlinks l1..l10 to the target. */
static void
make_race_tree(void)
{
	mkdir(path_of("r"), 0700);
	mkdir(path_of("r/ws"), 0700);
	for (int i = 1; i <= 10; i++)
	{
		char		rel[64];

		snprintf(rel, sizeof(rel), "r/ws/d%d", i);
		mkdir(path_of(rel), 0700);
		make_files(path_of(rel), "f", 30);
		snprintf(rel, sizeof(rel), "r/ws/l%d", i);
		symlink(path_of("target"), path_of(rel));
	}
	make_files(path_of("r/ws"), "m", 100);
}

/* A process of the sandbox races the deletion. */
static void
test_races(void)
{
	SbRmtreeStats st;
	int			intact = 1, removed = 1;

	for (int round = 0; round < 10; round++)
	{
		pid_t		pid;

		make_target();
		make_race_tree();
		pid = start(racer, path_of("r/ws"), 10);
		removed &= rm("r", &st);
		stop(pid);
		intact &= target_intact();
		if (!removed)
			rm("r", &st);
	}
	check(intact, "10 deletions racing a process that swaps directories for symlinks to a "
		  "target leave the target intact");
	check(removed, "and each removes the whole tree");

	make_target();
	mkdir(path_of("mv"), 0700);
	mkdir(path_of("mv/ws"), 0700);
	symlink(path_of("target"), path_of("mv/ws/out"));
	{
		pid_t		pid = start(mover_fn, path_of("mv/ws"), 0);
		int			done;

		(void) rm("mv", &st);
		stop(pid);
		done = rm("mv", &st);
		check(done && access(path_of("mv"), F_OK) != 0,
			  "a deletion racing a process that moves and fills a directory ends, "
			  "and the next one removes what is left");
	}
	check(target_intact(), "the target is intact");
}

/* Mounts inside the tree, a tmpfs and a bind mount of the same file system, are not crossed. */
static void
test_mounts(void)
{
	SbRmtreeStats st;

	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
	{
		check(1, "# SKIP mounts: no mount namespace here");
		return;
	}
	make_target();
	mkdir(path_of("mt"), 0700);
	mkdir(path_of("mt/ws"), 0700);
	mkdir(path_of("mt/ws/tmpfs"), 0700);
	mkdir(path_of("mt/ws/bind"), 0700);
	make_files(path_of("mt/ws"), "f", 20);
	if (mount("tmpfs", path_of("mt/ws/tmpfs"), "tmpfs", 0, "size=1m") != 0 ||
		mount(path_of("target"), path_of("mt/ws/bind"), NULL, MS_BIND, NULL) != 0)
	{
		check(1, "# SKIP mounts: cannot mount here");
		return;
	}
	make_files(path_of("mt/ws/tmpfs"), "k", 5);
	check(!rm("mt", &st) && st.mounts == 2, "a deletion leaves a tmpfs and a bind mount inside the tree in place");
	check(count_entries(path_of("mt/ws/tmpfs")) == 5 && target_intact(), "with everything on them");
	check(count_entries(path_of("mt/ws")) == 2, "and removes everything else");
	umount(path_of("mt/ws/tmpfs"));
	umount(path_of("mt/ws/bind"));
	check(rm("mt", &st) && target_intact(), "once unmounted, the rest goes");
}

/* in_child runs fn in a child (as nobody, when drop_root and we are root) and reports its results. */
static void
in_child(void (*fn) (void), bool drop_root, const char *what)
{
	int			p[2];
	pid_t		pid;
	FILE	   *f;
	char		line[512];
	int			status;

	if (pipe2(p, O_CLOEXEC) != 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0)
	{
		close(p[0]);
		report_fd = p[1];
		if (drop_root && geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		prctl(PR_SET_DUMPABLE, 1);	/* for LeakSanitizer, after setuid */
		fn();
		exit(0);
	}
	close(p[1]);
	f = fdopen(p[0], "r");
	while (fgets(line, sizeof(line), f) != NULL)
	{
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#')
			printf("%s\n", line);
		else
			ok(line[0] == '1', "%s", line + 2);
	}
	fclose(f);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child ends cleanly (no leak)", what);
}

int
main(void)
{
	snprintf(base, sizeof(base), "/tmp/test_rmtree.XXXXXX");
	if (mkdtemp(base) == NULL)
		return 2;
	if (geteuid() == 0)
		(void) !chown(base, 65534, 65534);
	in_child(test_kinds, true, "kinds");
	in_child(test_permissions, true, "permissions");
	in_child(test_deep, true, "deep");
	in_child(test_races, true, "races");
	in_child(test_mounts, false, "mounts");
	{
		SbRmtreeStats st;
		char	   *slash = strrchr(base, '/');
		int			tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		ok(sb_rmtree_at(tmp, slash + 1, &st), "the test's own directory is removed with it");
		close(tmp);
	}
	return tap_done();
}
