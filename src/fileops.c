/*
 * fileops.c
 *		sandbox.file_write() and the other file functions: file operations in
 *		a session, done natively by the executor inside the sandbox (see
 *		src/executor/fileops.c), never through a shell, on either backend.
 *
 * A call locks and creates its session like sandbox.exec(), sends one
 * request through the session's driver and turns the result into a value
 * or an error whose SQLSTATE says what went wrong.  File operations are not
 * commands: they write no sandbox.executions row and never change the
 * session's cwd or environment (their request ids come from the same
 * sequence, so request and result objects never collide).
 *
 * Payloads (file_upload's bytes, file_write's content, file_download's and
 * file_read's content) travel raw as the payloads of binary frames on a
 * driver with binary_frames (local), beside the JSON documents, and become
 * the returned bytea or text in place; else inside the documents, in base64
 * (long listings always do).  On the cloud backend they travel through the
 * object <prefix>/sessions/<s>/transfer/<id>: written here before an
 * upload, or by the executor for a large result; this module deletes it
 * once read.  Either way cloudrun_sandbox.max_transfer_bytes bounds them.
 */
#include "driver.h"
#include "gcloud.h"
#include "worker/reaper.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "common/sbutil.h"

int			sb_max_transfer_bytes = 100 * 1024 * 1024;

PG_FUNCTION_INFO_V1(sandbox_file_write);
PG_FUNCTION_INFO_V1(sandbox_file_read);
PG_FUNCTION_INFO_V1(sandbox_file_exists);
PG_FUNCTION_INFO_V1(sandbox_file_delete);
PG_FUNCTION_INFO_V1(sandbox_file_list);
PG_FUNCTION_INFO_V1(sandbox_file_replace);
PG_FUNCTION_INFO_V1(sandbox_file_search);
PG_FUNCTION_INFO_V1(sandbox_file_find);
PG_FUNCTION_INFO_V1(sandbox_file_upload);
PG_FUNCTION_INFO_V1(sandbox_file_download);

/* sb_fileops_init defines this module's settings; called from _PG_init. */
void
sb_fileops_init(void)
{
	DefineCustomIntVariable("cloudrun_sandbox.max_transfer_bytes",
							"Largest payload of a file operation: bytes uploaded, downloaded, "
							"written or read, or the size of a listing.",
							NULL, &sb_max_transfer_bytes, 100 * 1024 * 1024, 1024,
							512 * 1024 * 1024, PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* arg_text returns a non-null text argument as a C string, or raises an error. */
static char *
arg_text(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* arg_bool returns a boolean argument, NULL counting as false. */
static bool
arg_bool(FunctionCallInfo fcinfo, int n)
{
	return !PG_ARGISNULL(n) && PG_GETARG_BOOL(n);
}

/* request_init starts a request of one operation on a path argument. */
static void
request_init(SbFileRequest *req, SbFileOp op, FunctionCallInfo fcinfo)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	req->path = arg_text(fcinfo, 0, "path");
}

/* check_size raises too_large for a payload over the transfer limit. */
static void
check_size(size_t len, const char *path)
{
	if (len > (size_t) sb_max_transfer_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%zu bytes for \"%s\" are more than cloudrun_sandbox.max_transfer_bytes "
						"(%d bytes)", len, path, sb_max_transfer_bytes),
				 errhint("Ask a superuser to raise cloudrun_sandbox.max_transfer_bytes.")));
}

/* raise_failure turns an error result into an ERROR with a fitting SQLSTATE. */
static void
raise_failure(const SbFileRequest *req, const SbFileResult *res, int64 quota_kb)
{
	int			code;
	const char *hint = NULL;

	switch (res->code)
	{
		case SB_FERR_DISK_FULL:
			ereport(ERROR,
					(errcode(ERRCODE_DISK_FULL),
					 errmsg("%s", res->error),
					 quota_kb > 0 ?
					 errdetail("The session's disk quota of " INT64_FORMAT " kB is full; nothing was "
							   "written.", quota_kb) : 0,
					 errhint("Delete files of the session (sandbox.file_delete() or rm with "
							 "sandbox.exec()), or ask a superuser to raise "
							 "cloudrun_sandbox.local_disk_quota for new sessions.")));
			break;
		case SB_FERR_NOT_FOUND:
			code = ERRCODE_UNDEFINED_FILE;
			hint = "Relative paths start at the session's working directory.";
			break;
		case SB_FERR_IS_DIRECTORY:
			code = ERRCODE_WRONG_OBJECT_TYPE;
			if (req->op == SB_FILE_DELETE)
				hint = "Delete what it contains first, or run rm -r with sandbox.exec().";
			else if (sb_path_names_directory(req->path))
				hint = "Give the path of a file: without the trailing \"/\".";
			else
				hint = "Use sandbox.file_list() to see what a directory holds.";
			break;
		case SB_FERR_NOT_A_DIRECTORY:
			code = ERRCODE_WRONG_OBJECT_TYPE;
			break;
		case SB_FERR_OUTSIDE_SANDBOX:
			code = ERRCODE_INSUFFICIENT_PRIVILEGE;
			hint = "File operations stay inside /workspace and /tmp; relative paths start at "
				"the session's working directory.";
			break;
		case SB_FERR_INVALID_REGEX:
			code = ERRCODE_INVALID_REGULAR_EXPRESSION;
			hint = "The pattern is a POSIX extended regular expression.";
			break;
		case SB_FERR_TOO_LARGE:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			if (req->op == SB_FILE_READ)
				hint = "Read a range of lines with start_line and end_line, or ask a superuser "
					"to raise cloudrun_sandbox.max_transfer_bytes.";
			else if (req->op == SB_FILE_LIST || req->op == SB_FILE_FIND)
				hint = "List a smaller directory, or ask a superuser to raise "
					"cloudrun_sandbox.max_transfer_bytes.";
			else
				hint = "Ask a superuser to raise cloudrun_sandbox.max_transfer_bytes.";
			break;
		case SB_FERR_IO_ERROR:
			code = ERRCODE_IO_ERROR;
			break;
		case SB_FERR_INVALID_ARGUMENT:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		default:
			/* The sandbox itself failed (storage, snapshot, state). */
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("sandbox.%s failed in the sandbox", sb_file_op_name(req->op)),
					 errdetail("%s", res->error)));
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", res->error),
			 hint ? errhint("%s", hint) : 0));
}

/* The entries of a listing or a search may take this many times max_transfer_bytes in memory. */
#define ITEMS_MEMORY_FACTOR 2

/*
 * items_budget bounds (on) the memory the decoded entries of a file_list,
 * file_search or file_find result may take, or lifts the bound (!on) and
 * raises 54000 if the entries passed it: a result within max_transfer_bytes of
 * many short entries would otherwise take many times its size.
 */
static void
items_budget(const SbFileRequest *req, bool on)
{
	if (req->op != SB_FILE_LIST && req->op != SB_FILE_SEARCH && req->op != SB_FILE_FIND)
		return;
	if (sb_alloc_limit(on ? (size_t) ITEMS_MEMORY_FACTOR * sb_max_transfer_bytes : 0) && !on)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the result of sandbox.%s has too many entries to hold in memory",
						sb_file_op_name(req->op)),
				 errdetail("Its entries take more than %d times cloudrun_sandbox.max_transfer_bytes "
						   "(%d bytes).", ITEMS_MEMORY_FACTOR, sb_max_transfer_bytes),
				 errhint(req->op == SB_FILE_SEARCH ?
						 "Search a smaller file or with a narrower pattern, or ask a superuser to "
						 "raise cloudrun_sandbox.max_transfer_bytes." :
						 "List a smaller directory, or ask a superuser to raise "
						 "cloudrun_sandbox.max_transfer_bytes.")));
}

/*
 * fetch_payload reads a result's payload from its transfer object (which
 * must be one of the session's) and deletes the object.
 */
static void
fetch_payload(SbGcsConfig *cfg, const char *session, const SbFileRequest *req,
			  SbFileResult *res)
{
	const char *folder = sb_gc_object(session, "transfer/");
	SbError		err;
	char	   *data;
	size_t		len;
	char		errbuf[256];
	bool		ok = true;

	if (strncmp(res->transfer, folder, strlen(folder)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("Its payload object %s is outside the session.", res->transfer)));
	if (sb_gcs_download(cfg, res->transfer, (size_t) req->max_bytes, &data, &len, NULL,
						&err) != 0)
		sb_gc_raise(&err, "could not read the file operation's result", SB_GC_NOT_FOUND_OTHER);
	(void) sb_gcs_delete(cfg, res->transfer, SB_GCS_ANY_GENERATION, &err);
	if (req->op == SB_FILE_LIST || req->op == SB_FILE_SEARCH || req->op == SB_FILE_FIND)
	{
		items_budget(req, true);
		ok = sb_file_items_decode(data, len, req->op, &res->items, errbuf, sizeof(errbuf));
		items_budget(req, false);
	}
	else
	{
		res->data = palloc(len + 1);
		memcpy(res->data, data, len);
		res->data_len = len;
		if ((long long) len != res->count)
		{
			ok = false;
			snprintf(errbuf, sizeof(errbuf), "the payload object has %zu bytes, not %lld",
					 len, res->count);
		}
	}
	free(data);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("%s", errbuf)));
}

/*
 * take_payload makes payload 0 of a result frame the result's data when its
 * document says it is there (the sandbox is not trusted: a payload where
 * none belongs, or one over the transfer limit, is a malformed result).
 */
static void
take_payload(const SbFileRequest *req, SbFileResult *res, bool in_frame, SbPayload *payloads,
			 int npayloads)
{
	const char *why = NULL;

	if (in_frame && (npayloads < 1 || (req->op != SB_FILE_READ && req->op != SB_FILE_DOWNLOAD)))
		why = "The result says its data is in the frame, which has none for this operation.";
	else if (in_frame && payloads[0].len > (size_t) req->max_bytes)
		why = "The result frame's data is larger than cloudrun_sandbox.max_transfer_bytes.";
	else if (!in_frame)
	{
		for (int i = 0; i < npayloads; i++)
			if (payloads[i].len > 0)
				why = "The result frame has data its document does not expect.";
	}
	else if (npayloads > 1 && payloads[1].len > 0)
		why = "The result frame of a file operation has a second payload.";
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the sandbox returned a malformed result"),
				 errdetail("%s", why)));
	if (in_frame)
	{
		res->data = payloads[0].data;
		res->data_len = payloads[0].len;
		res->data_in_payload = true;
	}
}

/*
 * run_file_op runs a file operation in the session named by argument
 * session_arg, like sandbox.exec() runs a command, and returns its
 * successful result (with the payload in data or items), or raises the
 * error it reports.
 */
static void
run_file_op(FunctionCallInfo fcinfo, int session_arg, SbFileRequest *req, SbFileResult *res)
{
	char	   *name = arg_text(fcinfo, session_arg, "session");
	char	   *key;
	SbSession  *session;
	const SbDriver *driver;
	SbState		state;
	bool		cloud;
	SbGcsConfig cfg;
	SbError		err;
	char	   *request;
	char	   *text;
	size_t		len;
	char		errbuf[512];
	TimestampTz deadline;
	bool		decoded;
	bool		in_frame = false;
	SbPayload	upload;
	SbPayload	payloads[2];
	int			npayloads = 0;

	sb_require_utf8();

	/* Lock the session (creating it on first use): one call at a time. */
	session = sb_session_lock(name, true, (SbBackend) sb_default_backend, false);
	key = session->key;
	driver = sb_driver_for(session->backend);
	driver->prepare_session(key, session->created);
	cloud = driver->executor_writes_state;

	/* The cwd paths start from; on the cloud the executor reads state.json. */
	req->cwd = SB_WORKSPACE;
	if (!cloud && !session->created && driver->load_state(key, &state))
		req->cwd = state.cwd;
	req->id = sb_execution_next_id();
	req->max_bytes = sb_max_transfer_bytes;
	req->timeout_ms = sb_timeout_ms(NULL);
	if (cloud)
	{
		req->session = key;
		req->prefix = sb_gc_prefix();
		sb_gc_gcs(&cfg);
	}
	if (req->op == SB_FILE_UPLOAD && cloud)
	{
		char	   *object = sb_gc_object(key, psprintf("transfer/%lld", req->id));

		if (sb_gcs_upload(&cfg, object, req->data, req->data_len, 0, NULL, &err) != 0)
			sb_gc_raise(&err, "could not upload the file's bytes", SB_GC_NOT_FOUND_BUCKET);
		req->transfer = object;
	}
	/* A write's or an upload's bytes travel beside the request, not in it. */
	req->content_in_frame = driver->binary_frames &&
		(req->op == SB_FILE_WRITE || req->op == SB_FILE_UPLOAD);
	upload.data = unconstify(char *, req->data ? req->data : "");
	upload.len = req->data_len;
	request = sb_file_request_encode(req);
	if (request == NULL)
		elog(ERROR, "could not encode the sandbox request");
	/* On the cloud a change writes state.json even if this transaction rolls back. */
	if (cloud && !session->created)
		sb_reaper_if_change_aborts(session);

	PG_TRY();
	{
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   req->timeout_ms + driver->slack_ms);
		text = sb_run_sync(driver, key, req->id, request,
						   req->content_in_frame ? &upload : NULL, deadline, &len, payloads,
						   &npayloads);
		pfree(request);
		items_budget(req, true);
		decoded = sb_file_result_decode_ex(text, len, req->op, res, &in_frame, errbuf,
										   sizeof(errbuf));
		items_budget(req, false);
		if (!decoded)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("the sandbox returned a malformed result"),
					 errdetail("%s", errbuf)));
		pfree(text);
		take_payload(req, res, in_frame, payloads, npayloads);
		if (res->transfer != NULL && res->status == SB_STATUS_SUCCEEDED)
		{
			if (!cloud)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("the sandbox returned a malformed result"),
						 errdetail("A local result names a payload object.")));
			fetch_payload(&cfg, key, req, res);
		}
	}
	PG_FINALLY();
	{
		(void) sb_alloc_limit(0);
		/* The upload's bytes are not needed any more, whatever happened. */
		if (req->transfer != NULL)
			(void) sb_gcs_delete(&cfg, req->transfer, SB_GCS_ANY_GENERATION, &err);
	}
	PG_END_TRY();

	/* A change on the cloud wrote a new state.json: keep the mirror in step. */
	if (cloud && res->state_generation > 0 && driver->load_state(key, &state))
	{
		state.last_execution = 0;	/* the mirror names commands only */
		sb_session_update(session, &state);
	}
	if (res->status != SB_STATUS_SUCCEEDED)
		raise_failure(req, res, driver->disk_quota_kb ? driver->disk_quota_kb(key) : 0);
}

Datum
sandbox_file_write(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;
	text	   *content;

	request_init(&req, SB_FILE_WRITE, fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("content must not be null")));
	content = PG_GETARG_TEXT_PP(1);
	req.data = VARDATA_ANY(content);
	req.data_len = VARSIZE_ANY_EXHDR(content);
	req.append = arg_bool(fcinfo, 2);
	req.leading_newline = arg_bool(fcinfo, 3);
	req.trailing_newline = arg_bool(fcinfo, 4);
	check_size(req.data_len + req.leading_newline + req.trailing_newline, req.path);
	run_file_op(fcinfo, 5, &req, &res);
	PG_RETURN_INT64(res.count);
}

/* line_arg reads an optional line number argument (0 = not given). */
static int64
line_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	int32		line;

	if (PG_ARGISNULL(n))
		return 0;
	line = PG_GETARG_INT32(n);
	if (line < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be 1 or more", name),
				 errhint("Lines are numbered from 1; pass NULL for the start or the end of "
						 "the file.")));
	return line;
}

Datum
sandbox_file_read(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;
	char	   *repaired;
	size_t		n;
	bool		changed;

	request_init(&req, SB_FILE_READ, fcinfo);
	req.start_line = line_arg(fcinfo, 1, "start_line");
	req.end_line = line_arg(fcinfo, 2, "end_line");
	if (req.start_line > 0 && req.end_line > 0 && req.start_line > req.end_line)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_line (%lld) must not be after end_line (%lld)",
						req.start_line, req.end_line)));
	run_file_op(fcinfo, 3, &req, &res);
	/* Text cannot hold invalid UTF-8 or NUL bytes: they become U+FFFD. */
	if (res.data_in_payload)
	{
		SbPayload	p = {res.data, res.data_len};

		PG_RETURN_TEXT_P(sb_payload_text(&p, false, &changed));
	}
	repaired = sb_utf8_repair(res.data ? res.data : "", res.data_len, false, &n, &changed);
	if (repaired == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(repaired, n));
}

Datum
sandbox_file_exists(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;

	request_init(&req, SB_FILE_EXISTS, fcinfo);
	run_file_op(fcinfo, 1, &req, &res);
	PG_RETURN_BOOL(res.flag);
}

Datum
sandbox_file_delete(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;

	request_init(&req, SB_FILE_DELETE, fcinfo);
	run_file_op(fcinfo, 1, &req, &res);
	PG_RETURN_BOOL(res.flag);
}

Datum
sandbox_file_list(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SbFileRequest req;
	SbFileResult res;
	size_t		i;
	json_t	   *item;

	request_init(&req, SB_FILE_LIST, fcinfo);
	req.recursive = arg_bool(fcinfo, 1);
	run_file_op(fcinfo, 2, &req, &res);
	InitMaterializedSRF(fcinfo, 0);
	json_array_foreach(res.items, i, item)
	{
		Datum		values[5];
		bool		nulls[5] = {0};
		double		mtime = json_number_value(json_object_get(item, "mtime"));

		values[0] = CStringGetTextDatum(json_string_value(json_object_get(item, "path")));
		values[1] = CStringGetTextDatum(json_string_value(json_object_get(item, "type")));
		values[2] = Int64GetDatum(json_integer_value(json_object_get(item, "size")));
		values[3] = Int32GetDatum((int32) json_integer_value(json_object_get(item, "mode")));
		values[4] = DirectFunctionCall1(float8_timestamptz, Float8GetDatum(mtime));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
sandbox_file_replace(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;

	request_init(&req, SB_FILE_REPLACE, fcinfo);
	req.old_str = arg_text(fcinfo, 1, "old_str");
	req.new_str = arg_text(fcinfo, 2, "new_str");
	if (req.old_str[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("old_str must not be empty")));
	run_file_op(fcinfo, 3, &req, &res);
	PG_RETURN_INT32((int32) Min(res.count, PG_INT32_MAX));
}

Datum
sandbox_file_search(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SbFileRequest req;
	SbFileResult res;
	size_t		i;
	json_t	   *item;

	request_init(&req, SB_FILE_SEARCH, fcinfo);
	req.pattern = arg_text(fcinfo, 1, "regex");
	run_file_op(fcinfo, 2, &req, &res);
	InitMaterializedSRF(fcinfo, 0);
	json_array_foreach(res.items, i, item)
	{
		Datum		values[2];
		bool		nulls[2] = {0};

		values[0] = Int32GetDatum((int32) json_integer_value(json_object_get(item, "line")));
		values[1] = CStringGetTextDatum(json_string_value(json_object_get(item, "text")));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
sandbox_file_find(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SbFileRequest req;
	SbFileResult res;
	size_t		i;
	json_t	   *item;

	request_init(&req, SB_FILE_FIND, fcinfo);
	req.pattern = arg_text(fcinfo, 1, "glob");
	if (req.pattern[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("glob must not be empty"),
				 errhint("Use '*' to find everything.")));
	run_file_op(fcinfo, 2, &req, &res);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	json_array_foreach(res.items, i, item)
	{
		Datum		value = CStringGetTextDatum(json_string_value(item));
		bool		null = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &null);
	}
	return (Datum) 0;
}

Datum
sandbox_file_upload(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;
	bytea	   *data;

	request_init(&req, SB_FILE_UPLOAD, fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be null")));
	data = PG_GETARG_BYTEA_PP(1);
	req.data = VARDATA_ANY(data);
	req.data_len = VARSIZE_ANY_EXHDR(data);
	check_size(req.data_len, req.path);
	run_file_op(fcinfo, 2, &req, &res);
	PG_RETURN_INT64(res.count);
}

Datum
sandbox_file_download(PG_FUNCTION_ARGS)
{
	SbFileRequest req;
	SbFileResult res;
	bytea	   *out;

	request_init(&req, SB_FILE_DOWNLOAD, fcinfo);
	run_file_op(fcinfo, 1, &req, &res);
	if (res.data_in_payload)
	{
		SbPayload	p = {res.data, res.data_len};

		PG_RETURN_BYTEA_P(sb_payload_bytea(&p));
	}
	out = palloc(VARHDRSZ + res.data_len);
	SET_VARSIZE(out, VARHDRSZ + res.data_len);
	if (res.data_len > 0)
		memcpy(VARDATA(out), res.data, res.data_len);
	PG_RETURN_BYTEA_P(out);
}
