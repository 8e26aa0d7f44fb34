-- 1,000 cloud executions through the worker while the emulator injects 503s,
-- 429s, resets and delays; batching carries many requests per jobs:run.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(4);
SELECT sandbox.drop_session('cf' || i, if_exists => true) FROM generate_series(0, 99) i;
SELECT max(id) AS before_id FROM sandbox.executions \gset
SELECT (test.emu_stats()->>'jobs_run_calls')::int AS runs_before \gset
SELECT test.emu('hook', 'faults', '{"rate_503": 0.1, "rate_429": 0.05, "rate_reset": 0.02, "delay_ms": [0, 20]}');
SELECT count(sandbox.submit('export N=$((${N:-0} + 1)); echo $N', 'cf' || (i % 100))) FROM generate_series(1, 1000) i;
DO $$
BEGIN
	FOR i IN 1..3000 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM sandbox.executions WHERE session LIKE 'cf%' AND status IN ('queued', 'launching', 'running'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT test.emu('hook', 'faults', '{}');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id > :before_id AND session LIKE 'cf%' AND status = 'succeeded'), 1000,
		  '1,000 cloud executions under injected faults all finish');
SELECT is((SELECT count(*)::int FROM (SELECT stdout, row_number() OVER (PARTITION BY session ORDER BY id) n
		   FROM sandbox.executions WHERE id > :before_id AND session LIKE 'cf%') x WHERE stdout = n || E'\n'), 1000,
		  'with correct results: each session counted 1..10 in order, nothing ran twice');
SELECT cmp_ok((test.emu_stats()->>'jobs_run_calls')::int - :runs_before, '<', 500,
			  'batching: far fewer jobs:run calls than executions');
SELECT is((SELECT count(*)::int FROM sandbox.sessions WHERE name LIKE 'cf%' AND env->>'N' = '10'), 100,
		  'every session''s state in the mirror counts 10');
SELECT sandbox.drop_session('cf' || i) FROM generate_series(0, 99) i;
SELECT * FROM finish();
