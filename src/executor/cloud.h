/*
 * cloud.h
 *		The executor's cloud mode: one execution of a Cloud Run Job task,
 *		with the request, the session's state, its workspace snapshot and
 *		the result kept in a GCS bucket.  Also what cloud mode shares with
 *		runner mode (runner.c): the run's context and the code that runs one
 *		exec request or one file request against a loaded state and a
 *		restored workspace.
 */
#ifndef SB_CLOUD_H
#define SB_CLOUD_H

#include "../common/gcs.h"
#include "../common/oauth.h"
#include "../common/protocol.h"
#include "../common/sbutil.h"

#include <stdbool.h>
#include <stddef.h>

#define SB_CLOUD_MSG_SIZE 1024
#define SB_CLOUD_MAX_REQUEST_BYTES ((size_t) 64 * 1024 * 1024)
/* Objects to delete once a result is written: a base and every increment, at most. */
#define SB_CLOUD_MAX_OBSOLETE (SB_MAX_INCREMENTS + 1)

typedef struct CloudRun CloudRun;

/*
 * CloudCommitFn saves the workspace and a new state.json (cwd, env,
 * last_execution id) with run->generation as its precondition: true with
 * *new_generation set (which may be run->generation when nothing needed
 * saving), or false with msg set.  `what` names the work ("the command").
 */
typedef bool (*CloudCommitFn) (CloudRun *run, long long id, const char *cwd, json_t *env,
							   const char *what, long long *new_generation, char *msg,
							   size_t msglen);

/* Everything one run needs besides the request; see sb_cloud_main and sb_runner_main. */
struct CloudRun
{
	SbGcsConfig gcs;
	SbHttpClient *http;
	SbAuth	   *auth;
	const char *bucket;
	const char *request_name;
	char	   *result_name;	/* .../results/<id>.json */
	char	   *session_dir;	/* P/sessions/<s> */
	char	   *state_name;
	const char *workspace_dir;
	size_t		max_snapshot;
	char		config_error[256];	/* a setting that fails every execution, or "" */
	char	   *cancel_name;	/* watched for while the command runs, or NULL */
	/* Live output (issue 14, part 4): live/<id>.out and .err, saved while it runs. */
	char	   *live_name[2];
	size_t		live_sent[2];	/* the bytes of each saved last */
	bool		live_saved;		/* any was saved: deleted once the result is written */
	/* The session as loaded (sb_cloud_load_state) and as the last commit left it. */
	SbState		state;
	long long	generation;		/* state.json's generation; 0: none yet */
	CloudCommitFn commit;		/* how a change is saved (cold: a full snapshot) */
	void	   *commit_arg;
	bool		replaced;		/* a commit found another writer's state: stop serving */
	/*
	 * A runner does not look for the cancel marker before the command (one
	 * round trip): a cancel before it took the request withdraws it instead
	 * (its claim), and one after is seen by the watch within a second.
	 */
	bool		no_cancel_precheck;
	char	   *obsolete[SB_CLOUD_MAX_OBSOLETE];	/* to delete after the result */
	int			n_obsolete;
};

/*
 * sb_cloud_main runs `cloudrun-sandbox-executor cloud BUCKET REQUEST_OBJECT`;
 * argv[0] is "cloud".  It returns the process's exit status: 0 whenever a
 * result object exists for the request when it returns, 1 when none could
 * be written, 2 for a usage error.
 */
extern int	sb_cloud_main(int argc, char **argv);

/* sb_runner_main runs `cloudrun-sandbox-executor runner BUCKET D TOKEN IDLE_TIMEOUT_S` (runner.c). */
extern int	sb_runner_main(int argc, char **argv);

/* Shared by cloud mode and runner mode (cloud.c). */
extern void sb_cloud_say(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern char *sb_cloud_strfmt(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void sb_cloud_set_error(SbExecResult *res, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern bool sb_cloud_setup_storage(CloudRun *run, char *msg, size_t msglen);
extern bool sb_cloud_check_request(CloudRun *run, const char *dir, const char *session,
								   const char *prefix, long long id, char *msg, size_t msglen);
extern bool sb_cloud_load_state(CloudRun *run, SbState *state, long long *generation,
								char *msg, size_t msglen);
extern bool sb_cloud_state_records(CloudRun *run, long long id, long long *generation);
extern bool sb_cloud_restore(CloudRun *run, size_t *base_bytes, size_t *inc_bytes, char *msg,
							 size_t msglen);
extern bool sb_cloud_exec_already_ran(CloudRun *run, const SbExecRequest *req, SbExecResult *res);
extern void sb_cloud_exec_request(CloudRun *run, SbExecRequest *req, SbExecResult *res);
extern bool sb_cloud_file_already_ran(CloudRun *run, const SbFileRequest *req, SbFileResult *res);
extern void sb_cloud_file_request(CloudRun *run, SbFileRequest *req, SbFileResult *res);
extern int	sb_cloud_write_result(CloudRun *run, char *text, char *msg, size_t msglen);
extern void sb_cloud_delete_quietly(CloudRun *run, const char *name);
extern bool sb_cloud_add_obsolete(CloudRun *run, const char *name);
extern void sb_cloud_finish_request(CloudRun *run);
extern void sb_cloud_on_term(int sig);

#endif							/* SB_CLOUD_H */
