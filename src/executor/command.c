/*
 * command.c
 *		Runs a user command with bash, captures its output, enforces its
 *		deadline, and records the working directory and environment it
 *		leaves behind.
 *
 * The command text is fed to bash on a pipe (fd 96) and sourced, so that
 * `cd`, `export` and `exit` act on the shell itself.  The final $PWD and
 * `declare -px` (both builtins: no fork) go to another pipe (fd 97), so
 * stdout is never polluted: written right after the command returns or when
 * it calls `exit` (so an EXIT trap of the command's own does not matter), or
 * by our EXIT trap (errexit, a signal); see wrapper[].  Whatever the session
 * cannot keep (arrays, a variable over the kernel's per-string limit, an
 * environment over SB_MAX_ENV_BYTES, a shell that replaced itself with exec)
 * is named in the result's error, with the status unchanged: never dropped
 * in silence.
 * Variables of the shell itself (sb_env_name_reserved) are never kept.
 * When the executor is the sandbox's PID 1 it kills every remaining process
 * when the command ends.
 *
 * The shell can be started before its request comes (sb_command_prestart,
 * in a warm sandbox once the previous request is answered and everything it
 * left is gone): bash's start (exec, the dynamic loader, the locale) is then
 * off the command's path.  Such a shell knows nothing of the request: it
 * waits in `builtin . /dev/fd/95` for the request's setup (its cwd, its
 * environment, the record of the shell's start), which the executor writes
 * when the request comes, with the request's limits set by prlimit(2).  A
 * shell started for the request takes the same setup, so both paths run the
 * same program.  Nothing runs in the sandbox while a shell waits (background
 * processes have sandboxes of their own), so no command can reach it.
 */
#define _GNU_SOURCE
#include "command.h"
#include "../common/sbutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STDIN_FD 94
#define SETUP_FD 95
#define CMD_FD 96
#define STATE_FD 97
/* declare -p quotes a byte in at most 4 ($'\001'): room for SB_MAX_ENV_BYTES. */
#define STATE_CAP (4 * SB_MAX_ENV_BYTES + SB_MAX_CWD_BYTES + 65536)
#define DRAIN_MS 500

extern char **environ;

/*
 * The shell program that wraps every command; see the file header.  The
 * record is written when the command's text returns, or by our `exit`
 * function (which shadows the builtin: an `exit` in the command records the
 * state before any EXIT trap of the command's own runs; subshells, whose
 * $BASHPID differs, do not write), or at last by our EXIT trap (errexit, a
 * signal).  It is written once: after it, fd 97 is closed (by a plain exec:
 * the redirections of `builtin exec` would be undone) and a later attempt
 * fails quietly (its 2>/dev/null comes first; `|| builtin :` keeps errexit
 * from turning that failure into the exit code).
 */
#define SB_RECORD_ONCE "{ __sb_rc=$?; [[ $BASHPID != $$ ]] || " \
	"{ builtin printf '%s\\0' \"$PWD\"; builtin declare -px; builtin printf '\\0'; } >&97 && " \
	"{ builtin set +x; builtin unset -f exec; exec 97>&-; } || builtin :; } 2>/dev/null"
static const char wrapper[] =
	"builtin trap '__sb_rc=$?; { builtin printf \"%s\\0\" \"$PWD\"; builtin declare -px; "
	"builtin printf \"\\0\"; } 2>/dev/null >&97 || builtin :; builtin exit $__sb_rc' EXIT\n"
	"exit () { " SB_RECORD_ONCE "; if (( $# )); then builtin exit \"$@\"; fi; "
	"builtin exit $__sb_rc; }\n"
	"builtin . /dev/fd/95\n"
	"builtin . /dev/fd/96\n"
	SB_RECORD_ONCE "\n"
	"builtin exit $__sb_rc\n";

/* Variables every command starts with, below the session's own. */
static const char *const base_env[][2] = {
	{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	{"HOME", SB_WORKSPACE},
	{"LANG", "C.UTF-8"},
};

/* note adds a sentence to the result's error (the status stays as it is). */
static void note(SbExecResult *res, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
note(SbExecResult *res, const char *fmt,...)
{
	char		msg[1024];
	char	   *joined;
	size_t		n;
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = (res->error ? strlen(res->error) + 2 : 0) + strlen(msg) + 1;
	joined = sb_malloc(n);
	snprintf(joined, n, "%s%s%s", res->error ? res->error : "", res->error ? "; " : "", msg);
	sb_free(res->error);
	res->error = joined;
}

/* env_entry_fits says whether NAME=VALUE fits in one string the kernel passes on. */
static bool
env_entry_fits(const char *key, json_t *value)
{
	return strlen(key) + 1 + json_string_length(value) <= SB_MAX_ENV_VAR_BYTES;
}

/* now_ms reads the monotonic clock in milliseconds. */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* set_error fills res with an executor failure. */
static void
set_error(SbExecResult *res, const char *what)
{
	char		msg[512];

	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
	res->status = SB_STATUS_ERROR;
	res->error = sb_strdup(msg);
}

/* sb_command_env builds the child's environment: base, then session, then call. */
char **
sb_command_env(const SbExecRequest *req)
{
	json_t	   *all = json_object();
	const char *key;
	json_t	   *value;
	char	  **envp;
	size_t		i = 0;

	for (size_t b = 0; b < sizeof(base_env) / sizeof(base_env[0]); b++)
		json_object_set_new(all, base_env[b][0], json_string(base_env[b][1]));
	json_object_update(all, req->env);
	if (req->call_env)
		json_object_update(all, req->call_env);
	envp = sb_malloc(sizeof(char *) * (json_object_size(all) + 1));
	json_object_foreach(all, key, value)
	{
		size_t		n = strlen(key) + json_string_length(value) + 2;

		/*
		 * Left by an older version (the extension refuses both when they are
		 * set): the shell's own variables never reach it, and a variable the
		 * kernel would refuse must not stop bash from starting.
		 */
		if (sb_env_name_reserved(key) || !env_entry_fits(key, value))
			continue;

		envp[i] = sb_malloc(n);
		snprintf(envp[i], n, "%s=%s", key, json_string_value(value));
		i++;
	}
	envp[i] = NULL;
	json_decref(all);
	return envp;
}

static void set_limit(int resource, long long value);

/* sb_command_limits applies the request's resource limits to this process. */
void
sb_command_limits(const SbExecRequest *req)
{
	set_limit(RLIMIT_NPROC, req->limits.nproc);
	set_limit(RLIMIT_AS, req->limits.memory_bytes);
	set_limit(RLIMIT_FSIZE, req->limits.fsize_bytes);
	set_limit(RLIMIT_CPU, req->limits.cpu_seconds);
}

/* set_limit applies one resource limit if it is set. */
static void
set_limit(int resource, long long value)
{
	struct rlimit rl;

	if (value <= 0)
		return;
	rl.rlim_cur = rl.rlim_max = (rlim_t) value;
	(void) setrlimit(resource, &rl);
}

/*
 * A shell: bash running the wrapper, with the pipes the executor keeps (its
 * stdout, stderr, the setup on fd 95, the command on fd 96, the record on
 * fd 97).  pid 0: none.
 */
typedef struct Shell
{
	pid_t		pid;
	int			out_r;
	int			err_r;
	int			setup_w;
	int			cmd_w;
	int			st_r;
	int			in_w;			/* fd 94: the request's stdin, if it has one */
} Shell;

/* The shell started ahead of the next request (sb_command_prestart), if any. */
static Shell spare = {0, -1, -1, -1, -1, -1, -1};

/* shell_close closes the executor's ends of a shell's pipes. */
static void
shell_close(Shell *sh)
{
	int		   *fds[] = {&sh->out_r, &sh->err_r, &sh->setup_w, &sh->cmd_w, &sh->st_r, &sh->in_w};

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0)
			close(*fds[i]), *fds[i] = -1;
	sh->pid = 0;
}

/*
 * shell_start starts a shell: bash with the base environment in /, its
 * descriptors 0 (/dev/null), 1, 2 and 94-97 the pipes', nothing else open,
 * default signals, its own process group.  It is spawned (posix_spawn:
 * the child shares our memory until its exec), not forked: on this kind of
 * machine copying page tables and taking the copy-on-write faults after a
 * fork cost more than the rest of a short command.  The request's cwd and
 * environment come in its setup.  False (errno set) if it could not start.
 */
static bool
shell_start(Shell *sh)
{
	int			out[2] = {-1, -1}, err[2] = {-1, -1}, setup[2] = {-1, -1};
	int			cmd[2] = {-1, -1}, st[2] = {-1, -1}, in[2] = {-1, -1};
	int		   *pairs[] = {out, err, setup, cmd, st, in};
	char	   *envp[sizeof(base_env) / sizeof(base_env[0]) + 1];
	char		entries[sizeof(base_env) / sizeof(base_env[0])][128];
	char	   *argv[] = {"bash", "--noprofile", "--norc", "-c", (char *) wrapper, "sandbox", NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t	none, pipe_only;
	pid_t		child;
	int			rc;

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		if (pipe2(pairs[i], O_CLOEXEC) < 0)
		{
			rc = errno;
			goto done;
		}
	for (size_t n = 0; n < sizeof(base_env) / sizeof(base_env[0]); n++)
	{
		snprintf(entries[n], sizeof(entries[n]), "%s=%s", base_env[n][0], base_env[n][1]);
		envp[n] = entries[n];
	}
	envp[sizeof(base_env) / sizeof(base_env[0])] = NULL;
	/* Whatever else we hold is closed at the shell's exec. */
	(void) close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawn_file_actions_adddup2(&fa, setup[0], SETUP_FD);
	posix_spawn_file_actions_adddup2(&fa, cmd[0], CMD_FD);
	posix_spawn_file_actions_adddup2(&fa, st[1], STATE_FD);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FD);
	posix_spawn_file_actions_addchdir_np(&fa, "/");
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &pipe_only);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
							 POSIX_SPAWN_SETPGROUP);
	rc = posix_spawn(&child, "/bin/bash", &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc == 0)
	{
		*sh = (Shell) {child, out[0], err[0], setup[1], cmd[1], st[0], in[1]};
		out[0] = err[0] = setup[1] = cmd[1] = st[0] = in[1] = -1;
		fcntl(sh->out_r, F_SETFL, O_NONBLOCK);
		fcntl(sh->err_r, F_SETFL, O_NONBLOCK);
		fcntl(sh->st_r, F_SETFL, O_NONBLOCK);
		fcntl(sh->setup_w, F_SETFL, O_NONBLOCK);
		fcntl(sh->cmd_w, F_SETFL, O_NONBLOCK);
		fcntl(sh->in_w, F_SETFL, O_NONBLOCK);
	}

done:
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		for (int j = 0; j < 2; j++)
			if (pairs[i][j] >= 0)
				close(pairs[i][j]);
	errno = rc;
	return rc == 0;
}

void
sb_command_prestart(void)
{
	if (spare.pid == 0 && !shell_start(&spare))
		spare.pid = 0;
}

/* sb_command_drop_spare forgets the waiting shell (its caller has killed it). */
void
sb_command_drop_spare(void)
{
	if (spare.pid > 0)
		shell_close(&spare);
}

bool
sb_command_has_spare(void)
{
	return spare.pid > 0;
}

/*
 * shell_take gives the request a shell: the spare if it is still alive
 * (one that died meanwhile is reaped and dropped), else a new one.  The
 * caller blocks SIGCHLD first, so a shell that dies after this look is seen
 * by its signalfd.
 */
static bool
shell_take(Shell *sh)
{
	if (spare.pid > 0)
	{
		if (waitpid(spare.pid, NULL, WNOHANG) == 0)
		{
			*sh = spare;
			spare = (Shell) {0, -1, -1, -1, -1, -1, -1};
			return true;
		}
		shell_close(&spare);
	}
	return shell_start(sh);
}

/* shell_limits applies the request's resource limits to the shell. */
static void
shell_limits(pid_t pid, const SbLimits *l)
{
	const struct
	{
		int			resource;
		long long	value;
	}			limits[] = {
		{RLIMIT_NPROC, l->nproc}, {RLIMIT_AS, l->memory_bytes},
		{RLIMIT_FSIZE, l->fsize_bytes}, {RLIMIT_CPU, l->cpu_seconds},
	};

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
	{
		struct rlimit rl;

		if (limits[i].value <= 0)
			continue;
		rl.rlim_cur = rl.rlim_max = (rlim_t) limits[i].value;
		(void) prlimit(pid, limits[i].resource, &rl, NULL);
	}
}

/* append_str appends a string to buf. */
static void
append_str(SbBuf *buf, const char *s)
{
	sb_buf_append(buf, s, strlen(s));
}

/* append_quoted appends s to buf as one single-quoted shell word. */
static void
append_quoted(SbBuf *buf, const char *s, size_t len)
{
	const char *end = s + len;

	sb_buf_append(buf, "'", 1);
	while (s < end)
	{
		const char *q = memchr(s, '\'', end - s);
		size_t		n = q ? (size_t) (q - s) : (size_t) (end - s);

		sb_buf_append(buf, s, n);
		s += n;
		if (q)
		{
			sb_buf_append(buf, "'\\''", 4);
			s++;
		}
	}
	sb_buf_append(buf, "'", 1);
}

/*
 * shell_setup writes into buf the program the shell sources on fd 95
 * before the command: go to the request's cwd (physically, as chdir(2)
 * would; if it is gone, say so and start in the workspace), export the
 * request's environment (the base, then the session's, then the call's;
 * the shell's own variables and entries the kernel would refuse are left
 * out, as sb_command_env does), and reset what a shell sets at its start
 * (OLDPWD exported and unset, SECONDS).
 */
static void
shell_setup(const SbExecRequest *req, SbBuf *buf)
{
	char	  **envp = sb_command_env(req);

	append_str(buf, "builtin cd -P -- ");
	append_quoted(buf, req->cwd, strlen(req->cwd));
	append_str(buf, " 2>/dev/null || { builtin printf 'cloudrun-sandbox: working directory %s "
			   "is gone; starting in %s\\n' ");
	append_quoted(buf, req->cwd, strlen(req->cwd));
	append_str(buf, " " SB_WORKSPACE " >&2; builtin cd -P -- " SB_WORKSPACE " 2>/dev/null || "
			   "builtin cd / || builtin exit 126; }\n");
	for (int i = 0; envp[i]; i++)
	{
		const char *eq = strchr(envp[i], '=');
		char	   *name = eq ? sb_strndup(envp[i], eq - envp[i]) : NULL;

		/* Names went through sb_env_valid on the host; never a word bash would misread. */
		if (name != NULL && sb_env_name_valid(name))
		{
			append_str(buf, "builtin export -- ");
			append_quoted(buf, envp[i], strlen(envp[i]));
			append_str(buf, "\n");
		}
		sb_free(name);
		sb_free(envp[i]);
	}
	sb_free(envp);
	/*
	 * stdin: the pipe on fd 94 if the request has one (a plain exec: the
	 * redirections of `builtin exec` would be undone), else /dev/null.
	 */
	append_str(buf, req->has_stdin ? "exec 0<&94 94<&-\n" : "exec 94<&-\n");
	/*
	 * The call's own directory (relative to the session's cwd): parse_state
	 * is told on fd 97, "@<the directory>\0" before the shell's record (a
	 * command that does not cd leaves the session's cwd), or "!" if there is
	 * no such directory, and the call fails with 1, nothing run.
	 */
	if (req->call_cwd != NULL)
	{
		/* "./" first: a relative cwd never goes through CDPATH, and "-" is a name. */
		append_str(buf, req->call_cwd[0] == '/' ? "if builtin cd -P -- " : "if builtin cd -P -- ./");
		append_quoted(buf, req->call_cwd, strlen(req->call_cwd));
		append_str(buf, " 2>/dev/null; then builtin printf '@%s\\0' \"$PWD\" >&97; else __sb_d=");
		append_quoted(buf, req->call_cwd, strlen(req->call_cwd));
		append_str(buf, "; if [[ ! -e $__sb_d ]]; then __sb_why='No such file or directory'; "
				   "elif [[ ! -d $__sb_d ]]; then __sb_why='Not a directory'; "
				   "else __sb_why='Permission denied'; fi; "
				   "builtin printf 'cloudrun-sandbox: cd: %s: %s\\n' \"$__sb_d\" \"$__sb_why\" >&2; "
				   "builtin printf '!' >&97; builtin trap - EXIT; builtin exit 1; fi; "
				   "builtin unset __sb_d __sb_why\n");
	}
	/* The setup was read whole before it ran: the command does not get its pipe. */
	append_str(buf, "builtin unset OLDPWD; builtin declare -x OLDPWD; SECONDS=0; exec 95<&-\n");
}

/* kill_all signals every process the command started. */
static void
kill_all(pid_t pgid, int sig)
{
	if (getpid() == 1)
		kill(-1, sig);			/* everything in the sandbox but us */
	else
		kill(-pgid, sig);
}

/* output_to_result repairs captured output into result fields. */
static void
output_to_result(SbBuf *buf, char **data, size_t *len, bool *truncated, bool *repaired)
{
	*data = sb_utf8_repair(buf->data ? buf->data : "", buf->len, buf->truncated, len,
						   repaired);
	*truncated = buf->truncated;
}

/* octal_digit says whether c is 0-7. */
static bool
octal_digit(char c)
{
	return c >= '0' && c <= '7';
}

/*
 * unquote decodes one value as `declare -p` prints it: "..." with \" \\ \$
 * and \` escapes, or $'...' with ANSI-C escapes.  *pp is advanced past it.
 * Returns false on anything malformed.
 */
static bool
unquote(const char **pp, const char *end, SbBuf *out)
{
	const char *p = *pp;

	if (p < end && *p == '"')
	{
		for (p++; p < end && *p != '"'; p++)
		{
			if (*p == '\\' && p + 1 < end && strchr("\"\\$`\n", p[1]))
				p++;
			sb_buf_append(out, p, 1);
		}
	}
	else if (p + 1 < end && p[0] == '$' && p[1] == '\'')
	{
		for (p += 2; p < end && *p != '\''; p++)
		{
			char		c = *p;

			if (c == '\\' && p + 1 < end)
			{
				static const char from[] = "abefnrtv\\'\"?E";
				static const char to[] = "\a\b\033\f\n\r\t\v\\'\"?\033";
				const char *hit = strchr(from, p[1]);

				p++;
				if (hit != NULL && *p != '\0')
					c = to[hit - from];
				else if (octal_digit(*p))
				{
					int			v = 0;

					for (int i = 0; i < 3 && p < end && octal_digit(*p); i++, p++)
						v = v * 8 + (*p - '0');
					p--;
					c = (char) v;
				}
				else
					return false;
			}
			sb_buf_append(out, &c, 1);
		}
	}
	else
		return false;
	if (p >= end)
		return false;
	*pp = p + 1;
	return true;
}

/*
 * skip_array advances *pp past an array value as `declare -p` prints it,
 * "(...)" with quoted elements and keys; false if malformed.
 */
static bool
skip_array(const char **pp, const char *end)
{
	const char *p = *pp;

	if (p >= end || *p != '(')
		return false;
	for (p++; p < end && *p != ')';)
	{
		if (*p == '"' || (*p == '$' && p + 1 < end && p[1] == '\''))
		{
			SbBuf		scratch;
			bool		ok;

			sb_buf_init(&scratch, 0);
			ok = unquote(&p, end, &scratch);
			sb_buf_free(&scratch);
			if (!ok)
				return false;
		}
		else
			p += (*p == '\\' && p + 1 < end) ? 2 : 1;
	}
	if (p >= end)
		return false;
	*pp = p + 1;
	return true;
}

/* shown is how much of a list of names a message shows. */
static int
shown(const SbBuf *list)
{
	return (int) (list->len < 512 ? list->len : 512);
}

/* append_name adds a variable's name to a comma-separated list. */
static void
append_name(SbBuf *list, const char *name)
{
	if (list->len > 0)
		sb_buf_append(list, ", ", 2);
	sb_buf_append(list, name, strlen(name));
}

/*
 * parse_declare reads `declare -px` output: lines "declare -FLAGS NAME" or
 * "declare -FLAGS NAME=VALUE".  Returns an object of the exported variables
 * that have string values, or NULL if the text is malformed.  Arrays (which
 * bash cannot pass to a program) and namerefs are not taken: their names go
 * to *refused.
 */
static json_t *
parse_declare(const char *p, const char *end, SbBuf *refused)
{
	json_t	   *env = json_object();

	while (p < end)
	{
		const char *flags;
		const char *name;
		char	   *key;
		bool		array, nameref;
		SbBuf		val;

		if (end - p < 9 || memcmp(p, "declare -", 9) != 0)
			goto bad;
		/* Skip "declare -FLAGS " to the name. */
		flags = p + 9;
		p = memchr(flags, ' ', end - flags);
		if (p == NULL)
			goto bad;
		array = memchr(flags, 'a', p - flags) != NULL || memchr(flags, 'A', p - flags) != NULL;
		nameref = memchr(flags, 'n', p - flags) != NULL;
		name = ++p;
		while (p < end && *p != '=' && *p != '\n')
			p++;
		if (p >= end)
			goto bad;
		key = sb_strndup(name, p - name);
		if (*p == '\n')
		{
			/* Exported but never assigned: not part of the environment. */
			sb_free(key);
			p++;
			continue;
		}
		p++;
		sb_buf_init(&val, 0);
		if (!(array ? skip_array(&p, end) : unquote(&p, end, &val)) || p >= end || *p != '\n')
		{
			sb_free(key);
			sb_buf_free(&val);
			goto bad;
		}
		p++;
		if (array || nameref)
		{
			if (sb_env_name_valid(key) && !sb_env_name_reserved(key))
				append_name(refused, key);
		}
		else if (sb_env_name_valid(key) && memchr(val.data ? val.data : "", '\0', val.len) == NULL)
		{
			size_t		n;
			bool		repaired;
			char	   *fixed = sb_utf8_repair(val.data ? val.data : "", val.len, false, &n,
											   &repaired);

			json_object_set_new(env, key, json_stringn(fixed, n));
			sb_free(fixed);
		}
		sb_free(key);
		sb_buf_free(&val);
	}
	return env;
bad:
	json_decref(env);
	return NULL;
}

#define NOT_KEPT "the session did not keep "

/*
 * parse_state turns the record the shell wrote ($PWD, NUL, `declare -px`,
 * NUL) into the session's new cwd and environment.  Variables given for this
 * call only, and base variables the session never changed, are not kept;
 * neither are the shell's own (sb_env_name_reserved).  What the session
 * cannot keep is named in res->error.  Without a complete record (the shell
 * was killed, or the command replaced it with exec) nothing is kept.
 */
static void
parse_state(const SbExecRequest *req, SbBuf *buf, SbExecResult *res)
{
	const char *p = buf->data;
	const char *end = buf->data + buf->len;
	const char *start_dir = NULL;	/* the call's own directory, if it had one */
	const char *decl;
	json_t	   *env;
	const char *key;
	json_t	   *value;
	void	   *tmp;
	size_t		n, total = 0;
	bool		repaired;
	SbBuf		refused, big;

	if (buf->truncated)
	{
		note(res, NOT_KEPT "its cwd and environment: the command's exported variables "
			 "are larger than the %d bytes a session holds", SB_MAX_ENV_BYTES);
		return;
	}
	if (buf->len >= 1 && p[0] == '!')
		return;					/* no such call directory: nothing ran */
	if (buf->len >= 1 && p[0] == '@')
	{
		start_dir = p + 1;
		p = memchr(start_dir, '\0', end - start_dir);
		if (p == NULL)
			goto incomplete;
		p++;
	}
	if (end - p < 3 || end[-1] != '\0' || p[0] != '/')
		goto incomplete;
	decl = p + strlen(p) + 1;
	if (decl >= end || memchr(decl, '\0', end - decl - 1) != NULL)
		goto incomplete;
	if (!sb_cwd_normal(p) || strlen(p) >= SB_MAX_CWD_BYTES)
	{
		note(res, NOT_KEPT "its cwd and environment: $PWD is not a normalized absolute "
			 "path of fewer than %d bytes", SB_MAX_CWD_BYTES);
		return;
	}
	sb_buf_init(&refused, 0);
	env = parse_declare(decl, end - 1, &refused);
	if (env == NULL)
	{
		sb_buf_free(&refused);
		goto incomplete;
	}
	if (refused.len > 0)
		note(res, NOT_KEPT "array variable(s) %.*s: a session keeps string variables "
			 "only (bash cannot export arrays)", shown(&refused), refused.data);
	sb_buf_free(&refused);
	json_object_foreach_safe(env, tmp, key, value)
		if (sb_env_name_reserved(key))
			json_object_del(env, key);
	/* Call-only variables the command left as given are not kept. */
	if (req->call_env)
		json_object_foreach_safe(req->call_env, tmp, key, value)
		{
			json_t	   *now = json_object_get(env, key);
			json_t	   *before = json_object_get(req->env, key);

			if (now == NULL || !json_equal(now, value))
				continue;
			if (before)
				json_object_set(env, key, before);
			else
				json_object_del(env, key);
		}
	/* Base variables the session never set are implied, not stored. */
	for (size_t b = 0; b < sizeof(base_env) / sizeof(base_env[0]); b++)
	{
		json_t	   *now = json_object_get(env, base_env[b][0]);

		if (now && json_object_get(req->env, base_env[b][0]) == NULL &&
			strcmp(json_string_value(now), base_env[b][1]) == 0)
			json_object_del(env, base_env[b][0]);
	}
	/* A variable no program could be started with would break every later command. */
	sb_buf_init(&big, 0);
	json_object_foreach(req->env, key, value)
		if (!env_entry_fits(key, value) && !sb_env_name_reserved(key))
			append_name(&big, key);
	json_object_foreach_safe(env, tmp, key, value)
	{
		if (env_entry_fits(key, value))
			total += strlen(key) + json_string_length(value) + 2;
		else
		{
			append_name(&big, key);
			json_object_del(env, key);
		}
	}
	if (big.len > 0)
		note(res, NOT_KEPT "variable(s) %.*s: larger than %d bytes (name=value), the "
			 "kernel's limit for one environment string", shown(&big), big.data,
			 SB_MAX_ENV_VAR_BYTES);
	sb_buf_free(&big);
	if (total > SB_MAX_ENV_BYTES)
	{
		note(res, NOT_KEPT "its cwd and environment: the exported variables are %zu "
			 "bytes, more than the %d bytes a session holds", total, SB_MAX_ENV_BYTES);
		json_decref(env);
		return;
	}
	/* A call in a directory of its own that did not cd leaves the session's cwd. */
	if (start_dir != NULL && strcmp(p, start_dir) == 0)
		res->cwd = sb_strdup(req->cwd);
	else
		res->cwd = sb_utf8_repair(p, strlen(p), false, &n, &repaired);
	res->env = env;
	res->has_state = true;
	return;
incomplete:
	note(res, NOT_KEPT "its cwd and environment: the command's shell ended without "
		 "recording them (it replaced itself with exec, was killed, or stopped through "
		 "errexit or a signal while an EXIT trap of its own was set)");
}

bool
sb_quota_full(long long quota_bytes)
{
	struct statvfs sv;
	/* A writer stopped by ENOSPC leaves less than this free (ext4: a few blocks). */
	unsigned long long slack = quota_bytes / 64 < 1024 * 1024 ? quota_bytes / 64 : 1024 * 1024;

	if (quota_bytes <= 0 || statvfs(SB_WORKSPACE, &sv) != 0)
		return false;
	/* Free, not available: fuse2fs reports reserved blocks that writes may use. */
	return (unsigned long long) sv.f_bfree * sv.f_frsize < slack || sv.f_ffree == 0;
}

void
sb_quota_message(char *buf, size_t len, long long quota_bytes)
{
	long long	mb = quota_bytes / (1024 * 1024);

	if (mb * 1024 * 1024 == quota_bytes)
		snprintf(buf, len, "the session's disk quota of %lld MB is full "
				 "(cloudrun_sandbox.local_disk_quota); delete files in /workspace, /tmp or "
				 "/run/background (background processes' logs) to free space", mb);
	else
		snprintf(buf, len, "the session's disk quota of %lld kB is full "
				 "(cloudrun_sandbox.local_disk_quota); delete files in /workspace, /tmp or "
				 "/run/background (background processes' logs) to free space", quota_bytes / 1024);
}

/* output_raw hands captured output over as it is (the buffer's memory moves). */
static void
output_raw(SbBuf *buf, char **data, size_t *len, bool *truncated)
{
	*data = buf->data ? buf->data : sb_strdup("");
	*len = buf->len;
	*truncated = buf->truncated;
	buf->data = NULL;
	buf->len = 0;
}

/* read_into drains what is available on fd into buf; returns false at EOF. */
static bool
read_into(int fd, SbBuf *buf)
{
	char		chunk[65536];

	for (;;)
	{
		ssize_t		n = read(fd, chunk, sizeof(chunk));

		if (n > 0)
		{
			sb_buf_append(buf, chunk, (size_t) n);
			if ((size_t) n < sizeof(chunk))
				return true;
			continue;
		}
		if (n == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN;
	}
}

static bool run_command(const SbExecRequest *req, SbExecResult *res,
						const SbCancelWatch *watch, int conn_fd);

void
sb_run_command(const SbExecRequest *req, SbExecResult *res)
{
	(void) run_command(req, res, NULL, -1);
}

void
sb_run_command_watched(const SbExecRequest *req, SbExecResult *res, const SbCancelWatch *watch)
{
	(void) run_command(req, res, watch, -1);
}

bool
sb_run_command_conn(const SbExecRequest *req, SbExecResult *res, int conn_fd)
{
	if (run_command(req, res, NULL, conn_fd))
		return true;
	sb_result_clear(res);
	return false;
}

/*
 * run_command runs the command (see the file header), with a cancel watch
 * or none, and watching conn_fd (>= 0: the connection a frame came on; its
 * output is then kept as captured, for the host to repair).  Returns false
 * if conn_fd's peer hung up: the command and everything it started were
 * killed.
 */
static bool
run_command(const SbExecRequest *req, SbExecResult *res, const SbCancelWatch *watch,
			int conn_fd)
{
	int			out[2] = {-1, -1}, err[2] = {-1, -1}, cmd[2] = {-1, -1}, st[2] = {-1, -1};
	int			setup_w;
	int			in_w;			/* the command's stdin, when the request has one */
	const char *inp = req->stdin_data;
	size_t		in_left = req->stdin_len;
	Shell		sh;
	SbBuf		setup;
	size_t		setup_done = 0;
	int			sigfd;
	sigset_t	mask;
	SbBuf		obuf, ebuf, sbuf;
	pid_t		child;
	double		start = now_ms();
	double		deadline = req->timeout_ms > 0 ? start + req->timeout_ms : 0;
	double		kill_at = 0, drain_until = 0;
	double		next_check = watch ? start + watch->interval_ms : 0;
	/*
	 * With a quota, a command that fills the disk is stopped: once it is full
	 * after it had room while the command ran (never one that only found it
	 * full).
	 */
	bool		quota_watch = req->disk_quota_bytes > 0;
	bool		quota_room = quota_watch && !sb_quota_full(req->disk_quota_bytes);
	double		next_quota = quota_watch ? start + SB_QUOTA_POLL_MS : 0;
	bool		quota_hit = false;
	bool		timed_out = false, exited = false, cancelled = false;
	bool		hung_up = false;
	int			wstatus = 0;
	const char *cmdp = req->command;
	size_t		cmd_left = strlen(req->command);
	double		next_live = 0;	/* live output: when news may be flushed next */
	bool		live_news = false;

	memset(res, 0, sizeof(*res));
	sb_buf_init(&obuf, (size_t) req->max_output_bytes);
	sb_buf_init(&ebuf, (size_t) req->max_output_bytes);
	sb_buf_init(&sbuf, STATE_CAP);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
	{
		set_error(res, "cannot watch for the shell's exit");
		sigprocmask(SIG_UNBLOCK, &mask, NULL);
		return true;
	}
	if (!shell_take(&sh))
	{
		set_error(res, "cannot start bash");
		close(sigfd);
		sigprocmask(SIG_UNBLOCK, &mask, NULL);
		return true;
	}
	child = sh.pid;
	out[0] = sh.out_r;
	err[0] = sh.err_r;
	st[0] = sh.st_r;
	cmd[1] = sh.cmd_w;
	setup_w = sh.setup_w;
	in_w = sh.in_w;
	if (!req->has_stdin)
	{
		close(in_w);
		in_w = -1;
	}
	shell_limits(child, &req->limits);
	sb_buf_init(&setup, 0);
	shell_setup(req, &setup);
	if (setup.len > 65536)
		(void) fcntl(setup_w, F_SETPIPE_SZ, setup.len < 1048576 ? (int) setup.len : 1048576);
	if (cmd_left > 65536)
		(void) fcntl(cmd[1], F_SETPIPE_SZ, cmd_left < 1048576 ? (int) cmd_left : 1048576);
	if (cmd_left == 0)
	{
		close(cmd[1]);
		cmd[1] = -1;
	}

	while (!exited || out[0] >= 0 || err[0] >= 0 || st[0] >= 0)
	{
		struct pollfd pfd[8];
		int			nfds = 0;
		double		now = now_ms();
		double		wake = 0;
		int			timeout;

		/* Deadlines: the command's timeout, the kill grace, the final drain. */
		if (!exited && deadline > 0 && !timed_out && now >= deadline)
		{
			timed_out = true;
			kill_all(child, SIGTERM);
			kill_at = now + (req->kill_grace_ms > 0 ? req->kill_grace_ms : 1);
		}
		if (!exited && kill_at > 0 && now >= kill_at)
		{
			kill_all(child, SIGKILL);
			kill_at = 0;
		}
		if (!exited && !cancelled && watch != NULL && now >= next_check)
		{
			if (watch->check(watch->arg))
			{
				cancelled = true;
				kill_all(child, SIGKILL);
			}
			now = now_ms();
			next_check = now + watch->interval_ms;
		}
		if (!exited && quota_watch && !quota_hit && now >= next_quota)
		{
			if (!sb_quota_full(req->disk_quota_bytes))
				quota_room = true;
			else if (quota_room)
			{
				quota_hit = true;
				kill_all(child, SIGKILL);
			}
			now = now_ms();
			next_quota = now + SB_QUOTA_POLL_MS;
		}
		if (live_news && now >= next_live)
		{
			req->live->flush(req->live->arg, obuf.data, obuf.len, ebuf.data, ebuf.len, false);
			live_news = false;
			now = now_ms();
			next_live = now + req->live->interval_ms;
		}
		if (exited && (hung_up || now >= drain_until))
			break;
		if (!exited && !timed_out && deadline > 0)
			wake = deadline;
		if (!exited && kill_at > 0)
			wake = kill_at;
		if (!exited && !cancelled && watch != NULL && (wake == 0 || next_check < wake))
			wake = next_check;
		if (!exited && quota_watch && !quota_hit && (wake == 0 || next_quota < wake))
			wake = next_quota;
		if (exited)
			wake = drain_until;
		if (live_news && (wake == 0 || next_live < wake))
			wake = next_live;
		timeout = wake > 0 ? (int) (wake - now) + 1 : -1;

		pfd[nfds++] = (struct pollfd) {.fd = sigfd, .events = POLLIN};
		pfd[nfds++] = (struct pollfd) {.fd = out[0], .events = POLLIN};
		pfd[nfds++] = (struct pollfd) {.fd = err[0], .events = POLLIN};
		pfd[nfds++] = (struct pollfd) {.fd = st[0], .events = POLLIN};
		pfd[nfds++] = (struct pollfd) {.fd = cmd[1], .events = POLLOUT};
		/*
		 * The connection: only its hang-up, never its bytes (a request the
		 * peer pipelined stays unread).
		 */
		pfd[nfds++] = (struct pollfd) {.fd = hung_up ? -1 : conn_fd, .events = POLLRDHUP};
		pfd[nfds++] = (struct pollfd) {.fd = setup_w, .events = POLLOUT};
		/* stdin: written as the command takes it, never waited for (see below). */
		pfd[nfds++] = (struct pollfd) {.fd = in_w, .events = POLLOUT};
		if (poll(pfd, nfds, timeout) < 0 && errno != EINTR)
		{
			set_error(res, "poll failed");
			kill_all(child, SIGKILL);
			break;
		}
		if (pfd[0].revents)
		{
			struct signalfd_siginfo si;
			pid_t		pid;
			int			ws;

			while (read(sigfd, &si, sizeof(si)) > 0)
				;
			while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
				if (pid == child)
				{
					exited = true;
					wstatus = ws;
					/* Nothing the command started outlives it. */
					kill_all(child, SIGKILL);
					drain_until = now_ms() + DRAIN_MS;
				}
		}
		if (pfd[1].revents && !read_into(out[0], &obuf))
			close(out[0]), out[0] = -1;
		if (pfd[2].revents && !read_into(err[0], &ebuf))
			close(err[0]), err[0] = -1;
		if (req->live != NULL && (pfd[1].revents || pfd[2].revents))
			live_news = true;
		if (pfd[3].revents && !read_into(st[0], &sbuf))
			close(st[0]), st[0] = -1;
		if (pfd[4].revents)
		{
			ssize_t		n = (pfd[4].revents & POLLOUT) ? write(cmd[1], cmdp, cmd_left) : -1;

			if (n > 0)
			{
				cmdp += n;
				cmd_left -= n;
			}
			if (cmd_left == 0 || !(pfd[4].revents & POLLOUT) ||
				(n < 0 && errno != EAGAIN && errno != EINTR))
			{
				close(cmd[1]);
				cmd[1] = -1;
			}
		}
		if (pfd[6].revents)
		{
			ssize_t		n = (pfd[6].revents & POLLOUT) ?
				write(setup_w, setup.data + setup_done, setup.len - setup_done) : -1;

			if (n > 0)
				setup_done += n;
			/* An error or hang-up without POLLOUT: the shell is gone, never poll it again. */
			if (setup_done == setup.len || !(pfd[6].revents & POLLOUT) ||
				(n < 0 && errno != EAGAIN && errno != EINTR))
			{
				close(setup_w);
				setup_w = -1;
			}
		}
		/*
		 * stdin is closed once all of it is written, or the command can no
		 * longer read it (EPIPE), or the command has exited (one that never
		 * read it is not waited for).
		 */
		if (in_w >= 0 && (pfd[7].revents || exited))
		{
			ssize_t		n = (pfd[7].revents & POLLOUT) && in_left > 0 ?
				write(in_w, inp, in_left) : 0;

			if (n > 0)
			{
				inp += n;
				in_left -= n;
			}
			if (in_left == 0 || exited || (n < 0 && errno != EAGAIN && errno != EINTR) ||
				(pfd[7].revents & (POLLERR | POLLHUP)))
			{
				close(in_w);
				in_w = -1;
			}
		}
		if (pfd[5].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		{
			/* The peer is gone (a cancel, or its backend died): so is the command. */
			hung_up = true;
			kill_all(child, SIGKILL);
			if (exited)
				break;
		}
	}
	if (setup_w >= 0)
		close(setup_w);
	if (in_w >= 0)
		close(in_w);
	sb_buf_free(&setup);
	if (cmd[1] >= 0)
		close(cmd[1]);
	if (out[0] >= 0)
		close(out[0]);
	if (err[0] >= 0)
		close(err[0]);
	if (st[0] >= 0)
		close(st[0]);
	close(sigfd);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	res->duration_ms = now_ms() - start;
	if (req->live != NULL && !hung_up)
		req->live->flush(req->live->arg, obuf.data, obuf.len, ebuf.data, ebuf.len, true);
	if (conn_fd >= 0)
	{
		output_raw(&obuf, &res->stdout_data, &res->stdout_len, &res->stdout_truncated);
		output_raw(&ebuf, &res->stderr_data, &res->stderr_len, &res->stderr_truncated);
	}
	else
	{
		output_to_result(&obuf, &res->stdout_data, &res->stdout_len, &res->stdout_truncated,
						 &res->stdout_repaired);
		output_to_result(&ebuf, &res->stderr_data, &res->stderr_len, &res->stderr_truncated,
						 &res->stderr_repaired);
	}
	if (res->status != SB_STATUS_ERROR)
	{
		if (WIFEXITED(wstatus))
			res->exit_code = WEXITSTATUS(wstatus);
		else if (WIFSIGNALED(wstatus))
			res->exit_code = 128 + WTERMSIG(wstatus);
		res->has_exit_code = exited;
		if (cancelled)
		{
			res->status = SB_STATUS_ERROR;
			res->error = sb_strdup("cancelled by sandbox.cancel()");
		}
		else if (timed_out)
			res->status = SB_STATUS_TIMED_OUT;
		else if (!exited)
		{
			res->status = SB_STATUS_ERROR;
			res->error = sb_strdup("the command's shell did not exit");
		}
		else
			res->status = res->exit_code == 0 ? SB_STATUS_SUCCEEDED : SB_STATUS_FAILED;
		/* Stopped at the quota, or failed with the disk full: say so. */
		if (!cancelled && (quota_hit || (res->status == SB_STATUS_FAILED &&
										 sb_quota_full(req->disk_quota_bytes))))
		{
			char		msg[512];

			sb_quota_message(msg, sizeof(msg), req->disk_quota_bytes);
			res->status = SB_STATUS_QUOTA_EXCEEDED;
			note(res, "%s%s", quota_hit ? "stopped: " : "", msg);
		}
		if (!cancelled && exited && !hung_up)
			parse_state(req, &sbuf, res);
	}
	sb_buf_free(&obuf);
	sb_buf_free(&ebuf);
	sb_buf_free(&sbuf);
	return !hung_up;
}

/*
 * stdin_feeder gives the command its stdin bytes on a pipe, written by a
 * process of its own (in the command's process group, so it goes with it):
 * the supervisor never waits on a command that does not read.  Returns the
 * pipe's read end, or -1.
 */
static int
stdin_feeder(const SbExecRequest *req)
{
	int			p[2];
	pid_t		pid;

	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid == 0)
	{
		close(p[0]);
		(void) sb_write_all(p[1], req->stdin_data ? req->stdin_data : "", req->stdin_len);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0)
	{
		close(p[0]);
		return -1;
	}
	return p[0];
}

/*
 * sb_background_child turns a freshly forked child into the background
 * command: default signals, its own process group, stdin from stdin_fd (or,
 * if stdin_fd < 0, the request's stdin bytes, then EOF; without any,
 * /dev/null), stdout and stderr to out_fd (or as inherited, if out_fd < 0),
 * the request's limits, cwd (else fallback_cwd) and environment.  It never
 * returns.
 */
void
sb_background_child(const SbExecRequest *req, int out_fd, const char *fallback_cwd,
					int stdin_fd)
{
	sigset_t	none;
	int			devnull = open("/dev/null", O_RDONLY);

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setpgid(0, 0);
	if (stdin_fd < 0 && req->has_stdin)
		stdin_fd = stdin_feeder(req);
	if (stdin_fd >= 0)
		dup2(stdin_fd, 0);
	else if (devnull >= 0)
		dup2(devnull, 0);
	if (out_fd >= 0)
	{
		dup2(out_fd, 1);
		dup2(out_fd, 2);
	}
	close_range(3, ~0U, 0);
	sb_command_limits(req);
	if (chdir(req->cwd) != 0 && chdir(fallback_cwd) != 0 && chdir("/") != 0)
		_exit(126);
	execve("/bin/bash",
		   (char *[]) {"bash", "--noprofile", "--norc", "-c", (char *) req->command, NULL},
		   sb_command_env(req));
	dprintf(2, "cloudrun-sandbox: cannot execute /bin/bash: %s\n", strerror(errno));
	_exit(127);
}
