/*
 * stdin.c
 *		A call's stdin and its own working directory (issue 14): the
 *		arguments of exec, submit and start_background, their limits
 *		(cloudrun_sandbox.max_stdin_bytes), and write_background_stdin().
 *
 * stdin travels with the request: as the request frame's raw payload 0 on
 * the local backend, in base64 inside the request document on Cloud Run
 * (the one object the executor reads).  A queued command's stdin waits in
 * its row (sandbox.executions.stdin, counted in its bytes) until the worker
 * runs it, and is cleared when the row is finished.
 */
#include "driver.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

int			sb_max_stdin_bytes = 16 * 1024 * 1024;

/* sb_stdin_init defines this module's settings; called from _PG_init. */
void
sb_stdin_init(void)
{
	/* At most 32 MB: in base64 it still fits the Cloud Run executor's 64 MB request. */
	DefineCustomIntVariable("cloudrun_sandbox.max_stdin_bytes",
							"Largest stdin of one call (exec, submit, start_background, "
							"write_background_stdin).",
							NULL, &sb_max_stdin_bytes, 16 * 1024 * 1024, 0, 32 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* sb_check_stdin_size rejects stdin larger than cloudrun_sandbox.max_stdin_bytes. */
void
sb_check_stdin_size(size_t len)
{
	if (len > (size_t) sb_max_stdin_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stdin is too large: %zu bytes", len),
				 errdetail("cloudrun_sandbox.max_stdin_bytes is %d.", sb_max_stdin_bytes),
				 errhint("Upload large input with sandbox.file_upload() and redirect it "
						 "(command < file), or ask a superuser to raise "
						 "cloudrun_sandbox.max_stdin_bytes.")));
}

/*
 * sb_call_input_args reads a call's stdin (text argument stdin_arg, bytea
 * argument bytes_arg: at most one of them) and its directory (cwd_arg, or
 * -1 for none) into *in, with their limits checked.
 */
void
sb_call_input_args(FunctionCallInfo fcinfo, int stdin_arg, int bytes_arg, int cwd_arg,
				   SbCallInput *in)
{
	memset(in, 0, sizeof(*in));
	if (!PG_ARGISNULL(stdin_arg) && !PG_ARGISNULL(bytes_arg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stdin and stdin_bytes cannot both be given"),
				 errhint("Pass text as stdin, or binary data as stdin_bytes.")));
	if (!PG_ARGISNULL(stdin_arg) || !PG_ARGISNULL(bytes_arg))
	{
		struct varlena *v = PG_GETARG_VARLENA_PP(PG_ARGISNULL(stdin_arg) ? bytes_arg : stdin_arg);

		in->has_stdin = true;
		in->stdin_data = VARDATA_ANY(v);
		in->stdin_len = VARSIZE_ANY_EXHDR(v);
		sb_check_stdin_size(in->stdin_len);
	}
	if (cwd_arg >= 0 && !PG_ARGISNULL(cwd_arg))
	{
		char	   *cwd = text_to_cstring(PG_GETARG_TEXT_PP(cwd_arg));

		if (cwd[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cwd must not be empty"),
					 errhint("Leave cwd NULL to run in the session's working directory.")));
		if (strlen(cwd) >= SB_MAX_CWD_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cwd is too long: %zu bytes", strlen(cwd)),
					 errdetail("A working directory has fewer than %d bytes.", SB_MAX_CWD_BYTES)));
		in->cwd = cwd;
	}
}

/* sb_call_input_payload is a call's stdin as the request frame's payload 0 (or NULL). */
const SbPayload *
sb_call_input_payload(const SbDriver *driver, const SbCallInput *in, SbPayload *p)
{
	if (in == NULL || !in->has_stdin || !driver->binary_frames)
		return NULL;
	p->data = (char *) in->stdin_data;
	p->len = in->stdin_len;
	return p;
}
