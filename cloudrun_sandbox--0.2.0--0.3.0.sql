-- cloudrun_sandbox 0.2.0 -> 0.3.0: the worker and both backends under faults
-- (issue 10).  Each block below belongs to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.3.0'" to load this file. \quit

-- [txn] A dropped session's storage is deleted after the drop commits
-- (issue 10, finding 8): the drop records it here, in its own transaction
-- (a rollback forgets it and the session stays exactly as it was), and the
-- reaper process (src/worker/reaper.c) deletes it and the row once the drop
-- has committed.  A deletion that failed stays, with its error, for a later
-- reaper.  Only the extension's owner (and superusers) can see it.
CREATE TABLE sandbox.dropped_storage (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	backend text NOT NULL CHECK (backend IN ('local', 'cloudrun')),
	storage_key text NOT NULL,
	location text,
	owner oid NOT NULL,
	dropped_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	attempts integer NOT NULL DEFAULT 0,
	last_attempt_at timestamptz,
	last_error text
);
REVOKE ALL ON sandbox.dropped_storage FROM PUBLIC;
COMMENT ON TABLE sandbox.dropped_storage IS
	'storage of dropped sessions, deleted by the reaper once the drop has committed';
COMMENT ON COLUMN sandbox.dropped_storage.location IS
	'cloud: the object prefix the session had when it was dropped';
