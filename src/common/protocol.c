/*
 * protocol.c
 *		JSON encoding and validation of requests, results and session state.
 */
#include "protocol.h"
#include "sbutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {"succeeded", "failed", "timed_out", "error"};

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
	for (int i = 0; i < 4; i++)
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
	}
	return dump(root);
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
		!get_int(root, "kill_grace_ms", &out->kill_grace_ms, 1000))
		return fail(errbuf, errlen, "request has a malformed number");
	v = json_object_get(root, "session");
	out->session = json_is_string(v) ? json_string_value(v) : NULL;
	if (out->session != NULL && !sb_session_name_valid(out->session))
		return fail(errbuf, errlen, "request names an invalid session");
	v = json_object_get(root, "prefix");
	out->prefix = json_is_string(v) ? json_string_value(v) : "";
	limits = json_object_get(root, "limits");
	if (limits != NULL &&
		(!get_int(limits, "nproc", &out->limits.nproc, 0) ||
		 !get_int(limits, "memory_bytes", &out->limits.memory_bytes, 0) ||
		 !get_int(limits, "fsize_bytes", &out->limits.fsize_bytes, 0) ||
		 !get_int(limits, "cpu_seconds", &out->limits.cpu_seconds, 0)))
		return fail(errbuf, errlen, "request has malformed limits");
	return true;
}

/* output_json stores captured bytes, which the executor has already repaired. */
static json_t *
output_json(const char *data, size_t len)
{
	return json_stringn(data ? data : "", data ? len : 0);
}

char *
sb_result_encode(const SbExecResult *res)
{
	json_t *root = json_object();

	json_object_set_new(root, "version", json_integer(SB_PROTOCOL_VERSION));
	json_object_set_new(root, "status", json_string(sb_status_name(res->status)));
	json_object_set_new(root, "exit_code",
						res->has_exit_code ? json_integer(res->exit_code) : json_null());
	json_object_set_new(root, "stdout", output_json(res->stdout_data, res->stdout_len));
	json_object_set_new(root, "stderr", output_json(res->stderr_data, res->stderr_len));
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
	json_error_t jerr;
	json_t *root;
	json_t *v;
	bool ok = false;

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
	v = json_object_get(root, "exit_code");
	if (json_is_integer(v))
	{
		out->has_exit_code = true;
		out->exit_code = (int) json_integer_value(v);
	}
	if (!copy_output(root, "stdout", &out->stdout_data, &out->stdout_len) ||
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
	return dump(json_pack("{sisIsssOsI}", "version", SB_PROTOCOL_VERSION, "generation",
						  (json_int_t) state->generation, "cwd", state->cwd, "env",
						  state->env, "last_execution",
						  (json_int_t) state->last_execution));
}

bool
sb_state_decode(const char *text, size_t len, SbState *out, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	json_t *cwd;
	json_t *env;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	root = json_loadb(text, len, 0, &jerr);
	if (root == NULL)
		return fail(errbuf, errlen, "state is not valid JSON: %s", jerr.text);
	cwd = json_object_get(root, "cwd");
	env = json_object_get(root, "env");
	if (!valid_cwd(cwd))
		fail(errbuf, errlen, "state has a malformed working directory");
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
		ok = true;
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
