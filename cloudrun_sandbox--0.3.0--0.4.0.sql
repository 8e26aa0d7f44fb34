-- cloudrun_sandbox 0.3.0 -> 0.4.0: bounded resources (issue 11): disk quota per
-- session, history bytes per role, limits in force.  Each block below belongs
-- to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.4.0'" to load this file. \quit

-- [history] A per-role bound on history bytes (issue 11, finding 6):
-- cloudrun_sandbox.history_max_bytes_per_role.  Each row's bytes (command,
-- stdout, stderr and error) are stored with it, and an index walks a role's
-- finished rows newest first carrying them, so a prune reads only the rows it
-- keeps (plus one) and never a whole table.  Adding the column rewrites the
-- table once, existing rows included.
-- The call's environment (up to 1 MB of a queued command's env), its cwd and
-- its remote name count too, or a role could keep far more than the bound in
-- them.
ALTER TABLE sandbox.executions ADD COLUMN bytes bigint GENERATED ALWAYS AS (
	pg_catalog.octet_length(command) + COALESCE(pg_catalog.octet_length(stdout), 0)
	+ COALESCE(pg_catalog.octet_length(stderr), 0) + COALESCE(pg_catalog.octet_length(error), 0)
	+ COALESCE(pg_catalog.octet_length(call_env::text), 0) + COALESCE(pg_catalog.octet_length(cwd), 0)
	+ COALESCE(pg_catalog.octet_length(remote_name), 0)) STORED;
COMMENT ON COLUMN sandbox.executions.bytes IS
	'bytes of command, stdout, stderr, error, call_env, cwd and remote_name: what cloudrun_sandbox.history_max_bytes_per_role counts';
CREATE INDEX executions_history_idx ON sandbox.executions (owner, finished_at DESC, id DESC)
	INCLUDE (bytes) WHERE finished_at IS NOT NULL;

-- [cgroups] worker_status() says which limits are in force: a new OUT column
-- limits text[], one line per limit ("<setting>: <value> <what it bounds>",
-- and "cgroups: in force ..." or "cgroups: not in force: <why>").  A function's
-- OUT columns cannot change in place, so it is dropped and made again, with
-- its comment and grant as in 0.1.0 (nothing to PUBLIC).
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
	OUT limits text[])
RETURNS record
AS 'MODULE_PATHNAME', 'sandbox_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION sandbox.worker_status() IS
	'the background worker: running or not, in flight, last error, and the limits in force';
REVOKE ALL ON FUNCTION sandbox.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.worker_status() TO sandbox_user;

-- [quota] A local session's disk quota (cloudrun_sandbox.local_disk_quota): a
-- command or background process that fills it ends with status 'quota_exceeded'.
ALTER TABLE sandbox.executions DROP CONSTRAINT executions_status_check;
ALTER TABLE sandbox.executions ADD CONSTRAINT executions_status_check
	CHECK (status IN ('queued', 'launching', 'running', 'succeeded', 'failed', 'timed_out',
					  'error', 'cancelled', 'quota_exceeded'));
ALTER TABLE sandbox.background_processes DROP CONSTRAINT background_processes_status_check;
ALTER TABLE sandbox.background_processes ADD CONSTRAINT background_processes_status_check
	CHECK (status IN ('starting', 'running', 'exited', 'killed', 'failed', 'quota_exceeded'));
