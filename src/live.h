/*
 * live.h
 *		Live output of queued executions (see live.c).
 */
#ifndef SB_LIVE_H
#define SB_LIVE_H

#include "cloudrun_sandbox.h"

extern bytea *sb_live_output(SbBackend backend, const char *key, Oid owner, int64 id,
							 int stream, int64 offset, int64 max, bool quiet);

/* driver_cloudrun.c: a running execution's saved output (stream 0 stdout, 1 stderr). */
extern char *sb_cloud_live_read(const char *session, int64 id, int stream, bool quiet,
								size_t *len);

/* A synchronous exec's streamed output (live.c). */
typedef struct SbStream SbStream;
extern bool sb_stream_output;
extern SbStream *sb_stream_active;
extern void sb_live_guc_init(void);
extern void sb_stream_begin(bool cloud, const char *key, int64 id, Oid owner);
extern void sb_stream_poll(void);
extern void sb_stream_finish(const char *out, size_t out_len, const char *err, size_t err_len);
extern bool sb_stream_fds(int fds[2]);
extern void sb_stream_end(void);

#endif							/* SB_LIVE_H */
