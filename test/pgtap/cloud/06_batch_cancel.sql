-- Cancelling one request of a batch: the batch shares one Cloud Run execution,
-- so the request is stopped through its cancel marker; the other requests of
-- the batch run to the end, and the cancelled one leaves its session as it was.
-- With session runners (cloud_runners on) each session's runner, started by
-- the first exec, runs its request: no new execution at all, and the cancel
-- reaches the running command through the same marker.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(8);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['bc1', 'bc2', 'bc3']) s;
SELECT sandbox.exec('export KEEP=before', s) IS NOT NULL FROM unnest(ARRAY['bc1', 'bc2', 'bc3']) s;
SELECT (test.emu_stats()->>'jobs_run_calls')::int AS runs_before \gset

-- One transaction queues all three: the worker launches them as one batch.
CREATE TEMP TABLE bc AS
	SELECT s AS session, sandbox.submit('export KEEP=after; sleep 12; echo done', s) AS id
	FROM unnest(ARRAY['bc1', 'bc2', 'bc3']) s;
SELECT is(test.wait_procs('sleep 12', 3, 30), 3, 'three requests are running');
SELECT is((test.emu_stats()->>'jobs_run_calls')::int - :runs_before,
		  CASE WHEN current_setting('cloudrun_sandbox.cloud_runners')::boolean THEN 0 ELSE 1 END,
		  CASE WHEN current_setting('cloudrun_sandbox.cloud_runners')::boolean
			   THEN 'on the sessions'' runners: no new Cloud Run execution' ELSE 'as one Cloud Run execution' END);
SELECT ok(sandbox.cancel((SELECT id FROM bc WHERE session = 'bc2')), 'cancel one request of the batch');
SELECT is(test.wait_procs('sleep 12', 2, 8), 2, 'its command is killed while the others go on');
SELECT is((SELECT status FROM sandbox.wait((SELECT id FROM bc WHERE session = 'bc2'), '30 seconds')), 'cancelled',
		  'it ends cancelled');
SELECT results_eq($$SELECT w.status, w.stdout FROM bc, LATERAL sandbox.wait(bc.id, '60 seconds') w
					WHERE bc.session <> 'bc2' ORDER BY bc.session$$,
				  $$VALUES ('succeeded'::text, E'done\n'::text), ('succeeded', E'done\n')$$,
				  'the rest of the batch finishes');
SELECT is((SELECT stdout FROM sandbox.exec('echo $KEEP', 'bc1')), E'after\n', 'a finished request saved its session''s state');
SELECT is((SELECT stdout FROM sandbox.exec('echo $KEEP', 'bc2')), E'before\n', 'the cancelled one left its session as it was');
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['bc1', 'bc2', 'bc3']) s;
SELECT * FROM finish();
