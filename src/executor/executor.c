/*
 * executor.c
 *		cloudrun-sandbox-executor: the agent inside the sandbox.
 *
 * Local mode (no arguments): reads one request (JSON) on standard input,
 * applies it to the session (runs a command, see command.c, or does a file
 * operation, see fileops.c), and writes one result (JSON) on standard output.
 * It exits 0 whenever it wrote a result; a failing user command is a result,
 * not an executor failure.  It is not linked with PostgreSQL.
 *
 * Serve mode (`serve`) keeps a session's sandbox warm for the worker: the
 * same requests and results, framed as "<length>\n<document>", one after
 * another until standard input ends.
 *
 * Background mode (`background EXIT_FD WATCH_FD [LOG]`) runs one command for
 * as long as it lives, its output on our standard output and error (or, in a
 * session with a disk quota, appended to LOG, which we open), its exit
 * code into descriptor EXIT_FD, stopping when descriptor WATCH_FD (the
 * postmaster-death pipe; "-" for none) hangs up; see background.c.  The
 * descriptors are the supervisor's: this mode opens no file by name.
 *
 * Cloud mode (`cloud BUCKET REQUEST_OBJECT`, the Cloud Run Job's container
 * arguments) keeps the request, the session and the result in GCS; see
 * cloud.c.
 */
#define _GNU_SOURCE
#include "cloud.h"
#include "command.h"
#include "fileops.h"
#include "scrub.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* A file upload travels inside the request, in base64. */
#define MAX_REQUEST_BYTES ((size_t) 1024 * 1024 * 1024)

/* read_all reads standard input up to MAX_REQUEST_BYTES. */
static bool
read_all(int fd, SbBuf *buf)
{
	char		chunk[65536];

	sb_buf_init(buf, MAX_REQUEST_BYTES);
	for (;;)
	{
		ssize_t		n = read(fd, chunk, sizeof(chunk));

		if (n == 0)
			return !buf->truncated;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		sb_buf_append(buf, chunk, (size_t) n);
	}
}

/* emit_text writes a result document (which it frees) followed by a newline. */
static int
emit_text(char *text)
{
	if (text == NULL || !sb_write_all(1, text, strlen(text)) || !sb_write_all(1, "\n", 1))
	{
		fprintf(stderr, "cloudrun-sandbox-executor: cannot write the result\n");
		sb_free(text);
		return 2;
	}
	sb_free(text);
	return 0;
}

/* emit writes the result document of a command followed by a newline. */
static int
emit(const SbExecResult *res)
{
	return emit_text(sb_result_encode(res));
}

/*
 * run_cloud runs cloud mode.  It needs libcurl and OpenSSL, whose loading
 * would triple the start-up time of every local command, so the local build
 * hands over to its sibling program cloudrun-sandbox-executor-cloud, built
 * from the same sources with SB_EXECUTOR_CLOUD.
 */
static int
run_cloud(int argc, char **argv)
{
	/*
	 * A batch: "cloud BUCKET OBJECT0 OBJECT1 ..." is one Cloud Run execution
	 * with a task per request; task i runs OBJECTi.
	 */
	if (argc > 4)
	{
		const char *index = getenv("CLOUD_RUN_TASK_INDEX");
		char	   *end;
		long		i = index ? strtol(index, &end, 10) : -1;

		if (index == NULL || *end != '\0' || i < 0 || i >= argc - 3)
		{
			fprintf(stderr, "cloudrun-sandbox-executor: a batch of %d requests needs "
					"CLOUD_RUN_TASK_INDEX between 0 and %d\n", argc - 3, argc - 4);
			return 1;
		}
		argv[3] = argv[3 + i];
		argv[4] = NULL;
		argc = 4;
	}
#ifdef SB_EXECUTOR_CLOUD
	return sb_cloud_main(argc - 1, argv + 1);
#else
	char		self[4096];
	char	   *slash;
	ssize_t		n = readlink("/proc/self/exe", self, sizeof(self) - 32);

	if (n <= 0)
	{
		fprintf(stderr, "cloudrun-sandbox-executor: cannot find my own path: %s\n", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	strcpy(slash ? slash + 1 : self, "cloudrun-sandbox-executor-cloud");
	execv(self, argv);
	fprintf(stderr, "cloudrun-sandbox-executor: cannot run %s: %s\n", self, strerror(errno));
	return 1;
#endif
}

/* fd_arg parses a descriptor number argument; "-" is -1 (none). */
static bool
fd_arg(const char *arg, int *fd)
{
	char	   *end;
	long		v;

	if (strcmp(arg, "-") == 0)
	{
		*fd = -1;
		return true;
	}
	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < 3 || v > 1024)
		return false;
	*fd = (int) v;
	return true;
}

/*
 * run_background runs an exec request as a background process (see
 * background.c); it answers with an exit status, not a result document.
 */
static int
run_background(const char *exit_arg, const char *watch_arg, const char *log)
{
	SbBuf		input;
	SbExecRequest req;
	json_t	   *holder = NULL;
	char		errbuf[512];
	int			rc;
	int			exit_fd, watch_fd;

	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_DUMPABLE, 0);
	if (!fd_arg(exit_arg, &exit_fd) || !fd_arg(watch_arg, &watch_fd))
	{
		fprintf(stderr, "cloudrun-sandbox: background mode takes two descriptor numbers\n");
		return 2;
	}
	if (!read_all(0, &input) ||
		!sb_request_decode(input.data ? input.data : "", input.len, &req, &holder, errbuf,
						   sizeof(errbuf)))
	{
		fprintf(stderr, "cloudrun-sandbox: bad background request: %s\n",
				input.len ? errbuf : "nothing on standard input");
		return 2;
	}
	rc = sb_background_main(&req, exit_fd, watch_fd, log);
	json_decref(holder);
	sb_buf_free(&input);
	return rc;
}

/*
 * answer applies one request document (a command or a file operation) and
 * returns its result document.  A request that cannot be decoded gets an
 * error result, never a crash.
 */
static char *
answer(const SbBuf *input)
{
	SbExecRequest req;
	SbExecResult res;
	SbFileRequest freq;
	json_t	   *holder = NULL;
	char		errbuf[512];
	char	   *text;
	int			kind;

	memset(&res, 0, sizeof(res));
	memset(&freq, 0, sizeof(freq));
	kind = sb_file_request_decode(input->data ? input->data : "", input->len, &freq, &holder,
								  errbuf, sizeof(errbuf));
	if (kind > 0)
	{
		SbFileResult fres;

		sb_file_run(&freq, &fres);
		text = sb_file_result_encode(&fres);
		sb_file_result_clear(&fres);
	}
	else
	{
		if (kind < 0 || !sb_request_decode(input->data ? input->data : "", input->len, &req,
										   &holder, errbuf, sizeof(errbuf)))
		{
			res.status = SB_STATUS_ERROR;
			res.error = sb_strdup(errbuf);
		}
		else
			sb_run_command(&req, &res);
		text = sb_result_encode(&res);
		sb_result_clear(&res);
	}
	sb_file_request_clear(&freq, NULL);
	if (holder)
		json_decref(holder);
	return text;
}

/*
 * read_exactly reads len bytes of standard input into buf (which keeps them);
 * false at end of input or on an error.
 */
static bool
read_exactly(SbBuf *buf, size_t len)
{
	char		chunk[65536];

	while (len > 0)
	{
		ssize_t		n = read(0, chunk, len < sizeof(chunk) ? len : sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		sb_buf_append(buf, chunk, (size_t) n);
		len -= (size_t) n;
	}
	return true;
}

/*
 * read_frame reads one framed request, "<decimal length>\n<that many bytes>",
 * from standard input.  Returns 1 with the request in buf, 0 at a clean end
 * of input, -1 on a malformed frame.
 */
static int
read_frame(SbBuf *buf)
{
	char		header[24];
	size_t		n = 0;
	char	   *end;
	unsigned long long len;

	sb_buf_init(buf, MAX_REQUEST_BYTES);
	for (;;)
	{
		ssize_t		r = read(0, header + n, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return n == 0 ? 0 : -1;
		if (header[n] == '\n')
			break;
		if (++n >= sizeof(header) - 1)
			return -1;
	}
	header[n] = '\0';
	errno = 0;
	len = strtoull(header, &end, 10);
	if (n == 0 || *end != '\0' || errno != 0 || len > MAX_REQUEST_BYTES)
		return -1;
	return read_exactly(buf, (size_t) len) ? 1 : -1;
}

/*
 * serve keeps a session's sandbox warm: it answers framed requests on
 * standard input with framed results on standard output, one at a time,
 * until the input ends.  As the sandbox's PID 1 it kills whatever a command
 * left behind (see command.c), reaps it and empties /dev/shm and the System V
 * IPC namespace (scrub.c) before the next request, so each command starts in
 * a sandbox as empty as a fresh one.
 */
static int
serve(void)
{
	for (;;)
	{
		SbBuf		input;
		char	   *text;
		char		header[32];
		int			got;

		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		got = read_frame(&input);
		if (got <= 0)
		{
			if (got < 0)
				fprintf(stderr, "cloudrun-sandbox-executor: malformed request frame\n");
			sb_buf_free(&input);
			return got == 0 ? 0 : 2;
		}
		text = answer(&input);
		sb_buf_free(&input);
		/* What the command kept in /dev/shm or System V IPC goes with it. */
		sb_scrub_sandbox();
		if (text == NULL)
		{
			fprintf(stderr, "cloudrun-sandbox-executor: cannot encode the result\n");
			return 2;
		}
		snprintf(header, sizeof(header), "%zu\n", strlen(text));
		if (!sb_write_all(1, header, strlen(header)) || !sb_write_all(1, text, strlen(text)))
		{
			sb_free(text);
			return 2;
		}
		sb_free(text);
	}
}

int
main(int argc, char **argv)
{
	SbBuf		input;
	int			rc;

	sb_buf_init(&input, 0);
	if (argc > 1 && strcmp(argv[1], "--version") == 0)
	{
		printf("cloudrun-sandbox-executor protocol %d\n", SB_PROTOCOL_VERSION);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "cloud") == 0)
		return run_cloud(argc, argv);
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "background") == 0)
		return run_background(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "serve") != 0))
	{
		fprintf(stderr, "usage: %s < request.json > result.json\n", argv[0]);
		fprintf(stderr, "       %s serve < framed requests > framed results\n", argv[0]);
		fprintf(stderr, "       %s cloud BUCKET REQUEST_OBJECT [REQUEST_OBJECT...]\n", argv[0]);
		fprintf(stderr, "       %s background EXIT_FD WATCH_FD [LOG] < request.json\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Keep the sandboxed command out of our /proc entries (and our pipes). */
	prctl(PR_SET_DUMPABLE, 0);
	if (argc == 2)
		rc = serve();
	else if (!read_all(0, &input))
	{
		SbExecResult res;

		memset(&res, 0, sizeof(res));
		res.status = SB_STATUS_ERROR;
		res.error = sb_strdup("cannot read the request from standard input");
		rc = emit(&res);
		sb_result_clear(&res);
	}
	else
		rc = emit_text(answer(&input));
	sb_buf_free(&input);
	if (getpid() == 1)
		kill(-1, SIGKILL);
	return rc;
}
