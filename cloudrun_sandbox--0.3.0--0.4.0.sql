-- cloudrun_sandbox 0.3.0 -> 0.4.0: bounded resources (issue 11): disk quota per
-- session, history bytes per role, limits in force.  Each block below belongs
-- to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.4.0'" to load this file. \quit

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
