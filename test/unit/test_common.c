/*
 * test_common.c
 *		Unit tests of the shared code (UTF-8 repair, buffers, names, the
 *		protocol documents) and tests of the executor program, which is run
 *		as a child process with requests on its standard input.  Built with
 *		AddressSanitizer; prints TAP.
 */
#define _GNU_SOURCE
#include "tap.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/protocol.h"
#include "common/sbutil.h"

static const char *executor;

/* repair is sb_utf8_repair with the result compared to want. */
static void
check_repair(const char *in, size_t len, bool trim, const char *want, bool want_repaired,
			 const char *name)
{
	size_t		n;
	bool		repaired;
	char	   *out = sb_utf8_repair(in, len, trim, &n, &repaired);

	ok(strlen(want) == n && memcmp(out, want, n) == 0 && repaired == want_repaired, "utf8: %s",
	   name);
	sb_free(out);
}

static void
test_utf8(void)
{
	check_repair("hello", 5, false, "hello", false, "ASCII is unchanged");
	check_repair("h\xc3\xa9 \xf0\x9f\x98\x80", 8, false, "h\xc3\xa9 \xf0\x9f\x98\x80", false,
				 "two- and four-byte characters are unchanged");
	check_repair("a\xff" "b", 3, false, "a\xef\xbf\xbd" "b", true, "an invalid byte becomes U+FFFD");
	check_repair("a\0b", 3, false, "a\xef\xbf\xbd" "b", true, "a NUL byte becomes U+FFFD");
	check_repair("\xc0\x80", 2, false, "\xef\xbf\xbd\xef\xbf\xbd", true, "an overlong NUL is rejected");
	check_repair("\xed\xa0\x80", 3, false, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", true,
				 "a UTF-16 surrogate is rejected");
	check_repair("ab\xe2\x82", 4, true, "ab", false, "a character cut by a byte cap is trimmed");
	check_repair("ab\xe2\x82", 4, false, "ab\xef\xbf\xbd\xef\xbf\xbd", true,
				 "a cut character is replaced when not at a cap");
}

static void
test_buf(void)
{
	SbBuf		b;

	sb_buf_init(&b, 10);
	sb_buf_append(&b, "0123456", 7);
	sb_buf_append(&b, "789abcdef", 9);
	ok(b.len == 10 && b.truncated && memcmp(b.data, "0123456789", 10) == 0,
	   "buf: keeps exactly cap bytes and says it truncated");
	sb_buf_free(&b);
	sb_buf_init(&b, 0);
	for (int i = 0; i < 100000; i++)
		sb_buf_append(&b, "xyz", 3);
	ok(b.len == 300000 && !b.truncated, "buf: grows without a cap");
	sb_buf_free(&b);
}

static void
test_names(void)
{
	ok(sb_session_name_valid("build-42.a_b"), "session name: letters, digits, - . _");
	ok(!sb_session_name_valid(""), "session name: empty is rejected");
	ok(!sb_session_name_valid(".."), "session name: .. is rejected");
	ok(!sb_session_name_valid("a/b"), "session name: a slash is rejected");
	ok(!sb_session_name_valid("-x"), "session name: a leading dash is rejected");
	ok(!sb_session_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
	   "session name: 64 characters is too long");
	ok(sb_storage_key_valid("_42") && sb_storage_key_valid("legacy-name"),
	   "storage key: _<id>, or a 0.1.0 session name");
	ok(!sb_storage_key_valid("_") && !sb_storage_key_valid("_4a") && !sb_storage_key_valid("_../x") &&
	   !sb_storage_key_valid("a/b") && !sb_storage_key_valid(".."),
	   "storage key: anything else is rejected");
	ok(sb_env_name_valid("_FOO1"), "env name: valid");
	ok(!sb_env_name_valid("1FOO") && !sb_env_name_valid("A-B") && !sb_env_name_valid("A=B"),
	   "env name: invalid names are rejected");
}

static void
test_protocol(void)
{
	SbExecRequest req = {0}, got;
	SbExecResult res = {0}, rgot;
	SbState		st = {0}, sgot;
	json_t	   *holder;
	char		err[256];
	char	   *text;

	req.id = 7;
	req.command = "echo 'hi'";
	req.cwd = "/workspace/x";
	req.env = json_pack("{ss}", "A", "1");
	req.call_env = json_pack("{ss}", "B", "2");
	req.timeout_ms = 1500;
	req.max_output_bytes = 99;
	req.limits.nproc = 5;
	text = sb_request_encode(&req);
	ok(sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   got.id == 7 && strcmp(got.command, req.command) == 0 && got.timeout_ms == 1500 &&
	   got.max_output_bytes == 99 && got.limits.nproc == 5 &&
	   json_equal(got.env, req.env) && json_equal(got.call_env, req.call_env),
	   "protocol: a request survives encoding and decoding");
	json_decref(holder);
	sb_free(text);
	req.disk_quota_bytes = 16 * 1024 * 1024;
	text = sb_request_encode(&req);
	ok(sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   got.disk_quota_bytes == 16 * 1024 * 1024,
	   "protocol: a request's disk quota survives encoding and decoding");
	json_decref(holder);
	sb_free(text);
	req.disk_quota_bytes = 0;
	/* [stdin] stdin in base64 (any bytes), the call's cwd, a writable stdin. */
	req.has_stdin = true;
	req.stdin_data = "a\0\xff\xfe\n";
	req.stdin_len = 5;
	req.call_cwd = "sub/dir";
	req.stdin_open = true;
	text = sb_request_encode(&req);
	ok(sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   got.has_stdin && !got.stdin_in_frame && got.stdin_open && got.stdin_len == 5 &&
	   memcmp(got.stdin_data, "a\0\xff\xfe\n", 5) == 0 && strcmp(got.call_cwd, "sub/dir") == 0 &&
	   strstr(text, "\"stdin\":\"YQD//go=\"") != NULL,
	   "protocol: stdin (in base64, NUL and non-UTF-8 bytes) and call_cwd survive encoding and decoding");
	json_decref(holder);
	sb_free(text);
	req.stdin_in_frame = true;
	req.stdin_open = false;
	text = sb_request_encode(&req);
	ok(sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   got.has_stdin && got.stdin_in_frame && !got.stdin_open && got.stdin_data == NULL &&
	   strstr(text, "\"stdin\":") == NULL,
	   "protocol: stdin left to the frame is not in the document");
	json_decref(holder);
	sb_free(text);
	req.has_stdin = req.stdin_in_frame = false;
	req.stdin_data = NULL;
	req.stdin_len = 0;
	req.call_cwd = NULL;
	text = sb_request_encode(&req);
	ok(sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   !got.has_stdin && got.call_cwd == NULL && strstr(text, "stdin") == NULL,
	   "protocol: without stdin the request says nothing of it");
	json_decref(holder);
	sb_free(text);
	text = "{\"version\":1,\"op\":\"exec\",\"command\":\"x\",\"stdin\":\"Y*==\"}";
	ok(!sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   strstr(err, "stdin") != NULL, "protocol: a request with malformed base64 stdin is rejected");
	json_decref(holder);
	text = "{\"version\":1,\"op\":\"exec\",\"command\":\"x\",\"call_cwd\":\"\"}";
	ok(!sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   strstr(err, "call_cwd") != NULL, "protocol: an empty call_cwd is rejected");
	json_decref(holder);
	{
		SbStatus	q;

		ok(sb_status_parse("quota_exceeded", &q) && q == SB_STATUS_QUOTA_EXCEEDED &&
		   strcmp(sb_status_name(SB_STATUS_QUOTA_EXCEEDED), "quota_exceeded") == 0,
		   "protocol: the status quota_exceeded has a name both ways");
	}
	text = "{\"version\":1,\"op\":\"exec\",\"command\":\"x\",\"env\":{\"A-B\":\"1\"}}";
	ok(!sb_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) &&
	   strstr(err, "A-B") != NULL,
	   "protocol: a request with a bad variable name is rejected by name");
	json_decref(holder);

	res.status = SB_STATUS_FAILED;
	res.has_exit_code = true;
	res.exit_code = 3;
	res.stdout_data = "out";
	res.stdout_len = 3;
	res.stderr_data = "";
	res.has_state = true;
	res.cwd = "/tmp";
	res.env = req.env;
	text = sb_result_encode(&res);
	ok(sb_result_decode(text, strlen(text), &rgot, err, sizeof(err)) &&
	   rgot.status == SB_STATUS_FAILED && rgot.exit_code == 3 && rgot.stdout_len == 3 &&
	   rgot.has_state && strcmp(rgot.cwd, "/tmp") == 0 && json_equal(rgot.env, req.env),
	   "protocol: a result survives encoding and decoding");
	sb_free(rgot.stdout_data);
	sb_free(rgot.stderr_data);
	sb_free(rgot.cwd);
	json_decref(rgot.env);
	sb_free(text);
	text = "{\"status\":\"succeeded\",\"stdout\":\"a\\u0000b\",\"stderr\":\"\"}";
	ok(!sb_result_decode(text, strlen(text), &rgot, err, sizeof(err)),
	   "protocol: a result with a NUL in its output is rejected");
	sb_free(rgot.stdout_data);
	text = "{\"status\":\"succeeded\",\"stdout\":\"\",\"stderr\":\"\",\"state\":"
		"{\"cwd\":\"relative\",\"env\":{}}}";
	ok(!sb_result_decode(text, strlen(text), &rgot, err, sizeof(err)),
	   "protocol: a result with a relative cwd is rejected");
	sb_free(rgot.stdout_data);
	sb_free(rgot.stderr_data);
	text = "{\"status\":\"bogus\"}";
	ok(!sb_result_decode(text, strlen(text), &rgot, err, sizeof(err)),
	   "protocol: a result with an unknown status is rejected");

	res.stdout_data = "raw\377";
	res.stdout_len = 4;
	text = sb_result_encode_framed(&res);
	{
		bool		in_frame = false;

		ok(strstr(text, "\"output_in_frame\":true") && !strstr(text, "\"stdout\"") &&
		   !strstr(text, "\"stderr\""),
		   "protocol: a framed result says output_in_frame and carries no output");
		ok(!sb_result_decode(text, strlen(text), &rgot, err, sizeof(err)) &&
		   strstr(err, "frame") != NULL,
		   "protocol: a framed result is refused where no frame can carry its output");
		sb_result_clear(&rgot);
		ok(sb_result_decode_ex(text, strlen(text), &rgot, &in_frame, err, sizeof(err)) &&
		   in_frame && rgot.stdout_data == NULL && rgot.exit_code == 3 && rgot.has_state,
		   "protocol: decode_ex accepts it, output left to the payloads, the rest decoded");
		sb_result_clear(&rgot);
	}
	sb_free(text);
	{
		SbFileRequest fr = {0}, fgot;
		SbFileResult fres = {0}, fresgot;
		json_t	   *fholder;
		bool		in_frame = false;

		fr.op = SB_FILE_WRITE;
		fr.path = "a";
		fr.data = "xyz";
		fr.data_len = 3;
		fr.content_in_frame = true;
		text = sb_file_request_encode(&fr);
		ok(sb_file_request_decode(text, strlen(text), &fgot, &fholder, err, sizeof(err)) < 0,
		   "protocol: a write with its content in a frame is refused without the frame");
		sb_file_request_clear(&fgot, fholder);
		ok(sb_file_request_decode_ex(text, strlen(text), "pay", 3, &fgot, &fholder, err,
									 sizeof(err)) == 1 &&
		   fgot.data_len == 3 && memcmp(fgot.data, "pay", 3) == 0,
		   "protocol: with the frame, its payload is the content");
		sb_file_request_clear(&fgot, fholder);
		sb_free(text);
		fres.status = SB_STATUS_SUCCEEDED;
		fres.data = "bytes";
		fres.data_len = 5;
		text = sb_file_result_encode_framed(&fres);
		ok(!sb_file_result_decode(text, strlen(text), SB_FILE_READ, &fresgot, err, sizeof(err)),
		   "protocol: a framed file result is refused where no frame can carry its data");
		ok(sb_file_result_decode_ex(text, strlen(text), SB_FILE_READ, &fresgot, &in_frame, err,
									sizeof(err)) && in_frame && fresgot.data == NULL,
		   "protocol: decode_ex accepts it, its data left to payload 0");
		sb_file_result_clear(&fresgot);
		sb_free(text);
		text = "{\"version\":1,\"status\":\"succeeded\",\"content_in_frame\":true,\"data\":\"eA==\"}";
		ok(!sb_file_result_decode_ex(text, strlen(text), SB_FILE_READ, &fresgot, &in_frame, err,
									 sizeof(err)),
		   "protocol: a file result with data both in the frame and inline is refused");
	}

	st.generation = 41;
	st.cwd = "/workspace";
	st.env = req.env;
	st.last_execution = 9;
	text = sb_state_encode(&st);
	ok(sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)) && sgot.generation == 41 &&
	   sgot.last_execution == 9 && strcmp(sgot.cwd, "/workspace") == 0,
	   "protocol: state survives encoding and decoding");
	sb_free(sgot.cwd);
	json_decref(sgot.env);
	sb_free(text);
	{
		char	   *incs[] = {"sessions/s/workspace/3.inc.tar", "sessions/s/workspace/4.inc.tar"};
		SbState		st2 = st;
		char		doc[128];
		bool		refused = true;

		st2.workspace = "sessions/s/workspace/2.tar";
		st2.increments = incs;
		st2.n_increments = 2;
		text = sb_state_encode(&st2);
		ok(sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)) && sgot.n_increments == 2 &&
		   strcmp(sgot.increments[1], incs[1]) == 0 && strcmp(sgot.workspace, st2.workspace) == 0,
		   "protocol: state keeps its workspace snapshot and increments, in order");
		sb_state_clear(&sgot);
		sb_free(text);
		st2.workspace = NULL;
		st2.n_increments = 0;
		text = sb_state_encode(&st2);
		ok(strstr(text, "increments") == NULL, "protocol: a state without a snapshot has no increments member");
		sb_free(text);
		{
			SbBuf		big;

			sb_buf_init(&big, 0);
			{
				const char *head = "{\"version\":1,\"cwd\":\"/\",\"env\":{},\"increments\":[";

				sb_buf_append(&big, head, strlen(head));
			}
			for (int i = 0; i <= SB_MAX_INCREMENTS; i++)
				sb_buf_append(&big, i ? ",\"x\"" : "\"x\"", i ? 4 : 3);
			sb_buf_append(&big, "]}", 2);
			refused &= !sb_state_decode(big.data, big.len, &sgot, err, sizeof(err)) &&
				strstr(err, "at most") != NULL;
			sb_buf_free(&big);
		}
		snprintf(doc, sizeof(doc), "{\"version\":1,\"cwd\":\"/\",\"env\":{},\"increments\":[1]}");
		refused &= !sb_state_decode(doc, strlen(doc), &sgot, err, sizeof(err));
		snprintf(doc, sizeof(doc), "{\"version\":1,\"cwd\":\"/\",\"env\":{},\"increments\":\"a\"}");
		refused &= !sb_state_decode(doc, strlen(doc), &sgot, err, sizeof(err));
		ok(refused, "protocol: more than 1000 increments, or a non-string one, are refused");
	}
	text = "{\"version\":1,\"cwd\":\"/\",\"env\":[]}";
	ok(!sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)),
	   "protocol: state with a non-object env is rejected");
	text = "{\"version\":99,\"cwd\":\"/workspace\",\"env\":{}}";
	ok(!sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)) && strstr(err, "version 99") != NULL,
	   "protocol: state of version 99 is rejected, naming the version");
	text = "{\"cwd\":\"/workspace\",\"env\":{}}";
	ok(!sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)),
	   "protocol: state without a version is rejected");
	text = "[1]";
	ok(!sb_state_decode(text, strlen(text), &sgot, err, sizeof(err)),
	   "protocol: state that is not an object is rejected");
	{
		static const char *const bad[] = {"/workspace/../etc", "/workspace/", "//etc", "/./tmp", "/tmp/..", "rel"};
		static const char *const good[] = {"/", "/workspace", "/tmp/a.b/..c", "/etc"};
		bool		all = true;
		char		doc[256];

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			snprintf(doc, sizeof(doc), "{\"version\":1,\"cwd\":\"%s\",\"env\":{}}", bad[i]);
			all &= !sb_state_decode(doc, strlen(doc), &sgot, err, sizeof(err));
		}
		ok(all, "protocol: state whose cwd is not a normalized absolute path is rejected");
		all = true;
		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		{
			snprintf(doc, sizeof(doc), "{\"version\":1,\"cwd\":\"%s\",\"env\":{}}", good[i]);
			all &= sb_state_decode(doc, strlen(doc), &sgot, err, sizeof(err));
			sb_free(sgot.cwd);
			json_decref(sgot.env);
		}
		ok(all, "protocol: state with a normalized absolute cwd is accepted");
	}
	ok(sb_env_name_reserved("SHELLOPTS") && sb_env_name_reserved("BASHOPTS") &&
	   sb_env_name_reserved("BASH_ENV") && sb_env_name_reserved("BASH") && sb_env_name_reserved("IFS") &&
	   sb_env_name_reserved("__sb_rc") && !sb_env_name_reserved("BASHFUL") &&
	   !sb_env_name_reserved("PATH") && !sb_env_name_reserved("HOME"),
	   "protocol: the shell's own variables are reserved, ordinary ones are not");
	{
		json_t	   *env = json_object();
		char	   *v = malloc(SB_MAX_ENV_VAR_BYTES);

		memset(v, 'x', SB_MAX_ENV_VAR_BYTES - 1);
		v[SB_MAX_ENV_VAR_BYTES - 2] = '\0';	/* "V=" + value = the limit */
		json_object_set_new(env, "V", json_string(v));
		ok(sb_env_settable(env, err, sizeof(err)), "protocol: a variable of exactly the limit is settable");
		v[SB_MAX_ENV_VAR_BYTES - 2] = 'x';
		v[SB_MAX_ENV_VAR_BYTES - 1] = '\0';
		json_object_set_new(env, "V", json_string(v));
		ok(!sb_env_settable(env, err, sizeof(err)) && strstr(err, "131071") != NULL,
		   "protocol: one byte more is refused, naming the limit");
		json_object_clear(env);
		json_object_set_new(env, "SHELLOPTS", json_string("xtrace"));
		ok(!sb_env_settable(env, err, sizeof(err)) && strstr(err, "SHELLOPTS") != NULL,
		   "protocol: SHELLOPTS is refused");
		json_decref(env);
		free(v);
	}
	json_decref(req.env);
	json_decref(req.call_env);
}

/* run_executor feeds one request to the executor and decodes its result. */
static bool
run_executor(SbExecRequest *req, SbExecResult *res, double *wall_ms)
{
	char		path[] = "/tmp/sb_unit_req.XXXXXX";
	int			fd = mkstemp(path);
	char	   *text = sb_request_encode(req);
	char	   *cmd;
	FILE	   *p;
	SbBuf		out;
	char		chunk[65536];
	size_t		n;
	char		err[256];
	struct timeval t0, t1;
	bool		okay;

	if (write(fd, text, strlen(text)) < 0)
		return false;
	close(fd);
	sb_free(text);
	if (asprintf(&cmd, "%s < %s", executor, path) < 0)
		return false;
	gettimeofday(&t0, NULL);
	p = popen(cmd, "r");
	sb_buf_init(&out, 0);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		sb_buf_append(&out, chunk, n);
	okay = pclose(p) == 0;
	gettimeofday(&t1, NULL);
	if (wall_ms)
		*wall_ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_usec - t0.tv_usec) / 1000.0;
	unlink(path);
	free(cmd);
	okay = okay && out.len > 0 && sb_result_decode(out.data, out.len, res, err, sizeof(err));
	if (!okay)
		printf("# executor run failed: %s\n", out.len ? err : "no output");
	sb_buf_free(&out);
	return okay;
}

static void
free_result(SbExecResult *r)
{
	sb_result_clear(r);
}

/* request builds a request for command with the session env given as JSON. */
static SbExecRequest
request(const char *command, const char *env_json)
{
	SbExecRequest req = {0};

	req.command = command;
	req.cwd = "/tmp";
	req.env = json_loads(env_json ? env_json : "{}", 0, NULL);
	req.timeout_ms = 20000;
	req.max_output_bytes = 1 << 20;
	req.kill_grace_ms = 500;
	return req;
}

static void
test_executor(void)
{
	SbExecRequest req;
	SbExecResult r;
	double		ms;
	char	   *big;

	req = request("cd /; export FOO=bar; echo out; echo err >&2; exit 3", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_FAILED && r.exit_code == 3,
	   "executor: exit 3 is reported as failed with exit code 3");
	is_str(r.stdout_data, "out\n", "executor: stdout is captured");
	is_str(r.stderr_data, "err\n", "executor: stderr is captured separately");
	ok(r.has_state && strcmp(r.cwd, "/") == 0, "executor: cd persists even after exit");
	is_str(json_string_value(json_object_get(r.env, "FOO")), "bar",
		   "executor: export persists even after exit");
	ok(json_object_get(r.env, "PATH") == NULL && json_object_get(r.env, "PWD") == NULL &&
	   json_object_get(r.env, "SHLVL") == NULL,
	   "executor: base and shell variables are not stored as session state");
	free_result(&r);
	json_decref(req.env);

	req = request("echo \"$KEEP $ONCE\"; unset GONE; export CHANGED=new", "{\"KEEP\":\"k\",\"GONE\":\"g\"}");
	req.call_env = json_pack("{ssss}", "ONCE", "o", "CHANGED", "old");
	ok(run_executor(&req, &r, NULL), "executor: runs with session and call variables");
	is_str(r.stdout_data, "k o\n", "executor: session and call variables are both visible");
	ok(json_object_get(r.env, "ONCE") == NULL, "executor: a call-only variable is not kept");
	is_str(json_string_value(json_object_get(r.env, "CHANGED")), "new",
		   "executor: a call variable the command changed is kept");
	ok(json_object_get(r.env, "GONE") == NULL, "executor: unset removes a session variable");
	free_result(&r);
	json_decref(req.env);
	json_decref(req.call_env);

	req = request("export A=$'x\\ny\\tz' B='q\"$`\\w' U='\xc3\xa9\xe2\x98\x83' C=$'\\001'; export D; declare -i I=5; export I",
				  NULL);
	ok(run_executor(&req, &r, NULL) && r.has_state, "executor: variables with special characters are recorded");
	is_str(json_string_value(json_object_get(r.env, "A")), "x\ny\tz", "executor: newline and tab survive in a variable");
	is_str(json_string_value(json_object_get(r.env, "B")), "q\"$`\\w", "executor: quotes, $, backtick and backslash survive");
	is_str(json_string_value(json_object_get(r.env, "U")), "\xc3\xa9\xe2\x98\x83", "executor: UTF-8 survives in a variable");
	is_str(json_string_value(json_object_get(r.env, "C")), "\001", "executor: a control character survives");
	is_str(json_string_value(json_object_get(r.env, "I")), "5", "executor: an exported integer variable is recorded");
	ok(json_object_get(r.env, "D") == NULL, "executor: a variable exported without a value is not recorded");
	free_result(&r);
	json_decref(req.env);

	req = request("cd /tmp; export K=1; declare -ax ARR=(1 \"a b\" $'c\\nd'); "
				  "declare -Ax M=([k]=\"v w\" [\"x y\"]=$'\\001' [')']='(' ); declare -nx R=K; set -a; L=2",
				  NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_SUCCEEDED && r.has_state &&
	   strcmp(r.cwd, "/tmp") == 0, "executor: a command exporting arrays keeps its cwd");
	ok(json_object_size(r.env) == 2 && json_object_get(r.env, "K") && json_object_get(r.env, "L"),
	   "executor: and its string variables, not the arrays, the nameref or __sb_rc");
	ok(r.error != NULL && strstr(r.error, "array variable(s) ARR, M, R") != NULL,
	   "executor: the error names the arrays and the nameref");
	free_result(&r);
	json_decref(req.env);

	req = request("cd /tmp; export K=1; trap 'echo bye; cd /' EXIT; exit 4", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_FAILED && r.exit_code == 4 &&
	   r.has_state && strcmp(r.cwd, "/tmp") == 0 && r.error == NULL &&
	   strcmp(r.stdout_data, "bye\n") == 0,
	   "executor: exit with an EXIT trap of the command's own keeps the state from before the trap");
	free_result(&r);
	json_decref(req.env);

	req = request("set -eu; cd /; export E=1; exit 2", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_FAILED && r.exit_code == 2 &&
	   r.has_state && strcmp(r.cwd, "/") == 0 && r.error == NULL,
	   "executor: with errexit, exit 2 still exits 2 and keeps the state");
	free_result(&r);
	json_decref(req.env);

	req = request("set -e; cd /; exec 97>&-; exit 2", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_FAILED && r.exit_code == 2 &&
	   !r.has_state && r.error != NULL,
	   "executor: a command that closed the state pipe keeps its exit code; no state, said so");
	free_result(&r);
	json_decref(req.env);

	req = request("(exit 5); x=$(exit 6); echo $?; cd /tmp; exec true", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_SUCCEEDED && !r.has_state &&
	   r.error != NULL && strstr(r.error, "exec") != NULL && strcmp(r.stdout_data, "6\n") == 0,
	   "executor: subshells' exit write no state; exec leaves none, and the error says so");
	free_result(&r);
	json_decref(req.env);

	req = request("export SMALL=1 BIG=$(head -c 200000 /dev/zero | tr '\\0' b)",
				  "{\"SHELLOPTS\":\"xtrace:nounset\",\"OLD\":\"1\"}");
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_SUCCEEDED && r.has_state &&
	   json_object_get(r.env, "SMALL") && json_object_get(r.env, "OLD") &&
	   !json_object_get(r.env, "BIG") && !json_object_get(r.env, "SHELLOPTS") &&
	   strcmp(r.stderr_data, "") == 0 && r.error && strstr(r.error, "BIG") != NULL,
	   "executor: a 200 kB export is named and dropped; a stored SHELLOPTS is neither applied nor kept");
	free_result(&r);
	json_decref(req.env);

	req = request("sleep 30", NULL);
	req.timeout_ms = 300;
	ok(run_executor(&req, &r, &ms) && r.status == SB_STATUS_TIMED_OUT && ms < 2500,
	   "executor: a command past its timeout is killed and reported timed_out (%.0f ms)", ms);
	free_result(&r);
	json_decref(req.env);

	req = request("trap '' TERM; sleep 30", NULL);
	req.timeout_ms = 200;
	req.kill_grace_ms = 300;
	ok(run_executor(&req, &r, &ms) && r.status == SB_STATUS_TIMED_OUT && ms < 2500,
	   "executor: a command ignoring SIGTERM is killed after the grace period (%.0f ms)", ms);
	free_result(&r);
	json_decref(req.env);

	req = request("head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2", NULL);
	req.max_output_bytes = 1000;
	ok(run_executor(&req, &r, NULL) && r.stdout_len == 1000 && r.stdout_truncated &&
	   !r.stderr_truncated && strcmp(r.stderr_data, "done\n") == 0,
	   "executor: stdout is capped at max_output_bytes with the truncated flag");
	free_result(&r);
	json_decref(req.env);

	req = request("printf 'ok\\377\\376\\000end'", NULL);
	ok(run_executor(&req, &r, NULL) && r.stdout_repaired &&
	   strcmp(r.stdout_data, "ok\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "end") == 0,
	   "executor: invalid UTF-8 and NUL bytes are replaced, not fatal");
	free_result(&r);
	json_decref(req.env);

	big = malloc(400000);
	big[0] = '\0';
	for (int i = 0; i < 20000; i++)
		memcpy(big + i * 15, ": padding line\n", 16);
	strcat(big, "echo big-ok");
	req = request(big, NULL);
	ok(run_executor(&req, &r, NULL) && strcmp(r.stdout_data, "big-ok\n") == 0,
	   "executor: a command of %zu bytes runs (larger than a pipe buffer)", strlen(big));
	free_result(&r);
	json_decref(req.env);
	free(big);

	req = request("cat; echo eof", NULL);
	ok(run_executor(&req, &r, &ms) && strcmp(r.stdout_data, "eof\n") == 0 && ms < 5000,
	   "executor: the command's standard input is empty");
	free_result(&r);
	json_decref(req.env);

	req = request("sleep 20 & echo started", NULL);
	ok(run_executor(&req, &r, &ms) && r.status == SB_STATUS_SUCCEEDED && ms < 3000,
	   "executor: a leftover background job does not hold the result (%.0f ms)", ms);
	free_result(&r);
	json_decref(req.env);

	req = request("echo ok; if then", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_FAILED && r.exit_code == 2 &&
	   r.has_state,
	   "executor: a syntax error fails with exit code 2 and keeps the state");
	free_result(&r);
	json_decref(req.env);

	req = request("export X=1; exec true", NULL);
	ok(run_executor(&req, &r, NULL) && r.status == SB_STATUS_SUCCEEDED && !r.has_state,
	   "executor: a command that replaces the shell leaves the state unchanged");
	free_result(&r);
	json_decref(req.env);

	req = request("pwd", NULL);
	req.cwd = "/nonexistent/dir";
	ok(run_executor(&req, &r, NULL) && strstr(r.stderr_data, "is gone") != NULL,
	   "executor: a vanished working directory is reported on stderr");
	free_result(&r);
	json_decref(req.env);

	req = request("echo $(ulimit -u) $(ulimit -v) $(ulimit -f) $(ulimit -t)", NULL);
	req.limits.nproc = 77;
	req.limits.memory_bytes = 512LL * 1024 * 1024;
	req.limits.fsize_bytes = 4LL * 1024 * 1024;
	req.limits.cpu_seconds = 33;
	ok(run_executor(&req, &r, NULL) && strcmp(r.stdout_data, "77 524288 4096 33\n") == 0,
	   "executor: process, memory, file size and CPU limits are applied");
	free_result(&r);
	json_decref(req.env);
}

/* A serve-mode executor: its pid and our end of its socket (its fd 0 and 1). */
typedef struct Server
{
	pid_t		pid;
	int			fd;
} Server;

static const size_t result_max[3] = {1 << 20, 64 << 20, 64 << 20};

/* server_start runs `executor serve` on one end of a socketpair. */
static bool
server_start(Server *srv)
{
	int			sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return false;
	srv->pid = fork();
	if (srv->pid == 0)
	{
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(executor, executor, "serve", (char *) NULL);
		_exit(127);
	}
	close(sv[1]);
	srv->fd = sv[0];
	return srv->pid > 0;
}

/* frame_send writes one request frame (JSON text, payload 0 of len bytes). */
static bool
frame_send(int fd, const char *text, const char *p0, size_t len)
{
	SbFrameWriter w;
	SbFramePart j = {text, strlen(text)}, a = {p0 ? p0 : "", p0 ? len : 0}, b = {"", 0};

	sb_frame_writer_init(&w, j, a, b);
	return sb_frame_write(&w, fd) == 1;
}

/* frame_call sends a request frame and reads the answer into *r (parts malloc'd). */
static int
frame_call(int fd, const char *text, const char *p0, size_t len, SbFrameReader *r)
{
	sb_frame_reader_init(r, result_max, NULL, NULL);
	if (!frame_send(fd, text, p0, len))
		return SB_FRAME_ERROR;
	return sb_frame_read(r, fd);
}

static void
frame_free(SbFrameReader *r)
{
	for (int i = 0; i < 3; i++)
		free(r->part[i]), r->part[i] = NULL;
}

/*
 * server_call sends a command request in a frame and decodes the framed
 * result, its output taken from the payloads (NUL-terminated copies).
 */
static bool
server_call_fd(int fd, const SbExecRequest *req, SbExecResult *res)
{
	char	   *text = sb_request_encode(req);
	SbFrameReader *r = malloc(sizeof(SbFrameReader));
	char		err[256];
	bool		in_frame = false;
	bool		okay;

	okay = frame_call(fd, text, NULL, 0, r) == SB_FRAME_DONE &&
		sb_result_decode_ex(r->part[0], r->len[0], res, &in_frame, err, sizeof(err)) && in_frame;
	if (okay)
	{
		res->stdout_data = sb_strndup(r->part[1], r->len[1]);
		res->stdout_len = r->len[1];
		res->stderr_data = sb_strndup(r->part[2], r->len[2]);
		res->stderr_len = r->len[2];
	}
	else
		printf("# serve call failed\n");
	frame_free(r);
	free(r);
	sb_free(text);
	return okay;
}

/*
 * file_call sends file operation op of *fr in a frame (with content, if
 * given, as payload 0) and decodes the framed result; *in_frame (when not
 * NULL) says whether its data is payload 0, in r->part[1].
 */
static bool
file_call(int fd, SbFileRequest *fr, SbFileOp op, const char *content, size_t len,
		  SbFileResult *res, SbFrameReader *r, bool *in_frame)
{
	char	   *text;
	char		err[256];
	bool		framed = false;
	bool		okay;

	fr->op = op;
	fr->content_in_frame = content != NULL;
	text = sb_file_request_encode(fr);
	okay = (content == NULL || (strstr(text, "\"content_in_frame\":true") != NULL &&
								strstr(text, "\"data\"") == NULL &&
								strstr(text, "\"content\"") == NULL)) &&
		frame_call(fd, text, content, len, r) == SB_FRAME_DONE &&
		sb_file_result_decode_ex(r->part[0], r->len[0], op, res, &framed, err, sizeof(err));
	if (in_frame)
		*in_frame = framed;
	sb_free(text);
	return okay;
}

/* file_done frees what file_call made. */
static void
file_done(SbFileResult *res, SbFrameReader *r)
{
	sb_file_result_clear(res);
	frame_free(r);
}

static bool
server_call(Server *srv, const SbExecRequest *req, SbExecResult *res)
{
	return server_call_fd(srv->fd, req, res);
}

/* server_stop closes our end of the socket and returns the executor's exit status. */
static int
server_stop(Server *srv)
{
	int			status = -1;

	close(srv->fd);
	waitpid(srv->pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* server_raw starts a server, sends it raw bytes and returns its exit status. */
static int
server_raw(const char *bytes, size_t len)
{
	Server		srv;

	if (!server_start(&srv))
		return -1;
	if (write(srv.fd, bytes, len) != (ssize_t) len)
		return -1;
	shutdown(srv.fd, SHUT_WR);
	return server_stop(&srv);
}

static void
test_serve(void)
{
	Server		srv;
	SbExecRequest req;
	SbExecResult r;
	int			answered = 0;
	bool		started = server_start(&srv);

	ok(started, "serve: the executor starts in serve mode");
	if (!started)
		return;
	req = request("cd /; export ROUND=1; echo one", NULL);
	ok(server_call(&srv, &req, &r) && r.status == SB_STATUS_SUCCEEDED &&
	   strcmp(r.stdout_data, "one\n") == 0 && strcmp(r.cwd, "/") == 0,
	   "serve: answers a request frame over a socketpair with a result frame");
	free_result(&r);
	json_decref(req.env);
	req = request("echo \"[$ROUND]\" $PWD; exit 4", NULL);
	ok(server_call(&srv, &req, &r) && r.exit_code == 4 && strcmp(r.stdout_data, "[] /tmp\n") == 0,
	   "serve: the next request starts from its own state, not the last command's");
	free_result(&r);
	json_decref(req.env);
	req = request("printf 'ok\\377\\000end'; printf 'e\\376' >&2", NULL);
	ok(server_call(&srv, &req, &r) && r.stdout_len == 7 &&
	   memcmp(r.stdout_data, "ok\377\000end", 7) == 0 && r.stderr_len == 2 &&
	   memcmp(r.stderr_data, "e\376", 2) == 0 && !r.stdout_repaired,
	   "serve: stdout and stderr are the payloads, raw bytes as written (the host repairs)");
	free_result(&r);
	json_decref(req.env);
	req = request("head -c 5000 /dev/zero | tr '\\0' x", NULL);
	req.max_output_bytes = 1000;
	ok(server_call(&srv, &req, &r) && r.stdout_len == 1000 && r.stdout_truncated,
	   "serve: the output payload is capped at max_output_bytes, with the flag");
	free_result(&r);
	json_decref(req.env);
	req = request("echo x", NULL);
	for (int i = 0; i < 50; i++)
	{
		req.command = "echo $((6 * 7))";
		if (server_call(&srv, &req, &r) && strcmp(r.stdout_data, "42\n") == 0)
			answered++;
		free_result(&r);
	}
	is_int(answered, 50, "serve: answers many requests in a row");
	{
		/*
		 * Outside a sandbox (not PID 1) serve must leave the host's /dev/shm
		 * alone: PostgreSQL keeps its dynamic shared memory there.
		 */
		char		marker[64];
		int			fd;

		snprintf(marker, sizeof(marker), "/dev/shm/sb-unit-serve-%d", (int) getpid());
		fd = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		req.command = "true";
		ok(fd >= 0 && server_call(&srv, &req, &r) && access(marker, F_OK) == 0,
		   "serve: outside a sandbox it leaves the host's /dev/shm alone");
		free_result(&r);
		if (fd >= 0)
			close(fd);
		unlink(marker);
	}
	json_decref(req.env);
	{
		/* File contents travel as payload 0 both ways, NULs and all. */
		char		dir[] = "/tmp/sb_unit_serve.XXXXXX";
		SbFileRequest fr = {0};
		SbFileResult fres;
		SbFrameReader *fr_r = malloc(sizeof(SbFrameReader));
		bool		in_frame = false;
		static const char bytes[] = "a\0b\377c";

		if (mkdtemp(dir) == NULL)
			return;
		fr.cwd = dir;
		fr.path = "up.bin";
		fr.max_bytes = 1 << 20;
		ok(file_call(srv.fd, &fr, SB_FILE_UPLOAD, bytes, 6, &fres, fr_r, NULL) &&
		   fres.status == SB_STATUS_SUCCEEDED && fres.count == 6,
		   "serve: an upload takes its bytes from payload 0");
		file_done(&fres, fr_r);
		ok(file_call(srv.fd, &fr, SB_FILE_DOWNLOAD, NULL, 0, &fres, fr_r, &in_frame) &&
		   in_frame && fres.data == NULL && fr_r->len[1] == 6 &&
		   memcmp(fr_r->part[1], bytes, 6) == 0 && strstr(fr_r->part[0], "\"data\"") == NULL,
		   "serve: a download's bytes come back as payload 0, not base64");
		file_done(&fres, fr_r);
		fr.path = "w.txt";
		ok(file_call(srv.fd, &fr, SB_FILE_WRITE, "hello\n", 6, &fres, fr_r, NULL) &&
		   fres.status == SB_STATUS_SUCCEEDED && fres.count == 6,
		   "serve: a write takes its content from payload 0");
		file_done(&fres, fr_r);
		ok(file_call(srv.fd, &fr, SB_FILE_READ, NULL, 0, &fres, fr_r, &in_frame) &&
		   in_frame && strcmp(fr_r->part[1], "hello\n") == 0,
		   "serve: a read's content comes back as payload 0");
		file_done(&fres, fr_r);
		free(fr_r);
		{
			char	   *cmd;

			if (asprintf(&cmd, "rm -rf %s", dir) > 0)
			{
				if (system(cmd) != 0)
					printf("# cannot remove %s\n", dir);
				free(cmd);
			}
		}
	}
	is_int(server_stop(&srv), 0, "serve: exits 0 at the end of its input");

	is_int(server_raw("12x\n{}", 6), 2, "serve: a malformed frame stops it with status 2");
	is_int(server_raw("SBF 100 0 0\n{\"version\":1}", 26), 2,
		   "serve: a frame cut short stops it with status 2");
	is_int(server_raw("SBF 2 0 1\n{}x", 13), 2, "serve: a request with a payload 1 is refused");
	is_int(server_raw("SBF 2 0 0\n{}SBF 2 0 0\n{}", 24), 2,
		   "serve: bytes sent after a request (not one at a time) stop it with status 2");
	if (server_start(&srv))
	{
		SbFrameReader *fr_r = malloc(sizeof(SbFrameReader));

		ok(frame_call(srv.fd, "{\"version\":1}", NULL, 0, fr_r) == SB_FRAME_DONE &&
		   strstr(fr_r->part[0], "\"error\"") != NULL,
		   "serve: a request it cannot decode gets an error result");
		frame_free(fr_r);
		free(fr_r);
		is_int(server_stop(&srv), 0, "serve: and it goes on serving");
	}
}

/* A listening executor: its pid and the socket's path. */
typedef struct Listener
{
	pid_t		pid;
	char		path[108];
} Listener;

/*
 * listener_start makes a listening socket and runs `executor serve --listen
 * 3` on it, in a bwrap sandbox of its own as PID 1 (as the local backend
 * runs it), or directly.
 */
static bool
listener_start(Listener *l, bool sandboxed)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(l->path, sizeof(l->path), "/tmp/sb_unit_listen.%d", (int) getpid());
	unlink(l->path);
	strcpy(sa.sun_path, l->path);
	if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(fd, 4) != 0)
		return false;
	l->pid = fork();
	if (l->pid == 0)
	{
		if (fd == 3)
			fcntl(fd, F_SETFD, 0);
		else
			dup2(fd, 3);		/* dup2 clears close-on-exec */
		if (sandboxed)
			execlp("bwrap", "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc",
				   "--unshare-net", "--die-with-parent", "--as-pid-1", "--ro-bind", "/", "/",
				   "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp",
				   /* The tmpfs hides a tree cloned under /tmp (CI): bind the executor in. */
				   "--ro-bind", executor, "/tmp/sb-executor",
				   "--", "/tmp/sb-executor", "serve", "--listen", "3", (char *) NULL);
		else
			execl(executor, executor, "serve", "--listen", "3", (char *) NULL);
		_exit(127);
	}
	close(fd);
	return l->pid > 0;
}

/* listener_connect opens a connection to the listening executor. */
static int
listener_connect(Listener *l)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, l->path);
	if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
	{
		close(fd);
		return -1;
	}
	return fd;
}

/* listener_stop kills the listening executor (it serves until killed). */
static void
listener_stop(Listener *l)
{
	kill(l->pid, SIGKILL);
	waitpid(l->pid, NULL, 0);
	unlink(l->path);
}

/* listener_run connects, runs one command, closes; returns its stdout (malloc'd) or NULL. */
static char *
listener_run(Listener *l, const char *command)
{
	SbExecRequest req = request(command, NULL);
	SbExecResult r;
	int			fd = listener_connect(l);
	char	   *out = NULL;

	if (fd >= 0 && server_call_fd(fd, &req, &r))
	{
		out = strdup(r.stdout_data);
		free_result(&r);
	}
	if (fd >= 0)
		close(fd);
	json_decref(req.env);
	return out;
}

#define COUNT_SLEEPS "n=0; for c in /proc/[0-9]*/comm; do read -r x < $c && [ \"$x\" = sleep ] && n=$((n+1)); done; echo $n"

static void
test_listen(void)
{
	Listener	l;
	char	   *out;

	if (!listener_start(&l, false))
	{
		ok(false, "listen: the executor starts with --listen");
		return;
	}
	out = listener_run(&l, "echo first");
	is_str(out, "first\n", "listen: answers a first connection");
	free(out);
	out = listener_run(&l, "echo second");
	is_str(out, "second\n", "listen: and a second connection after it");
	free(out);
	listener_stop(&l);

	/* As the local backend runs it: in a sandbox, as its PID 1. */
	if (!listener_start(&l, true))
	{
		ok(false, "listen: the executor starts with --listen in a sandbox");
		return;
	}
	out = listener_run(&l, "echo $$ > /dev/null; echo data > /dev/shm/left; ls /dev/shm");
	is_str(out, "left\n", "listen (sandboxed): a command writes to /dev/shm");
	free(out);
	out = listener_run(&l, "ls -A /dev/shm | wc -l");
	is_str(out, "0\n", "listen (sandboxed): /dev/shm is emptied before the next request");
	free(out);
	out = listener_run(&l, "setsid sleep 100 > /dev/null 2>&1 < /dev/null & echo left");
	is_str(out, "left\n", "listen (sandboxed): a command leaves a setsid daemon behind");
	free(out);
	out = listener_run(&l, COUNT_SLEEPS);
	is_str(out, "0\n", "listen (sandboxed): it is gone before the next request");
	free(out);
	{
		/* Hang up while `sleep 100` (and a setsid one it left) run. */
		SbExecRequest req = request("setsid sleep 100 > /dev/null 2>&1 < /dev/null & "
									"sleep 100; echo not-killed", NULL);
		char	   *text = sb_request_encode(&req);
		int			fd = listener_connect(&l);
		struct timeval t0, t1;
		bool		sent = fd >= 0 && frame_send(fd, text, NULL, 0);
		char		c;
		double		ms;

		usleep(300 * 1000);
		gettimeofday(&t0, NULL);
		if (fd >= 0)
			close(fd);
		out = listener_run(&l, COUNT_SLEEPS);
		gettimeofday(&t1, NULL);
		ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_usec - t0.tv_usec) / 1000.0;
		ok(sent, "listen (sandboxed): a request for sleep 100 is sent");
		is_str(out, "0\n", "listen (sandboxed): a hang-up kills the command and what it left; "
			   "the next connection is answered (%.0f ms)", ms);
		ok(ms < 5000, "listen (sandboxed): at once, not after the command's 100 s");
		free(out);
		sb_free(text);
		/* A connection that hangs up unanswered gets no result. */
		fd = listener_connect(&l);
		text = sb_request_encode(&req);
		sent = fd >= 0 && frame_send(fd, text, NULL, 0);
		usleep(200 * 1000);
		shutdown(fd, SHUT_WR);
		ok(sent && read(fd, &c, 1) == 0,
		   "listen (sandboxed): a half-closed connection's command is killed, nothing answered");
		if (fd >= 0)
			close(fd);
		sb_free(text);
		json_decref(req.env);
	}
	out = listener_run(&l, "echo still-serving");
	is_str(out, "still-serving\n", "listen (sandboxed): it goes on serving");
	free(out);
	listener_stop(&l);
}

int
main(int argc, char **argv)
{
	executor = argc > 1 ? argv[1] : "../../cloudrun-sandbox-executor-asan";
	test_utf8();
	test_buf();
	test_names();
	test_protocol();
	test_executor();
	test_serve();
	test_listen();
	return tap_done();
}
