-- cloudrun_sandbox 0.5.0 -> 0.6.0: stdin, per-call cwd, live output and
-- retries (issue 14).  Each block below belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.6.0'" to load this file. \quit

-- [interface] The new arguments of issue 14, in one place so that the blocks
-- below (each change's own) agree on them: stdin (text, or stdin_bytes for
-- binary data), a per-call cwd (relative to the session's), live output of a
-- synchronous exec (stream; NULL = the setting), and retries of a queued
-- command (retries NULL = none, retry_delay NULL = 1 second, retry_on NULL =
-- 'error').  The functions are dropped and made again (an overload with more
-- defaults would make every existing call ambiguous), with their comments and
-- grants.
DROP FUNCTION sandbox.exec(text, text, interval, jsonb);
CREATE FUNCTION sandbox.exec(
	command text,
	session text DEFAULT 'default',
	timeout interval DEFAULT NULL,
	env jsonb DEFAULT NULL,
	stdin text DEFAULT NULL,
	cwd text DEFAULT NULL,
	stream boolean DEFAULT NULL,
	stdin_bytes bytea DEFAULT NULL,
	OUT id bigint,
	OUT status text,
	OUT exit_code integer,
	OUT stdout text,
	OUT stderr text,
	OUT cwd text,
	OUT duration interval,
	OUT stdout_truncated boolean,
	OUT stderr_truncated boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'sandbox_exec'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.exec(text, text, interval, jsonb, text, text, boolean, bytea) IS
	'run a shell command in a session''s sandbox and return its result';
REVOKE ALL ON FUNCTION sandbox.exec(text, text, interval, jsonb, text, text, boolean, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.exec(text, text, interval, jsonb, text, text, boolean, bytea) TO sandbox_user;

DROP FUNCTION sandbox.submit(text, text, interval, jsonb, regprocedure);
CREATE FUNCTION sandbox.submit(
	command text,
	session text DEFAULT 'default',
	timeout interval DEFAULT NULL,
	env jsonb DEFAULT NULL,
	callback regprocedure DEFAULT NULL,
	stdin text DEFAULT NULL,
	cwd text DEFAULT NULL,
	retries integer DEFAULT NULL,
	retry_delay interval DEFAULT NULL,
	retry_on text DEFAULT NULL,
	stdin_bytes bytea DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sandbox_submit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.submit(text, text, interval, jsonb, regprocedure, text, text, integer, interval, text, bytea) IS
	'queue a command; the background worker runs it after this transaction commits';
REVOKE ALL ON FUNCTION sandbox.submit(text, text, interval, jsonb, regprocedure, text, text, integer, interval, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.submit(text, text, interval, jsonb, regprocedure, text, text, integer, interval, text, bytea) TO sandbox_user;

DROP FUNCTION sandbox.start_background(text, text);
CREATE FUNCTION sandbox.start_background(
	command text,
	session text DEFAULT 'default',
	stdin text DEFAULT NULL,
	stdin_bytes bytea DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sandbox_start_background'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.start_background(text, text, text, bytea) IS
	'start a long-running command in a session''s sandbox (after commit); returns its handle';
REVOKE ALL ON FUNCTION sandbox.start_background(text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.start_background(text, text, text, bytea) TO sandbox_user;

-- [stdin] stdin and a per-call cwd (issue 14, parts 1 and 2).  A queued
-- command keeps its stdin (bytea) and its own directory in its row until the
-- worker runs it (stdin is cleared when the row is finished); both count in
-- the row's bytes, so history_max_bytes_per_role bounds them too.  A
-- generated column's expression cannot change in place (PostgreSQL 15): the
-- column is made again (one rewrite of the table), with its comment and the
-- history index that includes it.
ALTER TABLE sandbox.executions ADD COLUMN stdin bytea, ADD COLUMN call_cwd text;
COMMENT ON COLUMN sandbox.executions.stdin IS
	'a queued command''s stdin (exec/submit stdin or stdin_bytes), kept until the worker has run it';
COMMENT ON COLUMN sandbox.executions.call_cwd IS
	'the directory this execution ran in (submit''s cwd argument), relative to the session''s cwd';
ALTER TABLE sandbox.executions DROP COLUMN bytes;
ALTER TABLE sandbox.executions ADD COLUMN bytes bigint GENERATED ALWAYS AS (
	pg_catalog.octet_length(command) + COALESCE(pg_catalog.octet_length(stdout), 0)
	+ COALESCE(pg_catalog.octet_length(stderr), 0) + COALESCE(pg_catalog.octet_length(error), 0)
	+ COALESCE(pg_catalog.octet_length(call_env::text), 0) + COALESCE(pg_catalog.octet_length(cwd), 0)
	+ COALESCE(pg_catalog.octet_length(remote_name), 0) + COALESCE(pg_catalog.octet_length(stdin), 0)
	+ COALESCE(pg_catalog.octet_length(call_cwd), 0)) STORED;
COMMENT ON COLUMN sandbox.executions.bytes IS
	'bytes of command, stdout, stderr, error, call_env, cwd, remote_name, stdin and call_cwd: what cloudrun_sandbox.history_max_bytes_per_role counts';
CREATE INDEX executions_history_idx ON sandbox.executions (owner, finished_at DESC, id DESC)
	INCLUDE (bytes) WHERE finished_at IS NOT NULL;

-- A background process's stdin: the bytes to feed it (until the worker has
-- started it), and whether its stdin stays open for write_background_stdin
-- (start_background_writable) or is closed once they are written
-- (start_background; without stdin it is /dev/null).
ALTER TABLE sandbox.background_processes ADD COLUMN stdin bytea,
	ADD COLUMN stdin_open boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN sandbox.background_processes.stdin IS
	'the stdin given to start_background, kept until the worker has started the process';
COMMENT ON COLUMN sandbox.background_processes.stdin_open IS
	'started with start_background_writable: its stdin is a pipe write_background_stdin writes to';

CREATE FUNCTION sandbox.start_background_writable(
	command text,
	session text DEFAULT 'default',
	stdin text DEFAULT NULL,
	stdin_bytes bytea DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sandbox_start_background_writable'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.start_background_writable(text, text, text, bytea) IS
	'start_background whose stdin stays open: written with write_background_stdin, closed with close => true';
REVOKE ALL ON FUNCTION sandbox.start_background_writable(text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.start_background_writable(text, text, text, bytea) TO sandbox_user;

CREATE FUNCTION sandbox.write_background_stdin(pid bigint, data text, close boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sandbox_write_background_stdin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION sandbox.write_background_stdin(pid bigint, data bytea, close boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sandbox_write_background_stdin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.write_background_stdin(bigint, text, boolean) IS
	'write to the stdin of a running process of start_background_writable (then close it, if asked); returns the bytes written';
COMMENT ON FUNCTION sandbox.write_background_stdin(bigint, bytea, boolean) IS
	'write to the stdin of a running process of start_background_writable (then close it, if asked); returns the bytes written';
REVOKE ALL ON FUNCTION sandbox.write_background_stdin(bigint, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sandbox.write_background_stdin(bigint, bytea, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.write_background_stdin(bigint, text, boolean) TO sandbox_user;
GRANT EXECUTE ON FUNCTION sandbox.write_background_stdin(bigint, bytea, boolean) TO sandbox_user;
