-- A queued cloud command whose launch fails ends in error; the worker survives.
-- (Issue 10, finding 1: it used to crash the worker, and so restart the server.)
-- Runs as: alice (sandbox_user only); a superuser only injects the emulator fault.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(4);
SELECT test.wait_worker();
SELECT pid AS worker_pid FROM sandbox.worker_status() \gset
SELECT pg_backend_pid() AS me \gset
SET ROLE alice;
SELECT sandbox.drop_session('lfail', if_exists => true);
SELECT sandbox.create_session('lfail', backend => 'cloudrun');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "upload", "fault": "403", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.submit('true', 'lfail') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id, '30 s')), 'error', 'the command whose launch was refused ends in error');
SELECT ok((SELECT error FROM sandbox.executions WHERE id = :id) IS NOT NULL, 'with the reason');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');
SELECT is((SELECT pid FROM sandbox.worker_status()), :worker_pid, 'the worker is the same process');
SELECT is(pg_backend_pid(), :me, 'and this connection survived (the server was not restarted)');
SET ROLE alice;
SELECT sandbox.drop_session('lfail');
RESET ROLE;
SELECT * FROM finish();
