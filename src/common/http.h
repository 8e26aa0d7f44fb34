/*-------------------------------------------------------------------------
 *
 * http.h
 *	  HTTP over libcurl with deadlines, retries, cancellation and Google
 *	  error parsing, shared by the extension and the executor.
 *
 * No PostgreSQL headers here: errors come back as SbError values and the
 * caller decides how to report them.
 *
 * A request is an SbHttpRequest: sb_http_request_init() fills it,
 * sb_http_perform() runs it to completion (all retries included).  The
 * pieces that perform uses -- sb_http_request_prepare() to configure the
 * curl easy handle for one attempt and sb_http_request_complete() to
 * classify the attempt's outcome -- are public too, so that an event loop
 * can drive many requests through one curl multi handle.
 *
 * Times are milliseconds on CLOCK_MONOTONIC (see sb_now_ms()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

/* Kinds of error that shared code reports. */
typedef enum SbErrKind
{
	SB_OK = 0,
	SB_ERR_HTTP,		 /* an HTTP status with no better mapping */
	SB_ERR_NETWORK,		 /* connection failed, reset, ... */
	SB_ERR_TIMEOUT,		 /* the call's deadline passed */
	SB_ERR_CANCELLED,	 /* should_abort() asked us to stop */
	SB_ERR_AUTH,		 /* 401, or no token could be obtained */
	SB_ERR_PRECONDITION, /* 412: ifGenerationMatch did not hold */
	SB_ERR_NOT_FOUND,	 /* 404 */
	SB_ERR_FORBIDDEN,	 /* 403 */
	SB_ERR_INVALID,		 /* 400, bad argument, response too large */
	SB_ERR_INTERNAL		 /* out of memory, unexpected response, bug */
} SbErrKind;

/* An error as a value; kind == SB_OK means no error. */
typedef struct SbError
{
	SbErrKind kind;
	long http_status;  /* last HTTP status seen, 0 if none */
	char reason[64];   /* e.g. Google's "conditionNotMet" or
						* "PERMISSION_DENIED" */
	char message[512]; /* human-readable; never contains secrets */
} SbError;

/* Cancel hook: return nonzero to abort the call in progress. Must be cheap. */
typedef int (*SbAbortFn)(void *arg);

/* Retry, timeout and cancellation settings for a call. */
typedef struct SbHttpPolicy
{
	long connect_timeout_ms; /* per attempt; default 10000 */
	long backoff_base_ms;	 /* first retry waits up to this; 100 */
	long backoff_cap_ms;	 /* no retry waits longer; default 5000 */
	int max_attempts;		 /* 0 = retry until the deadline (default) */
	SbAbortFn should_abort;	 /* NULL = never abort */
	void *abort_arg;
} SbHttpPolicy;

/* What sb_http_request_complete() decided about one attempt. */
typedef enum SbHttpOutcome
{
	SB_HTTP_DONE,  /* 2xx: success */
	SB_HTTP_RETRY, /* transient failure: retry at *retry_at_ms */
	SB_HTTP_FAILED /* final failure: *err is filled */
} SbHttpOutcome;

/* Default per-call timeout when a request has no deadline. */
#define SB_HTTP_DEFAULT_TIMEOUT_MS 60000
/* Default cap on a response body. */
#define SB_HTTP_DEFAULT_MAX_RESPONSE ((size_t) 16 * 1024 * 1024)

/* A growable byte buffer with a hard size cap. */
typedef struct SbHttpBuf
{
	char *data; /* malloc'd, always NUL-terminated if non-NULL */
	size_t len;
	size_t cap;
	size_t max;	  /* appending past this fails */
	int overflow; /* set when an append was refused */
} SbHttpBuf;

/*
 * One HTTP call.  Initialise with sb_http_request_init(), free with
 * sb_http_request_cleanup().  Fields marked "in" may be changed between
 * init and perform; fields marked "out" are results.
 */
typedef struct SbHttpRequest
{
	char method[16];			/* in: "GET", "POST", ... */
	char *url;					/* in: owned copy */
	struct curl_slist *headers; /* in: owned; use sb_http_request_add_header */
	const char *body;			/* in: borrowed; must outlive the call */
	size_t body_len;			/* in */
	int64_t deadline_ms;		/* in: absolute monotonic ms; 0 = now +
								 * SB_HTTP_DEFAULT_TIMEOUT_MS at perform */
	size_t max_response_bytes;	/* in: cap on the response body */
	int idempotent;				/* in: default 1; 0 = retry only when the
								 * request surely was not processed */
	SbHttpPolicy policy;		/* in */

	long status;	/* out: HTTP status of the last attempt */
	SbHttpBuf response; /* out: body of the last attempt */
	int attempts;	/* out: attempts made by this call (requests
					 * sent, including curl's own resends) */

	/* private */
	CURL *easy;
	struct curl_slist *sent_headers;
	char *auth_header;
	SbHttpBuf resp_headers;
	int sends; /* requests sent in this attempt */
	int aborted;
	int in_multi;	   /* started with sb_http_start, not yet finished */
	struct SbHttpClient *started_on;
	int finished;	   /* the started attempt is over; see result */
	CURLcode result;   /* with finished: the transfer's outcome */
	char errbuf[CURL_ERROR_SIZE];
} SbHttpRequest;

/* A connection cache (a curl multi handle); one per thread. */
typedef struct SbHttpClient SbHttpClient;

/* Opaque here; defined in oauth.h. */
typedef struct SbAuth SbAuth;

/* --- errors ------------------------------------------------------------ */

extern void sb_error_clear(SbError *err);
extern void sb_error_set(SbError *err, SbErrKind kind, long http_status,
						 const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
extern void sb_error_prefix(SbError *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
extern const char *sb_err_kind_name(SbErrKind kind);
extern SbErrKind sb_err_kind_for_status(long http_status);
extern void sb_error_from_response(SbError *err, long http_status, const char *body,
								   size_t body_len, const char *context);

/* --- time: sb_now_ms() is in sbutil.h ------------------------------------ */

/* --- buffers ----------------------------------------------------------- */

extern void sb_httpbuf_init(SbHttpBuf *buf, size_t max);
extern int sb_httpbuf_append(SbHttpBuf *buf, const void *data, size_t len);
extern void sb_httpbuf_reset(SbHttpBuf *buf);
extern void sb_httpbuf_free(SbHttpBuf *buf);
extern char *sb_httpbuf_steal(SbHttpBuf *buf, size_t *len);

/* --- setup ------------------------------------------------------------- */

extern int sb_http_global_init(SbError *err);
extern void sb_http_global_cleanup(void);
extern void sb_http_policy_default(SbHttpPolicy *policy);
extern SbHttpClient *sb_http_client_new(SbError *err);
extern void sb_http_client_free(SbHttpClient *client);

/* --- requests ---------------------------------------------------------- */

extern int sb_http_request_init(SbHttpRequest *req, const char *method, const char *url,
								SbError *err);
extern int sb_http_request_add_header(SbHttpRequest *req, SbError *err, const char *fmt,
									  ...) __attribute__((format(printf, 3, 4)));
extern void sb_http_request_set_body(SbHttpRequest *req, const void *data, size_t len);
extern int sb_http_request_set_auth_header(SbHttpRequest *req, const char *header,
										   SbError *err);
extern void sb_http_request_cleanup(SbHttpRequest *req);

extern int sb_http_request_prepare(SbHttpRequest *req, SbError *err);
extern SbHttpOutcome sb_http_request_complete(SbHttpRequest *req, CURLcode result,
											  int64_t *retry_at_ms, SbError *err);

extern int sb_http_perform(SbHttpClient *client, SbHttpRequest *req, SbError *err);
extern int sb_http_perform_auth(SbHttpClient *client, SbHttpRequest *req, SbAuth *auth,
								SbError *err);

extern char *sb_http_response_header(const SbHttpRequest *req, const char *name);

/*
 * --- one attempt at a time, driven by an event loop ---------------------
 *
 * sb_http_start() prepares one attempt and adds it to the client's multi
 * handle without waiting; sb_http_client_drive() makes progress on every
 * started attempt (so does any blocking call on the same client); once req->finished, sb_http_finish() classifies the outcome.
 * There are no retries: the caller decides when to start again.
 * sb_http_abandon() takes an unfinished attempt back (before cleanup).
 * sb_http_client_fds() says which sockets to wait for and for how long.
 */
typedef struct SbHttpWaitFd
{
	int fd;
	int readable; /* wait until it can be read */
	int writable; /* wait until it can be written */
} SbHttpWaitFd;

extern int sb_http_start(SbHttpClient *client, SbHttpRequest *req, SbError *err);
extern int sb_http_client_drive(SbHttpClient *client, int settle_ms);
extern int sb_http_finish(SbHttpRequest *req, SbError *err);
extern void sb_http_abandon(SbHttpClient *client, SbHttpRequest *req);
extern int sb_http_client_fds(SbHttpClient *client, SbHttpWaitFd *fds, int max_fds,
							  long *timeout_ms);

/* --- helpers ----------------------------------------------------------- */

extern char *sb_pct_encode(const char *s);
extern int sb_sleep_ms(int64_t ms, const SbHttpPolicy *policy);

#endif /* SB_HTTP_H */
