/*
 * fileops.c
 *		The executor's file operations: write, read, exists, delete, list,
 *		replace, search, find, upload and download, done with system calls
 *		(never through a shell, so no quoting can go wrong).
 *
 * A request's path is taken relative to the session's cwd and normalized
 * ("." and ".." removed), which gives the path as the sandbox sees it
 * (/workspace/..., /tmp/...).  It is mapped to the directory that really
 * holds /workspace or /tmp (the same directories, unless the environment
 * says otherwise), and its symbolic links are resolved: realpath() on the
 * longest existing prefix, dangling links followed by hand.  The resolved
 * path must lie inside one of the two directories, else the operation
 * fails with outside_sandbox.  Results name paths as the sandbox sees them.
 */
#define _GNU_SOURCE
#include "fileops.h"
#include "../common/sbutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <locale.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MAX_SYMLINKS 40
#define CHUNK 65536
#define MSG_SIZE 1024
#define TMP_ROOT "/tmp"

/* The two directories a path may lead into. */
typedef struct Roots
{
	char	   *ws_dir;			/* holds /workspace */
	char	   *tmp_dir;		/* holds /tmp */
	char	   *ws_real;		/* the same, symlinks resolved */
	char	   *tmp_real;
} Roots;

/* A request's path: as the sandbox sees it, and where it really is. */
typedef struct Target
{
	char	   *virt;			/* normalized: /workspace/a/b */
	char	   *real;			/* symlinks resolved (not the last one for delete) */
	bool		exists;
	struct stat st;				/* of real, when it exists */
} Target;

/* A directory walk for list and find. */
typedef struct Walk
{
	const SbFileRequest *req;
	SbFileResult *res;
	size_t		bytes;			/* estimated size of the items so far */
	bool		too_large;
} Walk;

/* now_ms reads the monotonic clock in milliseconds. */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* sb_file_set_error makes res an error result with a code and a message. */
void sb_file_set_error(SbFileResult *res, SbFileError code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void
sb_file_set_error(SbFileResult *res, SbFileError code, const char *fmt, ...)
{
	char		msg[MSG_SIZE];
	size_t		n;
	bool		repaired;
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	res->status = SB_STATUS_ERROR;
	res->code = code;
	sb_free(res->error);
	/* File names need not be UTF-8; JSON must be. */
	res->error = sb_utf8_repair(msg, strlen(msg), false, &n, &repaired);
}

/* set_errno reports a failed system call on a path, by errno. */
static void
set_errno(SbFileResult *res, int err, const char *what, const char *virt)
{
	switch (err)
	{
		case ENOENT:
			sb_file_set_error(res, SB_FERR_NOT_FOUND, "file \"%s\" does not exist", virt);
			break;
		case ENOTDIR:
			sb_file_set_error(res, SB_FERR_NOT_A_DIRECTORY,
					  "a component of the path \"%s\" is not a directory", virt);
			break;
		case EISDIR:
			sb_file_set_error(res, SB_FERR_IS_DIRECTORY, "\"%s\" is a directory", virt);
			break;
		case ENAMETOOLONG:
			sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "path \"%s\" is too long", virt);
			break;
		case EFBIG:
			sb_file_set_error(res, SB_FERR_TOO_LARGE, "cannot %s \"%s\": %s", what, virt,
					  strerror(err));
			break;
		case ENOSPC:
		case EDQUOT:
			sb_file_set_error(res, SB_FERR_DISK_FULL, "cannot %s \"%s\": %s", what, virt,
					  strerror(err));
			break;
		default:
			sb_file_set_error(res, SB_FERR_IO_ERROR, "cannot %s \"%s\": %s", what, virt,
					  strerror(err));
			break;
	}
}

/* join returns a/b (a may be "/"). */
static char *
join(const char *a, const char *b)
{
	size_t		alen = strlen(a);
	size_t		blen = strlen(b);
	char	   *s = sb_malloc(alen + blen + 2);

	if (s == NULL)
		return NULL;
	memcpy(s, a, alen);
	if (alen == 0 || a[alen - 1] != '/')
		s[alen++] = '/';
	memcpy(s + alen, b, blen + 1);
	return s;
}

/*
 * normalize makes path absolute against base (unless it is) and removes
 * empty and "." components and ".." with the component before it ("/.."
 * is "/").
 */
static char *
normalize(const char *base, const char *path)
{
	char	   *joined = path[0] == '/' ? sb_strdup(path) : join(base, path);
	char	   *out;
	size_t		o = 0;
	const char *p;

	if (joined == NULL || (out = sb_malloc(strlen(joined) + 2)) == NULL)
	{
		sb_free(joined);
		return NULL;
	}
	for (p = joined; *p;)
	{
		const char *start;
		size_t		len;

		while (*p == '/')
			p++;
		start = p;
		while (*p && *p != '/')
			p++;
		len = (size_t) (p - start);
		if (len == 0 || (len == 1 && start[0] == '.'))
			continue;
		if (len == 2 && start[0] == '.' && start[1] == '.')
		{
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		out[o++] = '/';
		memcpy(out + o, start, len);
		o += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	sb_free(joined);
	return out;
}

/* under says whether path is dir or lies below it. */
static bool
under(const char *path, const char *dir)
{
	size_t		n = strlen(dir);

	if (n == 1 && dir[0] == '/')
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* setting_dir reads a directory from the environment, without trailing slashes. */
static char *
setting_dir(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	size_t		n;

	if (v == NULL || v[0] != '/')
		v = dflt;
	n = strlen(v);
	while (n > 1 && v[n - 1] == '/')
		n--;
	return sb_strndup(v, n);
}

/* real_or_copy returns realpath(dir), or a copy of dir if that fails. */
static char *
real_or_copy(const char *dir)
{
	char	   *r = realpath(dir, NULL);

	return r ? r : sb_strdup(dir);
}

static void
roots_init(Roots *r)
{
	r->ws_dir = setting_dir("CLOUDRUN_SANDBOX_WORKSPACE", SB_WORKSPACE);
	r->tmp_dir = setting_dir("CLOUDRUN_SANDBOX_TMP", TMP_ROOT);
	r->ws_real = real_or_copy(r->ws_dir);
	r->tmp_real = real_or_copy(r->tmp_dir);
}

static void
roots_free(Roots *r)
{
	sb_free(r->ws_dir);
	sb_free(r->tmp_dir);
	sb_free(r->ws_real);
	sb_free(r->tmp_real);
}

/*
 * to_host maps a normalized sandbox path to the directory that holds it;
 * NULL if it is neither /workspace nor /tmp nor below them.
 */
static char *
to_host(const Roots *r, const char *virt)
{
	const char *dir;
	const char *rest;

	if (under(virt, SB_WORKSPACE))
		dir = r->ws_dir, rest = virt + strlen(SB_WORKSPACE);
	else if (under(virt, TMP_ROOT))
		dir = r->tmp_dir, rest = virt + strlen(TMP_ROOT);
	else
		return NULL;
	return rest[0] == '\0' ? sb_strdup(dir) : join(dir, rest + 1);
}

/*
 * resolve returns path (absolute, normalized) with every symbolic link
 * resolved, whether or not all of it exists: realpath() when it does, else
 * the resolved parent plus the last component; a dangling link is followed
 * to its target.  *exists says whether the whole path exists.  NULL with
 * errno set on failure (ENOTDIR, ELOOP, EACCES, ...).
 */
static char *
resolve(const char *path, int depth, bool *exists)
{
	char	   *r = realpath(path, NULL);
	const char *slash;
	char	   *parent;
	char	   *preal;
	char	   *cand;
	bool		pexists;
	struct stat st;

	*exists = r != NULL;
	if (r != NULL || errno != ENOENT)
		return r;
	slash = strrchr(path, '/');
	if (slash == NULL || slash[1] == '\0')
	{
		errno = ENOENT;
		return NULL;
	}
	parent = slash == path ? sb_strdup("/") : sb_strndup(path, (size_t) (slash - path));
	preal = parent ? resolve(parent, depth, &pexists) : NULL;
	sb_free(parent);
	if (preal == NULL)
		return NULL;
	cand = join(preal, slash + 1);
	if (cand != NULL && pexists && lstat(cand, &st) == 0 && S_ISLNK(st.st_mode))
	{
		char		target[PATH_MAX];
		ssize_t		n = readlink(cand, target, sizeof(target) - 1);
		char	   *next;

		sb_free(cand);
		if (n < 0 || depth >= MAX_SYMLINKS)
		{
			if (n >= 0)
				errno = ELOOP;
			sb_free(preal);
			return NULL;
		}
		target[n] = '\0';
		next = normalize(preal, target);
		sb_free(preal);
		r = next ? resolve(next, depth + 1, exists) : NULL;
		sb_free(next);
		return r;
	}
	sb_free(preal);
	return cand;
}

/*
 * locate resolves the request's path into *t; with follow false the last
 * component is not followed (the entry itself is looked at).  False with
 * res set to the error if the path is empty, leads outside the sandbox, or
 * cannot be resolved.
 */
static bool
locate(const Roots *roots, const SbFileRequest *req, bool follow, Target *t,
	   SbFileResult *res)
{
	const char *cwd = req->cwd && req->cwd[0] == '/' ? req->cwd : SB_WORKSPACE;
	char	   *host;
	int			rc;
	int			err;

	memset(t, 0, sizeof(*t));
	if (req->path[0] == '\0')
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "path must not be empty");
		return false;
	}
	if (strlen(req->path) >= PATH_MAX || strlen(cwd) >= PATH_MAX)
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "path \"%.200s...\" is too long", req->path);
		return false;
	}
	t->virt = normalize(cwd, req->path);
	host = t->virt ? to_host(roots, t->virt) : NULL;
	if (t->virt == NULL)
	{
		sb_file_set_error(res, SB_FERR_IO_ERROR, "out of memory");
		return false;
	}
	if (host == NULL)
	{
		sb_file_set_error(res, SB_FERR_OUTSIDE_SANDBOX, "path \"%s\" is outside the sandbox",
				  t->virt);
		return false;
	}
	if (follow || strcmp(t->virt, SB_WORKSPACE) == 0 || strcmp(t->virt, TMP_ROOT) == 0)
	{
		t->real = resolve(host, 0, &t->exists);
		err = errno;
	}
	else
	{
		/* The parent resolved, the entry itself as it is. */
		char	   *slash = strrchr(host, '/');
		char	   *parent = slash == host ? sb_strdup("/") :
			sb_strndup(host, (size_t) (slash - host));
		bool		pexists;
		char	   *preal = parent ? resolve(parent, 0, &pexists) : NULL;

		err = errno;
		t->real = preal ? join(preal, slash + 1) : NULL;
		sb_free(parent);
		sb_free(preal);
	}
	sb_free(host);
	if (t->real == NULL)
	{
		set_errno(res, err, "resolve", t->virt);
		return false;
	}
	if (!under(t->real, roots->ws_real) && !under(t->real, roots->tmp_real))
	{
		sb_file_set_error(res, SB_FERR_OUTSIDE_SANDBOX,
				  "path \"%s\" leads outside the sandbox through a symbolic link", t->virt);
		return false;
	}
	rc = follow ? stat(t->real, &t->st) : lstat(t->real, &t->st);
	t->exists = rc == 0;
	return true;
}

static void
target_free(Target *t)
{
	sb_free(t->virt);
	sb_free(t->real);
}

/*
 * refuse_directory_path fails a write whose path can only name a directory
 * ("t.txt/", "d/." or "d/.."): normalizing would drop that ending and write
 * a file called t.txt, or d.
 */
static bool
refuse_directory_path(const SbFileRequest *req, const Target *t, SbFileResult *res)
{
	if (!sb_path_names_directory(req->path))
		return false;
	sb_file_set_error(res, SB_FERR_IS_DIRECTORY,
					  "\"%s%s\" names a directory (it ends with \"/\"), not a file", t->virt,
					  strcmp(t->virt, "/") == 0 ? "" : "/");
	return true;
}

/* need_file fails unless the target exists and is not a directory. */
static bool
need_file(const Target *t, SbFileResult *res)
{
	if (!t->exists)
		sb_file_set_error(res, SB_FERR_NOT_FOUND, "file \"%s\" does not exist", t->virt);
	else if (S_ISDIR(t->st.st_mode))
		sb_file_set_error(res, SB_FERR_IS_DIRECTORY, "\"%s\" is a directory, not a file", t->virt);
	else
		return true;
	return false;
}

/* need_dir fails unless the target exists and is a directory. */
static bool
need_dir(const Target *t, SbFileResult *res)
{
	if (!t->exists)
		sb_file_set_error(res, SB_FERR_NOT_FOUND, "directory \"%s\" does not exist", t->virt);
	else if (!S_ISDIR(t->st.st_mode))
		sb_file_set_error(res, SB_FERR_NOT_A_DIRECTORY, "\"%s\" is not a directory", t->virt);
	else
		return true;
	return false;
}

/*
 * open_regular opens the target for reading; -1 with res set if it cannot,
 * or if it is not a regular file (a FIFO would block us).
 */
static int
open_regular(const Target *t, SbFileResult *res)
{
	int			fd = open(t->real, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
	{
		set_errno(res, errno, "open", t->virt);
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "\"%s\" is not a regular file", t->virt);
		return -1;
	}
	return fd;
}

/*
 * read_whole reads a regular file of at most max bytes into *buf (always
 * allocated on success); false with res set otherwise.
 */
static bool
read_whole(int fd, const Target *t, long long max, SbBuf *buf, SbFileResult *res)
{
	char		chunk[CHUNK];

	sb_buf_init(buf, (size_t) max + 1);
	/* Allocate now, so that an empty file gives an empty buffer, not NULL. */
	if (!sb_buf_append(buf, "x", 1))
		goto oom;
	buf->len = 0;
	for (;;)
	{
		ssize_t		n = read(fd, chunk, sizeof(chunk));

		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			set_errno(res, errno, "read", t->virt);
			sb_buf_free(buf);
			return false;
		}
		if (!sb_buf_append(buf, chunk, (size_t) n))
			goto oom;
		if (buf->len > (size_t) max)
		{
			sb_file_set_error(res, SB_FERR_TOO_LARGE,
					  "file \"%s\" is larger than the transfer limit of %lld bytes", t->virt,
					  max);
			sb_buf_free(buf);
			return false;
		}
	}
	return true;
oom:
	sb_file_set_error(res, SB_FERR_IO_ERROR, "out of memory reading \"%s\"", t->virt);
	sb_buf_free(buf);
	return false;
}

/*
 * make_parents creates the missing directories above real (which lies
 * inside root), like mkdir -p; false with res set on failure.
 */
static bool
make_parents(const char *real, const Target *t, SbFileResult *res)
{
	char	   *copy = sb_strdup(real);
	char	   *slash = copy ? strrchr(copy, '/') : NULL;
	bool		ok = true;

	if (copy == NULL)
	{
		sb_file_set_error(res, SB_FERR_IO_ERROR, "out of memory");
		return false;
	}
	if (slash == NULL || slash == copy)
	{
		sb_free(copy);
		return true;
	}
	*slash = '\0';
	for (char *p = copy + 1; ok; p++)
	{
		char		c = *p;
		struct stat st;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (stat(copy, &st) == 0)
		{
			if (!S_ISDIR(st.st_mode))
			{
				sb_file_set_error(res, SB_FERR_NOT_A_DIRECTORY,
						  "a component of the path \"%s\" is not a directory", t->virt);
				ok = false;
			}
		}
		else if (errno != ENOENT || (mkdir(copy, 0777) != 0 && errno != EEXIST))
		{
			set_errno(res, errno, "create a directory for", t->virt);
			ok = false;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	sb_free(copy);
	return ok;
}

/*
 * disk_has_room tells whether the file system of path's directory has room
 * for bytes more, once freed bytes (of the file it replaces) are freed, with
 * a block per 1 MB for its metadata; true when it cannot tell.
 */
static bool
disk_has_room(const char *path, size_t bytes, size_t freed)
{
	struct statvfs sv;
	char	   *dir = sb_strdup(path);
	char	   *slash = strrchr(dir, '/');
	bool		room = true;

	if (slash != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (statvfs(dir, &sv) == 0 && sv.f_frsize > 0)
		room = (unsigned long long) sv.f_bfree * sv.f_frsize + freed >=
			bytes + (bytes / (1024 * 1024) + 1) * sv.f_frsize;
	sb_free(dir);
	return room;
}

/* put_file implements file_write and file_upload. */
static void
put_file(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	size_t		total = req->data_len + (req->op == SB_FILE_WRITE ?
										 req->leading_newline + req->trailing_newline : 0);
	int			flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	int			fd;
	struct stat st;
	bool		ok;

	if (!locate(roots, req, true, &t, res) || refuse_directory_path(req, &t, res))
		goto done;
	if (t.exists && S_ISDIR(t.st.st_mode))
	{
		sb_file_set_error(res, SB_FERR_IS_DIRECTORY, "\"%s\" is a directory, not a file", t.virt);
		goto done;
	}
	if (total > (size_t) req->max_bytes)
	{
		sb_file_set_error(res, SB_FERR_TOO_LARGE,
				  "%zu bytes for \"%s\" are more than the transfer limit of %lld bytes",
				  total, t.virt, req->max_bytes);
		goto done;
	}
	if (!t.exists && !make_parents(t.real, &t, res))
		goto done;
	/* What cannot fit is refused before the file is touched. */
	if (!disk_has_room(t.real, total, t.exists && !(req->op == SB_FILE_WRITE && req->append) ?
					   (size_t) t.st.st_size : 0))
	{
		set_errno(res, ENOSPC, "write", t.virt);
		goto done;
	}
	flags |= req->op == SB_FILE_WRITE && req->append ? O_APPEND : O_TRUNC;
	fd = open(t.real, flags, 0666);
	if (fd < 0)
	{
		set_errno(res, errno, "open", t.virt);
		goto done;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "\"%s\" is not a regular file", t.virt);
		goto done;
	}
	res->changed = true;
	ok = (req->op != SB_FILE_WRITE || !req->leading_newline || sb_write_all(fd, "\n", 1)) &&
		sb_write_all(fd, req->data ? req->data : "", req->data_len) &&
		(req->op != SB_FILE_WRITE || !req->trailing_newline || sb_write_all(fd, "\n", 1));
	if (!ok)
	{
		int			err = errno;

		/* No partial file: a new one goes, an appended one is cut back. */
		if (!t.exists)
			(void) unlink(t.real);
		else if (ftruncate(fd, req->op == SB_FILE_WRITE && req->append ? st.st_size : 0) != 0)
		{
			/* the write's error is the one to report */
		}
		close(fd);
		set_errno(res, err, "write", t.virt);
		goto done;
	}
	if (close(fd) != 0)
	{
		int			err = errno;

		if (!t.exists)
			(void) unlink(t.real);
		set_errno(res, err, "write", t.virt);
		goto done;
	}
	res->count = (long long) total;
done:
	target_free(&t);
}

/* get_file implements file_download and file_read of a whole file. */
static void
get_file(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	SbBuf		buf;
	int			fd;

	if (!locate(roots, req, true, &t, res) || !need_file(&t, res))
		goto done;
	if (t.st.st_size > req->max_bytes)
	{
		sb_file_set_error(res, SB_FERR_TOO_LARGE,
				  "file \"%s\" is %lld bytes, more than the transfer limit of %lld bytes",
				  t.virt, (long long) t.st.st_size, req->max_bytes);
		goto done;
	}
	if ((fd = open_regular(&t, res)) < 0)
		goto done;
	if (read_whole(fd, &t, req->max_bytes, &buf, res))
	{
		res->data = buf.data;
		res->data_len = buf.len;
		res->count = (long long) buf.len;
	}
	close(fd);
done:
	target_free(&t);
}

/* read_lines implements file_read of a range of lines (from 1, inclusive). */
static void
read_lines(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	SbBuf		out;
	char		chunk[CHUNK];
	long long	line = 1;
	long long	first = req->start_line > 0 ? req->start_line : 1;
	long long	last = req->end_line;
	int			fd;

	if (last > 0 && first > last)
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT,
				  "start_line %lld is after end_line %lld", first, last);
		return;
	}
	if (!locate(roots, req, true, &t, res) || !need_file(&t, res) ||
		(fd = open_regular(&t, res)) < 0)
	{
		target_free(&t);
		return;
	}
	sb_buf_init(&out, (size_t) req->max_bytes + 1);
	sb_buf_append(&out, "x", 1);
	out.len = 0;
	while (last == 0 || line <= last)
	{
		ssize_t		n = read(fd, chunk, sizeof(chunk));
		const char *p = chunk;
		const char *end = chunk + (n > 0 ? n : 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			set_errno(res, errno, "read", t.virt);
			break;
		}
		if (n == 0)
			break;
		while (p < end && (last == 0 || line <= last))
		{
			const char *nl = memchr(p, '\n', (size_t) (end - p));
			const char *stop = nl ? nl + 1 : end;

			if (line >= first)
				sb_buf_append(&out, p, (size_t) (stop - p));
			if (nl)
				line++;
			p = stop;
		}
		if (out.len > (size_t) req->max_bytes || out.data == NULL)
		{
			sb_file_set_error(res, SB_FERR_TOO_LARGE,
					  "lines %lld to %lld of \"%s\" are more than the transfer limit of "
					  "%lld bytes", first, last > 0 ? last : line, t.virt, req->max_bytes);
			break;
		}
	}
	close(fd);
	if (res->status == SB_STATUS_SUCCEEDED)
	{
		res->data = out.data;
		res->data_len = out.len;
		res->count = (long long) out.len;
	}
	else
		sb_buf_free(&out);
	target_free(&t);
}

/* file_exists: whether the path exists (following links); false for a file used as a directory. */
static void
file_exists(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;

	if (locate(roots, req, true, &t, res))
		res->flag = t.exists;
	else if (res->code == SB_FERR_NOT_A_DIRECTORY || res->code == SB_FERR_NOT_FOUND)
	{
		/* "a.txt/b" does not exist: an answer, not an error. */
		res->status = SB_STATUS_SUCCEEDED;
		res->code = SB_FERR_NONE;
		sb_free(res->error);
		res->error = NULL;
		res->flag = false;
	}
	target_free(&t);
}

/*
 * file_delete removes a file, a symbolic link (not its target) or an empty
 * directory; a path that does not exist is no error (flag false).
 */
static void
file_delete(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;

	if (!locate(roots, req, false, &t, res))
		goto done;
	if (strcmp(t.virt, SB_WORKSPACE) == 0 || strcmp(t.virt, TMP_ROOT) == 0)
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "cannot delete \"%s\" itself", t.virt);
		goto done;
	}
	if (!t.exists)
		goto done;
	if (S_ISDIR(t.st.st_mode) ? rmdir(t.real) != 0 : unlink(t.real) != 0)
	{
		if (errno == ENOTEMPTY || errno == EEXIST)
			sb_file_set_error(res, SB_FERR_IS_DIRECTORY, "directory \"%s\" is not empty", t.virt);
		else if (errno == ENOENT)
			;					/* gone meanwhile: not deleted by us */
		else
			set_errno(res, errno, "delete", t.virt);
		goto done;
	}
	res->flag = true;
	res->changed = true;
done:
	target_free(&t);
}

/* utf8_string makes a JSON string of a name that need not be valid UTF-8. */
static json_t *
utf8_string(const char *s)
{
	size_t		n;
	bool		repaired;
	char	   *fixed = sb_utf8_repair(s, strlen(s), false, &n, &repaired);
	json_t	   *v = fixed ? json_stringn(fixed, n) : NULL;

	sb_free(fixed);
	return v;
}

/* add_item appends an item, stopping the walk once max_bytes is passed. */
static bool
add_item(Walk *w, json_t *item, size_t estimate)
{
	if (item == NULL || w->res->items == NULL ||
		json_array_append_new(w->res->items, item) != 0)
	{
		sb_file_set_error(w->res, SB_FERR_IO_ERROR, "out of memory");
		return false;
	}
	w->bytes += estimate;
	if (w->bytes > (size_t) w->req->max_bytes)
	{
		w->too_large = true;
		return false;
	}
	return true;
}

/* visit adds one directory entry to a listing, or to find's matches. */
static bool
visit(Walk *w, const char *virt, const char *name, const struct stat *st)
{
	json_t	   *path;
	const char *type;

	if (w->req->op == SB_FILE_FIND)
	{
		if (fnmatch(w->req->pattern, name, 0) != 0)
			return true;
		return add_item(w, utf8_string(virt), strlen(virt) + 4);
	}
	type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "directory" :
		S_ISLNK(st->st_mode) ? "symlink" : "other";
	path = utf8_string(virt);
	return add_item(w,
					path ? json_pack("{sosssIsisf}", "path", path, "type", type, "size",
									 (json_int_t) st->st_size, "mode",
									 (int) (st->st_mode & 07777), "mtime",
									 (double) st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9)
					: NULL,
					strlen(virt) + 100);
}

/* by_name orders directory entries by their bytes. */
static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* not_dots filters "." and ".." out of scandir(). */
static int
not_dots(const struct dirent *d)
{
	return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/*
 * walk visits a directory's entries in name order, descending into
 * subdirectories (never through symbolic links) when recursive.  An
 * unreadable subdirectory is listed but not entered.  False once the walk
 * must stop (res says why).
 */
static bool
walk(Walk *w, const char *real, const char *virt, bool recursive, bool top)
{
	struct dirent **names;
	int			n = scandir(real, &names, not_dots, by_name);
	bool		ok = true;

	if (n < 0)
	{
		if (top)
		{
			set_errno(w->res, errno, "list", virt);
			return false;
		}
		return true;
	}
	for (int i = 0; i < n; i++)
	{
		char	   *child_real = ok ? join(real, names[i]->d_name) : NULL;
		char	   *child_virt = ok ? join(virt, names[i]->d_name) : NULL;
		struct stat st;

		if (ok && (child_real == NULL || child_virt == NULL))
		{
			sb_file_set_error(w->res, SB_FERR_IO_ERROR, "out of memory");
			ok = false;
		}
		if (ok && strlen(child_real) < PATH_MAX && lstat(child_real, &st) == 0)
		{
			ok = visit(w, child_virt, names[i]->d_name, &st);
			if (ok && recursive && S_ISDIR(st.st_mode))
				ok = walk(w, child_real, child_virt, true, false);
		}
		sb_free(child_real);
		sb_free(child_virt);
		free(names[i]);
	}
	free(names);
	return ok;
}

/* finish_items checks the items' encoded size against the transfer limit. */
static void
finish_items(const SbFileRequest *req, SbFileResult *res, bool too_large, const char *what,
			 const char *virt)
{
	char	   *text = NULL;

	if (res->status != SB_STATUS_SUCCEEDED)
		return;
	if (!too_large)
	{
		text = json_dumps(res->items, JSON_COMPACT);
		too_large = text != NULL && strlen(text) > (size_t) req->max_bytes;
		if (text == NULL)
			sb_file_set_error(res, SB_FERR_IO_ERROR, "out of memory");
	}
	if (too_large)
		sb_file_set_error(res, SB_FERR_TOO_LARGE, "the %s of \"%s\" is larger than the transfer "
				  "limit of %lld bytes", what, virt, req->max_bytes);
	sb_free(text);
	if (res->status != SB_STATUS_SUCCEEDED)
	{
		json_decref(res->items);
		res->items = NULL;
	}
}

/* list_or_find implements file_list and file_find. */
static void
list_or_find(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	Walk		w = {.req = req, .res = res};

	if (req->op == SB_FILE_FIND && req->pattern[0] == '\0')
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "the glob pattern must not be empty");
		return;
	}
	if (locate(roots, req, true, &t, res) && need_dir(&t, res))
	{
		res->items = json_array();
		walk(&w, t.real, t.virt, req->op == SB_FILE_FIND || req->recursive, true);
		finish_items(req, res, w.too_large,
					 req->op == SB_FILE_FIND ? "list of matches" : "listing", t.virt);
	}
	target_free(&t);
}

/* file_replace replaces every occurrence of old_str by new_str. */
static void
file_replace(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	SbBuf		in;
	SbBuf		out;
	size_t		olen = strlen(req->old_str);
	size_t		nlen = strlen(req->new_str);
	long long	count = 0;
	int			fd;

	if (olen == 0)
	{
		sb_file_set_error(res, SB_FERR_INVALID_ARGUMENT, "old_str must not be empty");
		return;
	}
	if (!locate(roots, req, true, &t, res) || refuse_directory_path(req, &t, res) ||
		!need_file(&t, res) || (fd = open_regular(&t, res)) < 0)
	{
		target_free(&t);
		return;
	}
	if (!read_whole(fd, &t, req->max_bytes, &in, res))
	{
		close(fd);
		target_free(&t);
		return;
	}
	close(fd);
	sb_buf_init(&out, (size_t) req->max_bytes + 1);
	for (const char *p = in.data, *end = in.data + in.len; p < end;)
	{
		const char *hit = memmem(p, (size_t) (end - p), req->old_str, olen);
		const char *stop = hit ? hit : end;

		if (!sb_buf_append(&out, p, (size_t) (stop - p)) ||
			(hit && !sb_buf_append(&out, req->new_str, nlen)))
		{
			sb_file_set_error(res, SB_FERR_IO_ERROR, "out of memory replacing in \"%s\"", t.virt);
			break;
		}
		if (hit)
			count++;
		p = hit ? hit + olen : end;
	}
	if (res->status == SB_STATUS_SUCCEEDED &&
		(out.truncated || out.len > (size_t) req->max_bytes))
		sb_file_set_error(res, SB_FERR_TOO_LARGE,
				  "\"%s\" would be larger than the transfer limit of %lld bytes", t.virt,
				  req->max_bytes);
	else if (res->status == SB_STATUS_SUCCEEDED && count > 0)
	{
		fd = open(t.real, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
		res->changed = fd >= 0;
		if (fd < 0 || !sb_write_all(fd, out.data ? out.data : "", out.len))
			set_errno(res, errno, "write", t.virt);
		if (fd >= 0 && close(fd) != 0 && res->status == SB_STATUS_SUCCEEDED)
			set_errno(res, errno, "write", t.virt);
	}
	res->count = count;
	sb_buf_free(&in);
	sb_buf_free(&out);
	target_free(&t);
}

/* search_line tests one line (without its newline) and records a match. */
static bool
search_line(regex_t *re, const char *line, size_t len, long long number, Walk *w)
{
	regmatch_t	m = {.rm_so = 0, .rm_eo = (regoff_t) len};

	if (regexec(re, line ? line : "", 1, &m, REG_STARTEND) != 0)
		return true;
	{
		size_t		n;
		bool		repaired;
		char	   *fixed = sb_utf8_repair(line ? line : "", len, false, &n, &repaired);
		json_t	   *text = fixed ? json_stringn(fixed, n) : NULL;

		sb_free(fixed);
		return add_item(w, text ? json_pack("{sIso}", "line", (json_int_t) number, "text",
											text) : NULL,
						n + 30);
	}
}

/* file_search returns the lines of a file that match a POSIX extended regex. */
static void
file_search(const Roots *roots, const SbFileRequest *req, SbFileResult *res)
{
	Target		t;
	Walk		w = {.req = req, .res = res};
	regex_t		re;
	int			rc;
	SbBuf		line;
	char		chunk[CHUNK];
	long long	number = 1;
	bool		go = true;
	int			fd;

	/* Match characters, not bytes. */
	if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
		(void) setlocale(LC_CTYPE, "C");
	rc = regcomp(&re, req->pattern, REG_EXTENDED | REG_NOSUB);
	if (rc != 0)
	{
		char		why[256];

		regerror(rc, &re, why, sizeof(why));
		sb_file_set_error(res, SB_FERR_INVALID_REGEX, "invalid regular expression \"%.200s\": %s",
				  req->pattern, why);
		return;
	}
	if (!locate(roots, req, true, &t, res) || !need_file(&t, res) ||
		(fd = open_regular(&t, res)) < 0)
	{
		regfree(&re);
		target_free(&t);
		return;
	}
	res->items = json_array();
	sb_buf_init(&line, (size_t) req->max_bytes + 1);
	while (go)
	{
		ssize_t		n = read(fd, chunk, sizeof(chunk));
		const char *p = chunk;
		const char *end = chunk + (n > 0 ? n : 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			set_errno(res, errno, "read", t.virt);
			break;
		}
		if (n == 0)
		{
			if (line.len > 0)
				go = search_line(&re, line.data, line.len, number, &w);
			break;
		}
		while (go && p < end)
		{
			const char *nl = memchr(p, '\n', (size_t) (end - p));
			const char *stop = nl ? nl : end;

			sb_buf_append(&line, p, (size_t) (stop - p));
			if (line.truncated)
			{
				w.too_large = true;
				go = false;
				break;
			}
			if (nl)
			{
				go = search_line(&re, line.data, line.len, number++, &w);
				line.len = 0;
			}
			p = nl ? nl + 1 : end;
		}
	}
	close(fd);
	sb_buf_free(&line);
	regfree(&re);
	finish_items(req, res, w.too_large, "list of matching lines", t.virt);
	target_free(&t);
}

void
sb_file_run(const SbFileRequest *req, SbFileResult *res)
{
	Roots		roots;
	double		start = now_ms();

	memset(res, 0, sizeof(*res));
	res->status = SB_STATUS_SUCCEEDED;
	roots_init(&roots);
	switch (req->op)
	{
		case SB_FILE_WRITE:
		case SB_FILE_UPLOAD:
			put_file(&roots, req, res);
			break;
		case SB_FILE_READ:
			if (req->start_line > 0 || req->end_line > 0)
				read_lines(&roots, req, res);
			else
				get_file(&roots, req, res);
			break;
		case SB_FILE_DOWNLOAD:
			get_file(&roots, req, res);
			break;
		case SB_FILE_EXISTS:
			file_exists(&roots, req, res);
			break;
		case SB_FILE_DELETE:
			file_delete(&roots, req, res);
			break;
		case SB_FILE_LIST:
		case SB_FILE_FIND:
			list_or_find(&roots, req, res);
			break;
		case SB_FILE_REPLACE:
			file_replace(&roots, req, res);
			break;
		case SB_FILE_SEARCH:
			file_search(&roots, req, res);
			break;
	}
	roots_free(&roots);
	res->duration_ms = now_ms() - start;
}
