/*
 * frame.h
 *		The binary frame that carries a request or a result between the host
 *		and a local sandbox's executor, with raw payloads instead of base64:
 *
 *		"SBF <json_len> <len0> <len1>\n" <JSON> <payload 0> <payload 1>
 *
 * The header is ASCII with decimal lengths, at most SB_FRAME_HEADER_MAX
 * bytes including its newline; anything else is a malformed frame.  The
 * reader enforces limits of its own choosing on each part.  Pure C, no
 * PostgreSQL: linked into the executor and the extension.
 */
#ifndef SB_FRAME_H
#define SB_FRAME_H

#include <stdbool.h>
#include <stddef.h>

#define SB_FRAME_HEADER_MAX 80

#define SB_FRAME_DONE 1			/* a whole frame was read (or written) */
#define SB_FRAME_MORE 0			/* the descriptor would block */
#define SB_FRAME_ERROR (-1)		/* malformed, too large, or an I/O error */
#define SB_FRAME_EOF (-2)		/* the peer closed (see started) */

typedef struct SbFramePart
{
	const char *data;
	size_t		len;
} SbFramePart;

/*
 * alloc(arg, part, len) returns a buffer of len + 1 bytes for part 0 (the
 * JSON), 1 or 2 (payload 0 / 1), or NULL to refuse it (the reader then fails
 * with "too large").  A NULL alloc means malloc (free the parts with free()).
 * The caller owns every buffer alloc returned, also after an error: they
 * are in r->part[] (NULL for parts not yet allocated).
 */
typedef void *(*SbFrameAlloc) (void *arg, int part, size_t len);

#define SB_FRAME_STAGE 16384
#define SB_FRAME_MAX_FDS 2

typedef struct SbFrameReader
{
	/* results, valid after SB_FRAME_DONE */
	char	   *part[3];		/* NUL-terminated */
	size_t		len[3];
	bool		extra;			/* bytes beyond the frame came in the same read */
	bool		started;		/* some of the frame has arrived */
	char		error[160];		/* with SB_FRAME_ERROR */
	/*
	 * Descriptors that came with the frame's first bytes (SCM_RIGHTS on a
	 * socket), close-on-exec, -1 for none: the caller owns (and closes) them.
	 */
	int			fds[SB_FRAME_MAX_FDS];
	int			nfds;

	/* private */
	size_t		max[3];
	SbFrameAlloc alloc;
	void	   *arg;
	bool		have_header;
	int			cur;			/* the part being filled */
	size_t		got;			/* bytes of part[cur] filled */
	size_t		stage_len;		/* bytes in stage (header phase) */
	char		stage[SB_FRAME_STAGE];
} SbFrameReader;

extern void sb_frame_reader_init(SbFrameReader *r, const size_t max[3], SbFrameAlloc alloc,
								 void *arg);

/*
 * sb_frame_read reads what fd has (fd may be O_NONBLOCK): SB_FRAME_DONE,
 * SB_FRAME_MORE (it would block), SB_FRAME_EOF (the peer closed;
 * r->started tells whether mid-frame) or SB_FRAME_ERROR (r->error says why).
 * It never reads past the frame except in the header's first read, which
 * sets r->extra if it did.
 */
extern int	sb_frame_read(SbFrameReader *r, int fd);

typedef struct SbFrameWriter
{
	/* private */
	char		header[SB_FRAME_HEADER_MAX];
	SbFramePart part[4];		/* header, JSON, payload 0, payload 1 */
	int			cur;
	size_t		off;			/* bytes of part[cur] written */
	bool		not_socket;		/* sendmsg said ENOTSOCK: use writev */
	/* Descriptors sent (SCM_RIGHTS) with the frame's first bytes; set after init. */
	int			fds[SB_FRAME_MAX_FDS];
	int			nfds;
	bool		fds_sent;
} SbFrameWriter;

extern void sb_frame_writer_init(SbFrameWriter *w, SbFramePart json, SbFramePart p0,
								 SbFramePart p1);

/* sb_frame_write writes what fd takes: 1 all written, 0 would block, -1 error (errno). */
extern int	sb_frame_write(SbFrameWriter *w, int fd);

#endif							/* SB_FRAME_H */
