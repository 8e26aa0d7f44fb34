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
-- A queued execution keeps its id through its attempts: its row in
-- sandbox.executions is the latest attempt (attempt = its number), and each
-- earlier attempt that was retried is kept as a row of
-- sandbox.retried_attempts (deleted with its execution); the view
-- sandbox.execution_attempts shows them all.  An attempt that ends in a status
-- the policy retries is recorded there, and the execution is queued again
-- (status 'queued', next_attempt_at after the delay, a new run_id naming its
-- request and result objects, which are create-only); the worker claims it
-- only from next_attempt_at on, and nothing later of its session runs before
-- it.  Its bytes count the retried attempts' (attempts_bytes), so
-- history_max_bytes_per_role bounds them too; the column is made again, as in
-- 0.6.0, with its comment and the history index that includes it.
ALTER TABLE sandbox.executions
	ADD COLUMN retries integer CHECK (retries BETWEEN 0 AND 100),
	ADD COLUMN retry_delay interval,
	ADD COLUMN retry_on text CHECK (retry_on IN ('error', 'failure')),
	ADD COLUMN attempt integer NOT NULL DEFAULT 1,
	ADD COLUMN next_attempt_at timestamptz,
	ADD COLUMN run_id bigint,
	ADD COLUMN attempts_bytes bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN sandbox.executions.retries IS
	'submit''s retries: how many times an attempt that ends as retry_on says is run again (NULL or 0: never)';
COMMENT ON COLUMN sandbox.executions.retry_delay IS
	'the delay before the first retry; it doubles for each next one (capped at a day)';
COMMENT ON COLUMN sandbox.executions.retry_on IS
	'''error'': retry an attempt that ended in error (the sandbox or the cloud failed); ''failure'': also one that failed (non-zero exit) or timed out';
COMMENT ON COLUMN sandbox.executions.attempt IS
	'the number of this row''s attempt (1 for the first); earlier ones are in sandbox.retried_attempts';
COMMENT ON COLUMN sandbox.executions.next_attempt_at IS
	'a retry is not started before this time';
COMMENT ON COLUMN sandbox.executions.run_id IS
	'the id naming this attempt''s request and result objects (NULL: the execution''s id)';
COMMENT ON COLUMN sandbox.executions.attempts_bytes IS
	'the bytes of this execution''s rows in sandbox.retried_attempts';
ALTER TABLE sandbox.executions DROP COLUMN bytes;
ALTER TABLE sandbox.executions ADD COLUMN bytes bigint GENERATED ALWAYS AS (
	pg_catalog.octet_length(command) + COALESCE(pg_catalog.octet_length(stdout), 0)
	+ COALESCE(pg_catalog.octet_length(stderr), 0) + COALESCE(pg_catalog.octet_length(error), 0)
	+ COALESCE(pg_catalog.octet_length(call_env::text), 0) + COALESCE(pg_catalog.octet_length(cwd), 0)
	+ COALESCE(pg_catalog.octet_length(remote_name), 0) + COALESCE(pg_catalog.octet_length(stdin), 0)
	+ COALESCE(pg_catalog.octet_length(call_cwd), 0) + attempts_bytes) STORED;
COMMENT ON COLUMN sandbox.executions.bytes IS
	'bytes of command, stdout, stderr, error, call_env, cwd, remote_name, stdin and call_cwd, and of its retried attempts: what cloudrun_sandbox.history_max_bytes_per_role counts';
CREATE INDEX executions_history_idx ON sandbox.executions (owner, finished_at DESC, id DESC)
	INCLUDE (bytes) WHERE finished_at IS NOT NULL;
-- The worker's next timer: the earliest retry waiting for its time.
CREATE INDEX executions_retry_due_idx ON sandbox.executions (next_attempt_at)
	WHERE status = 'queued' AND next_attempt_at IS NOT NULL;

CREATE TABLE sandbox.retried_attempts (
	execution_id bigint NOT NULL REFERENCES sandbox.executions (id) ON DELETE CASCADE,
	attempt integer NOT NULL,
	owner regrole NOT NULL,
	status text NOT NULL,
	exit_code integer,
	stdout text,
	stderr text,
	stdout_truncated boolean NOT NULL DEFAULT false,
	stderr_truncated boolean NOT NULL DEFAULT false,
	cwd text,
	error text,
	remote_name text,
	started_at timestamptz,
	finished_at timestamptz NOT NULL,
	duration interval,
	bytes bigint GENERATED ALWAYS AS (
		COALESCE(pg_catalog.octet_length(stdout), 0) + COALESCE(pg_catalog.octet_length(stderr), 0)
		+ COALESCE(pg_catalog.octet_length(error), 0) + COALESCE(pg_catalog.octet_length(cwd), 0)
		+ COALESCE(pg_catalog.octet_length(remote_name), 0) + 64) STORED,
	PRIMARY KEY (execution_id, attempt)
);
COMMENT ON TABLE sandbox.retried_attempts IS
	'the earlier attempts of queued executions that were retried (the latest attempt is the row in sandbox.executions)';
ALTER TABLE sandbox.retried_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY retried_attempts_owner ON sandbox.retried_attempts
	USING (owner = (SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER))));
REVOKE ALL ON sandbox.retried_attempts FROM PUBLIC;
GRANT SELECT ON sandbox.retried_attempts TO sandbox_user;

-- Every attempt of every execution, oldest first; row-level security applies.
CREATE VIEW sandbox.execution_attempts WITH (security_invoker = true) AS
	SELECT a.execution_id AS id, e.session, a.owner, a.attempt, a.status, a.exit_code,
		a.stdout, a.stderr, a.stdout_truncated, a.stderr_truncated, a.cwd, a.error,
		a.remote_name, a.started_at, a.finished_at, a.duration, a.bytes, false AS latest
	FROM sandbox.retried_attempts a JOIN sandbox.executions e ON e.id = a.execution_id
	UNION ALL
	SELECT e.id, e.session, e.owner, e.attempt, e.status, e.exit_code, e.stdout, e.stderr,
		e.stdout_truncated, e.stderr_truncated, e.cwd, e.error, e.remote_name, e.started_at,
		e.finished_at, e.duration, e.bytes - e.attempts_bytes, true
	FROM sandbox.executions e;
COMMENT ON VIEW sandbox.execution_attempts IS
	'every attempt of each execution (latest: the one in sandbox.executions, perhaps still to run)';
REVOKE ALL ON sandbox.execution_attempts FROM PUBLIC;
GRANT SELECT ON sandbox.execution_attempts TO sandbox_user;
-- (end of [retry])
