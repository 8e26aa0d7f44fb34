/*
 * runners.h
 *		What this server knows of the Cloud Run session runners it uses: a
 *		registry in shared memory (with the preloaded library), the settings,
 *		and the view behind sandbox.session_runners.
 *
 * The truth is the session's lease object, sessions/<s>/runner.json in the
 * bucket (see driver_cloudrun.c); the registry only spares a call its read
 * when a backend or the worker used the runner recently, and shows psql
 * which runners are in use.
 */
#ifndef SB_CLOUD_RUNNERS_H
#define SB_CLOUD_RUNNERS_H

#include "../cloudrun_sandbox.h"
#include "datatype/timestamp.h"

#define SB_RUNNER_TOKEN_LEN 32
#define SB_RUNNER_DIR_MAX 512
#define SB_RUNNER_EXEC_MAX 320

/* One runner as the registry (or the lease object) knows it. */
typedef struct SbRunnerInfo
{
	char		token[SB_RUNNER_TOKEN_LEN + 1];
	char		execution[SB_RUNNER_EXEC_MAX];	/* "" while not known */
	char		job[SB_RUNNER_EXEC_MAX];	/* /v2/projects/P/locations/R/jobs/J: it runs there */
	TimestampTz started_at;
	TimestampTz last_request_at;
	int64		requests;
} SbRunnerInfo;

extern bool sb_cloud_runners;
extern int	sb_cloud_warm_idle_timeout_s;
extern int	sb_cloud_runner_take_timeout_s;
extern int	sb_cloud_max_runners;
extern int	sb_cloud_max_runners_per_role;

extern void sb_runners_define_settings(void);
extern void sb_runners_shmem_request(void);
extern void sb_runners_shmem_startup(void);

/* The registry: dir is the session's object prefix, key its storage key. */
extern bool sb_runner_lookup(const char *dir, SbRunnerInfo *info);
extern void sb_runner_put(const char *dir, const char *key, Oid owner, const SbRunnerInfo *info);
extern void sb_runner_used(const char *dir, const char *token);
extern void sb_runner_forget(const char *dir, const char *token);
extern void sb_runner_failed(const char *dir);
extern bool sb_runner_backing_off(const char *dir);
extern int	sb_runner_count(Oid owner);

#endif							/* SB_CLOUD_RUNNERS_H */
