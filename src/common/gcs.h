/*-------------------------------------------------------------------------
 *
 * gcs.h
 *	  A small Google Cloud Storage JSON API client: upload, download, stat,
 *	  delete and list objects, with generation preconditions.
 *
 * Every call takes an SbGcsConfig, returns 0 on success or -1 with *err
 * set (412 -> SB_ERR_PRECONDITION, 404 -> SB_ERR_NOT_FOUND, ...), and
 * records how many HTTP attempts it made in cfg->last_attempts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_GCS_H
#define SB_GCS_H

#include "http.h"
#include "oauth.h"

#define SB_GCS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define SB_GCS_DEFAULT_TIMEOUT_MS 60000

/* Where and how to reach a bucket.  Zero-initialise, then set fields. */
typedef struct SbGcsConfig
{
	const char *storage_endpoint; /* NULL: $STORAGE_EMULATOR_HOST, else
								   * https://storage.googleapis.com */
	const char *bucket;
	SbAuth *auth;				/* borrowed; NULL = no Authorization */
	SbHttpClient *http;			/* borrowed connection cache; NULL = a
								 * fresh connection per call */
	const SbHttpPolicy *policy; /* retries, cancel hook; NULL = defaults */
	long timeout_ms;			/* per call; 0 = SB_GCS_DEFAULT_TIMEOUT_MS */
	int64_t deadline_ms;		/* absolute monotonic cap; 0 = none */
	int list_page_size;			/* maxResults for sb_gcs_list; 0 = server's */
	long token_timeout_ms;		/* an asynchronous call's token fetch (which
								 * blocks, when the cached token expired) may
								 * take this long; 0 = the call's deadline */

	int last_attempts; /* out: HTTP attempts of the last call */
} SbGcsConfig;

/* What sb_gcs_stat() reports about an object. */
typedef struct SbGcsObjectInfo
{
	int64_t generation;
	int64_t metageneration;
	int64_t size;
	char md5_base64[32]; /* md5Hash, "" if not reported */
	char content_type[128];
} SbGcsObjectInfo;

/* sb_gcs_list() callback; return nonzero to stop listing early. */
typedef int (*SbGcsListFn)(void *arg, const char *name, int64_t generation, int64_t size);

/* Match any generation (no precondition). */
#define SB_GCS_ANY_GENERATION ((int64_t) -1)

extern int sb_gcs_upload(SbGcsConfig *cfg, const char *name, const void *data, size_t len,
						 int64_t if_generation_match, int64_t *out_generation,
						 SbError *err);
extern int sb_gcs_download(SbGcsConfig *cfg, const char *name, size_t max_bytes,
						   char **data, size_t *len, int64_t *generation, SbError *err);
extern int sb_gcs_download_start(SbGcsConfig *cfg, const char *name, size_t max_bytes,
								 SbHttpRequest *req, SbError *err);
extern int sb_gcs_download_end(SbGcsConfig *cfg, SbHttpRequest *req, char **data, size_t *len,
							   SbError *err);
extern int sb_gcs_upload_start(SbGcsConfig *cfg, const char *name, const void *data,
							   size_t len, int64_t if_generation_match, SbHttpRequest *req,
							   SbError *err);
extern int sb_gcs_upload_end(SbGcsConfig *cfg, SbHttpRequest *req, int64_t *generation,
							 SbError *err);
extern int sb_gcs_stat(SbGcsConfig *cfg, const char *name, SbGcsObjectInfo *info,
					   SbError *err);
extern int sb_gcs_delete(SbGcsConfig *cfg, const char *name, int64_t if_generation_match,
						 SbError *err);
extern int sb_gcs_list(SbGcsConfig *cfg, const char *prefix, SbGcsListFn fn, void *arg,
					   SbError *err);
extern char *sb_gcs_endpoint(const SbGcsConfig *cfg);

#endif /* SB_GCS_H */
