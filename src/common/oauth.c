/*-------------------------------------------------------------------------
 *
 * oauth.c
 *	  Access tokens for Google APIs: from nothing (emulators), from the
 *	  metadata server, or from a service-account key by the JWT bearer
 *	  grant (RFC 7523) signed RS256 with OpenSSL; cached until shortly
 *	  before they expire.
 *
 * Secrets (the private key, the signed JWT, the access token) are kept
 * only in memory, wiped before they are freed where this file owns them,
 * and scrubbed from every error message.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "oauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sbutil.h" /* routes json_object() away from the postgres binary's symbol */
#include <openssl/evp.h>
#include <openssl/pem.h>

/* Largest key file we read. */
#define SB_MAX_KEY_FILE (1024 * 1024)
/* Lifetime we ask for in the JWT, seconds. */
#define SB_JWT_LIFETIME 3600
/* Timeout of a token fetch made outside any other call. */
#define SB_TOKEN_TIMEOUT_MS 30000

struct SbAuth
{
	SbAuthMode mode;
	char *key_file; /* for messages */
	char *client_email;
	char *private_key_id;
	char *token_endpoint; /* service account: where to POST the JWT */
	char *metadata_url;	  /* metadata: full token URL */
	char *scope;
	EVP_PKEY *pkey;
	long refresh_margin_ms;

	char *header;			/* "Authorization: Bearer ..." or NULL */
	int64_t valid_until_ms; /* use the cached header before this */
	int fetches;			/* tokens obtained so far */

	SbHttpClient *client; /* borrowed, may be NULL */
	SbHttpPolicy policy;
};

/* WipeFree overwrites a secret string and frees it. */
static void
WipeFree(char *s)
{
	if (s != NULL)
	{
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* ScrubSecret replaces every occurrence of a secret in an error message. */
static void
ScrubSecret(SbError *err, const char *secret)
{
	char *hit;
	size_t n;

	if (err == NULL || secret == NULL || strlen(secret) < 8)
		return;
	n = strlen(secret);
	while ((hit = strstr(err->message, secret)) != NULL)
	{
		const char *mark = "[redacted]";
		size_t mlen = strlen(mark);

		memmove(hit + mlen, hit + n, strlen(hit + n) + 1);
		memcpy(hit, mark, mlen);
	}
}

/* sb_auth_mode_parse reads "none", "metadata" or "key"/"service_account"; 0 or -1. */
int
sb_auth_mode_parse(const char *name, SbAuthMode *mode)
{
	if (name == NULL || strcmp(name, "none") == 0)
		*mode = SB_AUTH_NONE;
	else if (strcmp(name, "metadata") == 0)
		*mode = SB_AUTH_METADATA;
	else if (strcmp(name, "key") == 0 || strcmp(name, "key_file") == 0 ||
			 strcmp(name, "service_account") == 0)
		*mode = SB_AUTH_SERVICE_ACCOUNT;
	else
		return -1;
	return 0;
}

/* ReadKeyFile reads a whole (small) file into a malloc'd NUL-terminated buffer. */
static char *
ReadKeyFile(const char *path, size_t *len, SbError *err)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (f == NULL)
	{
		sb_error_set(err, SB_ERR_AUTH, 0, "keyFileUnreadable",
					 "could not open service account key file \"%s\": %s", path,
					 strerror(errno));
		return NULL;
	}
	buf = malloc(SB_MAX_KEY_FILE + 1);
	if (buf == NULL)
	{
		fclose(f);
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return NULL;
	}
	n = fread(buf, 1, SB_MAX_KEY_FILE + 1, f);
	if (ferror(f) || n > SB_MAX_KEY_FILE)
	{
		sb_error_set(err, SB_ERR_AUTH, 0, "keyFileUnreadable",
					 "could not read service account key file \"%s\": %s", path,
					 ferror(f) ? "read error" : "file too large");
		fclose(f);
		explicit_bzero(buf, n < SB_MAX_KEY_FILE ? n : SB_MAX_KEY_FILE);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* DupJsonString returns a malloc'd copy of a string member, or NULL. */
static char *
DupJsonString(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	return strdup(json_string_value(v));
}

/* LoadServiceAccount reads and checks a key file into the auth object. */
static int
LoadServiceAccount(SbAuth *auth, const SbAuthConfig *cfg, SbError *err)
{
	size_t len = 0;
	char *text;
	json_t *root;
	json_error_t jerr;
	json_t *pk;
	BIO *bio;
	char *token_uri;

	if (cfg->key_file == NULL || cfg->key_file[0] == '\0')
	{
		sb_error_set(err, SB_ERR_INVALID, 0, "noKeyFile",
					 "service account authentication needs a key file");
		return -1;
	}
	text = ReadKeyFile(cfg->key_file, &len, err);
	if (text == NULL)
		return -1;
	root = json_loadb(text, len, 0, &jerr);
	explicit_bzero(text, len);
	free(text);
	if (root == NULL)
	{
		/* jerr.text may quote the file's contents: report the position only */
		sb_error_set(
			err, SB_ERR_AUTH, 0, "keyFileInvalid",
			"service account key file \"%s\" is not valid JSON (line %d, column %d)",
			cfg->key_file, jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(root))
	{
		sb_error_set(err, SB_ERR_AUTH, 0, "keyFileInvalid",
					 "service account key file \"%s\" is not a JSON object",
					 cfg->key_file);
		json_decref(root);
		return -1;
	}
	auth->client_email = DupJsonString(root, "client_email");
	auth->private_key_id = DupJsonString(root, "private_key_id");
	token_uri = DupJsonString(root, "token_uri");
	pk = json_object_get(root, "private_key");
	if (auth->client_email == NULL || !json_is_string(pk))
	{
		sb_error_set(err, SB_ERR_AUTH, 0, "keyFileInvalid",
					 "service account key file \"%s\" lacks \"%s\"", cfg->key_file,
					 auth->client_email == NULL ? "client_email" : "private_key");
		free(token_uri);
		json_decref(root);
		return -1;
	}
	bio = BIO_new_mem_buf(json_string_value(pk), (int) json_string_length(pk));
	if (bio != NULL)
		auth->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	json_decref(root);
	if (auth->pkey == NULL)
	{
		sb_error_set(
			err, SB_ERR_AUTH, 0, "keyFileInvalid",
			"service account key file \"%s\": \"private_key\" is not a PEM private key",
			cfg->key_file);
		free(token_uri);
		return -1;
	}
	if (cfg->token_endpoint != NULL && cfg->token_endpoint[0] != '\0')
	{
		free(token_uri);
		auth->token_endpoint = strdup(cfg->token_endpoint);
	}
	else if (token_uri != NULL)
		auth->token_endpoint = token_uri;
	else
		auth->token_endpoint = strdup(SB_AUTH_DEFAULT_TOKEN_ENDPOINT);
	if (auth->token_endpoint == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	return 0;
}

/* MetadataUrl builds the metadata server's token URL from a host or base URL. */
static char *
MetadataUrl(const char *host)
{
	const char *path = "/computeMetadata/v1/instance/service-accounts/default/token";
	char *url = NULL;
	size_t hlen;

	if (host == NULL || host[0] == '\0')
		host = getenv("GCE_METADATA_HOST");
	if (host == NULL || host[0] == '\0')
		host = SB_AUTH_DEFAULT_METADATA_HOST;
	hlen = strlen(host);
	while (hlen > 0 && host[hlen - 1] == '/')
		hlen--;
	if (strncmp(host, "http://", 7) == 0 || strncmp(host, "https://", 8) == 0)
	{
		if (asprintf(&url, "%.*s%s", (int) hlen, host, path) < 0)
			url = NULL;
	}
	else if (asprintf(&url, "http://%.*s%s", (int) hlen, host, path) < 0)
		url = NULL;
	return url;
}

/*
 * sb_auth_new creates credentials from a configuration; for a key file it
 * reads and checks the key now.  The caller frees the result with
 * sb_auth_free().  NULL with *err set on failure.
 */
SbAuth *
sb_auth_new(const SbAuthConfig *cfg, SbError *err)
{
	SbAuth *auth;

	sb_error_clear(err);
	auth = calloc(1, sizeof(*auth));
	if (auth == NULL)
	{
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return NULL;
	}
	auth->mode = cfg->mode;
	sb_http_policy_default(&auth->policy);
	auth->refresh_margin_ms =
		(cfg->refresh_margin_s > 0 ? cfg->refresh_margin_s : 60) * 1000;
	auth->scope = strdup(cfg->scope ? cfg->scope : SB_AUTH_DEFAULT_SCOPE);
	if (auth->scope == NULL)
		goto oom;
	switch (cfg->mode)
	{
		case SB_AUTH_NONE:
			break;
		case SB_AUTH_METADATA:
			auth->metadata_url = MetadataUrl(cfg->metadata_host);
			if (auth->metadata_url == NULL)
				goto oom;
			break;
		case SB_AUTH_SERVICE_ACCOUNT:
			auth->key_file = strdup(cfg->key_file ? cfg->key_file : "");
			if (auth->key_file == NULL)
				goto oom;
			if (LoadServiceAccount(auth, cfg, err) != 0)
			{
				sb_auth_free(auth);
				return NULL;
			}
			break;
		default:
			sb_error_set(err, SB_ERR_INVALID, 0, "badAuthMode",
						 "unknown authentication mode %d", (int) cfg->mode);
			sb_auth_free(auth);
			return NULL;
	}
	return auth;

oom:
	sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
	sb_auth_free(auth);
	return NULL;
}

/* sb_auth_free wipes the cached token and frees the credentials. */
void
sb_auth_free(SbAuth *auth)
{
	if (auth == NULL)
		return;
	WipeFree(auth->header);
	EVP_PKEY_free(auth->pkey);
	free(auth->key_file);
	free(auth->client_email);
	free(auth->private_key_id);
	free(auth->token_endpoint);
	free(auth->metadata_url);
	free(auth->scope);
	free(auth);
}

/* sb_auth_get_mode returns where the credentials come from. */
SbAuthMode
sb_auth_get_mode(const SbAuth *auth)
{
	return auth ? auth->mode : SB_AUTH_NONE;
}

/*
 * sb_auth_set_http sets the connection cache (borrowed; may be NULL) and
 * the retry policy used by sb_auth_header() for token fetches.
 */
void
sb_auth_set_http(SbAuth *auth, SbHttpClient *client, const SbHttpPolicy *policy)
{
	auth->client = client;
	if (policy != NULL)
		auth->policy = *policy;
	else
		sb_http_policy_default(&auth->policy);
}

/* sb_auth_invalidate drops the cached token so the next use fetches a new one. */
void
sb_auth_invalidate(SbAuth *auth)
{
	if (auth == NULL)
		return;
	WipeFree(auth->header);
	auth->header = NULL;
	auth->valid_until_ms = 0;
}

/* sb_auth_token_fetches returns how many tokens were obtained (for tests, metrics). */
int
sb_auth_token_fetches(const SbAuth *auth)
{
	return auth ? auth->fetches : 0;
}

/* Base64Url encodes bytes as base64url without padding into a malloc'd string. */
static char *
Base64Url(const unsigned char *in, size_t len)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc((len + 2) / 3 * 4 + 1);
	char *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3)
	{
		uint32_t v = ((uint32_t) in[i] << 16) | ((uint32_t) in[i + 1] << 8) | in[i + 2];

		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
		*o++ = tbl[v & 63];
	}
	if (len - i == 1)
	{
		uint32_t v = (uint32_t) in[i] << 16;

		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32_t v = ((uint32_t) in[i] << 16) | ((uint32_t) in[i + 1] << 8);

		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
	}
	*o = '\0';
	return out;
}

/* Base64UrlJson serialises a JSON object compactly and base64url-encodes it. */
static char *
Base64UrlJson(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *enc;

	if (text == NULL)
		return NULL;
	enc = Base64Url((const unsigned char *) text, strlen(text));
	/* json_dumps allocates with jansson's allocator, which may not be malloc. */
	{
		json_free_t jfree;

		json_get_alloc_funcs(NULL, &jfree);
		jfree(text);
	}
	return enc;
}

/* MakeJwt builds and signs (RS256) the JWT assertion; malloc'd, the caller wipes and
 * frees it. */
static char *
MakeJwt(SbAuth *auth, SbError *err)
{
	json_t *hdr = json_object();
	json_t *claims = json_object();
	char *h64 = NULL;
	char *c64 = NULL;
	char *input = NULL;
	char *s64 = NULL;
	char *jwt = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	EVP_MD_CTX *md = NULL;
	time_t now = time(NULL);

	if (hdr == NULL || claims == NULL)
		goto oom;
	json_object_set_new(hdr, "alg", json_string("RS256"));
	json_object_set_new(hdr, "typ", json_string("JWT"));
	if (auth->private_key_id)
		json_object_set_new(hdr, "kid", json_string(auth->private_key_id));
	json_object_set_new(claims, "iss", json_string(auth->client_email));
	json_object_set_new(claims, "scope", json_string(auth->scope));
	json_object_set_new(claims, "aud", json_string(auth->token_endpoint));
	json_object_set_new(claims, "iat", json_integer((json_int_t) now));
	json_object_set_new(claims, "exp", json_integer((json_int_t) now + SB_JWT_LIFETIME));
	h64 = Base64UrlJson(hdr);
	c64 = Base64UrlJson(claims);
	if (h64 == NULL || c64 == NULL || asprintf(&input, "%s.%s", h64, c64) < 0)
	{
		input = NULL;
		goto oom;
	}

	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, auth->pkey) != 1 ||
		EVP_DigestSign(md, NULL, &siglen, (const unsigned char *) input, strlen(input)) !=
			1 ||
		(sig = malloc(siglen)) == NULL ||
		EVP_DigestSign(md, sig, &siglen, (const unsigned char *) input, strlen(input)) !=
			1)
	{
		sb_error_set(
			err, SB_ERR_AUTH, 0, "signingFailed",
			"could not sign a JWT with the key in service account key file \"%s\"",
			auth->key_file);
		goto done;
	}
	s64 = Base64Url(sig, siglen);
	if (s64 == NULL || asprintf(&jwt, "%s.%s", input, s64) < 0)
	{
		jwt = NULL;
		goto oom;
	}
	goto done;

oom:
	sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
done:
	EVP_MD_CTX_free(md);
	json_decref(hdr);
	json_decref(claims);
	free(h64);
	free(c64);
	free(input);
	free(sig);
	free(s64);
	return jwt;
}

/* ParseTokenResponse stores the access token from a token endpoint's JSON reply. */
static int
ParseTokenResponse(SbAuth *auth, const char *body, size_t len, const char *what,
				   SbError *err)
{
	json_t *root = json_loadb(body ? body : "", len, 0, NULL);
	json_t *tok = root ? json_object_get(root, "access_token") : NULL;
	json_t *exp = root ? json_object_get(root, "expires_in") : NULL;
	int64_t lifetime_ms = 3600 * 1000;
	int64_t margin;
	char *header = NULL;

	if (!json_is_string(tok) || json_string_length(tok) == 0)
	{
		sb_error_set(err, SB_ERR_AUTH, 0, "badTokenResponse",
					 "%s: token response has no access_token", what);
		json_decref(root);
		return -1;
	}
	if (json_is_integer(exp))
		lifetime_ms = (int64_t) json_integer_value(exp) * 1000;
	else if (json_is_real(exp))
		lifetime_ms = (int64_t) (json_real_value(exp) * 1000);
	else if (json_is_string(exp))
		lifetime_ms = strtoll(json_string_value(exp), NULL, 10) * 1000;
	if (asprintf(&header, "Authorization: Bearer %s", json_string_value(tok)) < 0)
	{
		json_decref(root);
		sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
		return -1;
	}
	json_decref(root);

	margin = auth->refresh_margin_ms;
	if (margin > lifetime_ms / 2)
		margin = lifetime_ms / 2;
	WipeFree(auth->header);
	auth->header = header;
	auth->valid_until_ms = sb_now_ms() + lifetime_ms - margin;
	auth->fetches++;
	return 0;
}

/* FetchToken obtains a new token from the metadata server or the token endpoint. */
static int
FetchToken(SbAuth *auth, SbHttpClient *client, int64_t deadline_ms,
		   const SbHttpPolicy *policy, SbError *err)
{
	SbHttpRequest req;
	char *jwt = NULL;
	char *form = NULL;
	char what[400];
	int rc = -1;

	memset(&req, 0, sizeof(req));
	if (auth->mode == SB_AUTH_METADATA)
	{
		snprintf(what, sizeof(what), "metadata server %s", auth->metadata_url);
		if (sb_http_request_init(&req, "GET", auth->metadata_url, err) != 0 ||
			sb_http_request_add_header(&req, err, "Metadata-Flavor: Google") != 0)
			goto done;
	}
	else
	{
		snprintf(what, sizeof(what), "service account key file \"%s\"", auth->key_file);
		jwt = MakeJwt(auth, err);
		if (jwt == NULL)
			goto done;
		if (asprintf(
				&form,
				"grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
				"&assertion=%s",
				jwt) < 0)
		{
			form = NULL;
			sb_error_set(err, SB_ERR_INTERNAL, 0, "", "out of memory");
			goto done;
		}
		if (sb_http_request_init(&req, "POST", auth->token_endpoint, err) != 0 ||
			sb_http_request_add_header(
				&req, err, "Content-Type: application/x-www-form-urlencoded") != 0)
			goto done;
		sb_http_request_set_body(&req, form, strlen(form));
	}
	req.policy = *policy;
	req.deadline_ms = deadline_ms;
	req.max_response_bytes = 256 * 1024;
	if (sb_http_perform(client, &req, err) != 0)
	{
		/* a refusal by the token service is an authentication failure */
		if (err->kind != SB_ERR_CANCELLED && err->kind != SB_ERR_TIMEOUT &&
			req.status >= 400 && req.status < 500)
			err->kind = SB_ERR_AUTH;
		sb_error_prefix(err, "%s: could not obtain an access token: ", what);
		goto done;
	}
	rc = ParseTokenResponse(auth, req.response.data, req.response.len, what, err);

done:
	/* a server might echo what it was sent: never show the assertion */
	if (rc != 0)
		ScrubSecret(err, jwt);
	if (req.response.data)
		explicit_bzero(req.response.data, req.response.len);
	sb_http_request_cleanup(&req);
	WipeFree(form);
	WipeFree(jwt);
	return rc;
}

/*
 * sb_auth_header_ex returns the "Authorization: Bearer <token>" header line,
 * fetching a token within deadline_ms (through client, under policy) when
 * the cached one is missing or about to expire.  The string belongs to
 * auth and stays valid until the next call on auth.  Returns NULL with
 * err->kind == SB_OK in mode none, NULL with *err set on failure.
 */
const char *
sb_auth_header_ex(SbAuth *auth, SbHttpClient *client, int64_t deadline_ms,
				  const SbHttpPolicy *policy, SbError *err)
{
	sb_error_clear(err);
	if (auth == NULL || auth->mode == SB_AUTH_NONE)
		return NULL;
	if (auth->header != NULL && sb_now_ms() < auth->valid_until_ms)
		return auth->header;
	sb_auth_invalidate(auth);
	if (FetchToken(auth, client,
				   deadline_ms ? deadline_ms : sb_now_ms() + SB_TOKEN_TIMEOUT_MS,
				   policy ? policy : &auth->policy, err) != 0)
		return NULL;
	return auth->header;
}

/*
 * sb_auth_header is sb_auth_header_ex() with the client and policy set by
 * sb_auth_set_http() and a 30 s deadline.
 */
const char *
sb_auth_header(SbAuth *auth, SbError *err)
{
	return sb_auth_header_ex(auth, auth ? auth->client : NULL, 0,
							 auth ? &auth->policy : NULL, err);
}
