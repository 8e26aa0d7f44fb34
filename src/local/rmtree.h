/*
 * rmtree.h
 *		Deleting a directory tree that a sandbox may still be changing, by
 *		directory descriptors only: never following a symlink, never crossing
 *		a mount, never naming anything by a path.
 *
 * Plain C without PostgreSQL headers, so that test/unit can run it under
 * AddressSanitizer; src/local/storage.c turns what it reports into WARNINGs.
 */
#ifndef SB_RMTREE_H
#define SB_RMTREE_H

#include <stdbool.h>

typedef struct SbRmtreeStats
{
	long		removed;		/* entries removed */
	long		moved;			/* directories too deep to descend, moved up */
	long		mounts;			/* directories on another mount, left in place */
	long		failed;			/* entries that could not be removed */
	int			first_errno;	/* why the first entry was left (0: a mount) */
	char		first[512];		/* that entry, relative to the tree's parent */
} SbRmtreeStats;

/*
 * sb_rmtree_at removes parentfd/name and everything below it; true if it is
 * gone (or never existed).  Whatever is left is counted in *stats.
 */
extern bool sb_rmtree_at(int parentfd, const char *name, SbRmtreeStats *stats);

#endif							/* SB_RMTREE_H */
