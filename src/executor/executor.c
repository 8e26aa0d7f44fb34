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
 * Serve mode (`serve`) answers request frames (common/frame.h) on
 * descriptor 0 with result frames on descriptor 1, one after another until
 * descriptor 0 ends: a cold sandbox's one request.  `serve --listen FD`
 * accepts connections on the listening socket FD, which the host made and
 * passed in, one at a time, and answers each one's frames until it closes: a
 * warm sandbox.  A command's output and a file's bytes travel raw as the
 * frame's payloads.  While a command runs the connection is watched: if the
 * peer hangs up (a cancel, a backend that died) the command and everything
 * it left are killed and no answer is written.  After every request the
 * sandbox is cleaned (processes, /dev/shm, System V IPC) before the next is
 * read.
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
 * cloud.c.  Runner mode (`runner BUCKET SESSION_PREFIX TOKEN IDLE_TIMEOUT_S`)
 * is a session runner: one long execution serving a session's requests;
 * see runner.c.
 */
#define _GNU_SOURCE
#include "cloud.h"
#include "command.h"
#include "fileops.h"
#include "scrub.h"
#include "../common/frame.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
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

#ifndef SB_EXECUTOR_CLOUD
/* exec_cloud_program hands argv over to the sibling program cloudrun-sandbox-executor-cloud. */
static int
exec_cloud_program(char **argv)
{
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
}
#endif

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
	return exec_cloud_program(argv);
#endif
}

/* run_runner runs runner mode (runner.c), in the cloud program like run_cloud. */
static int
run_runner(int argc, char **argv)
{
#ifdef SB_EXECUTOR_CLOUD
	return sb_runner_main(argc - 1, argv + 1);
#else
	(void) argc;
	return exec_cloud_program(argv);
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
 * split_frame finds, in a whole frame read into memory (common/frame.h),
 * its JSON document and payload 0; false if the text is not one.
 */
static bool
split_frame(const char *text, size_t len, const char **json, size_t *json_len,
			const char **p0, size_t *p0_len)
{
	const char *nl = memchr(text, '\n', len < SB_FRAME_HEADER_MAX ? len : SB_FRAME_HEADER_MAX);
	unsigned long long j, a, b;
	int			n = 0;

	if (len < 4 || memcmp(text, "SBF ", 4) != 0 || nl == NULL ||
		sscanf(text, "SBF %llu %llu %llu%n", &j, &a, &b, &n) != 3 || text + n != nl ||
		b != 0 || j > len || a > len || (size_t) (nl + 1 - text) + j + a != len)
		return false;
	*json = nl + 1;
	*json_len = j;
	*p0 = *json + j;
	*p0_len = a;
	return true;
}

/*
 * run_background runs an exec request as a background process (see
 * background.c); it answers with an exit status, not a result document.
 * The request is a JSON document, or a frame whose payload 0 is its stdin
 * (the local backend).
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
	const char *doc, *p0 = NULL;
	size_t		doc_len, p0_len = 0;

	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_DUMPABLE, 0);
	if (!fd_arg(exit_arg, &exit_fd) || !fd_arg(watch_arg, &watch_fd))
	{
		fprintf(stderr, "cloudrun-sandbox: background mode takes two descriptor numbers\n");
		return 2;
	}

	if (!read_all(0, &input))
		input.len = 0;
	/*
	 * The request (a memfd the host wrote, which bwrap's monitor keeps open
	 * as its stdin) is read: emptied, its pages go now, not with the process.
	 */
	(void) ftruncate(0, 0);
	{
		int			null = open("/dev/null", O_RDONLY);

		if (null > 0)
			dup2(null, 0), close(null);
	}
	doc = input.data ? input.data : "";
	doc_len = input.len;
	if (input.len > 0)
		(void) split_frame(input.data, input.len, &doc, &doc_len, &p0, &p0_len);
	if (input.len == 0 ||
		!sb_request_decode(doc, doc_len, &req, &holder, errbuf, sizeof(errbuf)))
	{
		fprintf(stderr, "cloudrun-sandbox: bad background request: %s\n",
				input.len ? errbuf : "nothing on standard input");
		return 2;
	}
	if (req.stdin_in_frame)
	{
		req.stdin_data = p0;
		req.stdin_len = p0_len;
	}
	rc = sb_background_main(&req, exit_fd, watch_fd, log);
	json_decref(holder);
	sb_buf_free(&input);
	return rc;
}

/*
 * A request frame: the JSON document and an upload's or a write's bytes,
 * or a command's stdin (payload 0); never a payload 1.
 */
static const size_t request_max[3] = {MAX_REQUEST_BYTES, MAX_REQUEST_BYTES, 0};

/*
 * An answer: the result document and the bytes that go with it (a
 * command's output, a file's content), or hung_up when the connection's
 * peer left while the command ran (then nothing is answered).
 */
typedef struct Answer
{
	char	   *text;
	SbExecResult res;
	SbFileResult fres;
	bool		command;		/* a command ran (not a file operation) */
	bool		hung_up;
} Answer;

/*
 * Live output of a framed command (issue 14, part 4): the files the host
 * opened and sent with the request frame (SCM_RIGHTS: its stdout's, then its
 * stderr's), -1 for none.  The command's output so far is appended to them
 * as it comes (what is past the result's cap is never written), so that the
 * host can read it while the command runs.  The descriptors are the host's:
 * nothing is opened by name, and the command never inherits them.
 */
typedef struct LiveFiles
{
	int			fd[2];
	size_t		done[2];		/* bytes written to each */
} LiveFiles;

static LiveFiles live_files = {{-1, -1}, {0, 0}};

/* live_write appends data[done..len) to a live file; on an error it stops writing it. */
static void
live_write(int i, const char *data, size_t len)
{
	while (live_files.fd[i] >= 0 && live_files.done[i] < len)
	{
		ssize_t		n = write(live_files.fd[i], data + live_files.done[i],
							  len - live_files.done[i]);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			close(live_files.fd[i]);
			live_files.fd[i] = -1;
			return;
		}
		live_files.done[i] += (size_t) n;
	}
}

/* live_flush is the SbLiveHook of the live files. */
static void
live_flush(void *arg, const char *out, size_t out_len, const char *err, size_t err_len,
		   bool final)
{
	live_write(0, out, out_len);
	live_write(1, err, err_len);
}

static const SbLiveHook live_hook = {live_flush, NULL, 0};

/* live_take adopts the descriptors a request frame brought (closing extras). */
static void
live_take(SbFrameReader *r)
{
	for (int i = 0; i < r->nfds; i++)
	{
		if (i < 2)
			live_files.fd[i] = r->fds[i];
		else
			close(r->fds[i]);
		r->fds[i] = -1;
	}
	live_files.done[0] = live_files.done[1] = 0;
	r->nfds = 0;
}

/* live_close closes the live files after a request. */
static void
live_close(void)
{
	for (int i = 0; i < 2; i++)
	{
		if (live_files.fd[i] >= 0)
			close(live_files.fd[i]);
		live_files.fd[i] = -1;
	}
}

/*
 * answer applies one request document (a command or a file operation) and
 * fills *a.  A request that cannot be decoded gets an error result, never a
 * crash.  With conn_fd >= 0 the request came in a frame (payload is its
 * payload 0): the result is framed too, its bytes left in *a for the
 * frame's payloads, and the command is killed if conn_fd hangs up.
 */
static void
answer(const char *doc, size_t len, const char *payload, size_t payload_len, int conn_fd,
	   Answer *a)
{
	SbExecRequest req;
	SbFileRequest freq;
	json_t	   *holder = NULL;
	char		errbuf[512];
	int			kind;
	bool		framed = conn_fd >= 0;

	memset(a, 0, sizeof(*a));
	memset(&freq, 0, sizeof(freq));
	kind = sb_file_request_decode_ex(doc, len, framed ? payload : NULL, payload_len, &freq,
									 &holder, errbuf, sizeof(errbuf));
	if (kind > 0)
	{
		sb_file_run(&freq, &a->fres);
		a->text = framed ? sb_file_result_encode_framed(&a->fres) :
			sb_file_result_encode(&a->fres);
	}
	else
	{
		a->command = true;
		if (kind < 0 || !sb_request_decode(doc, len, &req, &holder, errbuf, sizeof(errbuf)))
		{
			a->res.status = SB_STATUS_ERROR;
			a->res.error = sb_strdup(errbuf);
		}
		else if (framed)
		{
			/* stdin, if the request has one, is the frame's payload 0. */
			if (req.stdin_in_frame)
			{
				req.stdin_data = payload;
				req.stdin_len = payload_len;
			}
			if (live_files.fd[0] >= 0 || live_files.fd[1] >= 0)
				req.live = &live_hook;
			a->hung_up = !sb_run_command_conn(&req, &a->res, conn_fd);
		}
		else
		{
			if (live_files.fd[0] >= 0 || live_files.fd[1] >= 0)
				req.live = &live_hook;
			sb_run_command(&req, &a->res);
		}
		if (!a->hung_up)
			a->text = framed ? sb_result_encode_framed(&a->res) : sb_result_encode(&a->res);
	}
	sb_file_request_clear(&freq, NULL);
	if (holder)
		json_decref(holder);
}

/* answer_clear frees an answer. */
static void
answer_clear(Answer *a)
{
	sb_free(a->text);
	sb_result_clear(&a->res);
	sb_file_result_clear(&a->fres);
}

/*
 * kill_leftovers makes the sandbox as empty of processes as a fresh one
 * after a request: as its PID 1 it kills and reaps every process left (a
 * setsid daemon included: all are in our pid namespace, and orphans are ours
 * to reap).  Outside a sandbox it only reaps what exited.  Then
 * sb_scrub_sandbox empties /dev/shm, System V IPC and /dev/mqueue
 * (scrub.c), which serve_conn does once the answer is written (nothing can
 * reach them in between: the command and all it started are gone).
 */
static void
kill_leftovers(void)
{
	if (getpid() == 1)
	{
		sb_command_drop_spare();	/* killed below with the rest */
		for (;;)
		{
			kill(-1, SIGKILL);
			if (waitpid(-1, NULL, 0) < 0 && errno != EINTR)
				break;			/* ECHILD: nobody left */
		}
	}
	else
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
}

/*
 * serve_conn answers the request frames read on in_fd with result frames on
 * out_fd, one at a time, until in_fd ends.  Returns 0 at a clean end, 1 if
 * the peer hung up while a command ran (it gets no answer), 2 on a
 * malformed frame or an I/O error.
 */
static int
serve_conn(int in_fd, int out_fd, bool prestart)
{
	SbFrameReader *r = sb_malloc(sizeof(SbFrameReader));
	int			rc = 0;

	for (;;)
	{
		Answer		a;
		SbFrameWriter w;
		SbFramePart json, p0 = {"", 0}, p1 = {"", 0};
		int			got;

		sb_frame_reader_init(r, request_max, NULL, NULL);
		got = sb_frame_read(r, in_fd);
		if (got != SB_FRAME_DONE || r->extra)
		{
			/* One request at a time: bytes after it are a broken peer. */
			if (got == SB_FRAME_ERROR || r->started)
			{
				fprintf(stderr, "cloudrun-sandbox-executor: %s\n",
						got == SB_FRAME_ERROR ? r->error :
						got == SB_FRAME_EOF ? "request frame cut short" :
						"bytes after the request frame");
				rc = 2;
			}
			break;
		}
		live_take(r);
		answer(r->part[0], r->len[0], r->part[1], r->len[1], in_fd, &a);
		live_close();
		for (int i = 0; i < 3; i++)
			free(r->part[i]), r->part[i] = NULL;
		/*
		 * What the command left goes with it: its processes now, /dev/shm,
		 * System V IPC and message queues once it is answered.  A file
		 * operation starts no process: the shell waiting for the next
		 * command is the only one there, and stays.
		 */
		if (a.command || !sb_command_has_spare())
			kill_leftovers();
		if (a.hung_up)
		{
			answer_clear(&a);
			sb_scrub_sandbox();
			rc = 1;
			break;
		}
		if (a.text == NULL)
		{
			fprintf(stderr, "cloudrun-sandbox-executor: cannot encode the result\n");
			answer_clear(&a);
			sb_scrub_sandbox();
			rc = 2;
			break;
		}
		json.data = a.text;
		json.len = strlen(a.text);
		if (a.fres.data != NULL && a.fres.transfer == NULL)
			p0 = (SbFramePart) {a.fres.data, a.fres.data_len};
		else if (a.res.stdout_data != NULL)
		{
			p0 = (SbFramePart) {a.res.stdout_data, a.res.stdout_len};
			p1 = (SbFramePart) {a.res.stderr_data ? a.res.stderr_data : "", a.res.stderr_len};
		}
		sb_frame_writer_init(&w, json, p0, p1);
		got = sb_frame_write(&w, out_fd);
		answer_clear(&a);
		sb_scrub_sandbox();
		if (prestart)
			sb_command_prestart();
		if (got != 1)
		{
			rc = 2;
			break;
		}
	}
	for (int i = 0; i < 3; i++)
		free(r->part[i]);
	sb_free(r);
	return rc;
}

/*
 * serve_listen accepts one connection at a time on the listening socket
 * listen_fd (which the host made and passed in) and serves its frames until
 * it closes, then the next, for as long as the sandbox lives.  A connection
 * that breaks the protocol or hangs up is dropped; the sandbox was cleaned
 * all the same before the next one is accepted.
 */
static int
serve_listen(int listen_fd)
{
	(void) fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
	for (;;)
	{
		int			c;

		/* The next command's shell starts while we wait for its request. */
		sb_command_prestart();
		c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
		{
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
				continue;
			fprintf(stderr, "cloudrun-sandbox-executor: accept failed: %s\n", strerror(errno));
			return 2;
		}
		(void) serve_conn(c, c, true);
		close(c);
	}
}

int
main(int argc, char **argv)
{
	SbBuf		input;
	int			rc;
	int			listen_fd = -1;

	sb_buf_init(&input, 0);
	if (argc > 1 && strcmp(argv[1], "--version") == 0)
	{
		printf("cloudrun-sandbox-executor protocol %d\n", SB_PROTOCOL_VERSION);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "cloud") == 0)
		return run_cloud(argc, argv);
	if (argc > 1 && strcmp(argv[1], "runner") == 0)
		return run_runner(argc, argv);
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "background") == 0)
		return run_background(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0 &&
		(argc == 2 || (argc == 4 && strcmp(argv[2], "--listen") == 0 && fd_arg(argv[3], &listen_fd) &&
					   listen_fd >= 0)))
	{
		signal(SIGPIPE, SIG_IGN);
		prctl(PR_SET_DUMPABLE, 0);
		rc = argc == 2 ? serve_conn(0, 1, false) : serve_listen(listen_fd);
		if (getpid() == 1)
			kill(-1, SIGKILL);
		return rc == 1 ? 0 : rc;
	}
	/* `--live OUT_FD ERR_FD`: the cloud executor follows the output (isolate.c). */
	if (argc == 4 && strcmp(argv[1], "--live") == 0 && fd_arg(argv[2], &live_files.fd[0]) &&
		fd_arg(argv[3], &live_files.fd[1]) && live_files.fd[0] > 2 && live_files.fd[1] > 2)
	{
		(void) fcntl(live_files.fd[0], F_SETFD, FD_CLOEXEC);
		(void) fcntl(live_files.fd[1], F_SETFD, FD_CLOEXEC);
		argc = 1;
	}
	if (argc > 1)
	{
		fprintf(stderr, "usage: %s [--live OUT_FD ERR_FD] < request.json > result.json\n", argv[0]);
		fprintf(stderr, "       %s serve [--listen FD]   (frames on fd 0/1, or on connections to FD)\n", argv[0]);
		fprintf(stderr, "       %s cloud BUCKET REQUEST_OBJECT [REQUEST_OBJECT...]\n", argv[0]);
		fprintf(stderr, "       %s runner BUCKET SESSION_PREFIX TOKEN IDLE_TIMEOUT_S\n", argv[0]);
		fprintf(stderr, "       %s background EXIT_FD WATCH_FD [LOG] < request.json\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Keep the sandboxed command out of our /proc entries (and our pipes). */
	prctl(PR_SET_DUMPABLE, 0);
	if (!read_all(0, &input))
	{
		SbExecResult res;

		memset(&res, 0, sizeof(res));
		res.status = SB_STATUS_ERROR;
		res.error = sb_strdup("cannot read the request from standard input");
		rc = emit(&res);
		sb_result_clear(&res);
	}
	else
	{
		Answer		a;

		answer(input.data ? input.data : "", input.len, NULL, 0, -1, &a);
		rc = emit_text(a.text);
		a.text = NULL;
		answer_clear(&a);
	}
	sb_buf_free(&input);
	if (getpid() == 1)
		kill(-1, SIGKILL);
	return rc;
}
