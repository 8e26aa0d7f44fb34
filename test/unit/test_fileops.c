/*
 * test_fileops.c
 *		Tests of the file operations: their protocol documents, and the
 *		executor applying them.  The executor runs as a child process in
 *		local mode, one request on its standard input, outside any sandbox:
 *		CLOUDRUN_SANDBOX_WORKSPACE and CLOUDRUN_SANDBOX_TMP point /workspace
 *		and /tmp at directories of a scratch directory, next to an "outside"
 *		directory that must stay out of reach.  Given a GCS emulator's URL, it
 *		also runs file operations in cloud mode (`EXECUTOR cloud BUCKET
 *		OBJECT`), each in a fresh, empty workspace as a new container would
 *		have.  Built with AddressSanitizer; prints TAP.
 *
 * usage: test_fileops EXECUTOR SCRATCH_DIR [EMULATOR_URL]
 */
#define _GNU_SOURCE
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/gcs.h"
#include "common/protocol.h"
#include "common/sbutil.h"

#define BUCKET "sandbox-test"

static const char *executor;
static char scratch[1024];
static char ws[1100];			/* holds /workspace */
static char tmpdir[1100];		/* holds /tmp */
static char outside[1100];		/* must never be touched */
static const char *emulator;	/* GCS emulator's URL, or NULL */

/* host returns the real path of a file below a directory (a static buffer). */
static const char *
host(const char *dir, const char *rel)
{
	static char buf[4][2300];
	static int	n = 0;
	char	   *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s", dir, rel);
	return b;
}

/* put writes a file on the host side. */
static void
put(const char *path, const char *data, size_t len)
{
	int			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, data, len) != (ssize_t) len)
		printf("# cannot write %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* slurp reads a host file into a new buffer (NULL if missing). */
static char *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	SbBuf		b;
	char		chunk[4096];
	size_t		n;

	*len = 0;
	if (f == NULL)
		return NULL;
	sb_buf_init(&b, 0);
	sb_buf_append(&b, "", 0);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sb_buf_append(&b, chunk, n);
	fclose(f);
	*len = b.len;
	if (b.data == NULL)
		return sb_strdup("");
	return b.data;
}

/* run_text feeds a request document to the executor; returns its stdout (or NULL). */
static char *
run_text(const char *request, size_t *len, double *ms)
{
	char		path[] = "/tmp/sb_fileops_req.XXXXXX";
	int			fd = mkstemp(path);
	char	   *cmd;
	FILE	   *p;
	SbBuf		out;
	char		chunk[65536];
	size_t		n;
	int			status;
	struct timeval t0, t1;

	if (fd < 0 || write(fd, request, strlen(request)) < 0)
		return NULL;
	close(fd);
	if (asprintf(&cmd, "%s < %s 2>%s/executor.err", executor, path, scratch) < 0)
		return NULL;
	gettimeofday(&t0, NULL);
	p = popen(cmd, "r");
	sb_buf_init(&out, 0);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		sb_buf_append(&out, chunk, n);
	status = pclose(p);
	gettimeofday(&t1, NULL);
	if (ms)
		*ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_usec - t0.tv_usec) / 1000.0;
	unlink(path);
	free(cmd);
	if (status != 0 || out.len == 0)
	{
		char	   *err;
		size_t		elen;
		char		epath[1200];

		snprintf(epath, sizeof(epath), "%s/executor.err", scratch);
		err = slurp(epath, &elen);
		printf("# the executor exited with status %d; its stderr: %.2000s\n", status,
			   err ? err : "");
		sb_free(err);
		sb_buf_free(&out);
		return NULL;
	}
	*len = out.len;
	return out.data;
}

/* run applies a request with the executor and decodes the result. */
static bool
run(const SbFileRequest *req, SbFileResult *res)
{
	char	   *text = sb_file_request_encode(req);
	char	   *out;
	size_t		len;
	char		err[256];
	bool		okay;

	memset(res, 0, sizeof(*res));
	out = text ? run_text(text, &len, NULL) : NULL;
	sb_free(text);
	if (out == NULL)
		return false;
	okay = sb_file_result_decode(out, len, req->op, res, err, sizeof(err));
	if (!okay)
		printf("# undecodable result: %s: %.500s\n", err, out);
	sb_free(out);
	return okay;
}

/* request makes a request for op on path, from /workspace. */
static SbFileRequest
request(SbFileOp op, const char *path)
{
	SbFileRequest r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.path = path;
	r.cwd = "/workspace";
	r.max_bytes = 1 << 20;
	return r;
}

/* succeeds runs a request and says whether it succeeded (explaining if not). */
static bool
succeeds(const SbFileRequest *req, SbFileResult *res)
{
	if (!run(req, res))
		return false;
	if (res->status != SB_STATUS_SUCCEEDED)
		printf("#   %s failed: %s: %s\n", sb_file_op_name(req->op),
			   sb_file_error_name(res->code), res->error ? res->error : "");
	return res->status == SB_STATUS_SUCCEEDED;
}

/* fails_with runs a request and checks its error code and message. */
static bool
fails_with(const SbFileRequest *req, SbFileError code, const char *message)
{
	SbFileResult res;
	bool		good;

	if (!run(req, &res))
		return false;
	good = res.status == SB_STATUS_ERROR && res.code == code &&
		(message == NULL || (res.error && strcmp(res.error, message) == 0));
	if (!good)
		printf("#   got %s %s: %s\n#   expected %s: %s\n", sb_status_name(res.status),
			   sb_file_error_name(res.code), res.error ? res.error : "(none)",
			   sb_file_error_name(code), message ? message : "(any message)");
	sb_file_result_clear(&res);
	return good;
}

/* data_is says whether a result's data is exactly want. */
static bool
data_is(const SbFileResult *res, const char *want, size_t len)
{
	bool		good = res->data_len == len && memcmp(res->data ? res->data : "", want, len) == 0;

	if (!good)
		printf("#   got %zu bytes: '%.*s'\n#   expected %zu bytes: '%.*s'\n", res->data_len,
			   (int) res->data_len, res->data ? res->data : "", len, (int) len, want);
	return good;
}

/* items_text joins the items' paths (list, find) or "n:text" (search) with '|'. */
static char *
items_text(const SbFileResult *res)
{
	SbBuf		b;
	size_t		i;
	json_t	   *item;

	sb_buf_init(&b, 0);
	sb_buf_append(&b, "", 0);
	json_array_foreach(res->items, i, item)
	{
		char		num[32];
		const char *s;

		if (i > 0)
			sb_buf_append(&b, "|", 1);
		if (json_is_string(item))
			s = json_string_value(item);
		else if (json_object_get(item, "line"))
		{
			snprintf(num, sizeof(num), "%lld:",
					 (long long) json_integer_value(json_object_get(item, "line")));
			sb_buf_append(&b, num, strlen(num));
			s = json_string_value(json_object_get(item, "text"));
		}
		else
			s = json_string_value(json_object_get(item, "path"));
		sb_buf_append(&b, s, strlen(s));
	}
	return b.data ? b.data : sb_strdup("");
}

/* is_items checks items_text against want. */
static void
is_items(const SbFileResult *res, const char *want, const char *name)
{
	char	   *got = items_text(res);

	is_str(got, want, "%s", name);
	sb_free(got);
}

static void
test_protocol(void)
{
	SbFileRequest req = request(SB_FILE_UPLOAD, "a.bin");
	SbFileRequest got;
	SbFileResult res;
	SbFileResult back;
	json_t	   *holder;
	char		err[256];
	char	   *text;
	static const char bytes[] = "\0\x01\xff\xfe" "abc\n\"\\";

	for (size_t n = 0; n <= 7; n++)
	{
		req.data = bytes;
		req.data_len = n;
		text = sb_file_request_encode(&req);
		ok(text && sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == 1 &&
		   got.op == SB_FILE_UPLOAD && got.data_len == n && memcmp(got.data, bytes, n) == 0 &&
		   strcmp(got.path, "a.bin") == 0,
		   "protocol: an upload of %zu binary bytes round-trips through base64", n);
		sb_file_request_clear(&got, holder);
		sb_free(text);
	}

	req = request(SB_FILE_WRITE, "w.txt");
	req.data = "x\ny";
	req.data_len = 3;
	req.append = req.trailing_newline = true;
	text = sb_file_request_encode(&req);
	ok(sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == 1 &&
	   got.op == SB_FILE_WRITE && got.data_len == 3 && memcmp(got.data, "x\ny", 3) == 0 &&
	   got.append && got.trailing_newline && !got.leading_newline,
	   "protocol: a write request round-trips");
	sb_file_request_clear(&got, holder);
	sb_free(text);

	text = "{\"version\":1,\"op\":\"exec\",\"command\":\"true\"}";
	ok(sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == 0 && holder == NULL,
	   "protocol: an exec request is not a file operation");
	text = "{\"version\":1,\"op\":\"file_read\"";
	ok(sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == -1 &&
	   strstr(err, "not valid JSON") != NULL, "protocol: broken JSON is an error");
	sb_file_request_clear(&got, holder);
	text = "{\"version\":1,\"op\":\"file_upload\",\"path\":\"x\",\"data\":\"AA=\"}";
	ok(sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == -1,
	   "protocol: malformed base64 is an error");
	sb_file_request_clear(&got, holder);
	text = "{\"version\":1,\"op\":\"file_read\",\"path\":7}";
	ok(sb_file_request_decode(text, strlen(text), &got, &holder, err, sizeof(err)) == -1,
	   "protocol: a path that is not a string is an error");
	sb_file_request_clear(&got, holder);

	memset(&res, 0, sizeof(res));
	res.status = SB_STATUS_SUCCEEDED;
	res.data = sb_strndup("\xff\0z", 3);
	res.data_len = 3;
	res.count = 3;
	text = sb_file_result_encode(&res);
	ok(sb_file_result_decode(text, strlen(text), SB_FILE_DOWNLOAD, &back, err, sizeof(err)) &&
	   back.status == SB_STATUS_SUCCEEDED && back.data_len == 3 &&
	   memcmp(back.data, "\xff\0z", 3) == 0 && back.count == 3,
	   "protocol: a result's binary data round-trips");
	sb_file_result_clear(&back);
	sb_free(text);
	sb_file_result_clear(&res);

	text = "{\"status\":\"error\",\"error_code\":\"not_found\",\"error\":\"file \\\"/workspace/x\\\" does not exist\"}";
	ok(sb_file_result_decode(text, strlen(text), SB_FILE_READ, &back, err, sizeof(err)) &&
	   back.status == SB_STATUS_ERROR && back.code == SB_FERR_NOT_FOUND &&
	   strcmp(back.error, "file \"/workspace/x\" does not exist") == 0,
	   "protocol: an error result carries its code and message");
	sb_file_result_clear(&back);
	text = "{\"status\":\"error\",\"error_code\":\"on_fire\",\"error\":\"x\"}";
	ok(!sb_file_result_decode(text, strlen(text), SB_FILE_READ, &back, err, sizeof(err)),
	   "protocol: an unknown error code is rejected");
	text = "{\"status\":\"succeeded\",\"items\":[{\"path\":\"/workspace/a\",\"type\":\"file\",\"size\":-1,\"mode\":420,\"mtime\":1}]}";
	ok(!sb_file_result_decode(text, strlen(text), SB_FILE_LIST, &back, err, sizeof(err)),
	   "protocol: a listing with a negative size is rejected");
	text = "{\"status\":\"succeeded\",\"items\":[{\"line\":0,\"text\":\"x\"}]}";
	ok(!sb_file_result_decode(text, strlen(text), SB_FILE_SEARCH, &back, err, sizeof(err)),
	   "protocol: a match on line 0 is rejected");
	text = "{\"status\":\"succeeded\",\"items\":[\"/workspace/a\",3]}";
	ok(!sb_file_result_decode(text, strlen(text), SB_FILE_FIND, &back, err, sizeof(err)),
	   "protocol: a found path that is not a string is rejected");
	text = "{\"status\":\"succeeded\",\"data\":\"not base64!\"}";
	ok(!sb_file_result_decode(text, strlen(text), SB_FILE_DOWNLOAD, &back, err, sizeof(err)),
	   "protocol: result data that is not base64 is rejected");
	text = "{\"status\":\"succeeded\",\"transfer\":\"tap/sessions/s/transfer/9\",\"count\":5}";
	ok(sb_file_result_decode(text, strlen(text), SB_FILE_DOWNLOAD, &back, err, sizeof(err)) &&
	   back.transfer && strcmp(back.transfer, "tap/sessions/s/transfer/9") == 0 && back.data == NULL,
	   "protocol: a result may name a transfer object instead of carrying data");
	sb_file_result_clear(&back);
}

static void
test_write_read(void)
{
	SbFileRequest req;
	SbFileResult res;
	char	   *disk;
	size_t		len;

	req = request(SB_FILE_WRITE, "dir/sub/a.txt");
	req.data = "one\ntwo\nthree";
	req.data_len = strlen(req.data);
	ok(succeeds(&req, &res) && res.count == 13, "write: returns the bytes written");
	sb_file_result_clear(&res);
	disk = slurp(host(ws, "dir/sub/a.txt"), &len);
	ok(disk && len == 13 && memcmp(disk, "one\ntwo\nthree", 13) == 0,
	   "write: creates the parent directories and the file in the workspace");
	sb_free(disk);

	req = request(SB_FILE_WRITE, "a.txt");
	req.cwd = "/workspace/dir/sub";
	req.data = "four";
	req.data_len = 4;
	req.append = req.leading_newline = req.trailing_newline = true;
	ok(succeeds(&req, &res) && res.count == 6, "write: append with both newlines counts them");
	sb_file_result_clear(&res);

	req = request(SB_FILE_READ, "dir/sub/a.txt");
	ok(succeeds(&req, &res) && data_is(&res, "one\ntwo\nthree\nfour\n", 19),
	   "read: the whole file, relative paths taken from the request's cwd");
	sb_file_result_clear(&res);
	req.start_line = 2;
	req.end_line = 3;
	ok(succeeds(&req, &res) && data_is(&res, "two\nthree\n", 10), "read: lines 2 to 3");
	sb_file_result_clear(&res);
	req.start_line = 4;
	req.end_line = 0;
	ok(succeeds(&req, &res) && data_is(&res, "four\n", 5), "read: line 4 to the end");
	sb_file_result_clear(&res);
	req.start_line = 0;
	req.end_line = 1;
	ok(succeeds(&req, &res) && data_is(&res, "one\n", 4), "read: the start to line 1");
	sb_file_result_clear(&res);
	req.start_line = 9;
	req.end_line = 12;
	ok(succeeds(&req, &res) && data_is(&res, "", 0), "read: lines past the end are empty");
	sb_file_result_clear(&res);
	req.start_line = 3;
	req.end_line = 2;
	ok(fails_with(&req, SB_FERR_INVALID_ARGUMENT, "start_line 3 is after end_line 2"),
	   "read: start_line after end_line is invalid_argument");

	put(host(ws, "nonl.txt"), "a\nb", 3);
	req = request(SB_FILE_READ, "/workspace/./x/../nonl.txt");
	req.start_line = 2;
	ok(succeeds(&req, &res) && data_is(&res, "b", 1),
	   "read: a last line without a newline; . and .. are normalized");
	sb_file_result_clear(&res);

	req = request(SB_FILE_WRITE, "/tmp/t.txt");
	req.data = "in tmp";
	req.data_len = 6;
	ok(succeeds(&req, &res), "write: /tmp is allowed");
	sb_file_result_clear(&res);
	disk = slurp(host(tmpdir, "t.txt"), &len);
	ok(disk && len == 6, "write: /tmp maps to the sandbox's /tmp");
	sb_free(disk);

	req = request(SB_FILE_WRITE, "dir");
	req.data = "x";
	req.data_len = 1;
	ok(fails_with(&req, SB_FERR_IS_DIRECTORY, "\"/workspace/dir\" is a directory, not a file"),
	   "write: onto a directory is is_directory");
	req = request(SB_FILE_WRITE, "nonl.txt/inner");
	req.data = "x";
	req.data_len = 1;
	ok(fails_with(&req, SB_FERR_NOT_A_DIRECTORY, NULL), "write: below a file is not_a_directory");
	req = request(SB_FILE_READ, "missing.txt");
	ok(fails_with(&req, SB_FERR_NOT_FOUND, "file \"/workspace/missing.txt\" does not exist"),
	   "read: a missing file is not_found, naming the path");
	req = request(SB_FILE_READ, "dir");
	ok(fails_with(&req, SB_FERR_IS_DIRECTORY, "\"/workspace/dir\" is a directory, not a file"),
	   "read: a directory is is_directory");
	req = request(SB_FILE_READ, "");
	ok(fails_with(&req, SB_FERR_INVALID_ARGUMENT, "path must not be empty"),
	   "read: an empty path is invalid_argument");

	if (mkfifo(host(ws, "fifo"), 0644) == 0)
	{
		double		ms;
		char	   *text;
		size_t		n;

		req = request(SB_FILE_READ, "fifo");
		text = sb_file_request_encode(&req);
		sb_free(run_text(text, &n, &ms));
		sb_free(text);
		ok(fails_with(&req, SB_FERR_INVALID_ARGUMENT, "\"/workspace/fifo\" is not a regular file") &&
		   ms < 5000, "read: a FIFO is refused at once, not waited on");
	}
	else
		ok(0, "mkfifo: %s", strerror(errno));
}

static void
test_confinement(void)
{
	SbFileRequest req;
	SbFileResult res;
	char		target[2300];
	struct stat st;

	req = request(SB_FILE_READ, "../../etc/passwd");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, "path \"/etc/passwd\" is outside the sandbox"),
	   "confinement: ../.. out of /workspace is outside_sandbox");
	req = request(SB_FILE_READ, "/etc/passwd");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, "path \"/etc/passwd\" is outside the sandbox"),
	   "confinement: an absolute path elsewhere is outside_sandbox");
	req = request(SB_FILE_READ, "/workspacex/a");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL),
	   "confinement: a sibling whose name starts with workspace is outside_sandbox");
	req = request(SB_FILE_READ, "x");
	req.cwd = "/etc";
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, "path \"/etc/x\" is outside the sandbox"),
	   "confinement: a relative path from a cwd outside is outside_sandbox");

	put(host(outside, "secret"), "secret", 6);
	if (symlink(outside, host(ws, "out")) != 0 ||
		symlink("../outside/secret", host(ws, "rel-secret")) != 0 ||
		symlink(host(outside, "new-file"), host(ws, "dangling")) != 0 ||
		symlink("dir/sub/a.txt", host(ws, "inner-link")) != 0 ||
		symlink(host(ws, "loop2"), host(ws, "loop1")) != 0 ||
		symlink(host(ws, "loop1"), host(ws, "loop2")) != 0)
		printf("# symlink: %s\n", strerror(errno));
	req = request(SB_FILE_READ, "out/secret");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX,
				  "path \"/workspace/out/secret\" leads outside the sandbox through a symbolic link"),
	   "confinement: through a symbolic link to a directory outside");
	req = request(SB_FILE_DOWNLOAD, "rel-secret");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL),
	   "confinement: a relative symbolic link out is followed and refused");
	req = request(SB_FILE_WRITE, "dangling");
	req.data = "pwned";
	req.data_len = 5;
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL) && stat(host(outside, "new-file"), &st) != 0,
	   "confinement: writing through a dangling link to outside creates nothing there");
	req = request(SB_FILE_WRITE, "out/new-dir/f");
	req.data = "x";
	req.data_len = 1;
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL) && stat(host(outside, "new-dir"), &st) != 0,
	   "confinement: no directory is created outside either");
	req = request(SB_FILE_LIST, "out");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL), "confinement: listing through a link out is refused");
	req = request(SB_FILE_READ, "loop1");
	ok(fails_with(&req, SB_FERR_IO_ERROR, NULL), "confinement: a symbolic link loop is an error, not a hang");
	req = request(SB_FILE_READ, "inner-link");
	ok(succeeds(&req, &res) && data_is(&res, "one\ntwo\nthree\nfour\n", 19),
	   "confinement: a symbolic link inside the workspace is followed");
	sb_file_result_clear(&res);
	req = request(SB_FILE_DELETE, "out");
	ok(succeeds(&req, &res) && res.flag && stat(host(outside, "secret"), &st) == 0 &&
	   lstat(host(ws, "out"), &st) != 0,
	   "confinement: deleting a link to outside removes the link, not what it points to");
	sb_file_result_clear(&res);
	req = request(SB_FILE_DELETE, "/workspace");
	ok(fails_with(&req, SB_FERR_INVALID_ARGUMENT, "cannot delete \"/workspace\" itself"),
	   "confinement: /workspace itself cannot be deleted");
	req = request(SB_FILE_EXISTS, "/etc/passwd");
	ok(fails_with(&req, SB_FERR_OUTSIDE_SANDBOX, NULL), "confinement: exists answers nothing about outside");
	snprintf(target, sizeof(target), "%s", host(outside, "secret"));
	ok(stat(target, &st) == 0 && st.st_size == 6, "confinement: the outside file is untouched");
	unlink(host(ws, "loop1"));
	unlink(host(ws, "loop2"));
	unlink(host(ws, "rel-secret"));
	unlink(host(ws, "dangling"));
	unlink(host(ws, "inner-link"));
}

static void
test_exists_delete(void)
{
	SbFileRequest req;
	SbFileResult res;

	req = request(SB_FILE_EXISTS, "dir/sub/a.txt");
	ok(succeeds(&req, &res) && res.flag, "exists: a file");
	sb_file_result_clear(&res);
	req = request(SB_FILE_EXISTS, "dir");
	ok(succeeds(&req, &res) && res.flag, "exists: a directory");
	sb_file_result_clear(&res);
	req = request(SB_FILE_EXISTS, "nope");
	ok(succeeds(&req, &res) && !res.flag, "exists: a missing file is false");
	sb_file_result_clear(&res);
	req = request(SB_FILE_EXISTS, "nonl.txt/x");
	ok(succeeds(&req, &res) && !res.flag, "exists: below a file is false, not an error");
	sb_file_result_clear(&res);

	req = request(SB_FILE_DELETE, "dir/sub");
	ok(fails_with(&req, SB_FERR_IS_DIRECTORY, "directory \"/workspace/dir/sub\" is not empty"),
	   "delete: a non-empty directory is is_directory");
	req = request(SB_FILE_DELETE, "nonl.txt");
	ok(succeeds(&req, &res) && res.flag, "delete: a file returns true");
	sb_file_result_clear(&res);
	req = request(SB_FILE_DELETE, "nonl.txt");
	ok(succeeds(&req, &res) && !res.flag, "delete: a missing file returns false");
	sb_file_result_clear(&res);
	mkdir(host(ws, "empty"), 0755);
	req = request(SB_FILE_DELETE, "empty");
	ok(succeeds(&req, &res) && res.flag, "delete: an empty directory");
	sb_file_result_clear(&res);
}

static void
test_list_find_search_replace(void)
{
	static const char lines[] = "alpha\nbeta\n\xff\xfe gamma\nnul\0 gamma\nlast gamma";
	SbFileRequest req;
	SbFileResult res;
	char	   *disk;
	size_t		len;

	put(host(ws, "dir/b.c"), "int b;\n", 7);
	put(host(ws, "dir/sub/c.c"), "x", 1);
	put(host(ws, "dir/\xff.c"), "bad name", 8);
	if (symlink("sub", host(ws, "dir/link")) != 0)
		printf("# symlink: %s\n", strerror(errno));

	req = request(SB_FILE_LIST, "dir");
	ok(succeeds(&req, &res), "list: a directory");
	is_items(&res, "/workspace/dir/b.c|/workspace/dir/link|/workspace/dir/sub|/workspace/dir/\xef\xbf\xbd.c",
			 "list: entries by name, names that are not UTF-8 repaired");
	ok(res.items && json_array_size(res.items) == 4 &&
	   strcmp(json_string_value(json_object_get(json_array_get(res.items, 1), "type")), "symlink") == 0 &&
	   strcmp(json_string_value(json_object_get(json_array_get(res.items, 2), "type")), "directory") == 0 &&
	   json_integer_value(json_object_get(json_array_get(res.items, 0), "size")) == 7 &&
	   json_integer_value(json_object_get(json_array_get(res.items, 0), "mode")) == 0644,
	   "list: types, sizes and permission bits");
	sb_file_result_clear(&res);
	req.recursive = true;
	ok(succeeds(&req, &res), "list: recursive");
	is_items(&res, "/workspace/dir/b.c|/workspace/dir/link|/workspace/dir/sub|/workspace/dir/sub/a.txt|"
			 "/workspace/dir/sub/c.c|/workspace/dir/\xef\xbf\xbd.c",
			 "list: recursive descends into directories but not through links");
	sb_file_result_clear(&res);
	req = request(SB_FILE_LIST, "dir/b.c");
	ok(fails_with(&req, SB_FERR_NOT_A_DIRECTORY, "\"/workspace/dir/b.c\" is not a directory"),
	   "list: a file is not_a_directory");
	req = request(SB_FILE_LIST, "ghost");
	ok(fails_with(&req, SB_FERR_NOT_FOUND, "directory \"/workspace/ghost\" does not exist"),
	   "list: a missing directory is not_found");
	req = request(SB_FILE_LIST, "dir");
	req.recursive = true;
	req.max_bytes = 200;
	ok(fails_with(&req, SB_FERR_TOO_LARGE, NULL), "list: a listing over max_bytes is too_large");

	req = request(SB_FILE_FIND, "/workspace");
	req.pattern = "*.c";
	ok(succeeds(&req, &res), "find: by glob");
	is_items(&res, "/workspace/dir/b.c|/workspace/dir/sub/c.c|/workspace/dir/\xef\xbf\xbd.c",
			 "find: matches names anywhere below, in name order");
	sb_file_result_clear(&res);
	req.pattern = "[";
	ok(succeeds(&req, &res) && json_array_size(res.items) == 0, "find: a glob that matches nothing");
	sb_file_result_clear(&res);

	put(host(ws, "s.txt"), lines, sizeof(lines) - 1);
	req = request(SB_FILE_SEARCH, "s.txt");
	req.pattern = "gam+a$";
	ok(succeeds(&req, &res), "search: a POSIX ERE");
	is_items(&res, "3:\xef\xbf\xbd\xef\xbf\xbd gamma|4:nul\xef\xbf\xbd gamma|5:last gamma",
			 "search: matching lines with their numbers, repaired, NUL bytes included");
	sb_file_result_clear(&res);
	req.pattern = "^(alpha|beta)$";
	ok(succeeds(&req, &res), "search: alternation and anchors");
	is_items(&res, "1:alpha|2:beta", "search: anchors apply per line");
	sb_file_result_clear(&res);
	req.pattern = "a(";
	ok(fails_with(&req, SB_FERR_INVALID_REGEX, NULL), "search: an invalid regex is invalid_regex");
	req = request(SB_FILE_SEARCH, "dir");
	req.pattern = "x";
	ok(fails_with(&req, SB_FERR_IS_DIRECTORY, NULL), "search: a directory is is_directory");

	put(host(ws, "r.txt"), "a.b a.b axb", 11);
	req = request(SB_FILE_REPLACE, "r.txt");
	req.old_str = "a.b";
	req.new_str = "$(rm -rf /)";
	ok(succeeds(&req, &res) && res.count == 2, "replace: counts literal replacements");
	sb_file_result_clear(&res);
	disk = slurp(host(ws, "r.txt"), &len);
	is_str(disk, "$(rm -rf /) $(rm -rf /) axb", "replace: the new text is written literally");
	sb_free(disk);
	req.old_str = "zzz";
	ok(succeeds(&req, &res) && res.count == 0, "replace: no occurrence is a count of 0");
	sb_file_result_clear(&res);
	req.old_str = "";
	ok(fails_with(&req, SB_FERR_INVALID_ARGUMENT, "old_str must not be empty"),
	   "replace: an empty old_str is invalid_argument");
}

static void
test_upload_download(void)
{
	SbFileRequest req;
	SbFileResult res;
	size_t		n = 3 * 1000 * 1000 + 1;
	char	   *bytes = sb_malloc(n);
	char	   *disk;
	size_t		len;
	unsigned	seed = 12345;

	for (size_t i = 0; i < n; i++)
		bytes[i] = (char) ((seed = seed * 1103515245u + 12345u) >> 16);
	req = request(SB_FILE_UPLOAD, "/workspace/bin/blob");
	req.data = bytes;
	req.data_len = n;
	req.max_bytes = 4 << 20;
	ok(succeeds(&req, &res) && res.count == (long long) n, "upload: 3 MB of binary bytes");
	sb_file_result_clear(&res);
	disk = slurp(host(ws, "bin/blob"), &len);
	ok(disk && len == n && memcmp(disk, bytes, n) == 0, "upload: the file has exactly those bytes");
	sb_free(disk);
	req = request(SB_FILE_DOWNLOAD, "bin/blob");
	req.max_bytes = 4 << 20;
	ok(succeeds(&req, &res) && res.data_len == n && memcmp(res.data, bytes, n) == 0,
	   "download: returns exactly the bytes");
	sb_file_result_clear(&res);
	req.max_bytes = n - 1;
	ok(fails_with(&req, SB_FERR_TOO_LARGE, NULL), "download: a file over max_bytes is too_large");
	req = request(SB_FILE_READ, "bin/blob");
	req.max_bytes = 1000;
	ok(fails_with(&req, SB_FERR_TOO_LARGE, NULL), "read: a file over max_bytes is too_large");
	req = request(SB_FILE_UPLOAD, "small");
	req.data = bytes;
	req.data_len = 2000;
	req.max_bytes = 1000;
	ok(fails_with(&req, SB_FERR_TOO_LARGE, NULL), "upload: bytes over max_bytes are too_large");
	req = request(SB_FILE_UPLOAD, "empty");
	req.data = "";
	req.data_len = 0;
	ok(succeeds(&req, &res) && res.count == 0, "upload: an empty file");
	sb_file_result_clear(&res);
	req = request(SB_FILE_DOWNLOAD, "empty");
	ok(succeeds(&req, &res) && res.data_len == 0, "download: an empty file");
	sb_file_result_clear(&res);
	sb_free(bytes);
}

static void
test_bad_requests(void)
{
	size_t		len;
	char	   *out;
	SbFileResult res;
	char		err[256];

	out = run_text("{\"version\":1,\"op\":\"file_read\",\"path\":\"x\",\"max_bytes\":-1}", &len, NULL);
	ok(out && sb_file_result_decode(out, len, SB_FILE_READ, &res, err, sizeof(err)) &&
	   res.status == SB_STATUS_ERROR && strstr(res.error, "malformed number") != NULL,
	   "executor: a malformed file request gets an error result");
	sb_file_result_clear(&res);
	sb_free(out);
	out = run_text("{\"version\":2,\"op\":\"file_read\",\"path\":\"x\"}", &len, NULL);
	ok(out && strstr(out, "unsupported request version") != NULL,
	   "executor: another protocol version is refused");
	sb_free(out);
}

/* ---- cloud mode ---- */

static SbGcsConfig gcs;

/* cloud_put stores an object (any generation). */
static void
cloud_put(const char *name, const char *data, size_t len)
{
	SbError		err;

	if (sb_gcs_upload(&gcs, name, data, len, SB_GCS_ANY_GENERATION, NULL, &err) != 0)
		printf("# cannot upload %s: %s\n", name, err.message);
}

/* cloud_get reads an object (malloc'd); NULL if it is missing. */
static char *
cloud_get(const char *name, size_t *len, int64_t *generation)
{
	SbError		err;
	char	   *data;

	if (sb_gcs_download(&gcs, name, 0, &data, len, generation, &err) != 0)
		return NULL;
	return data;
}

/* cloud_exists says whether an object exists. */
static bool
cloud_exists(const char *name)
{
	SbGcsObjectInfo info;
	SbError		err;

	return sb_gcs_stat(&gcs, name, &info, &err) == 0;
}

/* state_generation returns the session's state.json generation (0 if none). */
static int64_t
state_generation(void)
{
	size_t		len;
	int64_t		gen = 0;
	char	   *data = cloud_get("sessions/fc/state.json", &len, &gen);

	free(data);
	return data ? gen : 0;
}

/*
 * cloud_exec runs request object <id> of session fc in a fresh workspace, as
 * an attempt of one Cloud Run task (so a rerun is a retry of it, which its
 * claim of the request lets through; see claim() in cloud.c).
 */
static bool
cloud_exec(long long id)
{
	char	   *cmd;
	int			status;
	char	   *err;
	size_t		elen;
	char		epath[1200];

	if (asprintf(&cmd,
				 "rm -rf %1$s/c && mkdir -p %1$s/c/ws %1$s/c/tmp && "
				 "CLOUDRUN_SANDBOX_WORKSPACE=%1$s/c/ws CLOUDRUN_SANDBOX_TMP=%1$s/c/tmp "
				 "STORAGE_EMULATOR_HOST=%2$s CLOUDRUN_SANDBOX_CREDENTIALS=none "
				 /* One execution's task, each run of a request an attempt of it. */
				 "CLOUD_RUN_EXECUTION=unit-execution CLOUD_RUN_TASK_INDEX=0 "
				 "%3$s cloud " BUCKET " sessions/fc/requests/%4$lld.json 2>%1$s/executor.err",
				 scratch, emulator, executor, id) < 0)
		return false;
	status = system(cmd);
	free(cmd);
	snprintf(epath, sizeof(epath), "%s/executor.err", scratch);
	err = slurp(epath, &elen);
	if (status != 0 || (err && (strstr(err, "Sanitizer") || strstr(err, "runtime error"))))
		printf("# the executor exited with status %d; its stderr: %.2000s\n", status,
			   err ? err : "");
	sb_free(err);
	return status == 0;
}

/* cloud_result reads and decodes result <id>, fetching a payload it names. */
static bool
cloud_result(long long id, SbFileOp op, SbFileResult *res)
{
	char		name[128];
	char	   *text;
	size_t		len;
	char		err[256];
	bool		okay;

	memset(res, 0, sizeof(*res));
	snprintf(name, sizeof(name), "sessions/fc/results/%lld.json", id);
	text = cloud_get(name, &len, NULL);
	if (text == NULL)
	{
		printf("# no result object %s\n", name);
		return false;
	}
	okay = sb_file_result_decode(text, len, op, res, err, sizeof(err));
	free(text);
	if (okay && res->transfer)
	{
		text = cloud_get(res->transfer, &len, NULL);
		if (text && (op == SB_FILE_LIST || op == SB_FILE_SEARCH || op == SB_FILE_FIND))
			okay = sb_file_items_decode(text, len, op, &res->items, err, sizeof(err));
		else if (text)
		{
			res->data = sb_strndup(text, len);
			res->data_len = len;
		}
		okay = okay && text != NULL;
		free(text);
	}
	if (!okay)
		printf("# cannot read result %s: %s\n", name, err);
	return okay;
}

static long long cloud_id = 0;

/* cloud_run runs a request in cloud mode as the extension would: object, run, result. */
static bool
cloud_run(SbFileRequest *req, SbFileResult *res)
{
	char		name[128];
	char	   *text;

	req->id = ++cloud_id;
	req->session = "fc";
	req->prefix = "";
	text = sb_file_request_encode(req);
	snprintf(name, sizeof(name), "sessions/fc/requests/%lld.json", req->id);
	cloud_put(name, text, strlen(text));
	sb_free(text);
	memset(res, 0, sizeof(*res));
	return cloud_exec(req->id) && cloud_result(req->id, req->op, res);
}

static void
test_cloud(void)
{
	SbFileRequest req;
	SbFileResult res;
	size_t		n = 1500 * 1000;
	char	   *bytes = sb_malloc(n);
	char	   *text;
	size_t		len;
	int64_t		gen;
	int64_t		gen2;
	json_t	   *state;
	char		name[128];

	for (size_t i = 0; i < n; i++)
		bytes[i] = (char) (i * 7 + i / 251);
	cloud_put("sessions/fc/transfer/1", bytes, n);
	req = request(SB_FILE_UPLOAD, "big.bin");
	req.transfer = "sessions/fc/transfer/1";
	req.max_bytes = 4 << 20;
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && res.count == (long long) n &&
	   res.state_generation > 0,
	   "cloud: an upload takes its bytes from the transfer object and saves the state");
	gen = res.state_generation;
	sb_file_result_clear(&res);
	text = cloud_get("sessions/fc/state.json", &len, &gen2);
	ok(text && gen2 == gen && strstr(text, "\"last_execution\":1") &&
	   strstr(text, "\"workspace\":\"sessions/fc/workspace/1.tar\"") &&
	   strstr(text, "\"cwd\":\"/workspace\""),
	   "cloud: state.json names the new snapshot, with the cwd unchanged");
	free(text);

	req = request(SB_FILE_WRITE, "d/a.txt");
	req.data = "hello";
	req.data_len = 5;
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && res.count == 5 &&
	   res.state_generation > gen && res.state_generation == state_generation(),
	   "cloud: a write saves a new state; the result carries its generation");
	gen = res.state_generation;
	sb_file_result_clear(&res);
	ok(!cloud_exists("sessions/fc/workspace/1.tar") && cloud_exists("sessions/fc/workspace/2.tar"),
	   "cloud: the snapshot the old state named is deleted");

	req = request(SB_FILE_READ, "d/a.txt");
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && data_is(&res, "hello", 5) &&
	   res.state_generation == 0 && state_generation() == gen,
	   "cloud: a read in a fresh container sees the write, and leaves the state alone");
	sb_file_result_clear(&res);

	req = request(SB_FILE_DOWNLOAD, "big.bin");
	req.max_bytes = 4 << 20;
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && res.transfer &&
	   strcmp(res.transfer, "sessions/fc/transfer/4") == 0 && res.data_len == n &&
	   memcmp(res.data, bytes, n) == 0,
	   "cloud: a large download travels through transfer/<id>, byte for byte");
	sb_file_result_clear(&res);

	req = request(SB_FILE_DELETE, "nothing-here");
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && !res.flag &&
	   res.state_generation == 0 && state_generation() == gen,
	   "cloud: a delete that deleted nothing saves no state");
	sb_file_result_clear(&res);

	/* Move the session's cwd, as a command's cd would have. */
	text = cloud_get("sessions/fc/state.json", &len, NULL);
	state = text ? json_loadb(text, len, 0, NULL) : NULL;
	free(text);
	json_object_set_new(state, "cwd", json_string("/workspace/d"));
	json_object_set_new(state, "env", json_pack("{ss}", "KEEP", "me"));
	text = json_dumps(state, JSON_COMPACT);
	cloud_put("sessions/fc/state.json", text, strlen(text));
	free(text);
	json_decref(state);
	req = request(SB_FILE_REPLACE, "a.txt");
	req.cwd = "/";
	req.old_str = "l";
	req.new_str = "L";
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED && res.count == 2,
	   "cloud: relative paths start at state.json's cwd, not the request's");
	sb_file_result_clear(&res);
	text = cloud_get("sessions/fc/state.json", &len, NULL);
	ok(text && strstr(text, "\"cwd\":\"/workspace/d\"") && strstr(text, "\"KEEP\":\"me\"") &&
	   strstr(text, "\"last_execution\":6"),
	   "cloud: a change keeps the session's cwd and environment");
	free(text);

	req = request(SB_FILE_LIST, "/workspace");
	req.recursive = true;
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_SUCCEEDED, "cloud: list");
	is_items(&res, "/workspace/big.bin|/workspace/d|/workspace/d/a.txt",
			 "cloud: the listing shows the restored workspace");
	sb_file_result_clear(&res);

	req = request(SB_FILE_UPLOAD, "x");
	req.transfer = "sessions/other/transfer/1";
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_ERROR && res.code == SB_FERR_NONE &&
	   strstr(res.error, "outside the session"),
	   "cloud: an upload object of another session is refused");
	sb_file_result_clear(&res);

	req = request(SB_FILE_READ, "/etc/passwd");
	ok(cloud_run(&req, &res) && res.status == SB_STATUS_ERROR &&
	   res.code == SB_FERR_OUTSIDE_SANDBOX,
	   "cloud: confinement applies in cloud mode too");
	sb_file_result_clear(&res);

	/* The replace (request 6) saved the state; pretend its result was lost. */
	snprintf(name, sizeof(name), "sessions/fc/results/6.json");
	{
		SbError		err;

		(void) sb_gcs_delete(&gcs, name, SB_GCS_ANY_GENERATION, &err);
	}
	gen = state_generation();
	ok(cloud_exec(6) && cloud_result(6, SB_FILE_REPLACE, &res) &&
	   res.status == SB_STATUS_ERROR && strstr(res.error, "already ran") &&
	   state_generation() == gen,
	   "cloud: a retry of a change whose result was lost does not apply it twice");
	sb_file_result_clear(&res);
	sb_free(bytes);
}

int
main(int argc, char **argv)
{
	if (argc != 3 && argc != 4)
	{
		fprintf(stderr, "usage: %s EXECUTOR SCRATCH_DIR [EMULATOR_URL]\n", argv[0]);
		return 2;
	}
	executor = argv[1];
	emulator = argc == 4 ? argv[3] : NULL;
	snprintf(scratch, sizeof(scratch), "%s", argv[2]);
	snprintf(ws, sizeof(ws), "%s/ws", scratch);
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", scratch);
	snprintf(outside, sizeof(outside), "%s/outside", scratch);
	if (mkdir(ws, 0755) != 0 || mkdir(tmpdir, 0755) != 0 || mkdir(outside, 0755) != 0)
	{
		fprintf(stderr, "cannot make directories in %s: %s\n", scratch, strerror(errno));
		return 2;
	}
	setenv("CLOUDRUN_SANDBOX_WORKSPACE", ws, 1);
	setenv("CLOUDRUN_SANDBOX_TMP", tmpdir, 1);

	test_protocol();
	test_write_read();
	test_confinement();
	test_exists_delete();
	test_list_find_search_replace();
	test_upload_download();
	test_bad_requests();
	if (emulator != NULL)
	{
		SbError		err;

		if (sb_http_global_init(&err) != 0)
			printf("# cannot start the HTTP client: %s\n", err.message);
		memset(&gcs, 0, sizeof(gcs));
		gcs.storage_endpoint = emulator;
		gcs.bucket = BUCKET;
		gcs.timeout_ms = 30000;
		test_cloud();
		sb_http_global_cleanup();
	}
	else
		printf("# no emulator: cloud mode not tested\n");
	return tap_done();
}
