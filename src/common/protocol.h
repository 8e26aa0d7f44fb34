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
/*
 * The largest NAME=VALUE a session or call variable may be: the kernel's
 * limit for one string passed to a program (MAX_ARG_STRLEN, 128 KiB with its
 * NUL).  Variables are exported, so a larger one would make every program the
 * command starts fail with "Argument list too long".
 */
#define SB_MAX_ENV_VAR_BYTES (128 * 1024 - 1)

typedef enum SbStatus
{
	SB_STATUS_SUCCEEDED, /* exit code 0 */
	SB_STATUS_FAILED,	 /* non-zero exit code */
	SB_STATUS_TIMED_OUT, /* killed at the deadline */
	SB_STATUS_ERROR,	 /* the sandbox itself failed */
	SB_STATUS_QUOTA_EXCEEDED /* stopped: the session's disk quota was full */
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

/*
 * How the cloud executor runs a user command (request member "isolation";
 * missing means SB_ISOLATION_SANDBOX, so an older extension gets the safe
 * default): in a sandbox of its own inside the container, without the
 * executor's credentials, environment or network (see executor/isolate.c),
 * or, when an operator opted out, directly in the container.
 */
typedef enum SbIsolation
{
	SB_ISOLATION_SANDBOX,
	SB_ISOLATION_NONE
} SbIsolation;

extern const char *sb_isolation_name(SbIsolation isolation);
extern bool sb_isolation_parse(const char *name, SbIsolation *isolation);

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
	SbIsolation isolation; /* cloud: how the command is isolated in the container */
	long long disk_quota_bytes; /* local: the session's disk quota, watched; 0 = none */
	/*
	 * stdin (issue 14): has_stdin false = /dev/null.  Otherwise stdin_len
	 * bytes fed to the command on a pipe, then closed (background with
	 * stdin_open: left open for write_background_stdin).  They travel as the
	 * frame's payload 0 ("stdin_in_frame", local) or in base64 ("stdin").
	 */
	bool has_stdin;
	bool stdin_in_frame;
	bool stdin_open;
	const char *stdin_data;
	size_t stdin_len;
	/* This call's directory ("call_cwd"): relative to cwd, or absolute; NULL = cwd. */
	const char *call_cwd;
	/*
	 * Live output (issue 14, part 4): not in the JSON; set by the executor
	 * that runs the request (NULL: none).  See executor/command.h.
	 */
	const struct SbLiveHook *live;
} SbExecRequest;

/*
 * A writable background process (stdin_open): the listening socket its
 * executor takes stdin connections on (see executor/background.c).
 */
#define SB_STDIN_LISTEN_FD 7

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
	/*
	 * cloud: incremental archives (GNU tar --listed-incremental) applied in
	 * order after the base snapshot; sb_malloc'ed array of sb_malloc'ed names
	 */
	char **increments;
	int n_increments;
} SbState;

/* At most this many increments after a state's base snapshot; a name at most SB_MAX_OBJECT_NAME. */
#define SB_MAX_INCREMENTS 1000
#define SB_MAX_OBJECT_NAME 1024

/* Encoders return a NUL-terminated JSON text allocated with sb_malloc. */
extern char *sb_request_encode(const SbExecRequest *req);
extern char *sb_result_encode(const SbExecResult *res);
extern char *sb_state_encode(const SbState *state);
/* sb_state_clear frees what a decoded state owns (strings, env, increments) and zeroes it. */
extern void sb_state_clear(SbState *state);

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

/*
 * Frame mode (the local backend, common/frame.h): the bytes travel raw in
 * the frame's payloads, not in the JSON.  sb_result_encode_framed writes
 * "output_in_frame": true instead of "stdout"/"stderr" (payload 0 / 1: the
 * output as captured, not repaired; the host repairs it).
 * sb_result_decode_ex is sb_result_decode that also accepts such a result
 * when in_frame is not NULL: then *in_frame says so, and stdout_data and
 * stderr_data are left NULL for the caller to take from the payloads.
 */
extern char *sb_result_encode_framed(const SbExecResult *res);
extern bool sb_result_decode_ex(const char *text, size_t len, SbExecResult *out,
								bool *in_frame, char *errbuf, size_t errlen);

/*
 * sb_cwd_normal says whether path is absolute and normalized: no empty, "."
 * or ".." component and no trailing slash ("/" itself is).
 */
extern bool sb_cwd_normal(const char *path);

/* sb_result_clear frees what a decoded or executed result owns. */
extern void sb_result_clear(SbExecResult *res);

/* sb_env_valid checks that env is an object of valid names to UTF-8 strings. */
extern bool sb_env_valid(const json_t *env, char *errbuf, size_t errlen);

/*
 * sb_env_name_reserved says whether a variable belongs to the shell or the
 * executor (SHELLOPTS, BASHOPTS, BASH_*, ENV, IFS, PS4, PWD, ..., __sb_*):
 * never taken from an env argument, never kept in a session.
 */
extern bool sb_env_name_reserved(const char *name);

/*
 * sb_env_settable checks variables a caller passes (an env argument, a
 * trigger's row values): sb_env_valid, no reserved name, each NAME=VALUE at
 * most SB_MAX_ENV_VAR_BYTES.
 */
extern bool sb_env_settable(const json_t *env, char *errbuf, size_t errlen);

/*
 * File operations (requests whose "op" is one of the file_* names).  They
 * are applied natively by the executor, never through a shell; paths are
 * relative to the session's cwd and must stay inside /workspace or /tmp.
 * They never change the session's cwd or environment, so their results
 * carry no state.
 */
typedef enum SbFileOp
{
	SB_FILE_WRITE,
	SB_FILE_READ,
	SB_FILE_EXISTS,
	SB_FILE_DELETE,
	SB_FILE_LIST,
	SB_FILE_REPLACE,
	SB_FILE_SEARCH,
	SB_FILE_FIND,
	SB_FILE_UPLOAD,
	SB_FILE_DOWNLOAD
} SbFileOp;

/* Why a file operation failed: the result's "error_code". */
typedef enum SbFileError
{
	SB_FERR_NONE,			  /* no code: the sandbox itself failed */
	SB_FERR_NOT_FOUND,
	SB_FERR_IS_DIRECTORY,
	SB_FERR_NOT_A_DIRECTORY,
	SB_FERR_OUTSIDE_SANDBOX,
	SB_FERR_INVALID_REGEX,
	SB_FERR_TOO_LARGE,
	SB_FERR_IO_ERROR,
	SB_FERR_INVALID_ARGUMENT,
	SB_FERR_DISK_FULL		  /* the session's disk (its quota) is full */
} SbFileError;

extern const char *sb_file_op_name(SbFileOp op);
extern bool sb_file_op_parse(const char *name, SbFileOp *op);
extern const char *sb_file_error_name(SbFileError code);
extern bool sb_file_error_parse(const char *name, SbFileError *code);

/*
 * The largest result document a file operation with a transfer limit of
 * max_bytes may produce: its payload travels base64-encoded (4/3), plus
 * room for everything else.
 */
#define SB_FILE_RESULT_MAX(max_bytes) \
	((((size_t) (max_bytes) + 2) / 3) * 4 + (size_t) 1024 * 1024)

/* One file operation. */
typedef struct SbFileRequest
{
	SbFileOp	op;
	long long	id;
	const char *cwd;
	const char *path;
	/* write: the content ("content"); upload: the bytes ("data", base64) */
	const char *data;
	size_t		data_len;
	bool		append;			/* write */
	bool		leading_newline;	/* write */
	bool		trailing_newline;	/* write */
	long long	start_line;		/* read: first line (from 1), 0 = the start */
	long long	end_line;		/* read: last line (inclusive), 0 = the end */
	bool		recursive;		/* list */
	const char *old_str;		/* replace */
	const char *new_str;		/* replace */
	const char *pattern;		/* search: POSIX ERE; find: glob */
	long long	max_bytes;		/* largest payload (upload, download, read, listings) */
	long long	timeout_ms;		/* bounds the whole run (cloud: the execution) */
	/* Cloud backend: where the session lives, and the upload's object. */
	const char *session;
	const char *prefix;
	const char *transfer;		/* upload: object holding the bytes (else inline) */
	char	   *owned;			/* decoded bytes that data points to, or NULL */
	/* write, upload: data travels as the frame's payload 0, not in the JSON */
	bool		content_in_frame;
} SbFileRequest;

/* What the executor reports back for a file operation. */
typedef struct SbFileResult
{
	SbStatus	status;			/* SB_STATUS_SUCCEEDED or SB_STATUS_ERROR */
	SbFileError code;			/* with SB_STATUS_ERROR */
	char	   *error;			/* with SB_STATUS_ERROR: names the path */
	bool		flag;			/* exists: it exists; delete: it was deleted */
	long long	count;			/* bytes written, replacements, or payload bytes */
	char	   *data;			/* read, download: the file's bytes */
	size_t		data_len;
	/*
	 * list: [{"path", "type", "size", "mode", "mtime"}], search: [{"line",
	 * "text"}], find: ["path"]; paths are as the sandbox sees them
	 */
	json_t	   *items;
	char	   *transfer;		/* cloud: object holding the payload instead */
	long long	state_generation;	/* cloud: state.json written after a change */
	double		duration_ms;
	bool		changed;		/* not encoded: the workspace was modified */
	/*
	 * Not encoded: on the host, data is a frame's payload (palloc'd, with
	 * room for a varlena header before it), not a decoded copy.
	 */
	bool		data_in_payload;
} SbFileResult;

extern char *sb_file_request_encode(const SbFileRequest *req);

/*
 * sb_file_request_decode returns 1 with *out filled if text is a file
 * operation, 0 if it is a valid document of another operation (decode it
 * with sb_request_decode), or -1 with a message in errbuf.  Strings point
 * into *holder; sb_file_request_clear releases both.
 */
extern int	sb_file_request_decode(const char *text, size_t len, SbFileRequest *out,
								   json_t **holder, char *errbuf, size_t errlen);

/*
 * sb_file_request_decode_ex also takes the frame's payload 0 (NULL: no
 * frame): a write or upload that says "content_in_frame" gets it as its
 * data (which then points into payload, so payload must outlive *out).
 */
extern int	sb_file_request_decode_ex(const char *text, size_t len, const char *payload,
									  size_t payload_len, SbFileRequest *out,
									  json_t **holder, char *errbuf, size_t errlen);
extern void sb_file_request_clear(SbFileRequest *req, json_t *holder);

/*
 * sb_file_result_encode encodes a result with its payload (data in base64,
 * or items), unless transfer is set: then the payload is in that object
 * (the file's bytes, or the items' JSON text).
 */
extern char *sb_file_result_encode(const SbFileResult *res);

/*
 * Frame mode: sb_file_result_encode_framed leaves data to the frame's
 * payload 0 ("content_in_frame": true); sb_file_result_decode_ex accepts
 * such a result when in_frame is not NULL, setting *in_frame (data is then
 * NULL: the caller takes payload 0).
 */
extern char *sb_file_result_encode_framed(const SbFileResult *res);

/*
 * sb_file_result_decode validates a result of operation op.  A result
 * whose payload is in a transfer object has transfer set: the caller reads
 * the object, and for list, search and find decodes it with
 * sb_file_items_decode.
 */
extern bool sb_file_result_decode(const char *text, size_t len, SbFileOp op,
								  SbFileResult *out, char *errbuf, size_t errlen);
extern bool sb_file_result_decode_ex(const char *text, size_t len, SbFileOp op,
									 SbFileResult *out, bool *in_frame, char *errbuf,
									 size_t errlen);
extern bool sb_file_items_decode(const char *text, size_t len, SbFileOp op, json_t **items,
								 char *errbuf, size_t errlen);
extern void sb_file_result_clear(SbFileResult *res);

#endif /* SB_PROTOCOL_H */
