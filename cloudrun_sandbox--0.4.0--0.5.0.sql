-- cloudrun_sandbox 0.4.0 -> 0.5.0: warm sandboxes for every local call, binary
-- frames (issue 12).  Each block below belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.5.0'" to load this file. \quit

-- [pool] The warm pool (src/local/warm.c): one sandbox per session in use,
-- owned by the background worker, used by sandbox.exec, every file operation
-- and the queued commands.  The function reads the shared registry: a
-- superuser gets every row of this database, anyone else only the rows of
-- sandboxes of their own sessions; the view adds the session's name (through
-- sandbox.sessions, whose row-level security applies to the caller).
CREATE FUNCTION sandbox.warm_sandbox_entries(
	OUT storage_key text,
	OUT owner regrole,
	OUT pid integer,
	OUT started_at timestamptz,
	OUT last_used_at timestamptz,
	OUT commands_served bigint,
	OUT busy boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sandbox_warm_sandbox_entries'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sandbox.warm_sandbox_entries() IS
	'the warm sandboxes of this database (the caller''s own, or all for a superuser)';
REVOKE ALL ON FUNCTION sandbox.warm_sandbox_entries() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sandbox.warm_sandbox_entries() TO sandbox_user;

CREATE VIEW sandbox.warm_sandboxes WITH (security_invoker = true) AS
	SELECT s.name AS session, w.owner, w.pid, w.started_at, w.last_used_at,
		w.commands_served, w.busy
	FROM sandbox.warm_sandbox_entries() w
	JOIN sandbox.sessions s ON s.storage_key = w.storage_key AND s.owner = w.owner
	ORDER BY w.last_used_at DESC;
COMMENT ON VIEW sandbox.warm_sandboxes IS
	'the warm sandboxes of the local backend: one per session in use (pid: its bwrap process)';
REVOKE ALL ON sandbox.warm_sandboxes FROM PUBLIC;
GRANT SELECT ON sandbox.warm_sandboxes TO sandbox_user;
