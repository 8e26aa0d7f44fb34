-- cloudrun_sandbox 0.7.0 -> 0.8.0: session runners on Cloud Run (issue 13).
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.8.0'" to load this file. \quit

-- [runner] The runners this server uses, for psql: sandbox.session_runners
-- (one row per cloud session with a runner in use, the caller's own; a
-- superuser's all), and worker_status() counts them (a new OUT column
-- runners; a function's OUT columns cannot change in place, so it is
-- dropped and made again, with its comment and grant).
CREATE FUNCTION sandbox.session_runner_entries(
	OUT storage_key text,
	OUT owner regrole,
	OUT execution text,
	OUT started_at timestamptz,
	OUT last_request_at timestamptz,
	OUT requests bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sandbox_session_runner_entries'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION sandbox.session_runner_entries() IS
	'the Cloud Run session runners this server uses (behind sandbox.session_runners)';
REVOKE ALL ON FUNCTION sandbox.session_runner_entries() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.session_runner_entries() TO sandbox_user;

CREATE VIEW sandbox.session_runners WITH (security_invoker = true) AS
	SELECT s.name AS session, r.owner, r.execution, r.started_at, r.last_request_at,
		r.requests
	FROM sandbox.session_runner_entries() r
	JOIN sandbox.sessions s ON s.storage_key = r.storage_key AND s.owner = r.owner
	ORDER BY r.last_request_at DESC NULLS LAST;
COMMENT ON VIEW sandbox.session_runners IS
	'the Cloud Run session runners in use: one long-running execution per cloud session (execution: its name)';
REVOKE ALL ON sandbox.session_runners FROM PUBLIC;
GRANT SELECT ON sandbox.session_runners TO sandbox_user;

DROP FUNCTION sandbox.worker_status();
CREATE FUNCTION sandbox.worker_status(
	OUT running boolean,
	OUT pid integer,
	OUT database text,
	OUT started_at timestamptz,
	OUT in_flight_local integer,
	OUT in_flight_cloudrun integer,
	OUT completed bigint,
	OUT last_error text,
	OUT last_error_at timestamptz,
	OUT limits text[],
	OUT runners integer)
RETURNS record
AS 'MODULE_PATHNAME', 'sandbox_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION sandbox.worker_status() IS
	'the background worker: running or not, in flight, last error, the limits in force, and the Cloud Run session runners in use';
REVOKE ALL ON FUNCTION sandbox.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.worker_status() TO sandbox_user;
-- (end of [runner])
