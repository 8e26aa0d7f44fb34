-- Fault suite, issue 10 finding 15: a cloud execution that ends without a
-- result fails with that error alone, with no "already completed and cannot be
-- cancelled" warning: an execution that already ended is not cancelled.
-- Here the execution ends without a result because the job's service account
-- may touch nothing in the bucket (a misconfigured job: the executor can read
-- neither the request nor write a result).  On the code before the fix the
-- error came with a POST executions:cancel that Cloud Run refused, and its
-- WARNING.
-- Runs as: postgres for the set-up (a service account and a job in the
-- emulator, this connection's cloudrun_sandbox.job), the calls as tap
-- (sandbox_user only).  The job setting is reset at the end; the job stays in
-- the emulator, unused.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(6);
SET cloudrun_sandbox.backend = 'cloudrun';

SELECT string_agg(l, '') IS NOT NULL FROM test.emu('hook', 'service-accounts',
	'{"email": "flt51-nowhere@test-project.iam.gserviceaccount.com", "condition": "resource.name.startsWith(\"projects/_/buckets/none/objects/none/\")"}') l;
SELECT string_agg(l, '') IS NOT NULL FROM test.emu('hook', 'jobs',
	'{"name": "flt51-broken", "serviceAccount": "flt51-nowhere@test-project.iam.gserviceaccount.com"}') l;

SET ROLE tap;
SELECT sandbox.drop_session('f51', if_exists => true);
SELECT is((SELECT status FROM sandbox.exec('true', 'f51')), 'succeeded', 'the session works with the usual job');
RESET ROLE;

CREATE FUNCTION pg_temp.cancels() RETURNS int LANGUAGE sql AS $$
	SELECT coalesce((test.emu_stats()->'calls'->>'POST executions:cancel')::int, 0)
$$;
SELECT pg_temp.cancels() AS cancels_before,
	   coalesce((test.emu_stats()->'runs_by_job'->>'flt51-broken')::int, 0) AS runs_before \gset
SET cloudrun_sandbox.job = 'flt51-broken';
SET ROLE tap;
\set ON_ERROR_STOP 0
SELECT * FROM sandbox.exec('true', 'f51');
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '38000', 'an execution that ends without a result fails with 38000');
SELECT is(:'LAST_ERROR_MESSAGE'::text, 'the Cloud Run execution ended without a result', 'and says so');
SET client_min_messages = warning;
RESET ROLE;
RESET cloudrun_sandbox.job;
-- With session runners, a runner started in that job first: it cannot read its
-- lease and exits, and the request runs as an execution of its own.
SELECT is(coalesce((test.emu_stats()->'runs_by_job'->>'flt51-broken')::int, 0),
		  :runs_before + CASE WHEN current_setting('cloudrun_sandbox.cloud_runners')::boolean THEN 2 ELSE 1 END,
		  'the command ran in the misconfigured job');
SELECT is(pg_temp.cancels(), :cancels_before, 'no cancel is sent for the execution that ended (so no warning)');

SET ROLE tap;
SELECT is((SELECT status FROM sandbox.exec('true', 'f51')), 'succeeded', 'with the usual job the session works again');
SELECT sandbox.drop_session('f51');
RESET ROLE;
SELECT * FROM finish();
