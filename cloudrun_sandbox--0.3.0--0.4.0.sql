-- cloudrun_sandbox 0.3.0 -> 0.4.0: bounded resources (issue 11): disk quota per
-- session, history bytes per role, limits in force.  Each block below belongs
-- to one change; keep them apart.
\echo Use "ALTER EXTENSION cloudrun_sandbox UPDATE TO '0.4.0'" to load this file. \quit

-- [quota] A local session's disk quota (cloudrun_sandbox.local_disk_quota): a
-- command or background process that fills it ends with status 'quota_exceeded'.
ALTER TABLE sandbox.executions DROP CONSTRAINT executions_status_check;
ALTER TABLE sandbox.executions ADD CONSTRAINT executions_status_check
	CHECK (status IN ('queued', 'launching', 'running', 'succeeded', 'failed', 'timed_out',
					  'error', 'cancelled', 'quota_exceeded'));
ALTER TABLE sandbox.background_processes DROP CONSTRAINT background_processes_status_check;
ALTER TABLE sandbox.background_processes ADD CONSTRAINT background_processes_status_check
	CHECK (status IN ('starting', 'running', 'exited', 'killed', 'failed', 'quota_exceeded'));
