-- cloudrun_sandbox 0.6.0 -> 0.7.0: live output and retries (issue 14, parts 3
-- to 5).  The interface (exec's stream, submit's retries, retry_delay and
-- retry_on) came in 0.6.0; these blocks give it its behaviour.  Each block
-- belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.7.0'" to load this file. \quit

-- [stream] Live output (issue 14, parts 3 and 4).
CREATE FUNCTION sandbox.read_output(
	id bigint,
	stdout_offset bigint DEFAULT 0,
	stderr_offset bigint DEFAULT 0,
	OUT stdout bytea,
	OUT stderr bytea,
	OUT next_stdout_offset bigint,
	OUT next_stderr_offset bigint,
	OUT finished boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'sandbox_read_output'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.read_output(bigint, bigint, bigint) IS
	'an execution''s output after the given byte offsets (while it runs: so far), the offsets to ask for next, and whether it has finished';
REVOKE ALL ON FUNCTION sandbox.read_output(bigint, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.read_output(bigint, bigint, bigint) TO sandbox_user;
-- A follower's get_background_logs: the bytes after log_offset and the offset
-- to ask for next ("offset" is a reserved word, so the argument is log_offset).
CREATE FUNCTION sandbox.get_background_logs(
	pid bigint,
	log_offset bigint,
	session text DEFAULT NULL,
	OUT output bytea,
	OUT next_offset bigint,
	OUT running boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'sandbox_get_background_logs_from'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION sandbox.get_background_logs(bigint, bigint, text) IS
	'a background process''s output after a byte offset (at most 1 MB a call), the offset to ask for next, and whether it still runs';
REVOKE ALL ON FUNCTION sandbox.get_background_logs(bigint, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.get_background_logs(bigint, bigint, text) TO sandbox_user;
-- (end of [stream])


-- [retry] Retries of queued commands (issue 14, part 5).
-- (end of [retry])
