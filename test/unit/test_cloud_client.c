/*-------------------------------------------------------------------------
 *
 * test_cloud_client.c
 *	  TAP tests of the shared HTTP, OAuth and GCS client (src/common)
 *	  against the loopback emulator in test/emulator.
 *
 * Usage: test_cloud_client BASE_URL KEY_FILE [SHORT_TTL_BASE_URL]
 *
 * BASE_URL is an emulator started with --test-key-file KEY_FILE;
 * SHORT_TTL_BASE_URL, when given, is a second one started with the same key
 * and --token-ttl 2 (without it the token-expiry tests are skipped).
 * test/unit/run_cloud_client_test.sh starts both and runs this program.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "gcs.h"
#include "http.h"
#include "oauth.h"
#include "sbutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

static int n_tests = 0;
static int n_passed = 0;
static int n_failed = 0;

static const char *base_url;
static const char *key_file;
static const char *ttl_base_url;
static char token_endpoint[512];
static char prefix[128];
static const char *bucket = "sandbox-test";

/* Ok records one TAP test result. */
static int
Ok(int cond, const char *fmt, ...)
{
	va_list ap;

	n_tests++;
	if (cond)
		n_passed++;
	else
		n_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", n_tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

/* Skip records a skipped TAP test. */
static void
Skip(const char *what, const char *why)
{
	n_tests++;
	n_passed++;
	printf("ok %d - %s # SKIP %s\n", n_tests, what, why);
}

/* Diag prints a TAP diagnostic line. */
static void
Diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* DiagErr prints an error's fields as a diagnostic. */
static void
DiagErr(const char *what, const SbError *err)
{
	Diag("%s: kind=%s http_status=%ld reason=\"%s\" message=\"%s\"", what,
		 sb_err_kind_name(err->kind), err->http_status, err->reason, err->message);
}

/* Control sends a request to the emulator's control API; returns the body (malloc'd) or
 * NULL. */
static char *
Control(const char *base, const char *method, const char *path, const char *body)
{
	SbHttpRequest req;
	SbError err;
	char *url = NULL;
	char *out = NULL;

	if (asprintf(&url, "%s%s", base, path) < 0)
		return NULL;
	if (sb_http_request_init(&req, method, url, &err) == 0)
	{
		req.policy.max_attempts = 3;
		req.deadline_ms = sb_now_ms() + 10000;
		if (body)
		{
			sb_http_request_add_header(&req, &err, "Content-Type: application/json");
			sb_http_request_set_body(&req, body, strlen(body));
		}
		if (sb_http_perform(NULL, &req, &err) == 0)
			out = sb_httpbuf_steal(&req.response, NULL);
		else
			DiagErr(path, &err);
	}
	sb_http_request_cleanup(&req);
	free(url);
	return out;
}

/* SetFaults configures the emulator's fault injection ("{}" clears it). */
static int
SetFaults(const char *base, const char *json)
{
	char *r = Control(base, "POST", "/_emulator/faults", json);

	free(r);
	return r != NULL;
}

/* TokenCalls returns how many token endpoint calls the emulator counted, -1 on error. */
static long
TokenCalls(const char *base)
{
	char *body = Control(base, "GET", "/_emulator/stats", NULL);
	json_t *root;
	json_t *n;
	long count = -1;

	if (body == NULL)
		return -1;
	root = json_loads(body, 0, NULL);
	free(body);
	/* {"calls": {"POST token": N, ...}, ...} */
	n = json_object_get(json_object_get(root, "calls"), "POST token");
	if (json_is_integer(n))
		count = (long) json_integer_value(n);
	else if (json_is_object(json_object_get(root, "calls")))
		count = 0;
	json_decref(root);
	return count;
}

/* MakeAuthScope creates service-account credentials for an emulator base URL. */
static SbAuth *
MakeAuthScope(const char *base, const char *keyfile, const char *scope, SbError *err)
{
	SbAuthConfig ac;
	char ep[512];

	memset(&ac, 0, sizeof(ac));
	snprintf(ep, sizeof(ep), "%s/token", base);
	ac.mode = SB_AUTH_SERVICE_ACCOUNT;
	ac.key_file = keyfile;
	ac.token_endpoint = ep;
	ac.scope = scope;
	return sb_auth_new(&ac, err);
}

/* MakeAuth creates cloud-platform service-account credentials for an emulator. */
static SbAuth *
MakeAuth(const char *base, const char *keyfile, SbError *err)
{
	return MakeAuthScope(base, keyfile, NULL, err);
}

/* InitCfg fills a GCS config for an emulator. */
static void
InitCfg(SbGcsConfig *cfg, const char *base, SbAuth *auth, SbHttpClient *http)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->storage_endpoint = base;
	cfg->bucket = bucket;
	cfg->auth = auth;
	cfg->http = http;
	cfg->timeout_ms = 30000;
}

/* Name returns prefix + suffix in a static buffer (one at a time). */
static const char *
Name(const char *suffix)
{
	static char buf[2][512];
	static int which = 0;

	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "%s%s", prefix, suffix);
	return buf[which];
}

/* Offline checks need no emulator: encoding and error parsing. */
static void
TestOffline(void)
{
	char *e = sb_pct_encode("a b/\xc3\xbc~-._+&=?#%");
	SbError err;
	SbGcsConfig cfg;
	char *ep;
	const char *gcs412 =
		"{\"error\":{\"code\":412,\"message\":\"At least one of the "
		"pre-conditions you specified did not hold.\",\"errors\":[{\"message\":\"x\","
		"\"domain\":\"global\",\"reason\":\"conditionNotMet\"}]}}";
	const char *run404 = "{\"error\":{\"code\":404,\"message\":\"Resource 'j' was not "
						 "found\",\"status\":\"NOT_FOUND\"}}";
	const char *oauth =
		"{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT "
		"Signature.\"}";

	Ok(e && strcmp(e, "a%20b%2F%C3%BC~-._%2B%26%3D%3F%23%25") == 0,
	   "percent-encoding keeps only RFC 3986 unreserved bytes (got %s)", e ? e : "NULL");
	free(e);

	sb_error_from_response(&err, 412, gcs412, strlen(gcs412), "POST x");
	Ok(err.kind == SB_ERR_PRECONDITION && strcmp(err.reason, "conditionNotMet") == 0 &&
		   strstr(err.message, "pre-conditions") != NULL,
	   "GCS error body: 412 -> PRECONDITION, reason conditionNotMet");
	sb_error_from_response(&err, 404, run404, strlen(run404), "GET x");
	Ok(err.kind == SB_ERR_NOT_FOUND && strcmp(err.reason, "NOT_FOUND") == 0,
	   "Cloud Run error body: 404 -> NOT_FOUND, reason NOT_FOUND");
	sb_error_from_response(&err, 400, oauth, strlen(oauth), "POST x");
	Ok(err.kind == SB_ERR_INVALID && strcmp(err.reason, "invalid_grant") == 0 &&
		   strstr(err.message, "Invalid JWT Signature") != NULL,
	   "OAuth error body: reason invalid_grant, message from error_description");
	sb_error_from_response(&err, 403, "<html>\nForbidden\n</html>", 25, "GET x");
	Ok(err.kind == SB_ERR_FORBIDDEN && strchr(err.message, '\n') == NULL,
	   "non-JSON error body: 403 -> FORBIDDEN, excerpt without control characters");
	sb_error_from_response(&err, 401, NULL, 0, "GET x");
	Ok(err.kind == SB_ERR_AUTH && err.http_status == 401, "401 -> AUTH");

	memset(&cfg, 0, sizeof(cfg));
	setenv("STORAGE_EMULATOR_HOST", "localhost:9023", 1);
	ep = sb_gcs_endpoint(&cfg);
	Ok(ep && strcmp(ep, "http://localhost:9023") == 0,
	   "STORAGE_EMULATOR_HOST without scheme means http:// (got %s)", ep ? ep : "NULL");
	free(ep);
	unsetenv("STORAGE_EMULATOR_HOST");
	ep = sb_gcs_endpoint(&cfg);
	Ok(ep && strcmp(ep, SB_GCS_DEFAULT_ENDPOINT) == 0, "default storage endpoint");
	free(ep);
}

/* TestTokenFlow checks that the JWT is accepted and the token is cached. */
static void
TestTokenFlow(SbHttpClient *http)
{
	SbError err;
	SbAuth *auth = MakeAuth(base_url, key_file, &err);
	const char *h1;
	char *copy = NULL;
	long before;
	long after1;
	long after2;

	if (!Ok(auth != NULL, "service account key file loads"))
	{
		DiagErr("sb_auth_new", &err);
		return;
	}
	sb_auth_set_http(auth, http, NULL);
	before = TokenCalls(base_url);
	h1 = sb_auth_header(auth, &err);
	if (!Ok(h1 != NULL && strncmp(h1, "Authorization: Bearer ", 22) == 0 &&
				strlen(h1) > 30,
			"JWT bearer grant accepted by the token endpoint"))
		DiagErr("sb_auth_header", &err);
	copy = h1 ? strdup(h1) : NULL;
	after1 = TokenCalls(base_url);
	h1 = sb_auth_header(auth, &err);
	after2 = TokenCalls(base_url);
	Ok(h1 && copy && strcmp(h1, copy) == 0 && sb_auth_token_fetches(auth) == 1,
	   "second sb_auth_header returns the cached token");
	if (!Ok(before >= 0 && after1 == before + 1 && after2 == after1,
			"emulator counted exactly one token request for two sb_auth_header calls"))
		Diag("token calls: before=%ld after first=%ld after second=%ld", before, after1,
			 after2);
	sb_auth_invalidate(auth);
	h1 = sb_auth_header(auth, &err);
	Ok(h1 != NULL && sb_auth_token_fetches(auth) == 2 &&
		   TokenCalls(base_url) == after2 + 1,
	   "sb_auth_invalidate forces a new token request");
	free(copy);
	sb_auth_free(auth);
}

/* TestKeyFileErrors checks that bad key files fail clearly, naming the file. */
static void
TestKeyFileErrors(void)
{
	SbError err;
	SbAuth *auth;
	char path[] = "/tmp/sb_badkeyXXXXXX";
	int fd;

	auth = MakeAuth(base_url, "/nonexistent/key.json", &err);
	Ok(auth == NULL && err.kind == SB_ERR_AUTH &&
		   strstr(err.message, "/nonexistent/key.json") != NULL,
	   "missing key file -> AUTH error naming the file");
	sb_auth_free(auth);

	fd = mkstemp(path);
	if (fd >= 0)
	{
		const char *junk =
			"{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nSECRETSTUFF";

		if (write(fd, junk, strlen(junk)) < 0)
			Diag("write failed");
		close(fd);
		auth = MakeAuth(base_url, path, &err);
		Ok(auth == NULL && err.kind == SB_ERR_AUTH && strstr(err.message, path) != NULL &&
			   strstr(err.message, "SECRET") == NULL &&
			   strstr(err.message, "BEGIN") == NULL,
		   "malformed key file -> AUTH error naming the file, not quoting it");
		sb_auth_free(auth);
		unlink(path);
	}
}

/* TestRoundtrip uploads and downloads binary data under awkward names. */
static void
TestRoundtrip(SbGcsConfig *cfg)
{
	const char *names[] = {
		"rt/plain.txt",
		"rt/with space/and/slashes/file name.bin",
		"rt/\xc3\xbcnic\xc3\xb8"
		"de/\xe5\x90\x8d\xe5\x89\x8d.txt",
		"rt/odd+chars&=?#%;,'\"!*().txt",
	};
	size_t blen = 100000;
	unsigned char *bin = malloc(blen);
	size_t i;

	for (i = 0; i < blen; i++)
		bin[i] = (unsigned char) ((i * 7 + (i >> 8)) & 0xff);
	bin[10] = 0;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
	{
		SbError err;
		int64_t gen = 0;
		int64_t dgen = 0;
		char *data = NULL;
		size_t len = 0;
		SbGcsObjectInfo info;
		size_t n = (i == 0) ? 12 : blen;
		const void *src = (i == 0) ? (const void *) "hello world\n" : (const void *) bin;

		if (!Ok(sb_gcs_upload(cfg, Name(names[i]), src, n, SB_GCS_ANY_GENERATION, &gen,
							  &err) == 0 &&
					gen > 0,
				"upload \"%s\" (%zu bytes) returns a generation", names[i], n))
		{
			DiagErr("upload", &err);
			continue;
		}
		if (!Ok(sb_gcs_download(cfg, Name(names[i]), 0, &data, &len, &dgen, &err) == 0 &&
					len == n && memcmp(data, src, n) == 0 && dgen == gen,
				"download \"%s\" returns the same bytes and generation", names[i]))
		{
			DiagErr("download", &err);
			Diag("len=%zu expected=%zu gen=%lld dgen=%lld", len, n, (long long) gen,
				 (long long) dgen);
		}
		free(data);
		if (!Ok(sb_gcs_stat(cfg, Name(names[i]), &info, &err) == 0 &&
					info.generation == gen && info.size == (int64_t) n,
				"stat \"%s\" reports generation and size", names[i]))
			DiagErr("stat", &err);
	}
	free(bin);

	{
		SbError err;
		int64_t gen = 0;

		Ok(sb_gcs_upload(cfg, Name("rt/empty"), "", 0, SB_GCS_ANY_GENERATION, &gen,
						 &err) == 0 &&
			   gen > 0,
		   "upload of an empty object");
	}
}

/* WaitAsync drives the client until every request is finished, waiting on its sockets; 0 if all finished. */
static int
WaitAsync(SbHttpClient *http, SbHttpRequest **reqs, int n, int *woken_by_socket)
{
	int64_t deadline = sb_now_ms() + 10000;

	for (;;)
	{
		SbHttpWaitFd fds[16];
		struct pollfd pfd[16];
		long timeout = -1;
		int nfds;
		int pending = 0;

		(void) sb_http_client_drive(http, 0);
		for (int i = 0; i < n; i++)
			pending += !reqs[i]->finished;
		if (pending == 0)
			return 0;
		if (sb_now_ms() > deadline)
			return -1;
		nfds = sb_http_client_fds(http, fds, 16, &timeout);
		for (int i = 0; i < nfds; i++)
		{
			pfd[i].fd = fds[i].fd;
			pfd[i].events = (short) ((fds[i].readable ? POLLIN : 0) | (fds[i].writable ? POLLOUT : 0));
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t) nfds, timeout < 0 || timeout > 1000 ? 1000 : (int) timeout) > 0)
			(*woken_by_socket)++;
	}
}

/* TestAsync checks downloads started without waiting and driven by an event loop. */
static void
TestAsync(SbGcsConfig *cfg)
{
	SbHttpRequest a, b, missing, dropped;
	SbHttpRequest *all[3] = {&a, &b, &missing};
	SbError err;
	SbGcsObjectInfo info;
	char big[50000];
	char *data;
	size_t len;
	int woken = 0;

	memset(big, 'x', sizeof(big));
	big[0] = 'B';
	if (!Ok(sb_gcs_upload(cfg, Name("async/a"), "object a", 8, SB_GCS_ANY_GENERATION, NULL, &err) == 0 &&
				sb_gcs_upload(cfg, Name("async/b"), big, sizeof(big), SB_GCS_ANY_GENERATION, NULL, &err) == 0,
			"async: two objects to download"))
		return;
	Ok(sb_gcs_download_start(cfg, Name("async/a"), 0, &a, &err) == 0 &&
		   sb_gcs_download_start(cfg, Name("async/b"), 0, &b, &err) == 0 &&
		   sb_gcs_download_start(cfg, Name("async/missing"), 0, &missing, &err) == 0,
	   "async: three downloads start at once");
	Ok(!a.finished && !b.finished && !missing.finished, "async: starting one does not wait for it");
	Ok(WaitAsync(cfg->http, all, 3, &woken) == 0, "async: all three finish when driven");
	Ok(woken > 0, "async: the client's sockets wake the event loop (%d times)", woken);
	{
		int rc = sb_gcs_download_end(cfg, &a, &data, &len, &err);

		Ok(rc == 0 && len == 8 && memcmp(data, "object a", 8) == 0,
		   "async: the first download has its object");
		free(data);
		rc = sb_gcs_download_end(cfg, &b, &data, &len, &err);
		Ok(rc == 0 && len == sizeof(big) && data[0] == 'B',
		   "async: the second download has its object (%zu bytes)", len);
		free(data);
		rc = sb_gcs_download_end(cfg, &missing, &data, &len, &err);
		Ok(rc == -1 && err.kind == SB_ERR_NOT_FOUND && data == NULL,
		   "async: a missing object ends NOT_FOUND");
	}
	/* A blocking call on the same client meanwhile must not swallow its end. */
	all[0] = &a;
	Ok(sb_gcs_download_start(cfg, Name("async/a"), 0, &a, &err) == 0 &&
		   sb_gcs_stat(cfg, Name("async/b"), &info, &err) == 0 && info.size == (int64_t) sizeof(big) &&
		   WaitAsync(cfg->http, all, 1, &woken) == 0 &&
		   sb_gcs_download_end(cfg, &a, &data, &len, &err) == 0 && len == 8,
	   "async: a blocking call on the same client meanwhile leaves the download's end to it");
	free(data);
	Ok(sb_gcs_download_start(cfg, Name("async/a"), 0, &dropped, &err) == 0, "async: another download starts");
	sb_http_request_cleanup(&dropped);
	{
		long t = 0;
		SbHttpWaitFd fds[4];

		Ok(sb_http_client_fds(cfg->http, fds, 4, &t) == 0,
		   "async: an abandoned download leaves nothing to wait on");
	}
	Ok(sb_gcs_download(cfg, Name("async/a"), 0, &data, &len, NULL, &err) == 0 && len == 8,
	   "async: the client works after an abandoned download");
	free(data);
}

/* TestPreconditions checks create-only and ifGenerationMatch semantics. */
static void
TestPreconditions(SbGcsConfig *cfg)
{
	SbError err;
	int64_t g1 = 0;
	int64_t g2 = 0;
	int64_t g3 = 0;
	char *data = NULL;
	size_t len = 0;

	if (!Ok(sb_gcs_upload(cfg, Name("pre/result.json"), "{\"a\":1}", 7, 0, &g1, &err) ==
				0,
			"create-only upload of a new object succeeds"))
		DiagErr("upload", &err);
	if (!Ok(sb_gcs_upload(cfg, Name("pre/result.json"), "{\"a\":2}", 7, 0, &g2, &err) !=
					0 &&
				err.kind == SB_ERR_PRECONDITION && err.http_status == 412 &&
				cfg->last_attempts == 1,
			"second create-only upload -> PRECONDITION (412), not retried"))
		DiagErr("upload", &err);
	else
		Diag("reason=\"%s\" message=\"%s\"", err.reason, err.message);
	if (!Ok(sb_gcs_upload(cfg, Name("pre/result.json"), "{\"a\":3}", 7, g1, &g2, &err) ==
					0 &&
				g2 != g1,
			"upload with the current generation succeeds with a new generation"))
		DiagErr("upload", &err);
	if (!Ok(sb_gcs_upload(cfg, Name("pre/result.json"), "{\"a\":4}", 7, g1, &g3, &err) !=
					0 &&
				err.kind == SB_ERR_PRECONDITION,
			"upload with a stale generation -> PRECONDITION"))
		DiagErr("upload", &err);
	if (!Ok(sb_gcs_download(cfg, Name("pre/result.json"), 0, &data, &len, &g3, &err) ==
					0 &&
				len == 7 && memcmp(data, "{\"a\":3}", 7) == 0 && g3 == g2,
			"the failed writes left the object unchanged"))
		DiagErr("download", &err);
	free(data);
}

/* TestMissing checks NOT_FOUND for a missing object and that it is not retried. */
static void
TestMissing(SbGcsConfig *cfg)
{
	SbError err;
	char *data = NULL;
	size_t len = 0;
	SbGcsObjectInfo info;

	if (!Ok(sb_gcs_download(cfg, Name("missing/none"), 0, &data, &len, NULL, &err) != 0 &&
				err.kind == SB_ERR_NOT_FOUND && err.http_status == 404 && data == NULL,
			"download of a missing object -> NOT_FOUND"))
		DiagErr("download", &err);
	else
		Diag("reason=\"%s\" message=\"%s\"", err.reason, err.message);
	Ok(cfg->last_attempts == 1, "a 404 is not retried (attempts=%d)", cfg->last_attempts);
	Ok(sb_gcs_stat(cfg, Name("missing/none"), &info, &err) != 0 &&
		   err.kind == SB_ERR_NOT_FOUND,
	   "stat of a missing object -> NOT_FOUND");
}

typedef struct ListAcc
{
	int count;
	int bad;
	int stop_after;
	char names[32][256];
} ListAcc;

/* ListCb collects listed names. */
static int
ListCb(void *arg, const char *name, int64_t generation, int64_t size)
{
	ListAcc *acc = arg;

	if (acc->count < 32)
		snprintf(acc->names[acc->count], sizeof(acc->names[0]), "%s", name);
	acc->count++;
	if (generation <= 0 || size != 1 + (int64_t) strlen(name) % 5 ||
		strncmp(name, prefix, strlen(prefix)) != 0)
		acc->bad++;
	return acc->stop_after > 0 && acc->count >= acc->stop_after;
}

/* TestList checks prefix listing across several pages. */
static void
TestList(SbGcsConfig *cfg)
{
	SbError err;
	ListAcc *acc = calloc(1, sizeof(ListAcc));
	int i;
	int uploaded = 0;
	int pages;

	for (i = 0; i < 8; i++)
	{
		char suffix[64];
		const char *name;

		snprintf(suffix, sizeof(suffix), "list/a/obj-%02d", i);
		name = Name(suffix);
		uploaded += sb_gcs_upload(cfg, name, "xxxxx", 1 + strlen(name) % 5,
								  SB_GCS_ANY_GENERATION, NULL, &err) == 0;
	}
	for (i = 0; i < 2; i++)
	{
		char suffix[64];
		const char *name;

		snprintf(suffix, sizeof(suffix), "list/b/obj-%02d", i);
		name = Name(suffix);
		uploaded += sb_gcs_upload(cfg, name, "xxxxx", 1 + strlen(name) % 5,
								  SB_GCS_ANY_GENERATION, NULL, &err) == 0;
	}
	Ok(uploaded == 10, "uploaded 10 objects to list");
	cfg->list_page_size = 3;
	if (!Ok(sb_gcs_list(cfg, Name("list/a/"), ListCb, acc, &err) == 0,
			"list with prefix and maxResults=3 succeeds"))
		DiagErr("list", &err);
	pages = cfg->last_attempts;
	if (!Ok(acc->count == 8 && acc->bad == 0,
			"listing returns exactly the 8 objects under the prefix, with generation and "
			"size"))
		Diag("count=%d bad=%d", acc->count, acc->bad);
	Ok(pages >= 3, "listing followed nextPageToken across pages (%d requests)", pages);
	{
		int sorted = 1;

		for (i = 1; i < acc->count && i < 32; i++)
			if (strcmp(acc->names[i - 1], acc->names[i]) >= 0)
				sorted = 0;
		Ok(sorted, "listed names are in lexicographic order without duplicates");
	}
	memset(acc, 0, sizeof(*acc));
	acc->stop_after = 4;
	Ok(sb_gcs_list(cfg, Name("list/"), ListCb, acc, &err) == 0 && acc->count == 4,
	   "a nonzero callback return stops the listing");
	memset(acc, 0, sizeof(*acc));
	Ok(sb_gcs_list(cfg, Name("list/none/"), ListCb, acc, &err) == 0 && acc->count == 0,
	   "listing an empty prefix returns nothing");
	cfg->list_page_size = 0;
	free(acc);
}

/* TestDelete checks deletes with and without preconditions. */
static void
TestDelete(SbGcsConfig *cfg)
{
	SbError err;
	int64_t gen = 0;
	char *data = NULL;
	size_t len = 0;

	sb_gcs_upload(cfg, Name("del/x"), "abc", 3, SB_GCS_ANY_GENERATION, &gen, &err);
	if (!Ok(sb_gcs_delete(cfg, Name("del/x"), gen + 1000, &err) != 0 &&
				err.kind == SB_ERR_PRECONDITION,
			"delete with a wrong generation -> PRECONDITION"))
		DiagErr("delete", &err);
	if (!Ok(sb_gcs_delete(cfg, Name("del/x"), gen, &err) == 0,
			"delete with the current generation succeeds"))
		DiagErr("delete", &err);
	Ok(sb_gcs_download(cfg, Name("del/x"), 0, &data, &len, NULL, &err) != 0 &&
		   err.kind == SB_ERR_NOT_FOUND,
	   "deleted object is gone");
	free(data);
	Ok(sb_gcs_delete(cfg, Name("del/x"), SB_GCS_ANY_GENERATION, &err) != 0 &&
		   err.kind == SB_ERR_NOT_FOUND && cfg->last_attempts == 1,
	   "deleting it again -> NOT_FOUND, not retried");
}

/* TestLimits checks the response size cap and argument checks. */
static void
TestLimits(SbGcsConfig *cfg)
{
	SbError err;
	char *data = NULL;
	size_t len = 0;
	char big[5000];
	SbGcsObjectInfo info;

	memset(big, 'z', sizeof(big));
	sb_gcs_upload(cfg, Name("limits/big"), big, sizeof(big), SB_GCS_ANY_GENERATION, NULL,
				  &err);
	if (!Ok(sb_gcs_download(cfg, Name("limits/big"), 1000, &data, &len, NULL, &err) !=
					0 &&
				err.kind == SB_ERR_INVALID &&
				strcmp(err.reason, "responseTooLarge") == 0 && data == NULL,
			"download larger than max_bytes -> INVALID responseTooLarge"))
		DiagErr("download", &err);
	free(data);
	data = NULL;
	Ok(sb_gcs_download(cfg, Name("limits/big"), sizeof(big), &data, &len, NULL, &err) ==
			   0 &&
		   len == sizeof(big),
	   "download of exactly max_bytes succeeds");
	free(data);
	Ok(sb_gcs_upload(cfg, "", "x", 1, -1, NULL, &err) != 0 && err.kind == SB_ERR_INVALID,
	   "empty object name -> INVALID");
	Ok(sb_gcs_stat(cfg, NULL, &info, &err) != 0 && err.kind == SB_ERR_INVALID,
	   "NULL object name -> INVALID");
}

/* TestUnauthenticated checks that requests without a token get AUTH, not retried. */
static void
TestUnauthenticated(SbHttpClient *http)
{
	SbGcsConfig cfg;
	SbError err;

	InitCfg(&cfg, base_url, NULL, http);
	if (!Ok(sb_gcs_upload(&cfg, Name("noauth/x"), "x", 1, -1, NULL, &err) != 0 &&
				err.kind == SB_ERR_AUTH && err.http_status == 401 &&
				cfg.last_attempts == 1,
			"request without a token -> AUTH (401), not retried"))
		DiagErr("upload", &err);
}

/* TestForbidden checks that 403 maps to FORBIDDEN and is not retried, nor a missing
 * bucket. */
static void
TestForbidden(SbGcsConfig *cfg)
{
	SbGcsConfig c = *cfg;
	SbError err;
	char *data = NULL;
	size_t len;
	SbAuth *narrow;
	int rc;

	/* a token without a storage scope */
	narrow = MakeAuthScope(base_url, key_file,
						   "https://www.googleapis.com/auth/userinfo.email", &err);
	c.auth = narrow;
	rc = narrow ? sb_gcs_download(&c, Name("rt/plain.txt"), 0, &data, &len, NULL, &err)
				: 0;
	if (!Ok(rc != 0 && err.kind == SB_ERR_FORBIDDEN && err.http_status == 403 &&
				c.last_attempts == 1,
			"token without a storage scope -> FORBIDDEN (403), not retried (attempts=%d)",
			c.last_attempts))
		DiagErr("download", &err);
	else
		Diag("reason=\"%s\" message=\"%s\"", err.reason, err.message);
	free(data);
	data = NULL;
	sb_auth_free(narrow);

	c.auth = cfg->auth;
	c.bucket = "no-such-bucket";
	rc = sb_gcs_download(&c, "x", 0, &data, &len, NULL, &err);
	if (!Ok(rc != 0 && err.kind == SB_ERR_NOT_FOUND && c.last_attempts == 1,
			"object in a missing bucket -> NOT_FOUND, not retried (attempts=%d)",
			c.last_attempts))
		DiagErr("download", &err);
	free(data);
}

/* TestTokenRejected checks that a 401 on a cached token refreshes it and retries once. */
static void
TestTokenRejected(SbGcsConfig *cfg)
{
	SbError err;
	int fetches = sb_auth_token_fetches(cfg->auth);
	char *r;
	int rc;

	r = Control(base_url, "POST", "/_emulator/expire-tokens", "{}");
	if (!Ok(r != NULL, "emulator revoked all tokens"))
		return;
	free(r);
	rc = sb_gcs_upload(cfg, Name("revoked/x"), "x", 1, -1, NULL, &err);
	if (!Ok(rc == 0 && cfg->last_attempts == 2 &&
				sb_auth_token_fetches(cfg->auth) == fetches + 1,
			"a revoked token gets 401, is refreshed, and the call succeeds (attempts=%d)",
			cfg->last_attempts))
		DiagErr("upload", &err);
}

/* TestLostResponses checks calls whose effect happened but whose response was lost. */
static void
TestLostResponses(SbGcsConfig *cfg)
{
	SbError err;
	int64_t gen = 0;
	int64_t dgen = 0;
	char *data = NULL;
	size_t len = 0;
	int rc;

	SetFaults(
		base_url,
		"{\"sequence\":[{\"endpoint\":\"POST upload\",\"fault\":\"reset_after\"}]}");
	rc = sb_gcs_upload(cfg, Name("lost/result.json"), "{\"r\":1}", 7, 0, &gen, &err);
	if (!Ok(rc == 0 && gen > 0 && cfg->last_attempts >= 2,
			"create-only upload whose response was lost: the retry's 412 is recognised "
			"as our "
			"own write (attempts=%d)",
			cfg->last_attempts))
		DiagErr("upload", &err);
	Ok(sb_gcs_download(cfg, Name("lost/result.json"), 0, &data, &len, &dgen, &err) == 0 &&
		   dgen == gen && len == 7,
	   "the object holds our bytes at the reported generation");
	free(data);
	if (!Ok(sb_gcs_upload(cfg, Name("lost/result.json"), "{\"r\":2}", 7, 0, &gen, &err) !=
					0 &&
				err.kind == SB_ERR_PRECONDITION,
			"a different create-only write to it still fails with PRECONDITION"))
		DiagErr("upload", &err);

	SetFaults(
		base_url,
		"{\"sequence\":[{\"endpoint\":\"DELETE object\",\"fault\":\"reset_after\"}]}");
	rc = sb_gcs_delete(cfg, Name("lost/result.json"), SB_GCS_ANY_GENERATION, &err);
	if (!Ok(rc == 0 && cfg->last_attempts == 2,
			"delete whose response was lost: the retry's 404 counts as deleted "
			"(attempts=%d)",
			cfg->last_attempts))
		DiagErr("delete", &err);
	SetFaults(base_url, "{}");
}

/* TestRetries runs uploads and downloads under injected 503s, 429s and resets. */
static void
TestRetries(SbGcsConfig *cfg)
{
	SbHttpPolicy policy;
	const SbHttpPolicy *saved = cfg->policy;
	int up_ok = 0;
	int down_ok = 0;
	int attempts = 0;
	int i;
	SbError err;
	SbError first_err;
	int64_t t0 = sb_now_ms();

	sb_error_clear(&first_err);
	sb_http_policy_default(&policy);
	/* 60% of attempts fail: keep the test short with a faster backoff */
	policy.backoff_base_ms = 25;
	policy.backoff_cap_ms = 1000;
	cfg->policy = &policy;
	if (!Ok(SetFaults(base_url, "{\"rate_503\":0.3,\"rate_429\":0.2,\"rate_reset\":0.1}"),
			"emulator accepts fault settings"))
		return;
	for (i = 0; i < 50; i++)
	{
		char suffix[64];
		char body[64];
		int64_t gen = 0;
		int64_t dgen = 0;
		char *data = NULL;
		size_t len = 0;

		snprintf(suffix, sizeof(suffix), "retry/obj-%02d", i);
		snprintf(body, sizeof(body), "payload %d", i);
		if (sb_gcs_upload(cfg, Name(suffix), body, strlen(body), SB_GCS_ANY_GENERATION,
						  &gen, &err) == 0)
			up_ok++;
		else if (first_err.kind == SB_OK)
			first_err = err;
		attempts += cfg->last_attempts;
		if (sb_gcs_download(cfg, Name(suffix), 0, &data, &len, &dgen, &err) == 0 &&
			len == strlen(body) && memcmp(data, body, len) == 0)
			down_ok++;
		else if (first_err.kind == SB_OK)
			first_err = err;
		attempts += cfg->last_attempts;
		free(data);
	}
	SetFaults(base_url, "{}");
	if (!Ok(up_ok == 50 && down_ok == 50,
			"50 uploads and 50 downloads all succeed under 503/429/reset faults"))
	{
		Diag("uploads ok=%d downloads ok=%d", up_ok, down_ok);
		DiagErr("first failure", &first_err);
	}
	if (!Ok(attempts > 100,
			"faults were injected and retried (%d attempts for 100 calls, "
			"%.1f s)",
			attempts, (sb_now_ms() - t0) / 1000.0))
		Diag("the emulator may not have injected faults");
	cfg->policy = saved;
}

typedef struct AbortAt
{
	int64_t at_ms;
	int calls;
	int64_t fired_ms;
} AbortAt;

/* AbortAtFn is a cancel hook that says "abort" from a given time on. */
static int
AbortAtFn(void *arg)
{
	AbortAt *a = arg;

	a->calls++;
	if (sb_now_ms() >= a->at_ms)
	{
		if (a->fired_ms == 0)
			a->fired_ms = sb_now_ms();
		return 1;
	}
	return 0;
}

/* TestCancel checks that the cancel hook stops a slow transfer and a backoff sleep. */
static void
TestCancel(SbGcsConfig *cfg)
{
	SbHttpPolicy policy;
	const SbHttpPolicy *saved = cfg->policy;
	AbortAt a;
	SbError err;
	char *data = NULL;
	size_t len = 0;
	int64_t t0;
	int64_t elapsed;
	int64_t gen;

	sb_gcs_upload(cfg, Name("cancel/x"), "abc", 3, SB_GCS_ANY_GENERATION, &gen, &err);
	sb_http_policy_default(&policy);
	policy.should_abort = AbortAtFn;
	policy.abort_arg = &a;
	cfg->policy = &policy;

	/* a response delayed by 3 s, cancelled after 100 ms */
	SetFaults(base_url, "{\"delay_ms\":[3000,3000]}");
	memset(&a, 0, sizeof(a));
	t0 = sb_now_ms();
	a.at_ms = t0 + 100;
	sb_gcs_download(cfg, Name("cancel/x"), 0, &data, &len, NULL, &err);
	elapsed = sb_now_ms() - t0;
	SetFaults(base_url, "{}");
	free(data);
	data = NULL;
	if (!Ok(err.kind == SB_ERR_CANCELLED && elapsed < 400,
			"cancel hook aborts a delayed download within 300 ms of asking (%lld ms)",
			(long long) (elapsed - 100)))
		DiagErr("download", &err);

	/* every attempt fails with 503; long backoff; cancelled during the sleep */
	policy.backoff_base_ms = 3000;
	policy.backoff_cap_ms = 3000;
	SetFaults(base_url, "{\"rate_503\":1}");
	memset(&a, 0, sizeof(a));
	t0 = sb_now_ms();
	a.at_ms = t0 + 300;
	sb_gcs_download(cfg, Name("cancel/x"), 0, &data, &len, NULL, &err);
	elapsed = sb_now_ms() - t0;
	free(data);
	data = NULL;
	/* full jitter can make the first waits short: several attempts are fine */
	if (!Ok(err.kind == SB_ERR_CANCELLED && elapsed < 600,
			"cancel hook aborts a backoff sleep (%lld ms after asking, %d attempts)",
			(long long) (elapsed - 300), cfg->last_attempts))
		DiagErr("download", &err);

	/* the deadline bounds retries */
	policy.should_abort = NULL;
	policy.backoff_base_ms = 50;
	policy.backoff_cap_ms = 200;
	cfg->timeout_ms = 1000;
	t0 = sb_now_ms();
	sb_gcs_download(cfg, Name("cancel/x"), 0, &data, &len, NULL, &err);
	elapsed = sb_now_ms() - t0;
	free(data);
	data = NULL;
	if (!Ok(err.kind == SB_ERR_TIMEOUT && err.http_status == 503 && elapsed < 1300 &&
				cfg->last_attempts > 1,
			"persistent 503s end in TIMEOUT at the deadline (%lld ms, %d attempts)",
			(long long) elapsed, cfg->last_attempts))
		DiagErr("download", &err);
	else
		Diag("%s", err.message);

	/* max_attempts bounds retries too */
	policy.max_attempts = 3;
	cfg->timeout_ms = 30000;
	sb_gcs_download(cfg, Name("cancel/x"), 0, &data, &len, NULL, &err);
	free(data);
	data = NULL;
	if (!Ok(err.kind == SB_ERR_HTTP && err.http_status == 503 && cfg->last_attempts == 3,
			"max_attempts=3 stops after 3 attempts with the last 503"))
		DiagErr("download", &err);
	SetFaults(base_url, "{}");
	cfg->policy = saved;
}

/* TestConnectionRefused checks retries on connection errors against a closed port. */
static void
TestConnectionRefused(SbHttpClient *http)
{
	SbGcsConfig cfg;
	SbHttpPolicy policy;
	SbError err;
	char *data = NULL;
	size_t len;
	int rc;

	sb_http_policy_default(&policy);
	policy.max_attempts = 3;
	policy.backoff_base_ms = 10;
	InitCfg(&cfg, "http://127.0.0.1:9", NULL, http);
	cfg.policy = &policy;
	rc = sb_gcs_download(&cfg, "x", 0, &data, &len, NULL, &err);
	if (!Ok(rc != 0 && err.kind == SB_ERR_NETWORK && cfg.last_attempts == 3,
			"connection refused is retried, then NETWORK (attempts=%d)",
			cfg.last_attempts))
		DiagErr("download", &err);
	free(data);
}

/* A tiny scripted HTTP server: one canned response per connection. */
typedef struct Script
{
	int fd;
	int port;
	const char *responses[8];
	int n;
	int served;
	pthread_t thread;
} Script;

/* ServeScript answers each connection with the next canned response, then closes it. */
static void *
ServeScript(void *arg)
{
	Script *sc = arg;

	while (sc->served < sc->n)
	{
		struct pollfd pfd = {.fd = sc->fd, .events = POLLIN};
		char buf[8192];
		size_t got = 0;
		int c;

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		c = accept(sc->fd, NULL, NULL);
		if (c < 0)
			break;
		/* read the request head (test requests have no body) */
		while (got < sizeof(buf) - 1)
		{
			ssize_t r = recv(c, buf + got, sizeof(buf) - 1 - got, 0);

			if (r <= 0)
				break;
			got += (size_t) r;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		if (send(c, sc->responses[sc->served], strlen(sc->responses[sc->served]),
				 MSG_NOSIGNAL) < 0)
			Diag("scripted server: send failed");
		sc->served++;
		shutdown(c, SHUT_RDWR);
		close(c);
	}
	return NULL;
}

/* StartScript starts a scripted server on a free loopback port; 0 or -1. */
static int
StartScript(Script *sc)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);

	sc->served = 0;
	sc->fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sc->fd < 0 || bind(sc->fd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
		listen(sc->fd, 8) != 0 || getsockname(sc->fd, (struct sockaddr *) &a, &alen) != 0)
		return -1;
	sc->port = ntohs(a.sin_port);
	return pthread_create(&sc->thread, NULL, ServeScript, sc) == 0 ? 0 : -1;
}

/* StopScript waits for the scripted server to finish. */
static void
StopScript(Script *sc)
{
	pthread_join(sc->thread, NULL);
	close(sc->fd);
}

/* ScriptGet performs a GET against the scripted server with a relative deadline. */
static int
ScriptGet(Script *sc, long timeout_ms, SbHttpRequest *req, SbError *err)
{
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", sc->port);
	if (sb_http_request_init(req, "GET", url, err) != 0)
		return -1;
	req->deadline_ms = sb_now_ms() + timeout_ms;
	req->policy.backoff_base_ms = 10;
	return sb_http_perform(NULL, req, err);
}

/* TestScripted checks Retry-After and truncated bodies against a scripted server. */
static void
TestScripted(void)
{
	Script sc;
	SbHttpRequest req;
	SbError err;
	int64_t t0;
	int64_t elapsed;
	int rc;
	char *h;

	memset(&sc, 0, sizeof(sc));
	sc.n = 2;
	sc.responses[0] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
					  "Content-Length: 0\r\nConnection: close\r\n\r\n";
	sc.responses[1] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Test:  v 1 \r\n"
					  "Connection: close\r\n\r\nok";
	if (!Ok(StartScript(&sc) == 0, "scripted server started"))
		return;
	t0 = sb_now_ms();
	rc = ScriptGet(&sc, 10000, &req, &err);
	elapsed = sb_now_ms() - t0;
	h = sb_http_response_header(&req, "x-test");
	if (!Ok(rc == 0 && req.attempts == 2 && elapsed >= 950 && req.response.len == 2,
			"503 with Retry-After: 1 waits about a second, then succeeds (%lld ms)",
			(long long) elapsed))
		DiagErr("get", &err);
	Ok(h && strcmp(h, "v 1") == 0,
	   "response header lookup is case-insensitive and trimmed");
	free(h);
	sb_http_request_cleanup(&req);
	StopScript(&sc);

	memset(&sc, 0, sizeof(sc));
	sc.n = 1;
	sc.responses[0] = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n"
					  "Content-Length: 0\r\nConnection: close\r\n\r\n";
	StartScript(&sc);
	t0 = sb_now_ms();
	rc = ScriptGet(&sc, 2000, &req, &err);
	elapsed = sb_now_ms() - t0;
	if (!Ok(rc != 0 && err.kind == SB_ERR_TIMEOUT && err.http_status == 429 &&
				elapsed < 500,
			"Retry-After beyond the deadline gives up at once with TIMEOUT (%lld ms)",
			(long long) elapsed))
		DiagErr("get", &err);
	sb_http_request_cleanup(&req);
	StopScript(&sc);

	memset(&sc, 0, sizeof(sc));
	sc.n = 2;
	sc.responses[0] =
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort";
	sc.responses[1] =
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfull";
	StartScript(&sc);
	rc = ScriptGet(&sc, 10000, &req, &err);
	if (!Ok(rc == 0 && req.attempts == 2 && req.response.len == 4 &&
				memcmp(req.response.data, "full", 4) == 0,
			"a truncated body (PARTIAL_FILE) is retried and only the full body is kept"))
		DiagErr("get", &err);
	sb_http_request_cleanup(&req);
	StopScript(&sc);

	memset(&sc, 0, sizeof(sc));
	sc.n = 1;
	sc.responses[0] =
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
		"Connection: close\r\n\r\n{\"error\":{\"code\":400,\"message\":\"bad field\","
		"\"status\":\"INVALID_ARGUMENT\"}}";
	StartScript(&sc);
	rc = ScriptGet(&sc, 10000, &req, &err);
	if (!Ok(rc != 0 && err.kind == SB_ERR_INVALID && req.attempts == 1 &&
				strcmp(err.reason, "INVALID_ARGUMENT") == 0 &&
				strstr(err.message, "bad field"),
			"400 -> INVALID with Cloud Run's status as reason, not retried"))
		DiagErr("get", &err);
	sb_http_request_cleanup(&req);
	StopScript(&sc);
}

/* TestShortTtl checks transparent refresh of an expiring token. */
static void
TestShortTtl(SbHttpClient *http)
{
	SbGcsConfig cfg;
	SbError err;
	SbAuth *auth;
	int64_t gen;
	long before;
	int rc;

	if (ttl_base_url == NULL)
	{
		Skip("expiring token is refreshed transparently",
			 "no --token-ttl emulator URL given");
		return;
	}
	auth = MakeAuth(ttl_base_url, key_file, &err);
	InitCfg(&cfg, ttl_base_url, auth, http);
	before = TokenCalls(ttl_base_url);
	if (!Ok(sb_gcs_upload(&cfg, Name("ttl/x"), "1", 1, -1, &gen, &err) == 0,
			"upload with a 2 s token"))
		DiagErr("upload", &err);
	Diag("waiting 3 s for the token to expire");
	sleep(3);
	rc = sb_gcs_upload(&cfg, Name("ttl/x"), "2", 1, -1, &gen, &err);
	if (!Ok(rc == 0 && cfg.last_attempts == 1,
			"upload after the token expired succeeds (attempts=%d)", cfg.last_attempts))
		DiagErr("upload", &err);
	if (!Ok(sb_auth_token_fetches(auth) == 2 && TokenCalls(ttl_base_url) == before + 2,
			"the expired token was replaced by a new one"))
		Diag("fetches=%d token calls=%ld (before %ld)", sb_auth_token_fetches(auth),
			 TokenCalls(ttl_base_url), before);
	sb_auth_free(auth);
}

/* WriteWrongKey writes a service-account key file with a fresh, unregistered RSA key. */
static int
WriteWrongKey(const char *path, char *pem_excerpt, size_t excerpt_size)
{
	EVP_PKEY *pkey = EVP_RSA_gen(2048);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n;
	json_t *real = json_load_file(key_file, 0, NULL);
	json_t *key = json_object();
	int rc = -1;

	if (pkey && bio && real && key &&
		PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1)
	{
		char *p;

		n = BIO_get_mem_data(bio, &p);
		pem = strndup(p, (size_t) n);
		/* a piece of the key's base64 body, to look for in messages */
		snprintf(pem_excerpt, excerpt_size, "%.24s", pem + 40);
		json_object_set(key, "type", json_object_get(real, "type"));
		json_object_set(key, "client_email", json_object_get(real, "client_email"));
		json_object_set_new(key, "private_key_id", json_string("not-a-known-key-id"));
		json_object_set_new(key, "private_key", json_string(pem));
		json_object_set_new(key, "token_uri", json_string(token_endpoint));
		rc = json_dump_file(key, path, 0);
	}
	free(pem);
	json_decref(real);
	json_decref(key);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return rc;
}

/* TestWrongKey checks that an unknown key fails with AUTH and leaks no secret. */
static void
TestWrongKey(SbHttpClient *http)
{
	char path[] = "/tmp/sb_wrongkeyXXXXXX";
	char excerpt[32] = "";
	int fd = mkstemp(path);
	SbError err;
	SbAuth *auth;
	const char *h;
	SbGcsConfig cfg;

	if (fd < 0)
		return;
	close(fd);
	if (!Ok(WriteWrongKey(path, excerpt, sizeof(excerpt)) == 0,
			"generated an unknown key"))
		return;
	auth = MakeAuth(base_url, path, &err);
	if (!Ok(auth != NULL, "unknown key loads locally"))
	{
		DiagErr("sb_auth_new", &err);
		unlink(path);
		return;
	}
	sb_auth_set_http(auth, http, NULL);
	h = sb_auth_header(auth, &err);
	if (!Ok(h == NULL && err.kind == SB_ERR_AUTH, "unknown key -> AUTH error"))
		DiagErr("sb_auth_header", &err);
	Diag("%s", err.message);
	Ok(strstr(err.message, path) != NULL && strstr(err.message, "/token") != NULL,
	   "the error names the key file and the token endpoint");
	Ok(strstr(err.message, "eyJ") == NULL && strstr(err.message, "BEGIN") == NULL &&
		   strstr(err.message, excerpt) == NULL && strstr(err.message, "Bearer") == NULL,
	   "the error contains no JWT, key material or token");
	InitCfg(&cfg, base_url, auth, http);
	if (!Ok(sb_gcs_upload(&cfg, Name("wrongkey/x"), "x", 1, -1, NULL, &err) != 0 &&
				err.kind == SB_ERR_AUTH,
			"GCS call with an unknown key -> AUTH"))
		DiagErr("upload", &err);
	sb_auth_free(auth);
	unlink(path);
}

/* TestMetadata checks the metadata-server token source. */
static void
TestMetadata(SbHttpClient *http)
{
	SbAuthConfig ac;
	SbAuth *auth;
	SbError err;
	SbGcsConfig cfg;

	memset(&ac, 0, sizeof(ac));
	ac.mode = SB_AUTH_METADATA;
	ac.metadata_host = base_url + strlen("http://");
	auth = sb_auth_new(&ac, &err);
	if (!Ok(auth != NULL && sb_auth_header(auth, &err) != NULL,
			"metadata server token (host %s)", ac.metadata_host))
		DiagErr("metadata", &err);
	InitCfg(&cfg, base_url, auth, http);
	if (!Ok(sb_gcs_upload(&cfg, Name("metadata/x"), "x", 1, -1, NULL, &err) == 0,
			"GCS call with a metadata-server token"))
		DiagErr("upload", &err);
	sb_auth_free(auth);

	ac.metadata_host = "127.0.0.1:9";
	auth = sb_auth_new(&ac, &err);
	sb_auth_set_http(auth, http, NULL);
	{
		SbHttpPolicy p;

		sb_http_policy_default(&p);
		p.max_attempts = 2;
		p.backoff_base_ms = 10;
		if (!Ok(sb_auth_header_ex(auth, http, 0, &p, &err) == NULL &&
					err.kind == SB_ERR_NETWORK && strstr(err.message, "metadata") != NULL,
				"unreachable metadata server -> NETWORK error naming it"))
			DiagErr("metadata", &err);
	}
	sb_auth_free(auth);
}

/* TestNone checks that mode none sends no header. */
static void
TestNone(void)
{
	SbAuthConfig ac;
	SbAuth *auth;
	SbError err;
	SbAuthMode m;

	memset(&ac, 0, sizeof(ac));
	auth = sb_auth_new(&ac, &err);
	Ok(auth != NULL && sb_auth_header(auth, &err) == NULL && err.kind == SB_OK,
	   "auth mode none gives no header and no error");
	sb_auth_free(auth);
	Ok(sb_auth_mode_parse("metadata", &m) == 0 && m == SB_AUTH_METADATA &&
		   sb_auth_mode_parse("bogus", &m) != 0,
	   "auth mode names parse");
}

int
main(int argc, char **argv)
{
	SbError err;
	SbHttpClient *http;
	SbAuth *auth;
	SbGcsConfig cfg;

	if (argc < 3)
	{
		fprintf(stderr, "usage: %s BASE_URL KEY_FILE [SHORT_TTL_BASE_URL]\n", argv[0]);
		return 2;
	}
	base_url = argv[1];
	key_file = argv[2];
	ttl_base_url = argc > 3 ? argv[3] : NULL;
	if (getenv("SB_TEST_BUCKET"))
		bucket = getenv("SB_TEST_BUCKET");
	snprintf(token_endpoint, sizeof(token_endpoint), "%s/token", base_url);
	snprintf(prefix, sizeof(prefix), "unit-%d-%ld/", (int) getpid(), (long) time(NULL));

	if (sb_http_global_init(&err) != 0 || (http = sb_http_client_new(&err)) == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 2;
	}

	TestOffline();
	TestNone();
	TestKeyFileErrors();
	TestTokenFlow(http);

	auth = MakeAuth(base_url, key_file, &err);
	if (auth == NULL)
	{
		DiagErr("sb_auth_new", &err);
		return 1;
	}
	sb_auth_set_http(auth, http, NULL);
	InitCfg(&cfg, base_url, auth, http);
	TestRoundtrip(&cfg);
	TestAsync(&cfg);
	TestPreconditions(&cfg);
	TestMissing(&cfg);
	TestList(&cfg);
	TestDelete(&cfg);
	TestLimits(&cfg);
	TestUnauthenticated(http);
	TestForbidden(&cfg);
	TestTokenRejected(&cfg);
	TestLostResponses(&cfg);
	TestRetries(&cfg);
	TestCancel(&cfg);
	TestConnectionRefused(http);
	TestScripted();
	TestMetadata(http);
	TestWrongKey(http);
	TestShortTtl(http);

	sb_auth_free(auth);
	sb_http_client_free(http);
	sb_http_global_cleanup();

	printf("1..%d\n", n_tests);
	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed > 0 ? 1 : 0;
}
