-- Issue 10, finding 1: a queued cloud command whose launch fails used to crash
-- the worker (SIGSEGV in mark_running), and with it every connection of the
-- server; with a missing bucket it crash-looped.  Each way a launch can fail
-- must end the row in `error` with the reason, and nothing else happens: the
-- same worker process, this connection alive, the next command fine.
-- The run_faults runner also checks the server log for "terminated by signal".
-- Runs as: postgres for the settings and faults; alice (sandbox_user) submits.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(13);
SELECT test.wait_worker();
SELECT pid AS worker_pid FROM sandbox.worker_status() \gset
SELECT pg_backend_pid() AS me \gset
SELECT current_setting('cloudrun_sandbox.bucket') AS bucket, current_setting('cloudrun_sandbox.project') AS project \gset
SET ROLE alice;
SELECT sandbox.drop_session('f01', if_exists => true);
SELECT sandbox.create_session('f01', backend => 'cloudrun');
RESET ROLE;

-- The worker's install has no cloud project (and so cannot launch).
SELECT test.alter_system('cloudrun_sandbox.project', '');
SET ROLE alice;
SELECT sandbox.submit('true', 'f01') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id, '30 s')), 'error', 'without cloud settings the command ends in error');
SELECT matches((SELECT error FROM sandbox.executions WHERE id = :id), 'cloudrun_sandbox.project is not set',
			   'naming the missing setting');
SELECT matches((SELECT error FROM sandbox.executions WHERE id = :id), 'ask a superuser',
			   'with the hint of the error');
RESET ROLE;
SELECT test.alter_system('cloudrun_sandbox.project', :'project');

-- A missing bucket (the worker's setting names one that does not exist).
SELECT test.alter_system('cloudrun_sandbox.bucket', 'no-such-bucket');
SET ROLE alice;
SELECT sandbox.submit('true', 'f01') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id, '30 s')), 'error', 'with a missing bucket the command ends in error');
SELECT matches((SELECT error FROM sandbox.executions WHERE id = :id), 'bucket|not found|404|No such', 'saying what is missing');
RESET ROLE;
SELECT test.alter_system('cloudrun_sandbox.bucket', :'bucket');

-- One 403 on the request's upload.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "upload", "fault": "403", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.submit('true', 'f01') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id, '30 s')), 'error', 'a refused upload ends the command in error');
SELECT ok((SELECT error FROM sandbox.executions WHERE id = :id) ~ '403|denied|forbidden|Permission',
		  'with the reason');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');

-- A refused jobs:run.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "403", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.submit('true', 'f01') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id, '30 s')), 'error', 'a refused jobs:run ends the command in error');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');

SELECT is((SELECT pid FROM sandbox.worker_status()), :worker_pid, 'the worker is the same process');
SELECT is(pg_backend_pid(), :me, 'this connection survived (the server was not restarted)');
SET ROLE alice;
SELECT sandbox.submit('echo fine', 'f01') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id, '60 s')), E'fine\n', 'and the next command of the session runs');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'f01' AND status IN ('queued', 'launching', 'running')),
		  0, 'nothing is left in flight');
SELECT is((SELECT status FROM sandbox.exec('true', 'f01')), 'succeeded', 'a synchronous exec works too');
SELECT sandbox.drop_session('f01');
RESET ROLE;
SELECT * FROM finish();
