/*-------------------------------------------------------------------------
 *
 * oauth.h
 *	  OAuth 2.0 access tokens for Google APIs: none (emulators), the GCE
 *	  metadata server, or a service-account JSON key (a JWT signed RS256
 *	  and exchanged at the token endpoint), cached until shortly before
 *	  expiry.
 *
 * Tokens, keys and JWTs never appear in an SbError message.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_OAUTH_H
#define SB_OAUTH_H

#include "http.h"

/* Where credentials come from. */
typedef enum SbAuthMode
{
	SB_AUTH_NONE = 0,		/* send no Authorization header */
	SB_AUTH_METADATA,		/* GCE/Cloud Run metadata server */
	SB_AUTH_SERVICE_ACCOUNT /* service-account JSON key file */
} SbAuthMode;

/* Settings for sb_auth_new(); strings are copied. */
typedef struct SbAuthConfig
{
	SbAuthMode mode;
	const char *key_file;		/* SB_AUTH_SERVICE_ACCOUNT: path of the key */
	const char *token_endpoint; /* NULL: the key's token_uri, else
								 * https://oauth2.googleapis.com/token */
	const char *metadata_host;	/* NULL: $GCE_METADATA_HOST, else
								 * metadata.google.internal; "host[:port]"
								 * or a full "http://..." base URL */
	const char *scope;			/* NULL: cloud-platform */
	long refresh_margin_s;		/* refresh this long before expiry; 0 = 60
								 * (at most half the token's lifetime) */
} SbAuthConfig;

typedef struct SbAuth SbAuth;

#define SB_AUTH_DEFAULT_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define SB_AUTH_DEFAULT_TOKEN_ENDPOINT "https://oauth2.googleapis.com/token"
#define SB_AUTH_DEFAULT_METADATA_HOST "metadata.google.internal"

extern int sb_auth_mode_parse(const char *name, SbAuthMode *mode);
extern SbAuth *sb_auth_new(const SbAuthConfig *cfg, SbError *err);
extern void sb_auth_free(SbAuth *auth);
extern SbAuthMode sb_auth_get_mode(const SbAuth *auth);
extern void sb_auth_set_http(SbAuth *auth, SbHttpClient *client,
							 const SbHttpPolicy *policy);
extern const char *sb_auth_header(SbAuth *auth, SbError *err);
extern const char *sb_auth_header_ex(SbAuth *auth, SbHttpClient *client,
									 int64_t deadline_ms, const SbHttpPolicy *policy,
									 SbError *err);
extern void sb_auth_invalidate(SbAuth *auth);
extern int sb_auth_token_fetches(const SbAuth *auth);

#endif /* SB_OAUTH_H */
