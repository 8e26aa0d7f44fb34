/*
 * protocol.c
 *		JSON encoding and validation of requests, results and session state.
 */
#include "protocol.h"
#include "sbutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char *splice_base64(char *json, const char *key, const char *data, size_t len);
static bool decode_base64(const char *text, size_t len, char **out, size_t *out_len);

static const char *const status_names[] = {"succeeded", "failed", "timed_out", "error",
	"quota_exceeded"};

/* sb_status_name returns the SQL-visible name of a status. */
const char *
sb_status_name(SbStatus status)
{
	return status_names[status];
}

/* sb_status_parse maps a status name back to the enum. */
bool
sb_status_parse(const char *name, SbStatus *status)
{
	for (int i = 0; i < (int) (sizeof(status_names) / sizeof(status_names[0])); i++)
		if (strcmp(name, status_names[i]) == 0)
		{
			*status = (SbStatus) i;
			return true;
		}
	return false;
}

/* fail formats a decoding error into errbuf and returns false. */
static bool fail(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool
fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	return false;
}

/* dump serializes a JSON value compactly, releasing it. */
static char *
dump(json_t *root)
{
	char *text;

	if (root == NULL)
		return NULL;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

bool
sb_env_valid(const json_t *env, char *errbuf, size_t errlen)
{
	const char *key;
	json_t *value;
	size_t total = 0;

	if (!json_is_object(env))
		return fail(errbuf, errlen, "environment must be a JSON object");
	json_object_foreach((json_t *) env, key, value)
	{
		if (!sb_env_name_valid(key))
			return fail(errbuf, errlen, "invalid environment variable name \"%.64s\"",
						key);
		if (!json_is_string(value))
			return fail(errbuf, errlen, "environment variable \"%s\" must be a string",
						key);
		if (memchr(json_string_value(value), '\0', json_string_length(value)) != NULL)
			return fail(errbuf, errlen, "environment variable \"%s\" contains a NUL byte",
						key);
		total += strlen(key) + json_string_length(value) + 2;
	}
	if (total > SB_MAX_ENV_BYTES)
		return fail(errbuf, errlen, "environment is larger than %d bytes",
					SB_MAX_ENV_BYTES);
	return true;
}

/*
 * Variables bash maintains or reads to configure itself, whose value in one
 * command must not decide how the next one's shell behaves.
 */
static const char *const reserved_names[] = {
	"SHELLOPTS", "BASHOPTS", "ENV", "IFS", "PS4", "POSIXLY_CORRECT", "PWD", "OLDPWD",
	"SHLVL", "_", "UID", "EUID", "PPID", "GROUPS", "FUNCNAME", "LINENO", "RANDOM",
	"SRANDOM", "SECONDS", "EPOCHSECONDS", "EPOCHREALTIME", "HISTCMD", "PIPESTATUS",
	"DIRSTACK",
};

bool
sb_env_name_reserved(const char *name)
{
	if (strncmp(name, "BASH", 4) == 0 && (name[4] == '\0' || name[4] == '_'))
		return true;			/* BASH, BASH_ENV, BASH_XTRACEFD, BASH_COMPAT, ... */
	if (strncmp(name, "__sb_", 5) == 0)
		return true;			/* the executor's own */
	for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++)
		if (strcmp(name, reserved_names[i]) == 0)
			return true;
	return false;
}

bool
sb_env_settable(const json_t *env, char *errbuf, size_t errlen)
{
	const char *key;
	json_t	   *value;

	if (!sb_env_valid(env, errbuf, errlen))
		return false;
	json_object_foreach((json_t *) env, key, value)
	{
		size_t		n = strlen(key) + 1 + json_string_length(value);

		if (sb_env_name_reserved(key))
			return fail(errbuf, errlen,
						"variable \"%s\" belongs to the shell and cannot be set this way "
						"(set shell options with set or shopt in the command)", key);
		if (n > SB_MAX_ENV_VAR_BYTES)
			return fail(errbuf, errlen,
						"variable \"%s\" is %zu bytes (name=value), more than the %d "
						"bytes the kernel passes to a program in one environment string",
						key, n, SB_MAX_ENV_VAR_BYTES);
	}
	return true;
}

static json_t *
limits_to_json(const SbLimits *l)
{
	return json_pack("{sIsIsIsI}", "nproc", (json_int_t) l->nproc, "memory_bytes",
					 (json_int_t) l->memory_bytes, "fsize_bytes",
					 (json_int_t) l->fsize_bytes, "cpu_seconds",
					 (json_int_t) l->cpu_seconds);
}

char *
sb_request_encode(const SbExecRequest *req)
{
	json_t *root = json_pack(
		"{sisssIsssssOsIsIsIso}", "version", SB_PROTOCOL_VERSION, "op", "exec", "id",
		(json_int_t) req->id, "command", req->command, "cwd", req->cwd, "env", req->env,
		"timeout_ms", (json_int_t) req->timeout_ms, "max_output_bytes",
		(json_int_t) req->max_output_bytes, "kill_grace_ms",
		(json_int_t) req->kill_grace_ms, "limits", limits_to_json(&req->limits));

	if (root != NULL && req->call_env != NULL)
		json_object_set(root, "call_env", req->call_env);
	if (root != NULL && req->session != NULL)
	{
		json_object_set_new(root, "session", json_string(req->session));
		json_object_set_new(root, "prefix", json_string(req->prefix ? req->prefix : ""));
		json_object_set_new(root, "isolation", json_string(sb_isolation_name(req->isolation)));
	}
	if (root != NULL && req->disk_quota_bytes > 0)
		json_object_set_new(root, "disk_quota_bytes", json_integer(req->disk_quota_bytes));
	if (root != NULL && req->call_cwd != NULL)
		json_object_set_new(root, "call_cwd", json_string(req->call_cwd));
	if (root != NULL && req->has_stdin && req->stdin_in_frame)
		json_object_set_new(root, "stdin_in_frame", json_true());
	if (root != NULL && req->stdin_open)
		json_object_set_new(root, "stdin_open", json_true());
	if (req->has_stdin && !req->stdin_in_frame)
	{
		char	   *text = dump(root);

		return text ? splice_base64(text, "stdin", req->stdin_data ? req->stdin_data : "",
									req->stdin_len) : NULL;
	}
	return dump(root);
}

const char *
sb_isolation_name(SbIsolation isolation)
{
	return isolation == SB_ISOLATION_NONE ? "none" : "sandbox";
}

bool
sb_isolation_parse(const char *name, SbIsolation *isolation)
{
	if (strcmp(name, "sandbox") == 0)
		*isolation = SB_ISOLATION_SANDBOX;
	else if (strcmp(name, "none") == 0)
		*isolation = SB_ISOLATION_NONE;
	else
		return false;
	return true;
}

/* get_int reads an optional non-negative integer member. */
static bool
get_int(json_t *obj, const char *key, long long *out, long long dflt)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
	{
		*out = dflt;
		return true;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = json_integer_value(v);
	return true;
}

bool
sb_request_decode(const char *text, size_t len, SbExecRequest *out, json_t **holder,
				  char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	json_t *v;
	json_t *limits;

	memset(out, 0, sizeof(*out));
	*holder = NULL;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return fail(errbuf, errlen, "request is not valid JSON: %s", jerr.text);
	*holder = root;
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) != SB_PROTOCOL_VERSION)
		return fail(errbuf, errlen, "unsupported request version");
	v = json_object_get(root, "op");
	if (!json_is_string(v) || strcmp(json_string_value(v), "exec") != 0)
		return fail(errbuf, errlen, "unsupported request operation");
	v = json_object_get(root, "command");
	if (!json_is_string(v))
		return fail(errbuf, errlen, "request has no command");
	out->command = json_string_value(v);
	v = json_object_get(root, "cwd");
	out->cwd = json_is_string(v) ? json_string_value(v) : SB_WORKSPACE;
	out->env = json_object_get(root, "env");
	if (out->env == NULL)
	{
		/* Owned by the request document, like every other member. */
		json_object_set_new(root, "env", json_object());
		out->env = json_object_get(root, "env");
	}
	else if (!sb_env_valid(out->env, errbuf, errlen))
		return false;
	out->call_env = json_object_get(root, "call_env");
	if (out->call_env != NULL && !sb_env_valid(out->call_env, errbuf, errlen))
		return false;
	if (!get_int(root, "id", &out->id, 0) ||
		!get_int(root, "timeout_ms", &out->timeout_ms, 0) ||
		!get_int(root, "max_output_bytes", &out->max_output_bytes, 1024 * 1024) ||
		!get_int(root, "kill_grace_ms", &out->kill_grace_ms, 1000) ||
		!get_int(root, "disk_quota_bytes", &out->disk_quota_bytes, 0))
		return fail(errbuf, errlen, "request has a malformed number");
	v = json_object_get(root, "session");
	out->session = json_is_string(v) ? json_string_value(v) : NULL;
	if (out->session != NULL && !sb_storage_key_valid(out->session))
		return fail(errbuf, errlen, "request names an invalid session");
	v = json_object_get(root, "prefix");
	out->prefix = json_is_string(v) ? json_string_value(v) : "";
	/* Missing (an extension older than the member): the safe default. */
	v = json_object_get(root, "isolation");
	if (v != NULL && (!json_is_string(v) ||
					  !sb_isolation_parse(json_string_value(v), &out->isolation)))
		return fail(errbuf, errlen, "request has an unknown isolation");
	limits = json_object_get(root, "limits");
	if (limits != NULL &&
		(!get_int(limits, "nproc", &out->limits.nproc, 0) ||
		 !get_int(limits, "memory_bytes", &out->limits.memory_bytes, 0) ||
		 !get_int(limits, "fsize_bytes", &out->limits.fsize_bytes, 0) ||
		 !get_int(limits, "cpu_seconds", &out->limits.cpu_seconds, 0)))
		return fail(errbuf, errlen, "request has malformed limits");
	v = json_object_get(root, "call_cwd");
	if (v != NULL && (!json_is_string(v) || json_string_length(v) == 0 ||
					  json_string_length(v) >= SB_MAX_CWD_BYTES))
		return fail(errbuf, errlen, "request has a malformed call_cwd");
	out->call_cwd = v ? json_string_value(v) : NULL;
	out->stdin_in_frame = json_is_true(json_object_get(root, "stdin_in_frame"));
	out->stdin_open = json_is_true(json_object_get(root, "stdin_open"));
	out->has_stdin = out->stdin_in_frame;
	v = json_object_get(root, "stdin");
	if (v != NULL && !out->stdin_in_frame)
	{
		char	   *raw;
		size_t		n;

		if (!json_is_string(v) || !decode_base64(json_string_value(v), json_string_length(v),
												 &raw, &n))
			return fail(errbuf, errlen, "request has no valid base64 stdin");
		/*
		 * The bytes replace their base64 in the document, which owns them:
		 * a string of any bytes (never dumped again, never compared).
		 */
		json_object_set_new(root, "stdin", json_stringn_nocheck(raw, n));
		sb_free(raw);
		v = json_object_get(root, "stdin");
		out->stdin_data = json_string_value(v);
		out->stdin_len = json_string_length(v);
		out->has_stdin = true;
	}
	return true;
}

/* output_json stores captured bytes, which the executor has already repaired. */
static json_t *
output_json(const char *data, size_t len)
{
	return json_stringn(data ? data : "", data ? len : 0);
}

/*
 * result_encode encodes a command's result, its output inline or (framed)
 * left to the frame's payloads.
 */
static char *
result_encode(const SbExecResult *res, bool framed)
{
	json_t *root = json_object();

	json_object_set_new(root, "version", json_integer(SB_PROTOCOL_VERSION));
	json_object_set_new(root, "status", json_string(sb_status_name(res->status)));
	json_object_set_new(root, "exit_code",
						res->has_exit_code ? json_integer(res->exit_code) : json_null());
	if (framed)
		json_object_set_new(root, "output_in_frame", json_true());
	else
	{
		json_object_set_new(root, "stdout", output_json(res->stdout_data, res->stdout_len));
		json_object_set_new(root, "stderr", output_json(res->stderr_data, res->stderr_len));
	}
	json_object_set_new(root, "stdout_truncated", json_boolean(res->stdout_truncated));
	json_object_set_new(root, "stderr_truncated", json_boolean(res->stderr_truncated));
	json_object_set_new(root, "stdout_repaired", json_boolean(res->stdout_repaired));
	json_object_set_new(root, "stderr_repaired", json_boolean(res->stderr_repaired));
	json_object_set_new(root, "duration_ms", json_real(res->duration_ms));
	json_object_set_new(root, "error",
						res->error ? json_string(res->error) : json_null());
	if (res->state_generation > 0)
		json_object_set_new(root, "state_generation", json_integer(res->state_generation));
	if (res->has_state)
		json_object_set_new(root, "state",
							json_pack("{sssO}", "cwd", res->cwd, "env", res->env));
	return dump(root);
}

char *
sb_result_encode(const SbExecResult *res)
{
	return result_encode(res, false);
}

char *
sb_result_encode_framed(const SbExecResult *res)
{
	return result_encode(res, true);
}

/* copy_output copies a JSON string member with sb_malloc, rejecting NUL bytes. */
static bool
copy_output(json_t *root, const char *key, char **data, size_t *len)
{
	json_t *v = json_object_get(root, key);

	if (!json_is_string(v))
		return false;
	*len = json_string_length(v);
	if (memchr(json_string_value(v), '\0', *len) != NULL)
		return false;
	*data = sb_strndup(json_string_value(v), *len);
	return *data != NULL;
}

bool
sb_cwd_normal(const char *path)
{
	const char *p = path;

	if (p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	while (*p == '/')
	{
		const char *name = p + 1;
		size_t		n = strcspn(name, "/");

		if (n == 0 || (n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
			return false;		/* "//", "/./", "/../", or a trailing "/" */
		p = name + n;
	}
	return *p == '\0';
}

/* valid_cwd accepts absolute paths without NUL bytes, of bounded length. */
static bool
valid_cwd(json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0 &&
		   json_string_length(v) < SB_MAX_CWD_BYTES && json_string_value(v)[0] == '/' &&
		   strlen(json_string_value(v)) == json_string_length(v);
}

bool
sb_result_decode(const char *text, size_t len, SbExecResult *out, char *errbuf,
				 size_t errlen)
{
	return sb_result_decode_ex(text, len, out, NULL, errbuf, errlen);
}

bool
sb_result_decode_ex(const char *text, size_t len, SbExecResult *out, bool *in_frame,
					char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	json_t *v;
	bool ok = false;
	bool framed;

	memset(out, 0, sizeof(*out));
	if (in_frame)
		*in_frame = false;
	root = json_loadb(text, len, 0, &jerr);
	if (root == NULL)
		return fail(errbuf, errlen, "result is not valid JSON: %s", jerr.text);
	v = json_object_get(root, "status");
	if (!json_is_string(v) || !sb_status_parse(json_string_value(v), &out->status))
	{
		fail(errbuf, errlen, "result has no valid status");
		goto done;
	}
	v = json_object_get(root, "exit_code");
	if (json_is_integer(v))
	{
		out->has_exit_code = true;
		out->exit_code = (int) json_integer_value(v);
	}
	framed = json_is_true(json_object_get(root, "output_in_frame"));
	if (framed && in_frame == NULL)
	{
		fail(errbuf, errlen, "result has its output in a frame, but it came without one");
		goto done;
	}
	if (framed)
		*in_frame = true;
	else if (!copy_output(root, "stdout", &out->stdout_data, &out->stdout_len) ||
			 !copy_output(root, "stderr", &out->stderr_data, &out->stderr_len))
	{
		fail(errbuf, errlen, "result has malformed output");
		goto done;
	}
	out->stdout_truncated = json_is_true(json_object_get(root, "stdout_truncated"));
	out->stderr_truncated = json_is_true(json_object_get(root, "stderr_truncated"));
	out->stdout_repaired = json_is_true(json_object_get(root, "stdout_repaired"));
	out->stderr_repaired = json_is_true(json_object_get(root, "stderr_repaired"));
	v = json_object_get(root, "duration_ms");
	out->duration_ms = json_is_number(v) ? json_number_value(v) : 0;
	v = json_object_get(root, "error");
	if (json_is_string(v))
		out->error = sb_strdup(json_string_value(v));
	v = json_object_get(root, "state_generation");
	if (json_is_integer(v) && json_integer_value(v) > 0)
		out->state_generation = json_integer_value(v);
	v = json_object_get(root, "state");
	if (json_is_object(v))
	{
		json_t *cwd = json_object_get(v, "cwd");
		json_t *env = json_object_get(v, "env");

		if (!valid_cwd(cwd) || !sb_env_valid(env, errbuf, errlen))
		{
			if (valid_cwd(cwd))
				goto done; /* errbuf already says what is wrong with env */
			fail(errbuf, errlen, "result has a malformed working directory");
			goto done;
		}
		out->has_state = true;
		out->cwd = sb_strdup(json_string_value(cwd));
		out->env = json_deep_copy(env);
	}
	ok = true;
done:
	json_decref(root);
	return ok;
}

char *
sb_state_encode(const SbState *state)
{
	json_t	   *root = json_pack("{sisIsssOsI}", "version", SB_PROTOCOL_VERSION, "generation",
								 (json_int_t) state->generation, "cwd", state->cwd, "env",
								 state->env, "last_execution",
								 (json_int_t) state->last_execution);

	/* The workspace snapshot and its increments (cloud) travel with the state. */
	if (root != NULL && state->workspace != NULL)
		json_object_set_new(root, "workspace", json_string(state->workspace));
	if (root != NULL && (state->workspace != NULL || state->n_increments > 0))
	{
		json_t	   *incs = json_array();

		for (int i = 0; i < state->n_increments; i++)
			json_array_append_new(incs, json_string(state->increments[i]));
		json_object_set_new(root, "increments", incs);
	}
	return dump(root);
}

/* decode_increments reads state's optional "increments" (array of object names) into out. */
static bool
decode_increments(json_t *incs, SbState *out, char *errbuf, size_t errlen)
{
	size_t		n;

	if (incs == NULL || json_is_null(incs))
		return true;
	if (!json_is_array(incs))
		return fail(errbuf, errlen, "state has malformed increments (not an array)");
	n = json_array_size(incs);
	if (n > SB_MAX_INCREMENTS)
		return fail(errbuf, errlen, "state has %zu increments; at most %d are allowed", n,
					SB_MAX_INCREMENTS);
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *v = json_array_get(incs, i);

		if (!json_is_string(v) || json_string_length(v) == 0 ||
			json_string_length(v) > SB_MAX_OBJECT_NAME ||
			strlen(json_string_value(v)) != json_string_length(v))
			return fail(errbuf, errlen, "state has a malformed increment name (entry %zu)", i);
	}
	if (n == 0)
		return true;
	out->increments = sb_malloc(n * sizeof(char *));
	if (out->increments == NULL)
		return fail(errbuf, errlen, "out of memory");
	for (size_t i = 0; i < n; i++)
	{
		out->increments[i] = sb_strdup(json_string_value(json_array_get(incs, i)));
		if (out->increments[i] == NULL)
			return fail(errbuf, errlen, "out of memory");
		out->n_increments = (int) i + 1;
	}
	return true;
}

void
sb_state_clear(SbState *state)
{
	sb_free(state->cwd);
	if (state->env)
		json_decref(state->env);
	sb_free(state->workspace);
	for (int i = 0; i < state->n_increments; i++)
		sb_free(state->increments[i]);
	sb_free(state->increments);
	memset(state, 0, sizeof(*state));
}

bool
sb_state_decode(const char *text, size_t len, SbState *out, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	json_t *cwd;
	json_t *env;
	json_t *version;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	root = json_loadb(text, len, 0, &jerr);
	if (root == NULL)
		return fail(errbuf, errlen, "state is not valid JSON: %s", jerr.text);
	cwd = json_object_get(root, "cwd");
	env = json_object_get(root, "env");
	version = json_object_get(root, "version");
	if (!json_is_object(root))
		fail(errbuf, errlen, "state is not a JSON object");
	else if (!json_is_integer(version))
		fail(errbuf, errlen, "state has no version number");
	else if (json_integer_value(version) != SB_PROTOCOL_VERSION)
		fail(errbuf, errlen, "state has version %lld; this extension reads version %d",
			 (long long) json_integer_value(version), SB_PROTOCOL_VERSION);
	else if (!valid_cwd(cwd))
		fail(errbuf, errlen, "state has a malformed working directory");
	else if (!sb_cwd_normal(json_string_value(cwd)))
		fail(errbuf, errlen, "state has a working directory that is not a normalized "
			 "absolute path: \"%.200s\"", json_string_value(cwd));
	else if (!sb_env_valid(env, errbuf, errlen))
		; /* errbuf says why */
	else if (!get_int(root, "generation", &out->generation, 0) ||
			 !get_int(root, "last_execution", &out->last_execution, 0))
		fail(errbuf, errlen, "state has a malformed generation");
	else
	{
		json_t	   *ws = json_object_get(root, "workspace");

		out->cwd = sb_strdup(json_string_value(cwd));
		out->env = json_deep_copy(env);
		if (json_is_string(ws))
			out->workspace = sb_strdup(json_string_value(ws));
		ok = decode_increments(json_object_get(root, "increments"), out, errbuf, errlen);
		if (!ok)
			sb_state_clear(out);
	}
	json_decref(root);
	return ok;
}

void
sb_result_clear(SbExecResult *res)
{
	sb_free(res->stdout_data);
	sb_free(res->stderr_data);
	sb_free(res->error);
	sb_free(res->cwd);
	if (res->env)
		json_decref(res->env);
	memset(res, 0, sizeof(*res));
}

/* ---------------------------------------------------------------------
 * File operations
 * ---------------------------------------------------------------------
 */

static const char *const file_op_names[] = {
	"file_write", "file_read", "file_exists", "file_delete", "file_list",
	"file_replace", "file_search", "file_find", "file_upload", "file_download"
};

static const char *const file_error_names[] = {
	"", "not_found", "is_directory", "not_a_directory", "outside_sandbox",
	"invalid_regex", "too_large", "io_error", "invalid_argument", "disk_full"
};

#define N_FILE_OPS (sizeof(file_op_names) / sizeof(file_op_names[0]))
#define N_FILE_ERRORS (sizeof(file_error_names) / sizeof(file_error_names[0]))

/* sb_file_op_name returns the request's "op" for a file operation. */
const char *
sb_file_op_name(SbFileOp op)
{
	return file_op_names[op];
}

/* find_name returns the index of name in names[from..n), or -1. */
static int
find_name(const char *const *names, size_t n, size_t from, const char *name)
{
	for (size_t i = from; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return (int) i;
	return -1;
}

/* sb_file_op_parse maps an "op" to a file operation; false for any other. */
bool
sb_file_op_parse(const char *name, SbFileOp *op)
{
	int			i = find_name(file_op_names, N_FILE_OPS, 0, name);

	if (i >= 0)
		*op = (SbFileOp) i;
	return i >= 0;
}

/* sb_file_error_name returns the "error_code" of a failure ("" for none). */
const char *
sb_file_error_name(SbFileError code)
{
	return file_error_names[code];
}

/* sb_file_error_parse maps an "error_code" back to the enum. */
bool
sb_file_error_parse(const char *name, SbFileError *code)
{
	int			i = find_name(file_error_names, N_FILE_ERRORS, 1, name);

	if (i >= 0)
		*code = (SbFileError) i;
	return i >= 0;
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * splice_base64 appends a member "key": base64(data) to the JSON object
 * text json (which it frees), without copying the payload into a JSON
 * value first: base64 needs no escaping.  Returns NULL when out of memory.
 */
static char *
splice_base64(char *json, const char *key, const char *data, size_t len)
{
	size_t		jlen = strlen(json);
	size_t		b64len = (len + 2) / 3 * 4;
	const unsigned char *in = (const unsigned char *) data;
	char	   *out;
	char	   *p;
	size_t		i;

	if (jlen < 2 || json[jlen - 1] != '}')
	{
		sb_free(json);
		return NULL;
	}
	out = sb_malloc(jlen + strlen(key) + b64len + 8);
	if (out == NULL)
	{
		sb_free(json);
		return NULL;
	}
	memcpy(out, json, jlen - 1);
	p = out + jlen - 1;
	if (jlen > 2)
		*p++ = ',';
	p += sprintf(p, "\"%s\":\"", key);
	for (i = 0; i + 2 < len; i += 3)
	{
		*p++ = b64_alphabet[in[i] >> 2];
		*p++ = b64_alphabet[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*p++ = b64_alphabet[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*p++ = b64_alphabet[in[i + 2] & 63];
	}
	if (i < len)
	{
		*p++ = b64_alphabet[in[i] >> 2];
		if (i + 1 < len)
		{
			*p++ = b64_alphabet[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
			*p++ = b64_alphabet[(in[i + 1] & 15) << 2];
		}
		else
		{
			*p++ = b64_alphabet[(in[i] & 3) << 4];
			*p++ = '=';
		}
		*p++ = '=';
	}
	memcpy(p, "\"}", 3);
	sb_free(json);
	return out;
}

/* b64_value returns the value of a base64 digit, or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * decode_base64 decodes standard, padded base64 into a new sb_malloc'd
 * buffer; false if the text is not exactly that (or out of memory).
 */
static bool
decode_base64(const char *text, size_t len, char **out, size_t *out_len)
{
	size_t		pad = 0;
	char	   *buf;
	size_t		n = 0;

	*out = NULL;
	*out_len = 0;
	if (len % 4 != 0)
		return false;
	if (len > 0 && text[len - 1] == '=')
		pad = len > 1 && text[len - 2] == '=' ? 2 : 1;
	buf = sb_malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return false;
	for (size_t i = 0; i < len; i += 4)
	{
		int			v[4];
		bool		last = i + 4 == len;

		for (int k = 0; k < 4; k++)
		{
			v[k] = last && k >= 4 - (int) pad ? 0 : b64_value((unsigned char) text[i + k]);
			if (v[k] < 0)
			{
				sb_free(buf);
				return false;
			}
		}
		buf[n++] = (char) ((v[0] << 2) | (v[1] >> 4));
		if (!last || pad < 2)
			buf[n++] = (char) (((v[1] & 15) << 4) | (v[2] >> 2));
		if (!last || pad < 1)
			buf[n++] = (char) (((v[2] & 3) << 6) | v[3]);
	}
	*out = buf;
	*out_len = n;
	return true;
}

char *
sb_file_request_encode(const SbFileRequest *req)
{
	json_t	   *root = json_object();
	char	   *text;

	json_object_set_new(root, "version", json_integer(SB_PROTOCOL_VERSION));
	json_object_set_new(root, "op", json_string(sb_file_op_name(req->op)));
	json_object_set_new(root, "id", json_integer(req->id));
	json_object_set_new(root, "cwd", json_string(req->cwd ? req->cwd : SB_WORKSPACE));
	json_object_set_new(root, "path", json_string(req->path));
	json_object_set_new(root, "max_bytes", json_integer(req->max_bytes));
	json_object_set_new(root, "timeout_ms", json_integer(req->timeout_ms));
	switch (req->op)
	{
		case SB_FILE_WRITE:
			if (req->content_in_frame)
				json_object_set_new(root, "content_in_frame", json_true());
			else
				json_object_set_new(root, "content", json_stringn(req->data, req->data_len));
			json_object_set_new(root, "append", json_boolean(req->append));
			json_object_set_new(root, "leading_newline", json_boolean(req->leading_newline));
			json_object_set_new(root, "trailing_newline", json_boolean(req->trailing_newline));
			break;
		case SB_FILE_READ:
			if (req->start_line > 0)
				json_object_set_new(root, "start_line", json_integer(req->start_line));
			if (req->end_line > 0)
				json_object_set_new(root, "end_line", json_integer(req->end_line));
			break;
		case SB_FILE_LIST:
			json_object_set_new(root, "recursive", json_boolean(req->recursive));
			break;
		case SB_FILE_REPLACE:
			json_object_set_new(root, "old_str", json_string(req->old_str));
			json_object_set_new(root, "new_str", json_string(req->new_str));
			break;
		case SB_FILE_SEARCH:
		case SB_FILE_FIND:
			json_object_set_new(root, "pattern", json_string(req->pattern));
			break;
		case SB_FILE_UPLOAD:
			if (req->transfer != NULL)
				json_object_set_new(root, "transfer", json_string(req->transfer));
			else if (req->content_in_frame)
				json_object_set_new(root, "content_in_frame", json_true());
			break;
		default:
			break;
	}
	if (req->session != NULL)
	{
		json_object_set_new(root, "session", json_string(req->session));
		json_object_set_new(root, "prefix", json_string(req->prefix ? req->prefix : ""));
	}
	text = dump(root);
	if (text != NULL && req->op == SB_FILE_UPLOAD && req->transfer == NULL &&
		!req->content_in_frame)
		text = splice_base64(text, "data", req->data ? req->data : "", req->data_len);
	return text;
}

/* get_string reads an optional string member into *out (NULL if absent). */
static bool
get_string(json_t *obj, const char *key, const char **out, size_t *len)
{
	json_t	   *v = json_object_get(obj, key);

	*out = NULL;
	if (len)
		*len = 0;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v))
		return false;
	*out = json_string_value(v);
	if (len)
		*len = json_string_length(v);
	return true;
}

/* get_bool reads an optional boolean member (false if absent). */
static bool
get_bool(json_t *obj, const char *key, bool *out)
{
	json_t	   *v = json_object_get(obj, key);

	*out = false;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_boolean(v))
		return false;
	*out = json_is_true(v);
	return true;
}

/* fail_request formats a decoding error into errbuf and returns -1. */
static int	fail_request(char *errbuf, size_t errlen, const char *fmt, ...)
			__attribute__((format(printf, 3, 4)));

static int
fail_request(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int
sb_file_request_decode(const char *text, size_t len, SbFileRequest *out, json_t **holder,
					   char *errbuf, size_t errlen)
{
	return sb_file_request_decode_ex(text, len, NULL, 0, out, holder, errbuf, errlen);
}

int
sb_file_request_decode_ex(const char *text, size_t len, const char *payload,
						  size_t payload_len, SbFileRequest *out, json_t **holder,
						  char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root;
	json_t	   *v;
	const char *data64 = NULL;
	size_t		data64_len = 0;

	memset(out, 0, sizeof(*out));
	*holder = NULL;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return fail_request(errbuf, errlen, "request is not valid JSON: %s", jerr.text);
	v = json_object_get(root, "op");
	if (!json_is_string(v) || !sb_file_op_parse(json_string_value(v), &out->op))
	{
		json_decref(root);
		return 0;
	}
	*holder = root;
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) != SB_PROTOCOL_VERSION)
		return fail_request(errbuf, errlen, "unsupported request version");
	if (!get_string(root, "path", &out->path, NULL) || out->path == NULL)
		return fail_request(errbuf, errlen, "request has no path");
	if (!get_string(root, "cwd", &out->cwd, NULL))
		return fail_request(errbuf, errlen, "request has a malformed cwd");
	if (out->cwd == NULL)
		out->cwd = SB_WORKSPACE;
	if (!get_int(root, "id", &out->id, 0) ||
		!get_int(root, "max_bytes", &out->max_bytes, 100 * 1024 * 1024) ||
		!get_int(root, "timeout_ms", &out->timeout_ms, 0) ||
		!get_int(root, "start_line", &out->start_line, 0) ||
		!get_int(root, "end_line", &out->end_line, 0))
		return fail_request(errbuf, errlen, "request has a malformed number");
	if (!get_bool(root, "append", &out->append) ||
		!get_bool(root, "leading_newline", &out->leading_newline) ||
		!get_bool(root, "trailing_newline", &out->trailing_newline) ||
		!get_bool(root, "recursive", &out->recursive))
		return fail_request(errbuf, errlen, "request has a malformed flag");
	if (!get_string(root, "old_str", &out->old_str, NULL) ||
		!get_string(root, "new_str", &out->new_str, NULL) ||
		!get_string(root, "pattern", &out->pattern, NULL) ||
		!get_string(root, "transfer", &out->transfer, NULL) ||
		!get_string(root, "session", &out->session, NULL) ||
		!get_string(root, "prefix", &out->prefix, NULL))
		return fail_request(errbuf, errlen, "request has a malformed string");
	if (out->session != NULL && !sb_storage_key_valid(out->session))
		return fail_request(errbuf, errlen, "request names an invalid session");
	if (out->prefix == NULL)
		out->prefix = "";
	if (!get_bool(root, "content_in_frame", &out->content_in_frame))
		return fail_request(errbuf, errlen, "request has a malformed flag");
	if (out->content_in_frame)
	{
		if (payload == NULL || (out->op != SB_FILE_WRITE && out->op != SB_FILE_UPLOAD) ||
			out->transfer != NULL)
			return fail_request(errbuf, errlen, "request has its content in a frame it did not come with");
		out->data = payload;
		out->data_len = payload_len;
		return 1;
	}
	switch (out->op)
	{
		case SB_FILE_WRITE:
			if (!get_string(root, "content", &out->data, &out->data_len) || out->data == NULL)
				return fail_request(errbuf, errlen, "request has no content");
			break;
		case SB_FILE_REPLACE:
			if (out->old_str == NULL || out->new_str == NULL)
				return fail_request(errbuf, errlen, "request has no old_str or new_str");
			break;
		case SB_FILE_SEARCH:
		case SB_FILE_FIND:
			if (out->pattern == NULL)
				return fail_request(errbuf, errlen, "request has no pattern");
			break;
		case SB_FILE_UPLOAD:
			if (out->transfer != NULL)
				break;
			if (!get_string(root, "data", &data64, &data64_len) || data64 == NULL ||
				!decode_base64(data64, data64_len, &out->owned, &out->data_len))
				return fail_request(errbuf, errlen, "request has no valid base64 data");
			out->data = out->owned;
			/* The decoded copy is all that is needed: free the text now. */
			json_object_del(root, "data");
			break;
		default:
			break;
	}
	return 1;
}

void
sb_file_request_clear(SbFileRequest *req, json_t *holder)
{
	sb_free(req->owned);
	if (holder)
		json_decref(holder);
	memset(req, 0, sizeof(*req));
}

/*
 * file_result_encode encodes a file operation's result, its data in base64
 * or (framed) left to the frame's payload 0.
 */
static char *
file_result_encode(const SbFileResult *res, bool framed)
{
	json_t	   *root = json_object();
	char	   *text;

	json_object_set_new(root, "version", json_integer(SB_PROTOCOL_VERSION));
	json_object_set_new(root, "status", json_string(sb_status_name(res->status)));
	if (res->status != SB_STATUS_SUCCEEDED && res->code != SB_FERR_NONE)
		json_object_set_new(root, "error_code", json_string(sb_file_error_name(res->code)));
	json_object_set_new(root, "error", res->error ? json_string(res->error) : json_null());
	json_object_set_new(root, "flag", json_boolean(res->flag));
	json_object_set_new(root, "count", json_integer(res->count));
	json_object_set_new(root, "duration_ms", json_real(res->duration_ms));
	if (res->state_generation > 0)
		json_object_set_new(root, "state_generation", json_integer(res->state_generation));
	if (res->transfer != NULL)
		json_object_set_new(root, "transfer", json_string(res->transfer));
	else if (res->items != NULL)
		json_object_set(root, "items", res->items);
	if (framed && res->transfer == NULL && res->data != NULL)
		json_object_set_new(root, "content_in_frame", json_true());
	text = dump(root);
	if (text != NULL && !framed && res->transfer == NULL && res->data != NULL)
		text = splice_base64(text, "data", res->data, res->data_len);
	return text;
}

char *
sb_file_result_encode(const SbFileResult *res)
{
	return file_result_encode(res, false);
}

char *
sb_file_result_encode_framed(const SbFileResult *res)
{
	return file_result_encode(res, true);
}

/* items_valid checks the shape of a list, search or find result's items. */
static bool
items_valid(SbFileOp op, json_t *items, char *errbuf, size_t errlen)
{
	size_t		i;
	json_t	   *item;

	if (!json_is_array(items))
		return fail(errbuf, errlen, "result items are not an array");
	json_array_foreach(items, i, item)
	{
		bool		good;

		if (op == SB_FILE_LIST)
		{
			const char *type = json_string_value(json_object_get(item, "type"));
			json_t	   *size = json_object_get(item, "size");
			json_t	   *mode = json_object_get(item, "mode");

			good = json_is_string(json_object_get(item, "path")) && type != NULL &&
				(strcmp(type, "file") == 0 || strcmp(type, "directory") == 0 ||
				 strcmp(type, "symlink") == 0 || strcmp(type, "other") == 0) &&
				json_is_integer(size) && json_integer_value(size) >= 0 &&
				json_is_integer(mode) && json_integer_value(mode) >= 0 &&
				json_integer_value(mode) <= 07777 &&
				json_is_number(json_object_get(item, "mtime"));
		}
		else if (op == SB_FILE_SEARCH)
		{
			json_t	   *line = json_object_get(item, "line");

			good = json_is_integer(line) && json_integer_value(line) >= 1 &&
				json_integer_value(line) <= 0x7fffffff &&
				json_is_string(json_object_get(item, "text"));
		}
		else
			good = op == SB_FILE_FIND && json_is_string(item);
		if (!good)
			return fail(errbuf, errlen, "result item %zu is malformed", i);
	}
	return true;
}

bool
sb_file_items_decode(const char *text, size_t len, SbFileOp op, json_t **items,
					 char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(text, len, 0, &jerr);

	*items = NULL;
	if (root == NULL)
		return fail(errbuf, errlen, "result items are not valid JSON: %s", jerr.text);
	if (!items_valid(op, root, errbuf, errlen))
	{
		json_decref(root);
		return false;
	}
	*items = root;
	return true;
}

bool
sb_file_result_decode(const char *text, size_t len, SbFileOp op, SbFileResult *out,
					  char *errbuf, size_t errlen)
{
	return sb_file_result_decode_ex(text, len, op, out, NULL, errbuf, errlen);
}

bool
sb_file_result_decode_ex(const char *text, size_t len, SbFileOp op, SbFileResult *out,
						 bool *in_frame, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root;
	json_t	   *v;
	const char *s;
	size_t		slen;
	long long	n;
	bool		ok = false;

	memset(out, 0, sizeof(*out));
	root = json_loadb(text, len, 0, &jerr);
	if (root == NULL)
		return fail(errbuf, errlen, "result is not valid JSON: %s", jerr.text);
	v = json_object_get(root, "status");
	if (!json_is_string(v) || !sb_status_parse(json_string_value(v), &out->status))
	{
		fail(errbuf, errlen, "result has no valid status");
		goto done;
	}
	if (out->status != SB_STATUS_SUCCEEDED)
		out->status = SB_STATUS_ERROR;
	if (!get_string(root, "error_code", &s, NULL) ||
		(s != NULL && !sb_file_error_parse(s, &out->code)))
	{
		fail(errbuf, errlen, "result has an unknown error code");
		goto done;
	}
	if (!get_string(root, "error", &s, NULL))
	{
		fail(errbuf, errlen, "result has a malformed error");
		goto done;
	}
	if (s != NULL)
		out->error = sb_strdup(s);
	else if (out->status == SB_STATUS_ERROR)
		out->error = sb_strdup("the sandbox reported an error without a message");
	out->flag = json_is_true(json_object_get(root, "flag"));
	if (!get_int(root, "count", &out->count, 0) ||
		!get_int(root, "state_generation", &n, 0))
	{
		fail(errbuf, errlen, "result has a malformed number");
		goto done;
	}
	out->state_generation = n;
	v = json_object_get(root, "duration_ms");
	out->duration_ms = json_is_number(v) ? json_number_value(v) : 0;
	if (!get_string(root, "transfer", &s, &slen) || (s != NULL && slen == 0))
	{
		fail(errbuf, errlen, "result has a malformed transfer object name");
		goto done;
	}
	if (s != NULL)
		out->transfer = sb_strdup(s);
	if (in_frame)
		*in_frame = false;
	if (json_is_true(json_object_get(root, "content_in_frame")))
	{
		if (in_frame == NULL || out->transfer != NULL ||
			json_object_get(root, "data") != NULL)
		{
			fail(errbuf, errlen, "result has its data in a frame it did not come with");
			goto done;
		}
		*in_frame = true;
	}
	else if (!get_string(root, "data", &s, &slen) ||
		(s != NULL && !decode_base64(s, slen, &out->data, &out->data_len)))
	{
		fail(errbuf, errlen, "result has malformed data");
		goto done;
	}
	v = json_object_get(root, "items");
	if (v != NULL && out->status == SB_STATUS_SUCCEEDED &&
		(op == SB_FILE_LIST || op == SB_FILE_SEARCH || op == SB_FILE_FIND))
	{
		if (!items_valid(op, v, errbuf, errlen))
			goto done;
		out->items = json_incref(v);
	}
	ok = true;
done:
	json_decref(root);
	if (!ok)
		sb_file_result_clear(out);
	return ok;
}

void
sb_file_result_clear(SbFileResult *res)
{
	sb_free(res->error);
	sb_free(res->data);
	sb_free(res->transfer);
	if (res->items)
		json_decref(res->items);
	memset(res, 0, sizeof(*res));
}
