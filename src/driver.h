/*
 * driver.h
 *		The interface every backend implements: where a session's state lives
 *		and how a request reaches an executor.
 *
 * The SQL functions and the worker only talk to this interface.  A run is
 * launched, then driven without blocking (wait on its fds, step it) until it
 * finishes or is cancelled, so one loop can multiplex many runs.  Nothing here
 * assumes one process per command.  Adding a backend means one new file and
 * one line in sb_driver_for().
 */
#ifndef SB_DRIVER_H
#define SB_DRIVER_H

#include "cloudrun_sandbox.h"

#include "datatype/timestamp.h"
#include "utils/timestamp.h"
#include "utils/array.h"

#include "common/http.h"

typedef struct SbRun SbRun;

/*
 * A payload of a binary frame (common/frame.h): raw bytes that travel beside
 * the JSON document instead of inside it (an upload's or a write's content;
 * a result's stdout and stderr, or a file's content).  data is palloc'd with
 * VARHDRSZ bytes free before it and a NUL after it, so that it becomes a
 * text or bytea datum in place (sb_payload_bytea, sb_payload_text).
 */
typedef struct SbPayload
{
	char	   *data;
	size_t		len;
} SbPayload;

typedef struct SbDriver
{
	const char *name;

	/*
	 * True: requests and results travel as binary frames (local), so a
	 * request leaves an upload's or a write's content to launch()'s upload
	 * (its JSON says "content_in_frame"), and a result may leave its output
	 * or content to payloads().  False: everything is in the JSON (cloud).
	 */
	bool		binary_frames;

	/*
	 * True when the executor itself commits the session's new state (cloud:
	 * state.json in GCS); false when the extension stores the state the result
	 * carries (local).
	 */
	bool		executor_writes_state;

	/* Time allowed beyond a command's timeout before the run is abandoned. */
	int			slack_ms;

	/*
	 * Make sure the session's storage exists (idempotent).  With fresh, the
	 * session was just created: anything left under its name by a session of
	 * the same name dropped earlier, or by a rolled-back creation, is removed.
	 */
	void		(*prepare_session) (const char *session, bool fresh);

	/* The session's disk quota in kB, 0 for none (NULL: the backend has none). */
	int64		(*disk_quota_kb) (const char *session);

	/*
	 * Where the session's storage is, recorded when it is dropped so that it
	 * is deleted there even if settings change meanwhile (NULL, or a NULL
	 * result: the key says it all).
	 */
	char	   *(*storage_location) (const char *session);

	/*
	 * Delete the session's storage now: it has no session any more (its drop
	 * committed, or its creation rolled back).  location is what
	 * storage_location said, or NULL.  An ERROR when a later retry may help.
	 * Called by the reaper (src/worker/reaper.c), never in a user's
	 * transaction.
	 */
	void		(*delete_storage) (const char *session, const char *location);

	/* Read state.json; false if the session has none yet. */
	bool		(*load_state) (const char *session, SbState *state);

	/* Replace state.json atomically. */
	void		(*store_state) (const char *session, const SbState *state);

	/*
	 * Start executing request document number id; never blocks on the
	 * command.  upload: the request's payload 0 (a file write's or upload's
	 * content), or NULL; only drivers with binary_frames get one.
	 */
	SbRun	   *(*launch) (const char *session, int64 id, const char *request,
							const SbPayload *upload);

	/*
	 * True once the request and its payload are all sent (or can no longer
	 * be): the caller may free the payload.  NULL: launch() keeps no
	 * reference to it.
	 */
	bool		(*request_sent) (SbRun *run);

	/* File descriptors whose readiness means step() has work; returns count. */
	int			(*wait_fds) (SbRun *run, int *fds, int max_fds);

	/* Make progress without blocking; true once the run has finished. */
	bool		(*step) (SbRun *run);

	/* The result document of a finished run (palloc'd), or an ERROR. */
	char	   *(*finish) (SbRun *run, size_t *len);

	/*
	 * After finish(): the result frame's payloads (a command's stdout and
	 * stderr, or a file's content), into out[0..max); returns how many
	 * (0..2).  NULL: none.  They are what the sandbox sent, unchecked.
	 */
	int			(*payloads) (SbRun *run, SbPayload *out, int max);

	/* Stop the run and everything it started; safe to call twice. */
	void		(*cancel) (SbRun *run);

	/*
	 * For a run without fds (polled): true when an answer it waits for has
	 * arrived, so step() should run now rather than at the next poll (NULL:
	 * never).
	 */
	bool		(*ready) (SbRun *run);

	/*
	 * Batching (NULL for drivers without it): stage() prepares a run without
	 * starting it; launch_batch() starts staged runs together, as one remote
	 * execution with a task per run.  launch() is stage() plus a batch of one.
	 */
	SbRun	   *(*stage) (const char *session, int64 id, const char *request);
	void		(*launch_batch) (SbRun **runs, int n);

	/*
	 * Staged runs whose keys differ never share a batch (cloud: the job, which
	 * is the session owner's); NULL: any may.
	 */
	const char *(*batch_key) (SbRun *run);

	/*
	 * For a driver whose launch_batch() only starts the launch (the cloud
	 * driver in the worker: uploads, jobs:run), true once the launch has
	 * happened, so that its remote name is known; step() drives the launch
	 * until then.  NULL: launch_batch() launches before it returns.
	 */
	bool		(*launched) (SbRun *run);

	/* The remote execution's name, to record (NULL: none). */
	const char *(*remote_name) (SbRun *run);

	/*
	 * Re-attach, after a restart, to execution id that may be in flight under
	 * remote_name (NULL: the launch may or may not have happened).  Returns
	 * NULL if it never started.  NULL for drivers whose runs die with the
	 * worker.
	 */
	SbRun	   *(*attach) (const char *session, int64 id, const char *remote_name);
} SbDriver;

/*
 * Set in the background worker: step() must not block (the cloud driver then
 * polls instead of long-waiting; the worker paces the polls).
 */
extern bool sb_driver_nonblocking;

extern const SbDriver sb_local_driver;
extern const SbDriver *sb_driver_for(SbBackend backend);

extern const SbDriver sb_cloudrun_driver;

/*
 * sb_run_sync runs a request to its end in this backend and returns its
 * result document; upload as for launch().  The result's payloads go to
 * payloads[0..1] (when not NULL), *npayloads saying how many there are.
 */
extern char *sb_run_sync(const SbDriver *driver, const char *session, int64 id,
						 const char *request, const SbPayload *upload,
						 TimestampTz hard_deadline, size_t *len, SbPayload *payloads,
						 int *npayloads);

/*
 * sb_at_end_of_xact runs on_commit(arg) if the transaction commits, and
 * on_abort(arg) if it, or the subtransaction that called this, rolls back
 * (either may be NULL).  They run after the end of the transaction: an error
 * in them is reported as a WARNING.
 */
typedef void (*SbPendingFn) (const char *arg);
extern void sb_at_end_of_xact(SbPendingFn on_commit, SbPendingFn on_abort, const char *arg);

/* driver_local.c: background processes of the local backend. */
typedef struct SbCallInput SbCallInput;
extern pid_t sb_local_background_spawn(const char *session, int64 handle, const char *request,
									   const SbCallInput *in, pid_t *init_pid, int64 *init_start);
extern int	sb_local_background_stdin_connect(const char *session, int64 handle);
extern bool sb_local_background_exit(const char *session, int64 handle, int *code,
									 bool *server_stopped, bool *quota_exceeded);
extern int	sb_local_background_open_log(const char *session, int64 handle);
extern int64 sb_process_start_time(pid_t pid);

/* A background sandbox found running from its host-side files. */
typedef struct SbBgLive
{
	char	   *session;		/* its session's storage key */
	int64		handle;
	pid_t		pid;			/* the sandbox's first process */
	int64		start;			/* and its start time */
} SbBgLive;
extern List *sb_local_background_live(void);
extern void sb_local_background_forget(const char *session, int64 handle);
extern int	sb_local_live_open(const char *session, int64 id, int stream, bool create);
extern bool sb_local_live_create(const char *session, int64 id, int fds[2]);
extern void sb_local_live_forget(const char *session, int64 id);

/* background.c: stop processes (pid and start time): SIGTERM, SIGKILL after a grace period. */
extern void sb_stop_processes(const pid_t *pids, const int64 *starts, int n);

/* driver_cloudrun.c: the worker's asynchronous result lookups (curl multi). */
extern void sb_cloud_drive(void);
extern int	sb_cloud_wait_fds(SbHttpWaitFd *fds, int max_fds, long *timeout_ms);

/* driver_cloudrun.c: background processes of the cloud backend. */
extern char *sb_cloud_bg_start(const char *session, int64 handle, const char *request);
extern void sb_cloud_bg_abandon(const char *execution);
extern int	sb_cloud_bg_poll(const char *session, int64 handle, const char *execution,
							 bool check_execution, int *code);
extern void sb_cloud_bg_kill(const char *session, int64 handle, const char *execution);
extern char *sb_cloud_bg_logs(const char *session, int64 handle, size_t max, size_t *len);

/* background.c: stopping a session's background processes (drop_session). */
extern int	sb_background_kill(int64 handle, int64 session_id, const char *pattern,
							   ArrayBuildState **killed);

/*
 * stdin.c: a call's stdin (has_stdin false: /dev/null; with stdin_open, a
 * background process's pipe stays open for write_background_stdin) and its
 * own directory (cwd, relative to the session's, or NULL).
 */
struct SbCallInput
{
	bool		has_stdin;
	bool		stdin_open;
	const char *stdin_data;
	size_t		stdin_len;
	const char *cwd;
};

extern int	sb_max_stdin_bytes;
extern void sb_check_stdin_size(size_t len);
extern void sb_require_args(FunctionCallInfo fcinfo, int n);
extern void sb_call_input_args(FunctionCallInfo fcinfo, int stdin_arg, int bytes_arg,
							   int cwd_arg, SbCallInput *in);
extern void sb_execution_set_input(int64 id, const SbCallInput *in);
extern bytea *sb_call_input_bytea(const SbCallInput *in);
extern const SbPayload *sb_call_input_payload(const SbDriver *driver, const SbCallInput *in,
											  SbPayload *p);

/* exec.c: the steps of running one command, shared with the worker. */
extern char *sb_prepare_exec(const SbSession *session, const SbDriver *driver, bool fresh,
							 int64 id, const char *command, json_t *call_env, int64 timeout_ms,
							 SbState *state);
extern char *sb_prepare_exec_ex(const SbSession *session, const SbDriver *driver, bool fresh,
								int64 id, const char *command, json_t *call_env,
								int64 timeout_ms, const SbCallInput *in, SbState *state);
extern TimestampTz sb_exec_deadline(const SbDriver *driver, TimestampTz started,
									int64 timeout_ms);
extern void sb_decode_result(SbOutcome *outcome, const char *text, size_t len,
							 SbPayload *payloads, int npayloads);
extern text *sb_payload_text(SbPayload *p, bool truncated, bool *repaired);
extern bytea *sb_payload_bytea(SbPayload *p);
extern text *sb_outcome_text(SbOutcome *outcome, bool err);
extern void sb_apply_state(const SbSession *session, const SbDriver *driver,
						   const SbOutcome *outcome, SbState *state);
extern Datum sb_result_datum(TupleDesc desc, int64 id, const char *status, bool has_exit_code,
							 int exit_code, text *out, text *err, const char *error,
							 const char *cwd, Interval *duration, bool out_truncated,
							 bool err_truncated);
extern int64 sb_timeout_ms(Interval *iv);
extern int64 sb_timeout_cap_ms(int64 ms);
extern void sb_check_command(const char *command);
extern char *text_arg(FunctionCallInfo fcinfo, int n, const char *name);
extern void sb_refuse_unbuilt(FunctionCallInfo fcinfo, int first, const char *const *names, int n);

#endif							/* SB_DRIVER_H */
