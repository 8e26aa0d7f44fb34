/*
 * wsync.h
 *		The cloud executor's workspace sync: a session's workspace as a base
 *		snapshot object plus incremental archives (GNU tar
 *		--listed-incremental), restored into and archived from the workspace
 *		directory with the system tar.
 */
#ifndef SB_WSYNC_H
#define SB_WSYNC_H

#include "../common/gcs.h"
#include "../common/protocol.h"
#include "../common/sbutil.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * What a runner keeps between commands: the tar snapshot file (snar) of the
 * workspace as last saved, in a private directory outside the workspace (the
 * command's sandbox has a /tmp of its own and never sees it), and a
 * fingerprint of the tree's metadata as last saved, which tells "nothing
 * changed" without running tar.  Zero-initialise, set workspace_dir and
 * max_snapshot, then sb_wsync_begin.
 */
typedef struct SbWsync
{
	const char *workspace_dir;
	size_t		max_snapshot;
	char		dir[64];		/* private directory, "" until made */
	char		snar[96];		/* dir/snar: the workspace as last saved */
	char		snar_new[96];	/* dir/snar.new: what an archive in the making records */
	unsigned char print[32];	/* fingerprint of the tree as last saved */
	bool		have_print;
	unsigned char pending[32];	/* fingerprint taken by sb_wsync_changed */
	bool		have_pending;
} SbWsync;

/* sb_wsync_tar runs the system tar (see wsync.c); its exit status, or -1 with msg set. */
extern int	sb_wsync_tar(char *const argv[], const char *input, size_t input_len, SbBuf *out,
						 char *msg, size_t msglen);

/* sb_wsync_make_dirs creates a directory and its missing parents, like mkdir -p. */
extern bool sb_wsync_make_dirs(const char *path);

/*
 * sb_wsync_check_names: false with msg set when the state names a snapshot
 * or an increment outside session_dir/workspace/.
 */
extern bool sb_wsync_check_names(const char *session_dir, const SbState *state, char *msg,
								 size_t msglen);

/*
 * sb_wsync_restore downloads the state's base snapshot and increments and
 * unpacks them, in order, into workspace_dir (which must exist); *bytes (may
 * be NULL) gets the base's and the increments' sizes.  False with msg set.
 */
extern bool sb_wsync_restore(SbGcsConfig *gcs, const char *workspace_dir, size_t max_snapshot,
							 const SbState *state, size_t *base_bytes, size_t *inc_bytes,
							 char *msg, size_t msglen);

/* sb_wsync_archive packs the whole workspace (a plain tar) into out; false with msg set. */
extern bool sb_wsync_archive(const char *workspace_dir, size_t max_snapshot, SbBuf *out,
							 char *msg, size_t msglen);

/* sb_wsync_begin makes the private directory, the snar of the tree as it is, and its fingerprint. */
extern bool sb_wsync_begin(SbWsync *w, char *msg, size_t msglen);

/* sb_wsync_changed: whether the tree differs from what was last saved (unknown = changed). */
extern bool sb_wsync_changed(SbWsync *w);

/* sb_wsync_increment archives what changed since the snar into out (level > 0), recording snar.new. */
extern bool sb_wsync_increment(SbWsync *w, SbBuf *out, char *msg, size_t msglen);

/* sb_wsync_level0 archives the whole tree into out as a level-0 dump, recording a new snar.new. */
extern bool sb_wsync_level0(SbWsync *w, SbBuf *out, char *msg, size_t msglen);

/* sb_wsync_accept makes snar.new the snar and the pending fingerprint the saved one. */
extern void sb_wsync_accept(SbWsync *w);

/* sb_wsync_end removes the private directory. */
extern void sb_wsync_end(SbWsync *w);

#endif							/* SB_WSYNC_H */
