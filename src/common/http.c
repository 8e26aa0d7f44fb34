/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP over libcurl for the GCS, Cloud Run and OAuth clients: one call
 *	  is a sequence of attempts bounded by an absolute deadline, retried with
 *	  capped exponential backoff and full jitter on transient failures,
 *	  abortable through a cancel hook, with Google error bodies turned into
 *	  SbError values.
 *
 * Each attempt runs on a curl multi handle (the SbHttpClient's, so that
 * connections are reused, or a temporary one) and waits in slices of at
 * most SB_POLL_SLICE_MS so that the cancel hook is checked often even
 * while the server sends nothing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "http.h"
#include "oauth.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sbutil.h" /* routes json_object() away from the postgres binary's symbol */

/* Connections one client keeps to a host (see sb_http_client_new). */
#define SB_HTTP_MAX_HOST_CONNECTIONS 16
/* Longest wait between two checks of the cancel hook. */
#define SB_POLL_SLICE_MS 50
/* Cap on the stored response headers of one attempt. */
#define SB_MAX_RESPONSE_HEADERS (64 * 1024)

struct SbHttpClient
{
	CURLM *multi;
	int started; /* attempts started with sb_http_start and not yet over */
};

static int sb_http_initialized = 0;
static _Thread_local uint64_t sb_rng_state = 0;

/* sb_error_clear resets an error to "no error". */
void
sb_error_clear(SbError *err)
{
	if (err == NULL)
		return;
	err->kind = SB_OK;
	err->http_status = 0;
	err->reason[0] = '\0';
	err->message[0] = '\0';
}

/* sb_error_set fills an error with a kind, status, reason and message. */
void
sb_error_set(SbError *err, SbErrKind kind, long http_status, const char *reason,
			 const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	err->kind = kind;
	err->http_status = http_status;
	snprintf(err->reason, sizeof(err->reason), "%s", reason ? reason : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

/* sb_error_prefix prepends context to an error's message. */
void
sb_error_prefix(SbError *err, const char *fmt, ...)
{
	char buf[sizeof(err->message)];
	size_t plen;
	size_t olen;
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* keep as much of the old message as fits after the prefix */
	plen = strlen(buf);
	olen = strnlen(err->message, sizeof(err->message) - 1);
	if (olen > sizeof(buf) - 1 - plen)
		olen = sizeof(buf) - 1 - plen;
	memcpy(buf + plen, err->message, olen);
	buf[plen + olen] = '\0';
	memcpy(err->message, buf, sizeof(buf));
}

/* sb_err_kind_name returns a constant name for an error kind. */
const char *
sb_err_kind_name(SbErrKind kind)
{
	switch (kind)
	{
		case SB_OK:
			return "ok";
		case SB_ERR_HTTP:
			return "http";
		case SB_ERR_NETWORK:
			return "network";
		case SB_ERR_TIMEOUT:
			return "timeout";
		case SB_ERR_CANCELLED:
			return "cancelled";
		case SB_ERR_AUTH:
			return "auth";
		case SB_ERR_PRECONDITION:
			return "precondition";
		case SB_ERR_NOT_FOUND:
			return "not_found";
		case SB_ERR_FORBIDDEN:
			return "forbidden";
		case SB_ERR_INVALID:
			return "invalid";
		case SB_ERR_INTERNAL:
			return "internal";
	}
	return "unknown";
}

/* sb_err_kind_for_status maps a non-2xx HTTP status to an error kind. */
SbErrKind
sb_err_kind_for_status(long http_status)
{
	switch (http_status)
	{
		case 400:
			return SB_ERR_INVALID;
		case 401:
			return SB_ERR_AUTH;
		case 403:
			return SB_ERR_FORBIDDEN;
		case 404:
			return SB_ERR_NOT_FOUND;
		case 412:
			return SB_ERR_PRECONDITION;
		default:
			return SB_ERR_HTTP;
	}
}

/* CopyPrintable copies at most n bytes of text, replacing control bytes. */
static void
CopyPrintable(char *dst, size_t dstsize, const char *src, size_t n)
{
	size_t i;
	size_t j = 0;

	if (dstsize == 0)
		return;
	for (i = 0; i < n && src[i] != '\0' && j + 1 < dstsize; i++)
	{
		unsigned char c = (unsigned char) src[i];

		dst[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char) c;
	}
	dst[j] = '\0';
	/* trim trailing blanks */
	while (j > 0 && dst[j - 1] == ' ')
		dst[--j] = '\0';
}

/*
 * sb_error_from_response fills an error from a non-2xx response, reading
 * Google's JSON error shapes (GCS, Cloud Run, OAuth) when present.
 */
void
sb_error_from_response(SbError *err, long http_status, const char *body, size_t body_len,
					   const char *context)
{
	char reason[64] = "";
	char detail[400] = "";
	json_t *root = NULL;

	if (err == NULL)
		return;
	if (body != NULL && body_len > 0)
		root = json_loadb(body, body_len, 0, NULL);
	if (root != NULL && json_is_object(root))
	{
		json_t *e = json_object_get(root, "error");

		if (json_is_object(e))
		{
			/* {"error":{"code":..,"message":..,"status":..,"errors":[..]}} */
			json_t *msg = json_object_get(e, "message");
			json_t *status = json_object_get(e, "status");
			json_t *errors = json_object_get(e, "errors");
			json_t *first = json_is_array(errors) ? json_array_get(errors, 0) : NULL;
			json_t *r = json_is_object(first) ? json_object_get(first, "reason") : NULL;

			if (json_is_string(r))
				snprintf(reason, sizeof(reason), "%s", json_string_value(r));
			else if (json_is_string(status))
				snprintf(reason, sizeof(reason), "%s", json_string_value(status));
			if (json_is_string(msg))
				CopyPrintable(detail, sizeof(detail), json_string_value(msg),
							  json_string_length(msg));
		}
		else if (json_is_string(e))
		{
			/* OAuth: {"error":"invalid_grant","error_description":".."} */
			json_t *desc = json_object_get(root, "error_description");

			snprintf(reason, sizeof(reason), "%s", json_string_value(e));
			if (json_is_string(desc))
				CopyPrintable(detail, sizeof(detail), json_string_value(desc),
							  json_string_length(desc));
		}
	}
	if (root == NULL && body != NULL && body_len > 0)
		CopyPrintable(detail, sizeof(detail), body, body_len < 200 ? body_len : 200);
	json_decref(root);

	sb_error_set(err, sb_err_kind_for_status(http_status), http_status, reason,
				 "%s: HTTP %ld%s%s%s%s", context ? context : "request", http_status,
				 reason[0] ? " " : "", reason, detail[0] ? ": " : "", detail);
}

/* NextRandom returns a pseudo-random number (xorshift64*), for jitter only. */
static uint64_t
NextRandom(void)
{
	uint64_t x;

	if (sb_rng_state == 0)
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		sb_rng_state = ((uint64_t) ts.tv_nsec << 20) ^ (uint64_t) ts.tv_sec ^
					   ((uint64_t) getpid() << 40) ^ (uint64_t) (uintptr_t) &ts;
		if (sb_rng_state == 0)
			sb_rng_state = 0x9e3779b97f4a7c15ULL;
	}
	x = sb_rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sb_rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* sb_httpbuf_init makes an empty buffer that refuses to grow past max bytes. */
void
sb_httpbuf_init(SbHttpBuf *buf, size_t max)
{
	buf->data = NULL;
	buf->len = 0;
	buf->cap = 0;
	buf->max = max;
	buf->overflow = 0;
}

/* sb_httpbuf_append appends bytes; returns -1 (and sets overflow) past the cap or on OOM. */
int
sb_httpbuf_append(SbHttpBuf *buf, const void *data, size_t len)
{
	if (len > buf->max || buf->len > buf->max - len)
	{
		buf->overflow = 1;
		return -1;
	}
	if (buf->len + len + 1 > buf->cap)
	{
		size_t ncap = buf->cap ? buf->cap : 1024;
		char *n;

		while (ncap < buf->len + len + 1)
			ncap *= 2;
		if (ncap > buf->max + 1)
			ncap = buf->max + 1;
		n = realloc(buf->data, ncap);
		if (n == NULL)
			return -1;
		buf->data = n;
		buf->cap = ncap;
	}
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

/* sb_httpbuf_reset empties a buffer but keeps its memory. */
void
sb_httpbuf_reset(SbHttpBuf *buf)
{
	buf->len = 0;
	buf->overflow = 0;
	if (buf->data)
		buf->data[0] = '\0';
}

/* sb_httpbuf_free releases a buffer's memory. */
void
sb_httpbuf_free(SbHttpBuf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
	buf->overflow = 0;
}

/*
 * sb_httpbuf_steal hands the buffer's NUL-terminated data to the caller (who
 * frees it with free()) and leaves the buffer empty; never returns NULL
 * unless out of memory.
 */
char *
sb_httpbuf_steal(SbHttpBuf *buf, size_t *len)
{
	char *d = buf->data;

	if (d == NULL)
		d = calloc(1, 1);
	if (len)
		*len = buf->data ? buf->len : 0;
	buf->data = NULL;
	buf->len = buf->cap = 0;
	return d;
}

/*
 * sb_http_global_init initialises libcurl once per process; call it at
 * startup, before any other thread exists.  Returns 0 or -1 with *err set.
 */
int
sb_http_global_init(SbError *err)
{
	CURLcode rc;

	sb_error_clear(err);
	if (sb_http_initialized)
		return 0;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "curl_global_init failed: %s",
					 curl_easy_strerror(rc));
		return -1;
	}
	sb_http_initialized = 1;
	return 0;
}

/* sb_http_global_cleanup releases libcurl's global state at process exit. */
void
sb_http_global_cleanup(void)
{
	if (!sb_http_initialized)
		return;
	curl_global_cleanup();
	sb_http_initialized = 0;
}

/* sb_http_policy_default fills a policy with the default settings. */
void
sb_http_policy_default(SbHttpPolicy *policy)
{
	policy->connect_timeout_ms = 10000;
	policy->backoff_base_ms = 100;
	policy->backoff_cap_ms = 5000;
	policy->max_attempts = 0;
	policy->should_abort = NULL;
	policy->abort_arg = NULL;
}

/*
 * sb_http_client_new makes a connection cache for sequential calls on one
 * thread; the caller frees it with sb_http_client_free().  NULL on error.
 */
SbHttpClient *
sb_http_client_new(SbError *err)
{
	SbHttpClient *client;

	sb_error_clear(err);
	if (sb_http_global_init(err) != 0)
		return NULL;
	client = calloc(1, sizeof(*client));
	if (client == NULL || (client->multi = curl_multi_init()) == NULL)
	{
		free(client);
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory creating HTTP client");
		return NULL;
	}
	/*
	 * Calls started side by side (sb_http_start) share a few kept-alive
	 * connections instead of opening one each: new connections cost both
	 * ends far more than waiting a moment for a free one.
	 */
	curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) SB_HTTP_MAX_HOST_CONNECTIONS);
	curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, (long) (2 * SB_HTTP_MAX_HOST_CONNECTIONS));
	return client;
}

/* sb_http_client_free closes the client's connections and frees it. */
void
sb_http_client_free(SbHttpClient *client)
{
	if (client == NULL)
		return;
	curl_multi_cleanup(client->multi);
	free(client);
}

/*
 * sb_http_request_init sets up a request with default settings; the
 * caller must call sb_http_request_cleanup() afterwards, even on failure.
 */
int
sb_http_request_init(SbHttpRequest *req, const char *method, const char *url,
					 SbError *err)
{
	sb_error_clear(err);
	memset(req, 0, sizeof(*req));
	snprintf(req->method, sizeof(req->method), "%s", method);
	req->max_response_bytes = SB_HTTP_DEFAULT_MAX_RESPONSE;
	req->idempotent = 1;
	sb_http_policy_default(&req->policy);
	sb_httpbuf_init(&req->response, req->max_response_bytes);
	sb_httpbuf_init(&req->resp_headers, SB_MAX_RESPONSE_HEADERS);
	req->url = strdup(url);
	if (req->url == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	return 0;
}

/* sb_http_request_add_header adds one "Name: value" header (printf-style). */
int
sb_http_request_add_header(SbHttpRequest *req, SbError *err, const char *fmt, ...)
{
	char *line = NULL;
	struct curl_slist *n;
	va_list ap;
	int r;

	sb_error_clear(err);
	va_start(ap, fmt);
	r = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (r < 0)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	n = curl_slist_append(req->headers, line);
	free(line);
	if (n == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	req->headers = n;
	return 0;
}

/* sb_http_request_set_body sets a borrowed request body (must outlive the call). */
void
sb_http_request_set_body(SbHttpRequest *req, const void *data, size_t len)
{
	req->body = data;
	req->body_len = len;
}

/* WipeString overwrites a secret string in memory before it is freed. */
static void
WipeString(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
}

/* FreeHeaderList wipes and frees a curl header list (it may hold a token). */
static void
FreeHeaderList(struct curl_slist *list)
{
	struct curl_slist *l;

	for (l = list; l != NULL; l = l->next)
		WipeString(l->data);
	curl_slist_free_all(list);
}

/*
 * sb_http_request_set_auth_header sets (or with NULL removes) the
 * "Authorization: ..." header line; the request keeps its own copy and
 * wipes it when done.
 */
int
sb_http_request_set_auth_header(SbHttpRequest *req, const char *header, SbError *err)
{
	sb_error_clear(err);
	WipeString(req->auth_header);
	free(req->auth_header);
	req->auth_header = NULL;
	if (header == NULL)
		return 0;
	req->auth_header = strdup(header);
	if (req->auth_header == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	return 0;
}

/* sb_http_request_cleanup frees everything a request owns (not the struct). */
void
sb_http_request_cleanup(SbHttpRequest *req)
{
	if (req->in_multi && req->started_on != NULL)
		sb_http_abandon(req->started_on, req);
	if (req->easy)
		curl_easy_cleanup(req->easy);
	req->easy = NULL;
	FreeHeaderList(req->headers);
	req->headers = NULL;
	FreeHeaderList(req->sent_headers);
	req->sent_headers = NULL;
	WipeString(req->auth_header);
	free(req->auth_header);
	req->auth_header = NULL;
	free(req->url);
	req->url = NULL;
	sb_httpbuf_free(&req->response);
	sb_httpbuf_free(&req->resp_headers);
}

/* WriteBody is curl's write callback: append to the capped response buffer. */
static size_t
WriteBody(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	SbHttpRequest *req = userdata;
	size_t n = size * nmemb;

	if (sb_httpbuf_append(&req->response, ptr, n) != 0)
		return 0;
	return n;
}

/* WriteHeader is curl's header callback: keep the last response's header lines. */
static size_t
WriteHeader(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	SbHttpRequest *req = userdata;
	size_t n = size * nmemb;

	/* a new status line starts a new response (after 100 Continue, say) */
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
		sb_httpbuf_reset(&req->resp_headers);
	(void) sb_httpbuf_append(&req->resp_headers, ptr, n); /* overflow: drop it */
	return n;
}

/* CheckAbort asks the cancel hook whether to stop; remembers a "yes". */
static int
CheckAbort(SbHttpRequest *req)
{
	if (!req->aborted && req->policy.should_abort != NULL &&
		req->policy.should_abort(req->policy.abort_arg))
		req->aborted = 1;
	return req->aborted;
}

/* XferInfo is curl's progress callback: abort the transfer when asked to. */
static int
XferInfo(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		 curl_off_t ulnow)
{
	(void) dltotal;
	(void) dlnow;
	(void) ultotal;
	(void) ulnow;
	return CheckAbort((SbHttpRequest *) clientp) ? 1 : 0;
}

/*
 * CountSend is curl's pre-request callback: it runs once per request sent,
 * so it also sees curl's own silent resend after a reused connection died.
 */
static int
CountSend(void *clientp, char *conn_primary_ip, char *conn_local_ip,
		  int conn_primary_port, int conn_local_port)
{
	(void) conn_primary_ip;
	(void) conn_local_ip;
	(void) conn_primary_port;
	(void) conn_local_port;
	((SbHttpRequest *) clientp)->sends++;
	return CURL_PREREQFUNC_OK;
}

/* HasHeader tells whether a header list sets the named header. */
static int
HasHeader(const struct curl_slist *list, const char *name)
{
	size_t n = strlen(name);

	for (; list != NULL; list = list->next)
		if (strncasecmp(list->data, name, n) == 0 &&
			(list->data[n] == ':' || list->data[n] == ';'))
			return 1;
	return 0;
}

/* UrlForMessages returns a copy of the URL without its query, for error messages. */
static void
UrlForMessages(const char *url, char *out, size_t outsize)
{
	size_t n = strcspn(url, "?#");

	if (n > 200)
		n = 200;
	snprintf(out, outsize, "%.*s", (int) n, url);
}

#define SETOPT(opt, val)                                                                 \
	do                                                                                   \
	{                                                                                    \
		if ((rc = curl_easy_setopt(req->easy, (opt), (val))) != CURLE_OK)                \
			goto setopt_failed;                                                          \
	} while (0)

/*
 * sb_http_request_prepare configures req->easy for the next attempt (and
 * counts it); after it the handle may be performed directly or added to a
 * curl multi handle.  Returns 0 or -1 with *err set.
 */
int
sb_http_request_prepare(SbHttpRequest *req, SbError *err)
{
	CURLcode rc = CURLE_OK;
	struct curl_slist *l;
	int64_t remaining;
	long connect_ms;

	sb_error_clear(err);
	if (!sb_http_initialized && sb_http_global_init(err) != 0)
		return -1;
	if (req->deadline_ms == 0)
		req->deadline_ms = sb_now_ms() + SB_HTTP_DEFAULT_TIMEOUT_MS;
	remaining = req->deadline_ms - sb_now_ms();
	if (remaining < 1)
		remaining = 1;
	connect_ms =
		req->policy.connect_timeout_ms > 0 ? req->policy.connect_timeout_ms : 10000;
	if (connect_ms > remaining)
		connect_ms = (long) remaining;

	if (req->easy == NULL)
		req->easy = curl_easy_init();
	else
		curl_easy_reset(req->easy);
	if (req->easy == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory creating curl handle");
		return -1;
	}

	/* headers: the caller's, the token, and no "Expect: 100-continue" */
	FreeHeaderList(req->sent_headers);
	req->sent_headers = NULL;
	for (l = req->headers; l != NULL; l = l->next)
		if ((req->sent_headers = curl_slist_append(req->sent_headers, l->data)) == NULL)
			goto oom;
	if (req->auth_header != NULL && (req->sent_headers = curl_slist_append(
										 req->sent_headers, req->auth_header)) == NULL)
		goto oom;
	if (!HasHeader(req->headers, "Expect") &&
		(req->sent_headers = curl_slist_append(req->sent_headers, "Expect:")) == NULL)
		goto oom;

	req->response.max = req->max_response_bytes;
	sb_httpbuf_reset(&req->response);
	sb_httpbuf_reset(&req->resp_headers);
	req->status = 0;
	req->sends = 0;
	req->errbuf[0] = '\0';

	SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_PRIVATE, (void *) req);
	SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(CURLOPT_USERAGENT, "cloudrun-sandbox/0.1");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_HTTPHEADER, req->sent_headers);
	SETOPT(CURLOPT_WRITEFUNCTION, WriteBody);
	SETOPT(CURLOPT_WRITEDATA, (void *) req);
	SETOPT(CURLOPT_HEADERFUNCTION, WriteHeader);
	SETOPT(CURLOPT_HEADERDATA, (void *) req);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_XFERINFOFUNCTION, XferInfo);
	SETOPT(CURLOPT_XFERINFODATA, (void *) req);
#if LIBCURL_VERSION_NUM >= 0x075000
	SETOPT(CURLOPT_PREREQFUNCTION, CountSend);
	SETOPT(CURLOPT_PREREQDATA, (void *) req);
#endif
	/*
	 * curl silently sends a request again when a reused connection dies
	 * before an answer: a call that must not run twice gets a connection of
	 * its own, on which it never does.
	 */
	if (!req->idempotent)
		SETOPT(CURLOPT_FRESH_CONNECT, 1L);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SETOPT(CURLOPT_TIMEOUT_MS, (long) remaining);
	SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) req->max_response_bytes);

	if (strcmp(req->method, "GET") == 0 && req->body == NULL)
		SETOPT(CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "HEAD") == 0)
		SETOPT(CURLOPT_NOBODY, 1L);
	else
	{
		if (strcmp(req->method, "POST") == 0 || req->body != NULL)
		{
			SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
			SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
		}
		if (strcmp(req->method, "POST") != 0)
			SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
	}
	req->attempts++;
	return 0;

setopt_failed:
	sb_error_set(err, SB_ERR_INTERNAL, 0, "", "curl_easy_setopt failed: %s",
				 curl_easy_strerror(rc));
	return -1;
oom:
	sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
	return -1;
}

/* CurlCodeIsRetryable tells whether a transport error is worth another attempt. */
static int
CurlCodeIsRetryable(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_COULDNT_CONNECT:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return 1;
		default:
			return 0;
	}
}

/* StatusIsRetryable tells whether an HTTP status is worth another attempt. */
static int
StatusIsRetryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* RetryAfterMs reads the Retry-After header in ms; -1 when absent or unparsable. */
static int64_t
RetryAfterMs(const SbHttpRequest *req)
{
	char *v = sb_http_response_header(req, "Retry-After");
	int64_t ms = -1;

	if (v == NULL)
		return -1;
	if (v[0] != '\0' && strspn(v, "0123456789") == strlen(v))
	{
		long long secs = strtoll(v, NULL, 10);

		ms = secs > 86400 ? 86400000 : (int64_t) secs * 1000;
	}
	else
	{
		time_t t = curl_getdate(v, NULL);

		if (t != (time_t) -1)
		{
			time_t now = time(NULL);

			ms = t > now ? (int64_t) (t - now) * 1000 : 0;
		}
	}
	free(v);
	return ms;
}

/*
 * sb_http_request_complete classifies a finished attempt (result is the
 * CURLcode curl reported): success, retry at *retry_at_ms, or final failure
 * with *err filled.
 */
SbHttpOutcome
sb_http_request_complete(SbHttpRequest *req, CURLcode result, int64_t *retry_at_ms,
						 SbError *err)
{
	char context[256];
	char url[210];
	int retryable;
	int64_t now;
	int64_t delay;
	int64_t retry_after = -1;
	long status = 0;

	sb_error_clear(err);
	/* count curl's silent resends on a fresh connection as attempts too */
	if (req->sends > 1)
		req->attempts += req->sends - 1;
	req->sends = 0;
	UrlForMessages(req->url, url, sizeof(url));
	snprintf(context, sizeof(context), "%s %s", req->method, url);

	if (req->aborted)
	{
		sb_error_set(err, SB_ERR_CANCELLED, 0, "cancelled", "%s: cancelled", context);
		return SB_HTTP_FAILED;
	}
	if (result == CURLE_FILESIZE_EXCEEDED ||
		(result == CURLE_WRITE_ERROR && req->response.overflow))
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "responseTooLarge",
					 "%s: response larger than the limit of %zu bytes", context,
					 req->max_response_bytes);
		return SB_HTTP_FAILED;
	}

	now = sb_now_ms();
	if (result != CURLE_OK)
	{
		if (result == CURLE_OPERATION_TIMEDOUT && now + 10 >= req->deadline_ms)
		{
			sb_error_set(err, SB_ERR_TIMEOUT, 0, "deadlineExceeded",
						 "%s: deadline reached after %d attempt%s: %s", context,
						 req->attempts, req->attempts == 1 ? "" : "s",
						 req->errbuf[0] ? req->errbuf : curl_easy_strerror(result));
			return SB_HTTP_FAILED;
		}
		sb_error_set(err, SB_ERR_NETWORK, 0, curl_easy_strerror(result), "%s: %s",
					 context, req->errbuf[0] ? req->errbuf : curl_easy_strerror(result));
		retryable = CurlCodeIsRetryable(result) &&
					(req->idempotent || result == CURLE_COULDNT_CONNECT);
	}
	else
	{
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
		req->status = status;
		if (status >= 200 && status < 300)
			return SB_HTTP_DONE;
		sb_error_from_response(err, status, req->response.data, req->response.len,
							   context);
		retryable = StatusIsRetryable(status) && (req->idempotent || status == 429);
		if (retryable)
			retry_after = RetryAfterMs(req);
	}
	if (!retryable)
		return SB_HTTP_FAILED;
	if (req->policy.max_attempts > 0 && req->attempts >= req->policy.max_attempts)
	{
		sb_error_prefix(err, "gave up after %d attempts: ", req->attempts);
		return SB_HTTP_FAILED;
	}

	/* full jitter: uniform in [0, min(cap, base * 2^(attempt-1))] */
	{
		int64_t base =
			req->policy.backoff_base_ms > 0 ? req->policy.backoff_base_ms : 100;
		int64_t cap = req->policy.backoff_cap_ms > 0 ? req->policy.backoff_cap_ms : 5000;
		int64_t ceiling = base;
		int i;

		for (i = 1; i < req->attempts && ceiling < cap; i++)
			ceiling *= 2;
		if (ceiling > cap)
			ceiling = cap;
		delay = (int64_t) (NextRandom() % (uint64_t) (ceiling + 1));
	}
	if (retry_after >= 0)
		delay = retry_after;
	if (now + delay >= req->deadline_ms)
	{
		SbErrKind last = err->kind;

		err->kind = SB_ERR_TIMEOUT;
		sb_error_prefix(
			err, "deadline reached after %d attempt%s (last error %s): ", req->attempts,
			req->attempts == 1 ? "" : "s", sb_err_kind_name(last));
		return SB_HTTP_FAILED;
	}
	*retry_at_ms = now + delay;
	return SB_HTTP_RETRY;
}

/*
 * sb_sleep_ms sleeps for ms milliseconds in short slices, checking the
 * policy's cancel hook between them.  Returns 0, or -1 if it was aborted.
 */
int
sb_sleep_ms(int64_t ms, const SbHttpPolicy *policy)
{
	int64_t end = sb_now_ms() + ms;

	for (;;)
	{
		int64_t left;
		struct timespec ts;

		if (policy && policy->should_abort && policy->should_abort(policy->abort_arg))
			return -1;
		left = end - sb_now_ms();
		if (left <= 0)
			return 0;
		if (left > SB_POLL_SLICE_MS)
			left = SB_POLL_SLICE_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long) left * 1000000L;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

/*
 * NoteDone records the end of an attempt started with sb_http_start (found
 * by whichever call reads the multi handle's messages) on its request.
 */
static void
NoteDone(CURLM *multi, CURLMsg *msg)
{
	SbHttpRequest *other = NULL;

	if (msg->msg != CURLMSG_DONE)
		return;
	curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &other);
	curl_multi_remove_handle(multi, msg->easy_handle);
	if (other == NULL || !other->in_multi)
		return;
	if (other->started_on != NULL)
		other->started_on->started--;
	other->started_on = NULL;
	other->in_multi = 0;
	other->finished = 1;
	other->result = msg->data.result;
}

/*
 * RunAttempt performs one prepared attempt on a multi handle, checking the
 * cancel hook at least every SB_POLL_SLICE_MS; returns the transfer's
 * CURLcode, or -1 with *err set when the multi interface itself fails.
 */
static int
RunAttempt(CURLM *multi, SbHttpRequest *req, CURLcode *result, SbError *err)
{
	CURLMcode mc;
	int done = 0;

	mc = curl_multi_add_handle(multi, req->easy);
	if (mc != CURLM_OK)
		goto multi_failed;
	while (!done)
	{
		int running = 0;
		int left = 0;
		CURLMsg *msg;

		mc = curl_multi_perform(multi, &running);
		if (mc != CURLM_OK)
			break;
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == req->easy)
			{
				*result = msg->data.result;
				done = 1;
			}
			else
				NoteDone(multi, msg);
		}
		if (done)
			break;
		if (CheckAbort(req))
		{
			*result = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		mc = curl_multi_poll(multi, NULL, 0, SB_POLL_SLICE_MS, NULL);
		if (mc != CURLM_OK)
			break;
	}
	curl_multi_remove_handle(multi, req->easy);
	if (mc != CURLM_OK)
		goto multi_failed;
	return 0;

multi_failed:
	sb_error_set(err, SB_ERR_INTERNAL, 0, "", "curl multi interface failed: %s",
				 curl_multi_strerror(mc));
	return -1;
}

/*
 * sb_http_perform runs a request to completion: attempts, retries with
 * backoff, deadline and cancellation.  Returns 0 on a 2xx response, else
 * -1 with *err set; req->status, req->response and req->attempts describe
 * the last attempt either way.  client may be NULL (no connection reuse).
 */
int
sb_http_perform(SbHttpClient *client, SbHttpRequest *req, SbError *err)
{
	CURLM *multi;
	int rc = -1;

	sb_error_clear(err);
	if (sb_http_global_init(err) != 0)
		return -1;
	multi = client ? client->multi : curl_multi_init();
	if (multi == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "",
					 "out of memory creating curl multi handle");
		return -1;
	}
	if (req->deadline_ms == 0)
		req->deadline_ms = sb_now_ms() + SB_HTTP_DEFAULT_TIMEOUT_MS;
	req->attempts = 0;
	req->aborted = 0;

	for (;;)
	{
		CURLcode result = CURLE_OK;
		int64_t retry_at = 0;
		SbHttpOutcome outcome;

		if (CheckAbort(req))
		{
			sb_error_set(err, SB_ERR_CANCELLED, 0, "cancelled", "%s request cancelled",
						 req->method);
			break;
		}
		if (sb_http_request_prepare(req, err) != 0)
			break;
		if (RunAttempt(multi, req, &result, err) != 0)
			break;
		outcome = sb_http_request_complete(req, result, &retry_at, err);
		if (outcome == SB_HTTP_DONE)
		{
			rc = 0;
			break;
		}
		if (outcome == SB_HTTP_FAILED)
			break;
		if (sb_sleep_ms(retry_at - sb_now_ms(), &req->policy) != 0)
		{
			req->aborted = 1;
			sb_error_set(err, SB_ERR_CANCELLED, 0, "cancelled",
						 "%s request cancelled while waiting to retry", req->method);
			break;
		}
	}
	if (client == NULL)
		curl_multi_cleanup(multi);
	return rc;
}

/* sb_http_start starts one attempt of req on the client without waiting; 0 or -1. */
int
sb_http_start(SbHttpClient *client, SbHttpRequest *req, SbError *err)
{
	CURLMcode mc;

	req->finished = 0;
	req->in_multi = 0;
	req->aborted = 0;
	if (sb_http_request_prepare(req, err) != 0)
		return -1;
	mc = curl_multi_add_handle(client->multi, req->easy);
	if (mc != CURLM_OK)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "curl multi interface failed: %s",
					 curl_multi_strerror(mc));
		return -1;
	}
	req->in_multi = 1;
	req->started_on = client;
	client->started++;
	return 0;
}

/*
 * sb_http_client_drive makes progress on the client's started attempts.
 * With settle_ms > 0, once one has finished it waits up to settle_ms more
 * (in total) for the others that are about to, so that an event loop reads
 * a burst of answers in one turn.  Returns how many finished.
 */
int
sb_http_client_drive(SbHttpClient *client, int settle_ms)
{
	int finished = 0;
	int64_t until = 0;

	for (;;)
	{
		int running = 0;
		int left = 0;
		int before = client->started;
		CURLMsg *msg;

		(void) curl_multi_perform(client->multi, &running);
		while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
			NoteDone(client->multi, msg);
		finished += before - client->started;
		if (settle_ms <= 0 || finished == 0 || client->started == 0)
			return finished;
		if (until == 0)
			until = sb_now_ms() + settle_ms;
		if (sb_now_ms() >= until)
			return finished;
		(void) curl_multi_poll(client->multi, NULL, 0, 1, NULL);
	}
}

/*
 * sb_http_finish classifies a finished attempt: 0 for a 2xx response (the
 * body is in req->response), else -1 with *err set (a transient failure is
 * an error too: the caller starts again when it sees fit).
 */
int
sb_http_finish(SbHttpRequest *req, SbError *err)
{
	int64_t retry_at = 0;

	return sb_http_request_complete(req, req->result, &retry_at, err) == SB_HTTP_DONE ? 0
																					  : -1;
}

/* sb_http_abandon takes an unfinished attempt off the client. */
void
sb_http_abandon(SbHttpClient *client, SbHttpRequest *req)
{
	if (req->in_multi && req->easy != NULL)
	{
		curl_multi_remove_handle(client->multi, req->easy);
		client->started--;
	}
	req->in_multi = 0;
	req->started_on = NULL;
}

/*
 * sb_http_client_fds lists up to max_fds sockets the client's started
 * attempts wait on and sets *timeout_ms to when it must be driven anyway
 * (-1: no deadline).  Returns how many it listed.  A socket curl cannot
 * report (beyond FD_SETSIZE) shortens the timeout instead.
 */
int
sb_http_client_fds(SbHttpClient *client, SbHttpWaitFd *fds, int max_fds, long *timeout_ms)
{
	fd_set rd, wr, ex;
	int max_fd = -1;
	int n = 0;
	long t = -1;

	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_ZERO(&ex);
	if (curl_multi_fdset(client->multi, &rd, &wr, &ex, &max_fd) != CURLM_OK)
		max_fd = -1;
	for (int fd = 0; fd <= max_fd && n < max_fds; fd++)
	{
		int r = FD_ISSET(fd, &rd) || FD_ISSET(fd, &ex);
		int w = FD_ISSET(fd, &wr);

		if (!r && !w)
			continue;
		fds[n].fd = fd;
		fds[n].readable = r;
		fds[n].writable = w;
		n++;
	}
	(void) curl_multi_timeout(client->multi, &t);
	/* Attempts in progress without a socket to wait on: look again soon. */
	if ((max_fd < 0 || n == max_fds) && client->started > 0 && (t < 0 || t > 10))
		t = 10;
	*timeout_ms = t;
	return n;
}

/*
 * sb_http_perform_auth performs a request with the credentials' bearer
 * token (none when auth is NULL); on a 401 it drops the cached token and
 * tries once more with a fresh one.  req->attempts counts both passes.
 */
int
sb_http_perform_auth(SbHttpClient *client, SbHttpRequest *req, SbAuth *auth, SbError *err)
{
	int total = 0;
	int pass;
	int rc = -1;

	sb_error_clear(err);
	if (req->deadline_ms == 0)
		req->deadline_ms = sb_now_ms() + SB_HTTP_DEFAULT_TIMEOUT_MS;
	for (pass = 0; pass < 2; pass++)
	{
		const char *header = NULL;

		if (auth != NULL)
		{
			header = sb_auth_header_ex(auth, client, req->deadline_ms, &req->policy, err);
			if (header == NULL && err->kind != SB_OK)
				break;
		}
		if (sb_http_request_set_auth_header(req, header, err) != 0)
			break;
		rc = sb_http_perform(client, req, err);
		total += req->attempts;
		if (rc == 0 || req->status != 401 || header == NULL || pass == 1)
			break;
		sb_auth_invalidate(auth);
	}
	req->attempts = total;
	return rc;
}

/*
 * sb_http_response_header returns the value of a header of the last
 * response (case-insensitive name), trimmed, as a malloc'd string the
 * caller frees; NULL when absent.
 */
char *
sb_http_response_header(const SbHttpRequest *req, const char *name)
{
	const char *p = req->resp_headers.data;
	size_t n = strlen(name);

	if (p == NULL)
		return NULL;
	while (*p)
	{
		const char *eol = strchr(p, '\n');
		size_t linelen = eol ? (size_t) (eol - p) : strlen(p);

		if (linelen > n && strncasecmp(p, name, n) == 0 && p[n] == ':')
		{
			const char *v = p + n + 1;
			const char *end = p + linelen;

			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			while (end > v && isspace((unsigned char) end[-1]))
				end--;
			return strndup(v, (size_t) (end - v));
		}
		if (eol == NULL)
			break;
		p = eol + 1;
	}
	return NULL;
}

/*
 * sb_pct_encode percent-encodes every byte outside RFC 3986's unreserved
 * set (so "/" becomes %2F); returns a malloc'd string, NULL when out of memory.
 */
char *
sb_pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s);
	char *out = malloc(len * 3 + 1);
	char *o = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			*o++ = (char) c;
		else if (c == '-' || c == '.' || c == '_' || c == '~')
			*o++ = (char) c;
		else
		{
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}
