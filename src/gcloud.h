/*
 * gcloud.h
 *		The extension's side of the Google Cloud client: settings turned into
 *		client configuration, one HTTP connection cache and one credential per
 *		backend, query cancel wired into every call, and errors turned into
 *		SQL errors that name the setting to fix.
 */
#ifndef SB_GCLOUD_H
#define SB_GCLOUD_H

#include "cloudrun_sandbox.h"

#include "common/gcs.h"

/* What a NOT_FOUND means for the call that got it. */
typedef enum SbGcNotFound
{
	SB_GC_NOT_FOUND_BUCKET,
	SB_GC_NOT_FOUND_JOB,
	SB_GC_NOT_FOUND_OTHER
} SbGcNotFound;

extern void sb_gc_require_settings(void);
extern void sb_gc_gcs(SbGcsConfig *cfg);
extern char *sb_gc_object(const char *session, const char *suffix);
extern char *sb_gc_session_prefix(const char *session);
extern void sb_gc_raise(const SbError *err, const char *what, SbGcNotFound nf)
			pg_attribute_noreturn();
extern int	sb_gc_run_call(const char *method, const char *path, const char *body,
						   int64 timeout_ms, char **response, SbError *err);

#endif							/* SB_GCLOUD_H */
