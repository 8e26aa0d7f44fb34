/*
 * protocol.h
 *		The request, result and session-state documents exchanged between the
 *		extension and the executor, and their JSON encoding (jansson).
 *
 * This is the contract between the two programs.  Everything that crosses
 * it is validated on the receiving side: the executor runs user code, so the
 * extension treats a result as untrusted input.
 */
#ifndef SB_PROTOCOL_H
#define SB_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define SB_PROTOCOL_VERSION 1
#define SB_WORKSPACE "/workspace"
#define SB_MAX_CWD_BYTES 4096
#define SB_MAX_ENV_BYTES (1024 * 1024)

typedef enum SbStatus
{
	SB_STATUS_SUCCEEDED, /* exit code 0 */
	SB_STATUS_FAILED,	 /* non-zero exit code */
	SB_STATUS_TIMED_OUT, /* killed at the deadline */
	SB_STATUS_ERROR		 /* the sandbox itself failed */
} SbStatus;

extern const char *sb_status_name(SbStatus status);
extern bool sb_status_parse(const char *name, SbStatus *status);

/* Resource limits applied to the user's command (0 = no limit). */
typedef struct SbLimits
{
	long long nproc;
	long long memory_bytes;
	long long fsize_bytes;
	long long cpu_seconds;
} SbLimits;

/* One command to run in a session. */
typedef struct SbExecRequest
{
	long long id;
	const char *command;
	const char *cwd;
	json_t *env;	  /* the session's variables: object of strings */
	json_t *call_env; /* variables for this call only, or NULL */
	long long timeout_ms;
	long long max_output_bytes;
	long long kill_grace_ms;
	SbLimits limits;
	/* Cloud backend: where the session lives in the bucket (else NULL). */
	const char *session;
	const char *prefix; /* object-name prefix, "" for none */
} SbExecRequest;

/* What the executor reports back. */
typedef struct SbExecResult
{
	SbStatus status;
	bool has_exit_code;
	int exit_code;
	char *stdout_data;
	size_t stdout_len;
	bool stdout_truncated;
	bool stdout_repaired;
	char *stderr_data;
	size_t stderr_len;
	bool stderr_truncated;
	bool stderr_repaired;
	double duration_ms;
	char *error;	/* set when status is SB_STATUS_ERROR */
	bool has_state; /* false: the session state is unchanged */
	char *cwd;
	json_t *env;
	long long state_generation; /* cloud: GCS generation of the state written, or 0 */
} SbExecResult;

/* A session's durable state (state.json). */
typedef struct SbState
{
	long long generation;
	char *cwd;
	json_t *env;
	long long last_execution;
	char *workspace; /* cloud: object holding the workspace snapshot, or NULL */
} SbState;

/* Encoders return a NUL-terminated JSON text allocated with sb_malloc. */
extern char *sb_request_encode(const SbExecRequest *req);
extern char *sb_result_encode(const SbExecResult *res);
extern char *sb_state_encode(const SbState *state);

/*
 * Decoders validate the document and fill *out; strings point into memory
 * allocated with sb_malloc (json objects are owned by *out).  On failure
 * they return false with a message in errbuf.
 */
extern bool sb_request_decode(const char *text, size_t len, SbExecRequest *out,
							  json_t **holder, char *errbuf, size_t errlen);
extern bool sb_result_decode(const char *text, size_t len, SbExecResult *out,
							 char *errbuf, size_t errlen);
extern bool sb_state_decode(const char *text, size_t len, SbState *out, char *errbuf,
							size_t errlen);

/* sb_result_clear frees what a decoded or executed result owns. */
extern void sb_result_clear(SbExecResult *res);

/* sb_env_valid checks that env is an object of valid names to UTF-8 strings. */
extern bool sb_env_valid(const json_t *env, char *errbuf, size_t errlen);

#endif /* SB_PROTOCOL_H */
