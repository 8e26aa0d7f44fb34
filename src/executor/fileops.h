/*
 * fileops.h
 *		File operations applied natively by the executor, inside the sandbox.
 */
#ifndef SB_FILEOPS_H
#define SB_FILEOPS_H

#include "../common/protocol.h"

/*
 * sb_file_run applies one file operation and fills *res (status succeeded,
 * or error with an error code and a message naming the path).  Paths are
 * taken relative to req->cwd and must stay inside /workspace or /tmp once
 * ".." and symbolic links are resolved.  Those two directories are
 * $CLOUDRUN_SANDBOX_WORKSPACE and $CLOUDRUN_SANDBOX_TMP when set (tests run
 * outside a sandbox that way).  A result's payload (data, items) is at most
 * req->max_bytes.  It never exits the process.
 */
extern void sb_file_run(const SbFileRequest *req, SbFileResult *res);

/* sb_file_set_error makes res an error result with a code and a message (repaired to UTF-8). */
extern void sb_file_set_error(SbFileResult *res, SbFileError code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif							/* SB_FILEOPS_H */
