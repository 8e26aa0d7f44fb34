/*
 * test_frame.c
 *		Unit tests of the binary frame codec (src/common/frame.c): round
 *		trips, split and non-blocking reads, malformed headers, limits, end
 *		of input mid-frame and bytes past the frame, descriptors passed with
 *		a frame (SCM_RIGHTS).  Built with
 *		AddressSanitizer; prints TAP.
 */
#define _GNU_SOURCE
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/frame.h"

static const size_t big_max[3] = {1 << 20, 64 << 20, 64 << 20};

/* part_of makes a frame part of a C string. */
static SbFramePart
part_of(const char *s)
{
	SbFramePart p = {s, strlen(s)};

	return p;
}

/* reader_free frees the parts a reader allocated with malloc. */
static void
reader_free(SbFrameReader *r)
{
	for (int i = 0; i < 3; i++)
		free(r->part[i]);
}

/* write_frame writes a whole frame to a blocking fd. */
static bool
write_frame(int fd, SbFramePart j, SbFramePart p0, SbFramePart p1)
{
	SbFrameWriter w;

	sb_frame_writer_init(&w, j, p0, p1);
	return sb_frame_write(&w, fd) == 1;
}

/* read_bytes feeds text (len bytes) through a pipe, closed after, to a reader. */
static int
read_bytes(SbFrameReader *r, const size_t max[3], const char *text, size_t len)
{
	int			p[2];
	int			rc;

	if (pipe(p) != 0)
		return -100;
	if (write(p[1], text, len) != (ssize_t) len)
		return -100;
	close(p[1]);
	sb_frame_reader_init(r, max, NULL, NULL);
	rc = sb_frame_read(r, p[0]);
	close(p[0]);
	return rc;
}

static void
test_round_trip(void)
{
	int			p[2];
	pid_t		pid;
	char	   *big0 = malloc(3 << 20), *big1 = malloc(1 << 20);
	SbFrameReader *r = malloc(sizeof(SbFrameReader));
	int			rc, status;

	for (size_t i = 0; i < (3 << 20); i++)
		big0[i] = (char) (i * 7 + i / 251);
	for (size_t i = 0; i < (1 << 20); i++)
		big1[i] = (char) (i % 256);
	big1[17] = '\0';
	if (pipe(p) != 0)
		return;
	pid = fork();
	if (pid == 0)
	{
		SbFramePart j = part_of("{\"a\":1}"), p0 = {big0, 3 << 20}, p1 = {big1, 1 << 20};

		close(p[0]);
		_exit(write_frame(p[1], j, p0, p1) ? 0 : 1);
	}
	close(p[1]);
	sb_frame_reader_init(r, big_max, NULL, NULL);
	rc = sb_frame_read(r, p[0]);
	waitpid(pid, &status, 0);
	ok(rc == SB_FRAME_DONE && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "round trip: a frame with 3 MiB and 1 MiB payloads is read whole");
	ok(rc == SB_FRAME_DONE && r->len[0] == 7 && strcmp(r->part[0], "{\"a\":1}") == 0 &&
	   r->len[1] == (3 << 20) && memcmp(r->part[1], big0, 3 << 20) == 0 &&
	   r->len[2] == (1 << 20) && memcmp(r->part[2], big1, 1 << 20) == 0 &&
	   r->part[1][r->len[1]] == '\0' && r->part[2][r->len[2]] == '\0' && !r->extra,
	   "round trip: every byte (NULs included) survives, each part NUL-terminated");
	ok(sb_frame_read(r, p[0]) == SB_FRAME_DONE, "round trip: reading again after DONE stays DONE");
	reader_free(r);
	sb_frame_reader_init(r, big_max, NULL, NULL);
	is_int(sb_frame_read(r, p[0]), SB_FRAME_EOF, "round trip: then the end of input is EOF");
	ok(!r->started, "round trip: and not mid-frame");
	close(p[0]);

	if (pipe(p) == 0 && write_frame(p[1], part_of("{}"), part_of(""), part_of("")))
	{
		close(p[1]);
		sb_frame_reader_init(r, big_max, NULL, NULL);
		rc = sb_frame_read(r, p[0]);
		ok(rc == SB_FRAME_DONE && r->len[0] == 2 && r->len[1] == 0 && r->len[2] == 0 &&
		   r->part[1] != NULL && r->part[1][0] == '\0' && r->part[2] != NULL,
		   "round trip: empty payloads are empty NUL-terminated buffers");
		reader_free(r);
		close(p[0]);
	}
	free(big0);
	free(big1);
	free(r);
}

static void
test_split_and_nonblocking(void)
{
	const char *frame = "SBF 8 5 3\n{\"op\":1}hello\0yz";
	size_t		len = 10 + 8 + 5 + 3;
	SbFrameReader r;
	int			p[2], rc = SB_FRAME_MORE;
	bool		more_each = true;
	size_t		fed = 0;

	if (pipe2(p, O_NONBLOCK) != 0)
		return;
	sb_frame_reader_init(&r, big_max, NULL, NULL);
	ok(sb_frame_read(&r, p[0]) == SB_FRAME_MORE && !r.started,
	   "non-blocking: nothing there yet is MORE, not started");
	for (fed = 0; fed < len; fed++)
	{
		if (write(p[1], frame + fed, 1) != 1)
			break;
		rc = sb_frame_read(&r, p[0]);
		if (fed + 1 < len && rc != SB_FRAME_MORE)
			more_each = false;
	}
	ok(more_each, "split reads: one byte at a time through a pipe, MORE until the last");
	ok(rc == SB_FRAME_DONE && strcmp(r.part[0], "{\"op\":1}") == 0 &&
	   memcmp(r.part[1], "hello", 6) == 0 && r.len[2] == 3 && memcmp(r.part[2], "\0yz", 4) == 0,
	   "split reads: the last byte completes the frame with every part right");
	reader_free(&r);
	close(p[0]);
	close(p[1]);

	/* A writer facing a full socket buffer says 0 and finishes later. */
	{
		int			sv[2];
		size_t		n = 4 << 20;
		char	   *data = malloc(n);
		SbFrameWriter w;
		SbFramePart j = part_of("{}"), p0 = {data, n}, p1 = {"", 0};
		int			wrc, rrc = SB_FRAME_MORE, rounds = 0;
		bool		saw_block = false;

		memset(data, 'q', n);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
			return;
		sb_frame_writer_init(&w, j, p0, p1);
		sb_frame_reader_init(&r, big_max, NULL, NULL);
		while ((wrc = sb_frame_write(&w, sv[0])) == 0 && rounds++ < 100000)
		{
			saw_block = true;
			rrc = sb_frame_read(&r, sv[1]);
		}
		while (rrc == SB_FRAME_MORE && rounds++ < 100000)
			rrc = sb_frame_read(&r, sv[1]);
		ok(saw_block && wrc == 1, "non-blocking write: 0 on a full buffer, then 1");
		ok(rrc == SB_FRAME_DONE && r.len[1] == n && r.part[1][0] == 'q' && r.part[1][n - 1] == 'q',
		   "non-blocking write: the reader gets all 4 MiB");
		reader_free(&r);
		close(sv[0]);
		close(sv[1]);
		/* To a peer that is gone: an error (EPIPE), not SIGPIPE. */
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0)
		{
			close(sv[1]);
			sb_frame_writer_init(&w, j, p0, p1);
			wrc = sb_frame_write(&w, sv[0]);
			ok(wrc == -1 && errno == EPIPE, "write: to a closed peer is -1 with EPIPE, no signal");
			close(sv[0]);
		}
		free(data);
	}
}

static void
check_malformed(const char *text, const char *want, const char *name)
{
	SbFrameReader r;
	int			rc = read_bytes(&r, big_max, text, strlen(text));

	ok(rc == SB_FRAME_ERROR && strstr(r.error, want) != NULL, "malformed: %s", name);
	if (rc != SB_FRAME_ERROR || strstr(r.error, want) == NULL)
		printf("#   rc %d, error '%s'\n", rc, r.error);
	reader_free(&r);
}

/* refuse_payload is an allocator that refuses payload 1. */
static void *
refuse_payload(void *arg, int part, size_t len)
{
	return part == 2 ? NULL : malloc(len + 1);
}

/* varhdr_alloc leaves 4 bytes free before each buffer, as the host's does. */
static void *
varhdr_alloc(void *arg, int part, size_t len)
{
	char	  **slots = arg;

	slots[part] = malloc(len + 1 + 4);
	return slots[part] + 4;
}

static void
test_malformed(void)
{
	SbFrameReader r;
	size_t		small[3] = {10, 10, 10};
	char		longer[200];
	int			p[2], rc;

	check_malformed("XBF 1 0 0\n{", "malformed", "a wrong magic");
	check_malformed("SBF 1 0\n{", "malformed", "two lengths");
	check_malformed("SBF 1 0 0 0\n{", "malformed", "four lengths");
	check_malformed("SBF a 0 0\n{", "malformed", "a non-digit");
	check_malformed("SBF 1 0 0x\n{", "malformed", "a trailing non-digit");
	check_malformed("SBF -1 0 0\n{", "malformed", "a sign");
	check_malformed("SBF 01 0 0\n{", "malformed", "a leading zero");
	check_malformed("SBF 1  0 0\n{", "malformed", "two spaces");
	check_malformed("SBF 1 0 0\r\n{", "malformed", "a carriage return");
	check_malformed("SBF  ", "malformed", "two spaces are refused before the newline arrives");
	check_malformed("SBF 1 2 3 ", "malformed", "a fourth length is refused before the newline");
	check_malformed("SBF 12x", "malformed", "garbage is refused before 80 bytes arrive");
	check_malformed("GET / HTTP/1.1\r\n", "malformed", "an HTTP request");
	check_malformed("SBF 99999999999999999999999 0 0\n", "malformed", "a length that overflows");
	check_malformed("SBF 1 2 00000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n",
					"malformed", "a header longer than 80 bytes");
	memset(longer, '1', sizeof(longer));
	memcpy(longer, "SBF ", 4);
	longer[sizeof(longer) - 1] = '\0';
	check_malformed(longer, "longer than 80", "80 bytes without a newline");

	rc = read_bytes(&r, small, "SBF 11 0 0\n", 11);
	ok(rc == SB_FRAME_ERROR && strstr(r.error, "too large") && strstr(r.error, "JSON"),
	   "limits: a JSON document over its limit is too large, named");
	reader_free(&r);
	rc = read_bytes(&r, small, "SBF 2 0 11\n{}", 13);
	ok(rc == SB_FRAME_ERROR && strstr(r.error, "too large") && strstr(r.error, "payload 1") &&
	   r.part[0] == NULL,
	   "limits: a payload over its limit is refused before anything is allocated");
	reader_free(&r);
	rc = read_bytes(&r, small, "SBF 2 0 10\n{}", 13);
	ok(rc == SB_FRAME_EOF && r.started, "limits: exactly at the limit is accepted (then EOF mid-frame)");
	reader_free(&r);

	if (pipe(p) == 0 && write(p[1], "SBF 2 1 1\n{}ab", 14) == 14)
	{
		close(p[1]);
		sb_frame_reader_init(&r, big_max, refuse_payload, NULL);
		rc = sb_frame_read(&r, p[0]);
		ok(rc == SB_FRAME_ERROR && strstr(r.error, "too large") && r.part[0] && r.part[1] &&
		   !r.part[2],
		   "limits: an allocator that refuses makes it too large; the parts so far are the caller's");
		reader_free(&r);
		close(p[0]);
	}
	if (pipe(p) == 0 && write(p[1], "SBF 2 3 0\n{}abc", 15) == 15)
	{
		char	   *slots[3] = {0};

		close(p[1]);
		sb_frame_reader_init(&r, big_max, varhdr_alloc, slots);
		rc = sb_frame_read(&r, p[0]);
		ok(rc == SB_FRAME_DONE && r.part[1] == slots[1] + 4 && strcmp(r.part[1], "abc") == 0,
		   "alloc: the parts are where the allocator said (room before them kept)");
		for (int i = 0; i < 3; i++)
			free(slots[i]);
		close(p[0]);
	}
}

static void
test_eof_and_extra(void)
{
	SbFrameReader r;
	int			rc;

	rc = read_bytes(&r, big_max, "", 0);
	ok(rc == SB_FRAME_EOF && !r.started, "eof: at once is a clean end");
	rc = read_bytes(&r, big_max, "SBF 5", 5);
	ok(rc == SB_FRAME_EOF && r.started, "eof: inside the header is mid-frame");
	reader_free(&r);
	rc = read_bytes(&r, big_max, "SBF 5 3 0\n{}", 12);
	ok(rc == SB_FRAME_EOF && r.started, "eof: inside the JSON is mid-frame");
	reader_free(&r);
	rc = read_bytes(&r, big_max, "SBF 2 3 1\n{}ab", 14);
	ok(rc == SB_FRAME_EOF && r.started, "eof: inside a payload is mid-frame");
	reader_free(&r);
	rc = read_bytes(&r, big_max, "SBF 2 1 0\n{}aXYZ", 16);
	ok(rc == SB_FRAME_DONE && r.extra && strcmp(r.part[1], "a") == 0,
	   "extra: bytes past the frame in the same read are flagged");
	reader_free(&r);
	rc = read_bytes(&r, big_max, "SBF 2 1 0\n{}a", 13);
	ok(rc == SB_FRAME_DONE && !r.extra, "extra: not flagged when there are none");
	reader_free(&r);
}

/*
 * test_fds: descriptors set on a writer (live output files) reach the reader
 * once, with the frame's first bytes, close-on-exec; a frame without any
 * brings none; on a pipe (not a socket) the frame still goes, without them.
 */
static void
test_fds(void)
{
	int			sv[2], pp[2], rc;
	SbFrameWriter w;
	SbFrameReader r;
	char		buf[8];

	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && pipe(pp) == 0, "fds: a socket pair and a pipe");
	sb_frame_writer_init(&w, part_of("{\"a\":1}"), part_of("payload"), part_of(""));
	w.fds[0] = pp[1];
	w.fds[1] = pp[0];
	w.nfds = 2;
	ok(sb_frame_write(&w, sv[0]) == 1, "fds: the frame with two descriptors is written");
	sb_frame_reader_init(&r, big_max, NULL, NULL);
	rc = sb_frame_read(&r, sv[1]);
	ok(rc == SB_FRAME_DONE && strcmp(r.part[1], "payload") == 0, "fds: the frame is read whole");
	ok(r.nfds == 2 && r.fds[0] >= 0 && r.fds[1] >= 0, "fds: both descriptors came with it");
	ok(r.nfds == 2 && (fcntl(r.fds[0], F_GETFD) & FD_CLOEXEC), "fds: close-on-exec");
	ok(r.nfds == 2 && write(r.fds[0], "x", 1) == 1 && read(pp[0], buf, 1) == 1 && buf[0] == 'x',
	   "fds: the received write end is the pipe's");
	for (int i = 0; i < r.nfds; i++)
		close(r.fds[i]);
	reader_free(&r);
	sb_frame_writer_init(&w, part_of("{}"), part_of(""), part_of(""));
	ok(sb_frame_write(&w, sv[0]) == 1, "fds: a frame without descriptors");
	sb_frame_reader_init(&r, big_max, NULL, NULL);
	rc = sb_frame_read(&r, sv[1]);
	ok(rc == SB_FRAME_DONE && r.nfds == 0 && r.fds[0] == -1, "fds: brings none");
	reader_free(&r);
	close(sv[0]);
	close(sv[1]);
	close(pp[0]);
	close(pp[1]);
}

int
main(void)
{
	test_fds();
	test_round_trip();
	test_split_and_nonblocking();
	test_malformed();
	test_eof_and_extra();
	return tap_done();
}
