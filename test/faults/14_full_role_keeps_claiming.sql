-- Fault suite: a role that holds all of the worker's places keeps getting
-- them.  With max_concurrent = 3, alice submits twelve quick commands over
-- three sessions in one transaction and nothing else wakes the worker: all
-- twelve run, in a few seconds.  (Before the fix the worker counted the
-- flights it was recording as still holding their places, found alice
-- "full", claimed nothing and slept until the next submit: three ran, the
-- other nine waited for someone else's submit.)
-- Runs as: the superuser postgres for the setting only; the calls as alice
-- (sandbox_user only).  Local backend, warm sandboxes (the default).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'local';
SELECT plan(4);
SELECT ok(test.wait_worker(), 'the worker is running');
ALTER SYSTEM SET cloudrun_sandbox.max_concurrent = 3;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);

SET ROLE alice;
SELECT sandbox.drop_session('full_' || i, if_exists => true) FROM generate_series(1, 3) i;
SELECT sandbox.exec('true', 'full_' || i) FROM generate_series(1, 3) i;
-- Their warm sandboxes start in the background: let them be up.
SELECT test.until($q$SELECT count(*) = 3 FROM sandbox.warm_sandboxes WHERE session LIKE 'full\_%'$q$, 10);
SELECT array_agg(sandbox.submit('echo ' || i, 'full_' || (i % 3 + 1)) ORDER BY i) AS ids
  FROM generate_series(1, 12) i \gset
-- Polled with plain reads: nothing here wakes the worker.
SELECT ok(test.until(format($q$SELECT count(*) = 12 FROM sandbox.executions
		   WHERE id = ANY(%L::bigint[]) AND status = 'succeeded'$q$, :'ids'), 15),
		  'all twelve of alice''s commands ran, with nobody else waking the worker');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id = ANY(:'ids'::bigint[])
		   AND status NOT IN ('succeeded')), 0, 'none is left queued or failed');
SELECT is((SELECT string_agg(rtrim(stdout, E'\n'), ',' ORDER BY id) FROM sandbox.executions
		   WHERE id = ANY(:'ids'::bigint[]) AND session = 'full_1'),
		  '3,6,9,12', 'each session''s commands ran in order');
SELECT sandbox.drop_session('full_' || i, if_exists => true) FROM generate_series(1, 3) i;
RESET ROLE;
ALTER SYSTEM RESET cloudrun_sandbox.max_concurrent;
SELECT pg_reload_conf();
SELECT * FROM finish();
