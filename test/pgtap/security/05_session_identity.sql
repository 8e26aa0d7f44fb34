-- Security, finding 5: a queued command is bound to its session's identity.
-- Runs as: alice (sandbox_user only); a superuser only narrows the worker to one
-- execution at a time (so that the command stays queued) and restores it.
-- The attack: a command is queued in a session; the session is dropped, and a new
-- session of the same name created, before the worker claims the command.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(5);
ALTER SYSTEM SET cloudrun_sandbox.max_concurrent = 1;
SELECT pg_reload_conf();
SELECT pg_sleep(1);
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['ident', 'ident_busy']) s;
SELECT is((SELECT status FROM sandbox.exec('echo old > owner.txt', 'ident')), 'succeeded', 'alice uses her session');
-- The worker's only slot is taken for a few seconds; the next command stays queued.
SELECT sandbox.submit('sleep 4', 'ident_busy') AS busy \gset
SELECT pg_sleep(0.5);
SELECT sandbox.submit('echo queued-ran > /workspace/leak.txt', 'ident') AS queued \gset
BEGIN;
SELECT sandbox.drop_session('ident');
SELECT sandbox.create_session('ident');
COMMIT;
SELECT is((SELECT status FROM sandbox.wait(:busy, '20 s')), 'succeeded', 'the worker was busy meanwhile');
SELECT is((SELECT status FROM sandbox.wait(:queued, '20 s')), 'cancelled',
		  'the queued command of the dropped session is cancelled by the drop');
SELECT is(sandbox.file_exists('leak.txt', 'ident'), false,
		  'it never ran in the new session that has the same name');
SELECT is(sandbox.file_exists('owner.txt', 'ident'), false, 'the new session starts empty');
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['ident', 'ident_busy']) s;
RESET ROLE;
ALTER SYSTEM RESET cloudrun_sandbox.max_concurrent;
SELECT pg_reload_conf();
SELECT * FROM finish();
