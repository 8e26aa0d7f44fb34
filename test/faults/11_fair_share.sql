-- Fault suite, issue 10 finding 7: one role's submits do not fill the worker
-- while another role waits.  With max_concurrent = 3, alice queues twelve slow
-- commands over twelve sessions; bob's one command starts at once, within 2 s
-- (it takes the next free place, not the place after all of alice's), and
-- alice's commands all still run.
-- Runs as: the superuser postgres for the setting only; the calls as alice
-- and bob (sandbox_user only).  Local backend.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'local';
SELECT plan(5);
SELECT ok(test.wait_worker(), 'the worker is running');
-- until polls a condition (a query returning boolean) for up to secs seconds.
CREATE FUNCTION pg_temp.until(q text, secs float8) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1..(secs * 20)::int LOOP
		EXECUTE q INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;
ALTER SYSTEM SET cloudrun_sandbox.max_concurrent = 3;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);

SET ROLE alice;
SELECT sandbox.drop_session('fair_a' || i, if_exists => true) FROM generate_series(1, 12) i;
SELECT sandbox.exec('true', 'fair_a' || i) FROM generate_series(1, 12) i;
SELECT array_agg(sandbox.submit('sleep 1.5', 'fair_a' || i)) AS a_ids FROM generate_series(1, 12) i \gset
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('fair_b', if_exists => true);
SELECT sandbox.exec('true', 'fair_b');
RESET ROLE;
-- alice fills the worker's three places.
SELECT ok(pg_temp.until(format($q$SELECT count(*) = 3 FROM sandbox.executions
		   WHERE id = ANY(%L::bigint[]) AND status IN ('launching', 'running')$q$, :'a_ids'), 5),
		  'alice''s commands fill the three places');

SET ROLE bob;
SELECT sandbox.submit('true', 'fair_b') AS b_id \gset
SELECT is((SELECT status FROM sandbox.wait(:b_id, '4 s')), 'succeeded', 'bob''s command runs');
SELECT cmp_ok((SELECT extract(epoch FROM started_at - submitted_at) FROM sandbox.executions WHERE id = :b_id),
			  '<', 2::numeric, 'it started within 2 s, before the rest of alice''s queue');
RESET ROLE;

SET ROLE alice;
SELECT is((SELECT count(*)::int FROM unnest(:'a_ids'::bigint[]) a,
		   LATERAL (SELECT status FROM sandbox.wait(a, '20 s')) w WHERE w.status = 'succeeded'), 12,
		  'all of alice''s commands still run');
SELECT sandbox.drop_session('fair_a' || i, if_exists => true) FROM generate_series(1, 12) i;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('fair_b', if_exists => true);
RESET ROLE;
ALTER SYSTEM RESET cloudrun_sandbox.max_concurrent;
SELECT pg_reload_conf();
SELECT * FROM finish();
