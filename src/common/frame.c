/*
 * frame.c
 *		Reading and writing the binary frames of frame.h, on blocking or
 *		non-blocking descriptors, without copying large payloads twice.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "frame.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* One read() or write() moves at most this much (Linux caps it near 2 GiB). */
#define SB_FRAME_IO_MAX ((size_t) 1 << 30)

static const char *const part_names[3] = {"JSON document", "payload 0", "payload 1"};

/* default_alloc is the allocator of a reader given none: malloc. */
static void *
default_alloc(void *arg, int part, size_t len)
{
	return malloc(len + 1);
}

/* sb_frame_reader_init prepares r to read one frame with the given limits. */
void
sb_frame_reader_init(SbFrameReader *r, const size_t max[3], SbFrameAlloc alloc, void *arg)
{
	memset(r, 0, offsetof(SbFrameReader, stage));
	for (int i = 0; i < SB_FRAME_MAX_FDS; i++)
		r->fds[i] = -1;
	for (int i = 0; i < 3; i++)
		r->max[i] = max[i];
	r->alloc = alloc ? alloc : default_alloc;
	r->arg = arg;
}

/* fail records a message and returns SB_FRAME_ERROR. */
static int
fail(SbFrameReader *r, const char *msg, int part)
{
	if (part >= 0)
		snprintf(r->error, sizeof(r->error), msg, part_names[part], r->max[part]);
	else
		snprintf(r->error, sizeof(r->error), "%s", msg);
	return SB_FRAME_ERROR;
}

/*
 * header_plausible says whether the n bytes of an incomplete header (no
 * newline yet) could still begin a valid one.
 */
static bool
header_plausible(const char *s, size_t n)
{
	static const char magic[] = "SBF ";
	int			spaces = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (i < 4)
		{
			if (s[i] != magic[i])
				return false;
		}
		else if (s[i] == ' ')
		{
			/* a space ends a length: not first, not after another, at most two */
			if (s[i - 1] == ' ' || ++spaces > 2)
				return false;
		}
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/*
 * parse_length parses one decimal length at *p (no sign, no leading zero
 * unless it is "0"), followed by the byte end; false if malformed.
 */
static bool
parse_length(const char **p, const char *limit, char end, size_t *out)
{
	const char *s = *p;
	size_t		v = 0;
	int			digits = 0;

	while (s < limit && *s >= '0' && *s <= '9')
	{
		if (digits > 0 && v == 0)
			return false;		/* a leading zero */
		if (v > (SIZE_MAX - 9) / 10)
			return false;
		v = v * 10 + (size_t) (*s - '0');
		s++, digits++;
	}
	if (digits == 0 || s >= limit || *s != end)
		return false;
	*out = v;
	*p = s + 1;
	return true;
}

/* fill copies up to n bytes of src into the parts still open; returns bytes used. */
static size_t
fill(SbFrameReader *r, const char *src, size_t n)
{
	size_t		used = 0;

	while (r->cur < 3 && used < n)
	{
		size_t		take = r->len[r->cur] - r->got;

		if (take > n - used)
			take = n - used;
		memcpy(r->part[r->cur] + r->got, src + used, take);
		r->got += take;
		used += take;
		if (r->got == r->len[r->cur])
			r->cur++, r->got = 0;
	}
	return used;
}

/* skip_empty moves past the parts that are complete (or empty). */
static void
skip_full(SbFrameReader *r)
{
	while (r->cur < 3 && r->got == r->len[r->cur])
		r->cur++, r->got = 0;
}

/*
 * take_header parses the header at the start of the stage (hlen bytes with
 * its newline), allocates the parts and moves the staged bytes after it
 * into them.
 */
static int
take_header(SbFrameReader *r, size_t hlen)
{
	const char *p = r->stage + 4;
	const char *limit = r->stage + hlen;

	if (memcmp(r->stage, "SBF ", 4) != 0 ||
		!parse_length(&p, limit, ' ', &r->len[0]) ||
		!parse_length(&p, limit, ' ', &r->len[1]) ||
		!parse_length(&p, limit, '\n', &r->len[2]) || p != limit)
		return fail(r, "malformed frame header", -1);
	for (int i = 0; i < 3; i++)
		if (r->len[i] > r->max[i])
			return fail(r, "frame too large: its %s is over %zu bytes", i);
	for (int i = 0; i < 3; i++)
	{
		r->part[i] = r->alloc(r->arg, i, r->len[i]);
		if (r->part[i] == NULL)
			return fail(r, "frame too large: no room for its %s (limit %zu bytes)", i);
		r->part[i][r->len[i]] = '\0';
	}
	r->have_header = true;
	r->cur = 0;
	r->got = 0;
	skip_full(r);
	if (fill(r, r->stage + hlen, r->stage_len - hlen) < r->stage_len - hlen)
		r->extra = true;
	r->stage_len = 0;
	return SB_FRAME_MORE;
}

/*
 * read_first reads the frame's first bytes with recvmsg, keeping the
 * descriptors that came with them (SCM_RIGHTS; beyond SB_FRAME_MAX_FDS they
 * are closed); on what is not a socket, a plain read.
 */
static ssize_t
read_first(SbFrameReader *r, int fd)
{
	union
	{
		struct cmsghdr align;
		char		buf[CMSG_SPACE(sizeof(int) * 8)];
	}			control;
	struct iovec iov = {r->stage, sizeof(r->stage)};
	struct msghdr msg;
	ssize_t		n;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	msg.msg_controllen = sizeof(control.buf);
	n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0 && errno == ENOTSOCK)
		return read(fd, r->stage, sizeof(r->stage));
	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
	{
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
		{
			int			got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (r->nfds < SB_FRAME_MAX_FDS)
				r->fds[r->nfds++] = got;
			else
				close(got);
		}
	}
	return n;
}

/* sb_frame_read reads what fd has of the frame; see frame.h. */
int
sb_frame_read(SbFrameReader *r, int fd)
{
	for (;;)
	{
		ssize_t		n;

		if (r->have_header)
		{
			skip_full(r);
			if (r->cur >= 3)
				return SB_FRAME_DONE;
			n = read(fd, r->part[r->cur] + r->got,
					 r->len[r->cur] - r->got > SB_FRAME_IO_MAX ? SB_FRAME_IO_MAX :
					 r->len[r->cur] - r->got);
		}
		else if (r->stage_len == 0 && !r->started)
			n = read_first(r, fd);
		else
			n = read(fd, r->stage + r->stage_len, sizeof(r->stage) - r->stage_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return SB_FRAME_MORE;
		if (n < 0)
		{
			snprintf(r->error, sizeof(r->error), "cannot read the frame: %s", strerror(errno));
			return SB_FRAME_ERROR;
		}
		if (n == 0)
			return SB_FRAME_EOF;
		r->started = true;
		if (r->have_header)
			r->got += (size_t) n;
		else
		{
			size_t		scan;
			char	   *nl;

			r->stage_len += (size_t) n;
			scan = r->stage_len < SB_FRAME_HEADER_MAX ? r->stage_len : SB_FRAME_HEADER_MAX;
			nl = memchr(r->stage, '\n', scan);
			if (nl == NULL)
			{
				if (!header_plausible(r->stage, scan))
					return fail(r, "malformed frame header", -1);
				if (scan >= SB_FRAME_HEADER_MAX)
					return fail(r, "malformed frame header: longer than 80 bytes", -1);
				continue;
			}
			if (take_header(r, (size_t) (nl - r->stage) + 1) == SB_FRAME_ERROR)
				return SB_FRAME_ERROR;
		}
	}
}

/* sb_frame_writer_init prepares w to write the frame of json, p0 and p1. */
void
sb_frame_writer_init(SbFrameWriter *w, SbFramePart json, SbFramePart p0, SbFramePart p1)
{
	int			n;

	memset(w, 0, sizeof(*w));
	for (int i = 0; i < SB_FRAME_MAX_FDS; i++)
		w->fds[i] = -1;
	n = snprintf(w->header, sizeof(w->header), "SBF %zu %zu %zu\n", json.len, p0.len, p1.len);
	w->part[0].data = w->header;
	w->part[0].len = (size_t) n;
	w->part[1] = json;
	w->part[2] = p0;
	w->part[3] = p1;
}

/* sb_frame_write writes what fd takes of the frame; see frame.h. */
int
sb_frame_write(SbFrameWriter *w, int fd)
{
	for (;;)
	{
		struct iovec iov[4];
		int			niov = 0;
		size_t		total = 0;
		ssize_t		n;

		while (w->cur < 4 && w->off == w->part[w->cur].len)
			w->cur++, w->off = 0;
		if (w->cur >= 4)
			return 1;
		for (int i = w->cur; i < 4 && total < SB_FRAME_IO_MAX; i++)
		{
			size_t		off = i == w->cur ? w->off : 0;
			size_t		len = w->part[i].len - off;

			if (len == 0)
				continue;
			if (len > SB_FRAME_IO_MAX - total)
				len = SB_FRAME_IO_MAX - total;
			iov[niov].iov_base = (char *) w->part[i].data + off;
			iov[niov].iov_len = len;
			total += len;
			niov++;
		}
		if (!w->not_socket)
		{
			struct msghdr msg;
			union
			{
				struct cmsghdr align;
				char		buf[CMSG_SPACE(sizeof(int) * SB_FRAME_MAX_FDS)];
			}			control;

			memset(&msg, 0, sizeof(msg));
			msg.msg_iov = iov;
			msg.msg_iovlen = niov;
			/* The descriptors go with the first bytes, once. */
			if (w->nfds > 0 && !w->fds_sent)
			{
				struct cmsghdr *c;

				memset(&control, 0, sizeof(control));
				msg.msg_control = control.buf;
				msg.msg_controllen = CMSG_SPACE(sizeof(int) * w->nfds);
				c = CMSG_FIRSTHDR(&msg);
				c->cmsg_level = SOL_SOCKET;
				c->cmsg_type = SCM_RIGHTS;
				c->cmsg_len = CMSG_LEN(sizeof(int) * w->nfds);
				memcpy(CMSG_DATA(c), w->fds, sizeof(int) * w->nfds);
			}
			/* No SIGPIPE from a peer that went away: an error instead. */
			n = sendmsg(fd, &msg, MSG_NOSIGNAL);
			if (n < 0 && errno == ENOTSOCK)
			{
				w->not_socket = true;
				continue;
			}
			if (n > 0)
				w->fds_sent = true;
		}
		else
			n = writev(fd, iov, niov);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -1;
		/* Advance over what was written. */
		for (size_t left = (size_t) n; left > 0;)
		{
			size_t		rest = w->part[w->cur].len - w->off;

			if (left < rest)
			{
				w->off += left;
				left = 0;
			}
			else
			{
				left -= rest;
				w->cur++, w->off = 0;
			}
		}
	}
}
