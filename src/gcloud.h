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

/* cloudrun_sandbox.cloud_isolation (an SbIsolation), defined by sb_gcloud_init(). */
extern int	sb_cloud_isolation;
extern void sb_gcloud_init(void);

/*
 * The job, object prefix and isolation of a role's cloud sessions: the
 * role's ALTER ROLE ... SET values, else this backend's settings.
 * sb_gc_use_role() chooses the role the calls that follow are for, until
 * the end of the transaction (InvalidOid: this backend's settings).
 */
extern void sb_gc_use_role(Oid role);
extern Oid	sb_gc_role(void);
extern char *sb_role_setting(Oid role, const char *name);
extern const char *sb_gc_job(void);
extern const char *sb_gc_prefix(void);
extern SbIsolation sb_gc_isolation(void);

/*
 * The time limit of the cloud call in progress (see gcloud.c): every request
 * of the call ends by it.  sb_gc_call_start() begins a call without a
 * timeout of its own (sb_gc_use_role() does it); sb_gc_call_until() gives
 * the call the end of its own timeout (plus cloudrun_sandbox.cloud_margin),
 * the first time it is called in the call;
 * sb_gc_call_end() is when it ends (DT_NOEND: no limit);
 * sb_gc_call_suspend() lifts it, for the cancel that follows a call that ran
 * out of time, and sb_gc_call_resume() puts it back.  sb_gc_raise_late()
 * raises the error of a call whose limit passed.
 */
extern int	sb_cloud_margin_ms;
extern void sb_gc_call_start(void);
extern void sb_gc_call_until(TimestampTz end);
extern TimestampTz sb_gc_call_end(void);
extern int64 sb_gc_call_suspend(void);
extern void sb_gc_call_resume(int64 saved);
extern void sb_gc_raise_late(const char *what, const char *last_error) pg_attribute_noreturn();

extern void sb_gc_require_settings(void);
extern void sb_gc_gcs(SbGcsConfig *cfg);
extern char *sb_gc_object(const char *session, const char *suffix);
extern char *sb_gc_session_prefix(const char *session);
extern void sb_gc_raise(const SbError *err, const char *what, SbGcNotFound nf)
			pg_attribute_noreturn();
extern int	sb_gc_run_call(const char *method, const char *path, const char *body,
						   int64 timeout_ms, char **response, SbError *err);
/* How long an asynchronous call's token fetch may block (the worker's calls). */
#define SB_GC_TOKEN_WAIT_MS 5000
extern int	sb_gc_run_start(SbHttpRequest *req, const char *method, const char *path,
							const char *body, int64 timeout_ms, SbError *err);
extern int	sb_gc_run_end(SbHttpRequest *req, char **response, SbError *err);

#endif							/* SB_GCLOUD_H */
