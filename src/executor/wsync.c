/*
 * wsync.c
 *		Workspace sync of the cloud executor: a session's workspace is a base
 *		snapshot object (D/workspace/<id>.tar, a plain GNU tar or a level-0
 *		--listed-incremental dump) followed by the increments state.json
 *		lists (D/workspace/<id>.inc.tar, level > 0 --listed-incremental
 *		archives of what one command changed).
 *
 * All archive work is the system GNU tar's, run without a shell: restore is
 * `tar -x` of the base and `tar -x --listed-incremental=/dev/null` of each
 * increment (which also deletes and renames what the increment's directory
 * records say); a runner's snapshot file (snar) is made without reading file
 * contents by `tar -c -f /dev/null --listed-incremental=SNAR`, and each
 * increment by `tar -c -f - --listed-incremental=SNAR.new` from a copy of
 * it.  "Nothing changed" is told without tar, by a fingerprint of the tree's
 * metadata (names, types, modes, owners, sizes, inode numbers, mtimes and
 * ctimes) walked with openat/fstatat, never following a symlink.
 *
 * File timestamps come from the kernel's coarse clock, which may lag behind
 * the clock tar reads its snapshot time from: after each snar is made we
 * wait until the coarse clock has passed it, so a file changed afterwards
 * is never older than the snapshot.
 */
#define _GNU_SOURCE
#include "wsync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TAR_STDERR_CAP 2048
#define MSG_SIZE 1024
#define SNAPSHOT_TIMEOUT_MS (15L * 60 * 1000)
/* The fingerprint walk gives up (and says "changed") deeper than this or on longer paths. */
#define WALK_MAX_DEPTH 256
#define WALK_MAX_PATH 65536

/* sb_wsync_make_dirs creates a directory and its missing parents, like mkdir -p. */
bool
sb_wsync_make_dirs(const char *path)
{
	char *copy = sb_strdup(path);
	bool ok = true;

	if (copy == NULL)
		return false;
	for (char *p = copy + 1; ok; p++)
	{
		if (*p != '/' && *p != '\0')
			continue;
		{
			char c = *p;

			*p = '\0';
			if (mkdir(copy, 0755) != 0 && errno != EEXIST)
				ok = false;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	sb_free(copy);
	return ok;
}

/* close_fd closes a descriptor if it is open and marks it closed. */
static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* close_pipes closes both ends of three pipes. */
static void
close_pipes(int in[2], int op[2], int ep[2])
{
	for (int i = 0; i < 2; i++)
	{
		close_fd(&in[i]);
		close_fd(&op[i]);
		close_fd(&ep[i]);
	}
}

/* describe_tar_failure formats tar's exit status and what it said into msg. */
static void
describe_tar_failure(int status, SbBuf *errb, char *msg, size_t msglen)
{
	size_t n = errb->len;

	while (n > 0 && (errb->data[n - 1] == '\n' || errb->data[n - 1] == ' '))
		n--;
	for (size_t i = 0; i < n; i++)
		if (errb->data[i] == '\n' || errb->data[i] == '\0')
			errb->data[i] = ' ';
	if (status > 128)
		snprintf(msg, msglen, "tar was killed by signal %d%s%.*s", status - 128,
				 n > 0 ? ": " : "", (int) n, errb->data);
	else
		snprintf(msg, msglen, "tar exited with status %d%s%.*s", status,
				 n > 0 ? ": " : "", (int) n, n > 0 ? errb->data : "");
}

/*
 * sb_wsync_tar runs the system tar with argv (never through a shell), feeding it
 * input (may be NULL) on standard input and collecting its standard output
 * into out (may be NULL: discarded); tar is killed if out fills up.  Returns
 * tar's exit status (128 + signal if killed) with its complaints in msg, or
 * -1 with msg set if tar could not be run.
 */
int
sb_wsync_tar(char *const argv[], const char *input, size_t input_len, SbBuf *out, char *msg,
		size_t msglen)
{
	int in[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
	SbBuf errb;
	pid_t pid;
	pid_t w;
	int status = 0;
	size_t written = 0;
	char chunk[65536];

	msg[0] = '\0';
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
	{
		snprintf(msg, msglen, "cannot create pipes for tar: %s", strerror(errno));
		close_pipes(in, op, ep);
		return -1;
	}
	pid = fork();
	if (pid < 0)
	{
		snprintf(msg, msglen, "cannot start tar: %s", strerror(errno));
		close_pipes(in, op, ep);
		return -1;
	}
	if (pid == 0)
	{
		if (dup2(in[0], 0) < 0 || dup2(op[1], 1) < 0 || dup2(ep[1], 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		signal(SIGPIPE, SIG_DFL);
		execvp("tar", argv);
		dprintf(2, "cannot execute tar: %s", strerror(errno));
		_exit(127);
	}
	close_fd(&in[0]);
	close_fd(&op[1]);
	close_fd(&ep[1]);
	if (input == NULL || input_len == 0)
		close_fd(&in[1]);
	for (int i = 0; i < 3; i++)
	{
		int fd = i == 0 ? in[1] : i == 1 ? op[0] : ep[0];

		if (fd >= 0)
			fcntl(fd, F_SETFL, O_NONBLOCK);
	}
	(void) fcntl(op[0], F_SETPIPE_SZ, 1024 * 1024);
	sb_buf_init(&errb, TAR_STDERR_CAP);

	while (in[1] >= 0 || op[0] >= 0 || ep[0] >= 0)
	{
		struct pollfd pfd[3] = {
			{.fd = in[1], .events = POLLOUT},
			{.fd = op[0], .events = POLLIN},
			{.fd = ep[0], .events = POLLIN},
		};

		if (poll(pfd, 3, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			snprintf(msg, msglen, "poll failed while running tar: %s", strerror(errno));
			kill(pid, SIGKILL);
			break;
		}
		if (pfd[0].revents)
		{
			size_t left = input_len - written;
			ssize_t n = write(in[1], input + written, left < 1048576 ? left : 1048576);

			if (n > 0)
				written += (size_t) n;
			if (written == input_len || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&in[1]);
		}
		if (pfd[1].revents)
		{
			ssize_t n = read(op[0], chunk, sizeof(chunk));

			if (n > 0 && out != NULL &&
				(!sb_buf_append(out, chunk, (size_t) n) || out->truncated))
			{
				/* Too big (or out of memory): stop tar, the caller reports it. */
				out->truncated = true;
				kill(pid, SIGKILL);
				close_fd(&op[0]);
			}
			else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&op[0]);
		}
		if (pfd[2].revents)
		{
			ssize_t n = read(ep[0], chunk, sizeof(chunk));

			if (n > 0)
				sb_buf_append(&errb, chunk, (size_t) n);
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				close_fd(&ep[0]);
		}
	}
	close_fd(&in[1]);
	close_fd(&op[0]);
	close_fd(&ep[0]);
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w < 0)
		status = 127 << 8;
	status = WIFEXITED(status)	   ? WEXITSTATUS(status)
			 : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
								   : 127;
	if (msg[0] == '\0')
		describe_tar_failure(status, &errb, msg, msglen);
	sb_buf_free(&errb);
	return status;
}


/* under_workspace says whether name is session_dir/workspace/<something>. */
static bool
under_workspace(const char *session_dir, const char *name)
{
	size_t		dlen = strlen(session_dir);

	return strncmp(name, session_dir, dlen) == 0 &&
		strncmp(name + dlen, "/workspace/", 11) == 0 && name[dlen + 11] != '\0' &&
		strstr(name + dlen + 11, "/") == NULL;
}

bool
sb_wsync_check_names(const char *session_dir, const SbState *state, char *msg, size_t msglen)
{
	if (state->workspace != NULL && !under_workspace(session_dir, state->workspace))
	{
		snprintf(msg, msglen,
				 "the session's state names a workspace snapshot outside the session: %.400s",
				 state->workspace);
		return false;
	}
	for (int i = 0; i < state->n_increments; i++)
		if (!under_workspace(session_dir, state->increments[i]))
		{
			snprintf(msg, msglen,
					 "the session's state names a workspace increment outside the session: %.400s",
					 state->increments[i]);
			return false;
		}
	return true;
}

/*
 * unpack_object downloads one snapshot object and unpacks it into the
 * workspace, as an increment if incremental; false with msg set.
 */
static bool
unpack_object(SbGcsConfig *gcs, const char *ws, size_t max_snapshot, const char *name,
			  bool incremental, size_t *bytes, char *msg, size_t msglen)
{
	char	   *data;
	size_t		len;
	SbError		err;
	char		tarmsg[MSG_SIZE / 2];
	char	   *plain[] = {"tar", "-x", "-f", "-", "-C", (char *) ws, NULL};
	char	   *incr[] = {"tar", "-x", "--listed-incremental=/dev/null", "-f", "-", "-C",
	(char *) ws, NULL};
	const char *what = incremental ? "increment" : "snapshot";
	int			status;

	gcs->timeout_ms = SNAPSHOT_TIMEOUT_MS;
	status = sb_gcs_download(gcs, name, max_snapshot, &data, &len, NULL, &err);
	gcs->timeout_ms = 0;
	if (status != 0)
	{
		if (err.kind == SB_ERR_NOT_FOUND)
			snprintf(msg, msglen, "workspace %s %.400s is missing", what, name);
		else
			snprintf(msg, msglen, "cannot read workspace %s %.400s: %s", what, name,
					 err.message);
		return false;
	}
	status = sb_wsync_tar(incremental ? incr : plain, data, len, NULL, tarmsg, sizeof(tarmsg));
	free(data);
	if (status != 0)
	{
		snprintf(msg, msglen, "cannot unpack workspace %s %.400s: %s", what, name, tarmsg);
		return false;
	}
	if (bytes != NULL)
		*bytes += len;
	return true;
}

bool
sb_wsync_restore(SbGcsConfig *gcs, const char *workspace_dir, size_t max_snapshot,
				 const SbState *state, size_t *base_bytes, size_t *inc_bytes, char *msg,
				 size_t msglen)
{
	size_t		b = 0,
				i = 0;

	if (state->workspace != NULL &&
		!unpack_object(gcs, workspace_dir, max_snapshot, state->workspace, false, &b, msg,
					   msglen))
		return false;
	for (int k = 0; k < state->n_increments; k++)
		if (!unpack_object(gcs, workspace_dir, max_snapshot, state->increments[k], true, &i,
						   msg, msglen))
			return false;
	if (base_bytes)
		*base_bytes = b;
	if (inc_bytes)
		*inc_bytes = i;
	return true;
}

/* run_archive runs a tar that writes an archive to out (at most max bytes); false with msg set. */
static bool
run_archive(char *const argv[], size_t max, SbBuf *out, char *msg, size_t msglen)
{
	char		tarmsg[MSG_SIZE / 2];
	int			status;

	sb_buf_init(out, max);
	status = sb_wsync_tar(argv, NULL, 0, out, tarmsg, sizeof(tarmsg));
	if (out->truncated)
		snprintf(msg, msglen,
				 "the workspace is larger than %zu bytes "
				 "(CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES); its changes were not saved", max);
	/* GNU tar's status 1 means a file changed while it was read: still an archive. */
	else if (status != 0 && status != 1)
		snprintf(msg, msglen, "cannot archive the workspace: %s", tarmsg);
	else
		return true;
	sb_buf_free(out);
	return false;
}

bool
sb_wsync_archive(const char *workspace_dir, size_t max_snapshot, SbBuf *out, char *msg,
				 size_t msglen)
{
	char	   *argv[] = {"tar", "-c", "-f", "-", "-C", (char *) workspace_dir, ".", NULL};

	return run_archive(argv, max_snapshot, out, msg, msglen);
}

/* ---- fingerprint ---------------------------------------------------------- */

/* Walk state: a path buffer and an order-independent sum of per-entry digests. */
typedef struct Walk
{
	char	   *path;
	size_t		len;
	uint64_t	sum[4];
	uint64_t	count;
	bool		ok;
} Walk;

/* walk_add adds one entry (its path relative to the workspace and its stat) to the sum. */
static void
walk_add(Walk *w, const struct stat *st)
{
	unsigned char rec[WALK_MAX_PATH + 128];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint64_t	f[12] = {st->st_mode, st->st_uid, st->st_gid, (uint64_t) st->st_size,
		st->st_ino, st->st_nlink, (uint64_t) st->st_mtim.tv_sec, (uint64_t) st->st_mtim.tv_nsec,
		(uint64_t) st->st_ctim.tv_sec, (uint64_t) st->st_ctim.tv_nsec, st->st_rdev, w->len};

	memcpy(rec, f, sizeof(f));
	memcpy(rec + sizeof(f), w->path, w->len);
	if (EVP_Digest(rec, sizeof(f) + w->len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 32)
	{
		w->ok = false;
		return;
	}
	for (int i = 0; i < 4; i++)
	{
		uint64_t	v;

		memcpy(&v, md + 8 * i, 8);
		w->sum[i] += v;
	}
	w->count++;
}

/* walk_dir adds everything under the open directory fd (closed here) to the sum. */
static void
walk_dir(Walk *w, int fd, int depth)
{
	DIR		   *d;
	struct dirent *de;
	size_t		base = w->len;

	if (depth > WALK_MAX_DEPTH || (d = fdopendir(fd)) == NULL)
	{
		close(fd);
		w->ok = false;
		return;
	}
	while (w->ok && (errno = 0, de = readdir(d)) != NULL)
	{
		size_t		n = strlen(de->d_name);
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (base + 1 + n >= WALK_MAX_PATH)
		{
			w->ok = false;
			break;
		}
		w->path[base] = '/';
		memcpy(w->path + base + 1, de->d_name, n);
		w->len = base + 1 + n;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		{
			w->ok = false;
			break;
		}
		walk_add(w, &st);
		if (S_ISDIR(st.st_mode))
		{
			int			sub = openat(dirfd(d), de->d_name,
									 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			struct stat st2;

			/* The same directory that was stat'ed (not one swapped in since). */
			if (sub < 0 || fstat(sub, &st2) != 0 || st2.st_ino != st.st_ino ||
				st2.st_dev != st.st_dev)
			{
				if (sub >= 0)
					close(sub);
				w->ok = false;
				break;
			}
			walk_dir(w, sub, depth + 1);
		}
	}
	if (errno != 0)
		w->ok = false;
	w->len = base;
	closedir(d);
}

/* fingerprint digests the tree's metadata into out; false if it could not be walked. */
static bool
fingerprint(const char *ws, unsigned char out[32])
{
	Walk		w;
	struct stat st;
	int			fd = open(ws, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	memset(&w, 0, sizeof(w));
	w.ok = true;
	if (fd < 0 || fstat(fd, &st) != 0 || (w.path = malloc(WALK_MAX_PATH)) == NULL)
	{
		if (fd >= 0)
			close(fd);
		return false;
	}
	w.path[0] = '.';
	w.len = 1;
	walk_add(&w, &st);
	walk_dir(&w, fd, 0);
	free(w.path);
	if (!w.ok)
		return false;
	memcpy(out, w.sum, 24);
	memcpy(out + 24, &w.count, 8);
	return true;
}

/* ---- snapshot files --------------------------------------------------------- */

/* wait_coarse_clock waits until file timestamps (the coarse clock) are later than now. */
static void
wait_coarse_clock(void)
{
	struct timespec fine,
				coarse;

	clock_gettime(CLOCK_REALTIME, &fine);
	for (int i = 0; i < 200; i++)
	{
		struct timespec pause = {0, 1000 * 1000};

		clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
		if (coarse.tv_sec > fine.tv_sec ||
			(coarse.tv_sec == fine.tv_sec && coarse.tv_nsec > fine.tv_nsec))
			return;
		nanosleep(&pause, NULL);
	}
}

/* copy_file copies our private file from to to (replacing it); false with msg set. */
static bool
copy_file(const char *from, const char *to, char *msg, size_t msglen)
{
	int			in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int			out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	char		buf[65536];
	ssize_t		n = 0;
	bool		ok = in >= 0 && out >= 0;

	while (ok && (n = read(in, buf, sizeof(buf))) > 0)
		ok = sb_write_all(out, buf, (size_t) n);
	if (n < 0)
		ok = false;
	if (!ok)
		snprintf(msg, msglen, "cannot copy the workspace's snapshot file: %s", strerror(errno));
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) != 0)
		ok = false;
	return ok;
}

bool
sb_wsync_begin(SbWsync *w, char *msg, size_t msglen)
{
	char		tarmsg[MSG_SIZE / 2];
	char		arg[128];
	char	   *argv[] = {"tar", "-c", "-f", "/dev/null", arg, "--no-check-device", "-C",
	(char *) w->workspace_dir, ".", NULL};
	int			status;

	snprintf(w->dir, sizeof(w->dir), "/tmp/cloudrun-sandbox-wsync.XXXXXX");
	if (mkdtemp(w->dir) == NULL)
	{
		snprintf(msg, msglen, "cannot create a private directory in /tmp: %s", strerror(errno));
		w->dir[0] = '\0';
		return false;
	}
	snprintf(w->snar, sizeof(w->snar), "%s/snar", w->dir);
	snprintf(w->snar_new, sizeof(w->snar_new), "%s/snar.new", w->dir);
	snprintf(arg, sizeof(arg), "--listed-incremental=%s", w->snar);
	status = sb_wsync_tar(argv, NULL, 0, NULL, tarmsg, sizeof(tarmsg));
	if (status != 0 && status != 1)
	{
		snprintf(msg, msglen, "cannot make the workspace's snapshot file: %s", tarmsg);
		return false;
	}
	wait_coarse_clock();
	w->have_print = fingerprint(w->workspace_dir, w->print);
	w->have_pending = false;
	return true;
}

bool
sb_wsync_changed(SbWsync *w)
{
	w->have_pending = fingerprint(w->workspace_dir, w->pending);
	return !(w->have_pending && w->have_print && memcmp(w->pending, w->print, 32) == 0);
}

/* archive_into runs tar -c with --listed-incremental=snar.new into out. */
static bool
archive_into(SbWsync *w, SbBuf *out, char *msg, size_t msglen)
{
	char		arg[128];
	char	   *argv[] = {"tar", "-c", "-f", "-", arg, "--no-check-device", "-C",
	(char *) w->workspace_dir, ".", NULL};

	snprintf(arg, sizeof(arg), "--listed-incremental=%s", w->snar_new);
	if (!run_archive(argv, w->max_snapshot, out, msg, msglen))
		return false;
	wait_coarse_clock();
	return true;
}

bool
sb_wsync_increment(SbWsync *w, SbBuf *out, char *msg, size_t msglen)
{
	if (!copy_file(w->snar, w->snar_new, msg, msglen))
		return false;
	return archive_into(w, out, msg, msglen);
}

bool
sb_wsync_level0(SbWsync *w, SbBuf *out, char *msg, size_t msglen)
{
	if (unlink(w->snar_new) != 0 && errno != ENOENT)
	{
		snprintf(msg, msglen, "cannot remove the old snapshot file: %s", strerror(errno));
		return false;
	}
	return archive_into(w, out, msg, msglen);
}

void
sb_wsync_accept(SbWsync *w)
{
	if (rename(w->snar_new, w->snar) != 0)
		w->have_print = false;	/* keep the old snar; the next increment repeats this one's files */
	else
	{
		memcpy(w->print, w->pending, 32);
		w->have_print = w->have_pending;
	}
	w->have_pending = false;
}

void
sb_wsync_end(SbWsync *w)
{
	if (w->dir[0] == '\0')
		return;
	(void) unlink(w->snar);
	(void) unlink(w->snar_new);
	(void) rmdir(w->dir);
	w->dir[0] = '\0';
}
