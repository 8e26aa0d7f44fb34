-- Retries of an attempt that ends in error (issue 14, part 5), on the cloud
-- backend: the emulator refuses the jobs:run of the first two attempts
-- (403), each of which ends in error; the third runs.  The execution ends
-- succeeded with three attempts in its history (two errors with their
-- reasons, then the success), each attempt with a request object of its own
-- (results are create-only); the callback runs once, after the last attempt,
-- and NOTIFY comes once.  Without retries the same fault is final.
-- Runs as: tap (sandbox_user only); the emulator fault through test.emu.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '180s';
SELECT plan(12);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session('rt_cloud', if_exists => true);
SELECT sandbox.create_session('rt_cloud', backend => 'cloudrun');
SELECT is((SELECT status FROM sandbox.exec('echo ready', 'rt_cloud')), 'succeeded', 'the cloud session works');

DROP TABLE IF EXISTS rtc_calls;
CREATE TABLE rtc_calls (execution bigint, status text, attempt int);
CREATE OR REPLACE FUNCTION rtc_done(execution bigint) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rtc_calls SELECT e.id, e.status, e.attempt FROM sandbox.executions e WHERE e.id = execution
$$;
SELECT test.dblink_connect('rtc_l');
SELECT dblink_exec('rtc_l', 'LISTEN sandbox_executions');

-- Without retries, one refused upload is final.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "upload", "fault": "403", "count": 1}]}');
SELECT sandbox.submit('echo once', 'rt_cloud') AS once_id \gset
SELECT is((SELECT status FROM sandbox.wait(:once_id, '60 s')), 'error', 'without retries an attempt in error is final');
SELECT test.emu('hook', 'faults', '{}');

-- Two refused launches, then the third attempt runs: jobs:run refused, or with
-- session runners (the session's runner is up) the request's upload to its inbox.
SELECT test.emu('hook', 'faults', format('{"sequence": [{"endpoint": "%s", "fault": "403", "count": 2}]}',
		CASE WHEN current_setting('cloudrun_sandbox.cloud_runners')::boolean THEN 'upload' ELSE 'jobs:run' END));
SELECT sandbox.submit('echo "third time lucky"', 'rt_cloud', retries => 3, retry_delay => '0.2 s',
					  callback => 'rtc_done(bigint)', stdin => 'unused') AS id \gset
SELECT results_eq(format('SELECT status, exit_code, stdout FROM sandbox.wait(%s, ''120 s'')', :id),
				  $$VALUES ('succeeded'::text, 0, E'third time lucky\n'::text)$$,
				  'a command whose first two attempts end in error ends succeeded');
SELECT test.emu('hook', 'faults', '{}');
SELECT results_eq(format('SELECT attempt, status, latest FROM sandbox.execution_attempts WHERE id = %s ORDER BY attempt', :id),
				  $$VALUES (1, 'error'::text, false), (2, 'error', false), (3, 'succeeded', true)$$,
				  'with three attempts in its history: error, error, succeeded');
SELECT ok((SELECT bool_and(error IS NOT NULL) FROM sandbox.retried_attempts WHERE execution_id = :id),
		  'each retried attempt keeps why it failed');
SELECT ok((SELECT bool_and(a2.started_at >= a1.finished_at + interval '0.2 s' * 2 ^ (a1.attempt - 1))
		   FROM sandbox.execution_attempts a1 JOIN sandbox.execution_attempts a2
			 ON a2.id = a1.id AND a2.attempt = a1.attempt + 1 WHERE a1.id = :id),
		  'each retry started no sooner than its delay after the attempt before');
SELECT ok((SELECT run_id IS NOT NULL AND run_id <> id FROM sandbox.executions WHERE id = :id),
		  'the last attempt ran under a run id of its own');
SELECT ok(EXISTS (SELECT FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'), test.object_prefix('rt_cloud') || 'results/') l
				  WHERE l LIKE '%results/' || (SELECT run_id FROM sandbox.executions WHERE id = :id) || '.json%'),
		  'its result object is named by it');
SELECT ok(test.wait_until(format('SELECT count(*) >= 1 FROM rtc_calls WHERE execution = %s', :id), 60),
		  'the callback ran');
SELECT pg_sleep(1);
SELECT results_eq(format('SELECT status, attempt FROM rtc_calls WHERE execution = %s', :id),
				  $$VALUES ('succeeded'::text, 3)$$, 'once, after the last attempt');
SELECT is((SELECT count(*)::int FROM dblink_get_notify('rtc_l') n
		   WHERE n.notify_name = 'sandbox_executions' AND n.extra::bigint = :id), 1,
		  'NOTIFY came once for the execution');
SELECT dblink_disconnect('rtc_l');

DROP TABLE rtc_calls;
DROP FUNCTION rtc_done(bigint);
SELECT sandbox.drop_session('rt_cloud');
SELECT * FROM finish();
