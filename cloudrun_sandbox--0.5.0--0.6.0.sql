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
