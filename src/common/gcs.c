/*-------------------------------------------------------------------------
 *
 * gcs.c
 *	  Google Cloud Storage JSON API client used for session state, results,
 *	  workspaces and logs: media uploads with ifGenerationMatch, downloads
 *	  with the object's generation, metadata, deletes and paged listings.
 *
 * Object names are percent-encoded with RFC 3986's unreserved set, so a
 * "/" in a name becomes %2F in a URL path, as the JSON API requires.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "gcs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sbutil.h" /* routes json_object() away from the postgres binary's symbol */
#include <openssl/evp.h>

/* sb_gcs_endpoint returns the storage base URL without a trailing slash (malloc'd). */
char *
sb_gcs_endpoint(const SbGcsConfig *cfg)
{
	const char *ep = cfg->storage_endpoint;
	char *out = NULL;
	size_t n;

	if (ep == NULL || ep[0] == '\0')
		ep = getenv("STORAGE_EMULATOR_HOST");
	if (ep == NULL || ep[0] == '\0')
		ep = SB_GCS_DEFAULT_ENDPOINT;
	n = strlen(ep);
	while (n > 0 && ep[n - 1] == '/')
		n--;
	/* like Google's clients, "host:port" means plain HTTP */
	if (strncmp(ep, "http://", 7) == 0 || strncmp(ep, "https://", 8) == 0)
	{
		if (asprintf(&out, "%.*s", (int) n, ep) < 0)
			out = NULL;
	}
	else if (asprintf(&out, "http://%.*s", (int) n, ep) < 0)
		out = NULL;
	return out;
}

/* ObjectUrl builds "{ep}{middle}/b/{bucket}/o[/{name}]" plus a query; malloc'd. */
static char *
ObjectUrl(const SbGcsConfig *cfg, const char *api, const char *name, const char *query)
{
	char *ep = sb_gcs_endpoint(cfg);
	char *b = sb_pct_encode(cfg->bucket ? cfg->bucket : "");
	char *o = name ? sb_pct_encode(name) : NULL;
	char *url = NULL;

	if (ep != NULL && b != NULL && (name == NULL || o != NULL))
	{
		if (asprintf(&url, "%s%s/b/%s/o%s%s%s%s", ep, api, b, o ? "/" : "", o ? o : "",
					 query && query[0] ? "?" : "", query ? query : "") < 0)
			url = NULL;
	}
	free(ep);
	free(b);
	free(o);
	return url;
}

/* CheckArgs validates the bucket and (if need_name) the object name; 0 or -1. */
static int
CheckArgs(const SbGcsConfig *cfg, const char *name, int need_name, SbError *err)
{
	sb_error_clear(err);
	if (cfg->bucket == NULL || cfg->bucket[0] == '\0')
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "noBucket", "no GCS bucket configured");
		return -1;
	}
	if (need_name && (name == NULL || name[0] == '\0'))
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "invalidName", "empty GCS object name");
		return -1;
	}
	return 0;
}

/* StartRequest initialises a request with the config's policy and deadline. */
static int
StartRequest(SbGcsConfig *cfg, SbHttpRequest *req, const char *method, char *url,
			 SbError *err)
{
	int64_t deadline;

	memset(req, 0, sizeof(*req));
	if (url == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	if (sb_http_request_init(req, method, url, err) != 0)
	{
		free(url);
		return -1;
	}
	free(url);
	if (cfg->policy)
		req->policy = *cfg->policy;
	deadline =
		sb_now_ms() + (cfg->timeout_ms > 0 ? cfg->timeout_ms : SB_GCS_DEFAULT_TIMEOUT_MS);
	if (cfg->deadline_ms > 0 && cfg->deadline_ms < deadline)
		deadline = cfg->deadline_ms;
	req->deadline_ms = deadline;
	return 0;
}

/* Perform runs a request with the config's credentials and records attempts. */
static int
Perform(SbGcsConfig *cfg, SbHttpRequest *req, SbError *err)
{
	int rc = sb_http_perform_auth(cfg->http, req, cfg->auth, err);

	cfg->last_attempts += req->attempts;
	return rc;
}

/* JsonInt64 reads an int64 that the JSON API may send as a string or a number. */
static int64_t
JsonInt64(json_t *v, int64_t dflt)
{
	if (json_is_integer(v))
		return (int64_t) json_integer_value(v);
	if (json_is_string(v))
	{
		char *end;
		long long x = strtoll(json_string_value(v), &end, 10);

		if (end != json_string_value(v) && *end == '\0')
			return (int64_t) x;
	}
	return dflt;
}

/* ParseObject reads an object resource's metadata from a JSON body. */
static int
ParseObject(const char *body, size_t len, SbGcsObjectInfo *info, SbError *err)
{
	json_t *root = json_loadb(body ? body : "", len, 0, NULL);
	json_t *v;

	memset(info, 0, sizeof(*info));
	if (!json_is_object(root))
	{
		json_decref(root);
		sb_error_set(err, SB_ERR_INTERNAL, 0, "badResponse",
					 "GCS returned an object resource that is not JSON");
		return -1;
	}
	info->generation = JsonInt64(json_object_get(root, "generation"), -1);
	info->metageneration = JsonInt64(json_object_get(root, "metageneration"), 0);
	info->size = JsonInt64(json_object_get(root, "size"), -1);
	v = json_object_get(root, "md5Hash");
	if (json_is_string(v))
		snprintf(info->md5_base64, sizeof(info->md5_base64), "%s", json_string_value(v));
	v = json_object_get(root, "contentType");
	if (json_is_string(v))
		snprintf(info->content_type, sizeof(info->content_type), "%s",
				 json_string_value(v));
	json_decref(root);
	if (info->generation < 0)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "badResponse",
					 "GCS returned an object resource without a generation");
		return -1;
	}
	return 0;
}

/* Md5Base64 computes the base64 MD5 of data, as GCS reports md5Hash; 0 or -1. */
static int
Md5Base64(const void *data, size_t len, char out[32])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16)
		return -1;
	EVP_EncodeBlock((unsigned char *) out, md, (int) mdlen);
	return 0;
}

/* UploadQuery is the query string of a media upload (malloc'd), NULL when out of memory. */
static char *
UploadQuery(const char *name, int64_t if_generation_match)
{
	char *enc = sb_pct_encode(name);
	char *query = NULL;

	if (enc == NULL ||
		(if_generation_match >= 0
			 ? asprintf(&query, "uploadType=media&name=%s&ifGenerationMatch=%lld", enc,
						(long long) if_generation_match)
			 : asprintf(&query, "uploadType=media&name=%s", enc)) < 0)
		query = NULL;
	free(enc);
	return query;
}

/*
 * sb_gcs_upload stores data as object name (media upload).
 * if_generation_match: SB_GCS_ANY_GENERATION (-1) for none, 0 to create
 * only, else the generation that must be current.  On success sets
 * *out_generation (may be NULL) to the new generation.
 */
int
sb_gcs_upload(SbGcsConfig *cfg, const char *name, const void *data, size_t len,
			  int64_t if_generation_match, int64_t *out_generation, SbError *err)
{
	SbHttpRequest req;
	SbGcsObjectInfo info;
	char *query = NULL;
	int rc = -1;

	cfg->last_attempts = 0;
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if (data == NULL && len > 0)
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "invalidArgument",
					 "upload of %zu bytes from NULL", len);
		return -1;
	}
	query = UploadQuery(name, if_generation_match);
	if (query == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	if (StartRequest(cfg, &req, "POST", ObjectUrl(cfg, "/upload/storage/v1", NULL, query),
					 err) != 0)
		goto done;
	if (sb_http_request_add_header(&req, err, "Content-Type: application/octet-stream") !=
		0)
		goto done;
	sb_http_request_set_body(&req, data ? data : "", len);
	if (Perform(cfg, &req, err) != 0)
	{
		/*
		 * A precondition failure after a retry may mean that our own earlier
		 * attempt succeeded and only its response was lost: if the object
		 * now holds exactly our bytes, that is success.
		 */
		if (err->kind == SB_ERR_PRECONDITION && req.attempts > 1)
		{
			SbError e2;
			char md5[32];
			int attempts = cfg->last_attempts;

			if (sb_gcs_stat(cfg, name, &info, &e2) == 0 && info.md5_base64[0] &&
				Md5Base64(data ? data : "", len, md5) == 0 &&
				strcmp(md5, info.md5_base64) == 0 && (int64_t) len == info.size)
			{
				cfg->last_attempts += attempts;
				sb_error_clear(err);
				if (out_generation)
					*out_generation = info.generation;
				rc = 0;
				goto done;
			}
			cfg->last_attempts += attempts;
		}
		goto done;
	}
	if (ParseObject(req.response.data, req.response.len, &info, err) != 0)
		goto done;
	if (out_generation)
		*out_generation = info.generation;
	rc = 0;

done:
	free(query);
	sb_http_request_cleanup(&req);
	return rc;
}

/*
 * sb_gcs_download reads object name, at most max_bytes (0 = the HTTP
 * default cap).  On success *data is a malloc'd NUL-terminated buffer the
 * caller frees with free(), *len its length (without the NUL) and
 * *generation (may be NULL) the object's generation, 0 if not reported.
 */
int
sb_gcs_download(SbGcsConfig *cfg, const char *name, size_t max_bytes, char **data,
				size_t *len, int64_t *generation, SbError *err)
{
	SbHttpRequest req;
	char *gen;
	int rc = -1;

	cfg->last_attempts = 0;
	*data = NULL;
	*len = 0;
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if (StartRequest(cfg, &req, "GET", ObjectUrl(cfg, "/storage/v1", name, "alt=media"),
					 err) != 0)
		goto done;
	if (max_bytes > 0)
		req.max_response_bytes = max_bytes;
	if (Perform(cfg, &req, err) != 0)
		goto done;
	if (generation)
	{
		gen = sb_http_response_header(&req, "x-goog-generation");
		*generation = gen ? strtoll(gen, NULL, 10) : 0;
		free(gen);
	}
	*data = sb_httpbuf_steal(&req.response, len);
	if (*data == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		goto done;
	}
	rc = 0;

done:
	sb_http_request_cleanup(&req);
	return rc;
}

/*
 * StartAsync starts one attempt of a prepared request on cfg->http without
 * waiting, with the credentials' token; cleans req up on failure.
 */
static int
StartAsync(SbGcsConfig *cfg, SbHttpRequest *req, SbError *err)
{
	const char *header = NULL;

	if (cfg->http == NULL)
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "", "an asynchronous call needs an HTTP client");
		sb_http_request_cleanup(req);
		return -1;
	}
	if (cfg->auth != NULL)
	{
		int64_t deadline = req->deadline_ms;

		if (cfg->token_timeout_ms > 0 && sb_now_ms() + cfg->token_timeout_ms < deadline)
			deadline = sb_now_ms() + cfg->token_timeout_ms;
		header = sb_auth_header_ex(cfg->auth, cfg->http, deadline, &req->policy, err);
		if (header == NULL && err->kind != SB_OK)
		{
			sb_http_request_cleanup(req);
			return -1;
		}
	}
	if (sb_http_request_set_auth_header(req, header, err) != 0 ||
		sb_http_start(cfg->http, req, err) != 0)
	{
		sb_http_request_cleanup(req);
		return -1;
	}
	return 0;
}

/*
 * sb_gcs_download_start starts one attempt to download an object on
 * cfg->http without waiting (for an event loop; see sb_http_start): req is
 * then driven by sb_http_client_drive() and, once req->finished, read with
 * sb_gcs_download_end().  Getting a token may block (rarely: it is cached).
 */
int
sb_gcs_download_start(SbGcsConfig *cfg, const char *name, size_t max_bytes,
					  SbHttpRequest *req, SbError *err)
{
	memset(req, 0, sizeof(*req));
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if (StartRequest(cfg, req, "GET", ObjectUrl(cfg, "/storage/v1", name, "alt=media"), err) !=
		0)
		return -1;
	if (max_bytes > 0)
		req->max_response_bytes = max_bytes;
	return StartAsync(cfg, req, err);
}

/*
 * sb_gcs_download_end reads a finished download started with
 * sb_gcs_download_start: 0 with the object's bytes in *data (malloc'd), or
 * -1 with *err set (SB_ERR_NOT_FOUND: no such object; an expired token is
 * SB_ERR_AUTH, after which the cached token is dropped).  Cleans up req.
 */
int
sb_gcs_download_end(SbGcsConfig *cfg, SbHttpRequest *req, char **data, size_t *len,
					SbError *err)
{
	int rc = -1;

	*data = NULL;
	*len = 0;
	if (sb_http_finish(req, err) == 0)
	{
		*data = sb_httpbuf_steal(&req->response, len);
		if (*data == NULL)
			sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		else
			rc = 0;
	}
	else if (req->status == 401 && cfg->auth != NULL)
		sb_auth_invalidate(cfg->auth);
	sb_http_request_cleanup(req);
	return rc;
}

/*
 * sb_gcs_upload_start starts one attempt of a media upload on cfg->http
 * without waiting (see sb_gcs_download_start); data is borrowed and must
 * outlive the attempt.  Read it, once req->finished, with sb_gcs_upload_end.
 */
int
sb_gcs_upload_start(SbGcsConfig *cfg, const char *name, const void *data, size_t len,
					int64_t if_generation_match, SbHttpRequest *req, SbError *err)
{
	char *query;
	int rc;

	memset(req, 0, sizeof(*req));
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if ((query = UploadQuery(name, if_generation_match)) == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	rc = StartRequest(cfg, req, "POST", ObjectUrl(cfg, "/upload/storage/v1", NULL, query), err);
	free(query);
	if (rc != 0)
		return -1;
	if (sb_http_request_add_header(req, err, "Content-Type: application/octet-stream") != 0)
	{
		sb_http_request_cleanup(req);
		return -1;
	}
	sb_http_request_set_body(req, data ? data : "", len);
	return StartAsync(cfg, req, err);
}

/*
 * sb_gcs_upload_end reads a finished upload started with
 * sb_gcs_upload_start: 0 with the object's generation in *generation (if
 * not NULL), or -1 with *err set.  Cleans up req.
 */
int
sb_gcs_upload_end(SbGcsConfig *cfg, SbHttpRequest *req, int64_t *generation, SbError *err)
{
	SbGcsObjectInfo info;
	int rc = -1;

	if (sb_http_finish(req, err) == 0)
	{
		rc = ParseObject(req->response.data, req->response.len, &info, err);
		if (rc == 0 && generation)
			*generation = info.generation;
	}
	else if (req->status == 401 && cfg->auth != NULL)
		sb_auth_invalidate(cfg->auth);
	sb_http_request_cleanup(req);
	return rc;
}

/* sb_gcs_stat reads object name's metadata (generation, size, md5) into *info. */
int
sb_gcs_stat(SbGcsConfig *cfg, const char *name, SbGcsObjectInfo *info, SbError *err)
{
	SbHttpRequest req;
	int rc = -1;

	cfg->last_attempts = 0;
	memset(info, 0, sizeof(*info));
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if (StartRequest(cfg, &req, "GET", ObjectUrl(cfg, "/storage/v1", name, NULL), err) !=
		0)
		goto done;
	if (Perform(cfg, &req, err) != 0)
		goto done;
	rc = ParseObject(req.response.data, req.response.len, info, err);

done:
	sb_http_request_cleanup(&req);
	return rc;
}

/*
 * sb_gcs_delete deletes object name, only if its generation is
 * if_generation_match (SB_GCS_ANY_GENERATION for any).
 */
int
sb_gcs_delete(SbGcsConfig *cfg, const char *name, int64_t if_generation_match,
			  SbError *err)
{
	SbHttpRequest req;
	char query[64] = "";
	int rc = -1;

	cfg->last_attempts = 0;
	if (CheckArgs(cfg, name, 1, err) != 0)
		return -1;
	if (if_generation_match >= 0)
		snprintf(query, sizeof(query), "ifGenerationMatch=%lld",
				 (long long) if_generation_match);
	if (StartRequest(cfg, &req, "DELETE", ObjectUrl(cfg, "/storage/v1", name, query),
					 err) != 0)
		goto done;
	if (Perform(cfg, &req, err) != 0)
	{
		/* gone after a retry: our first attempt most likely deleted it */
		if (err->kind == SB_ERR_NOT_FOUND && req.attempts > 1)
		{
			sb_error_clear(err);
			rc = 0;
		}
		goto done;
	}
	rc = 0;

done:
	sb_http_request_cleanup(&req);
	return rc;
}

/*
 * sb_gcs_list calls fn for every object whose name starts with prefix
 * (NULL or "" for all), page by page (cfg->list_page_size per page),
 * following nextPageToken.  fn's strings are valid only during the call.
 * A nonzero return from fn stops the listing (sb_gcs_list still returns 0).
 */
int
sb_gcs_list(SbGcsConfig *cfg, const char *prefix, SbGcsListFn fn, void *arg, SbError *err)
{
	char *page_token = NULL;
	int attempts = 0;
	int rc = -1;
	int stop = 0;

	cfg->last_attempts = 0;
	if (CheckArgs(cfg, NULL, 0, err) != 0)
		return -1;
	if (fn == NULL)
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "noCallback",
					 "sb_gcs_list needs a callback");
		return -1;
	}
	do
	{
		SbHttpRequest req;
		char *p = sb_pct_encode(prefix ? prefix : "");
		char *t = page_token ? sb_pct_encode(page_token) : NULL;
		char *query = NULL;
		char max[32] = "";
		json_t *root;
		json_t *items;
		json_t *next;
		size_t i;

		if (cfg->list_page_size > 0)
			snprintf(max, sizeof(max), "&maxResults=%d", cfg->list_page_size);
		if (p == NULL || (page_token && t == NULL) ||
			asprintf(&query, "prefix=%s%s%s%s", p, max, t ? "&pageToken=" : "",
					 t ? t : "") < 0)
			query = NULL;
		free(p);
		free(t);
		if (query == NULL)
		{
			sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
			break;
		}
		if (StartRequest(cfg, &req, "GET", ObjectUrl(cfg, "/storage/v1", NULL, query),
						 err) != 0)
		{
			free(query);
			sb_http_request_cleanup(&req);
			break;
		}
		free(query);
		cfg->last_attempts = 0;
		if (Perform(cfg, &req, err) != 0)
		{
			attempts += cfg->last_attempts;
			sb_http_request_cleanup(&req);
			break;
		}
		attempts += cfg->last_attempts;
		root = json_loadb(req.response.data ? req.response.data : "", req.response.len, 0,
						  NULL);
		sb_http_request_cleanup(&req);
		if (!json_is_object(root))
		{
			json_decref(root);
			sb_error_set(err, SB_ERR_INTERNAL, 0, "badResponse",
						 "GCS returned an object listing that is not JSON");
			break;
		}
		items = json_object_get(root, "items");
		for (i = 0; !stop && json_is_array(items) && i < json_array_size(items); i++)
		{
			json_t *it = json_array_get(items, i);
			json_t *nm = json_object_get(it, "name");

			if (!json_is_string(nm))
				continue;
			stop = fn(arg, json_string_value(nm),
					  JsonInt64(json_object_get(it, "generation"), -1),
					  JsonInt64(json_object_get(it, "size"), -1));
		}
		free(page_token);
		page_token = NULL;
		next = json_object_get(root, "nextPageToken");
		if (!stop && json_is_string(next) && json_string_length(next) > 0)
		{
			page_token = strdup(json_string_value(next));
			if (page_token == NULL)
			{
				json_decref(root);
				sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
				break;
			}
		}
		json_decref(root);
		if (page_token == NULL)
			rc = 0;
	} while (page_token != NULL);
	free(page_token);
	cfg->last_attempts = attempts;
	return rc;
}
