-- The cloud path under injected faults, expiring tokens and query cancel.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(8);
SELECT sandbox.drop_session('flt', if_exists => true);
SELECT sandbox.drop_session('cnc', if_exists => true);

CREATE TEMP TABLE runs (i int, status text, stdout text);
SELECT test.emu('hook', 'faults', '{"rate_503": 0.1, "rate_429": 0.05, "rate_reset": 0.03}');
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		INSERT INTO runs SELECT i, status, stdout
			FROM sandbox.exec('export N=$((${N:-0} + 1)); echo $N', 'flt');
	END LOOP;
END $$;
SELECT test.emu('hook', 'faults', '{}');
SELECT cmp_ok((SELECT sum(value::int) FROM jsonb_each_text(test.emu_stats()->'faults_injected')), '>', 20::bigint,
			  'the emulator injected faults (503, 429, resets)');
SELECT is((SELECT count(*)::int FROM runs WHERE status = 'succeeded'), 200, '200 executions under faults all succeed');
SELECT is((SELECT count(*)::int FROM runs WHERE stdout = i || E'\n'), 200,
		  'each ran exactly once, in order: the counter in the session went 1..200');

SELECT coalesce((test.emu_stats()->'calls'->>'POST token')::int, 0) AS tokens_before \gset
SELECT test.emu('hook', 'expire-tokens', '{}');
SELECT is((SELECT status FROM sandbox.exec('echo after-expiry', 'flt')), 'succeeded', 'an expired token is refreshed without an error');
SELECT cmp_ok((test.emu_stats()->'calls'->>'POST token')::int, '>', :tokens_before, 'a new token was fetched');

SELECT coalesce((test.emu_stats()->'executions'->>'cancelled')::int, 0) AS cancelled_before \gset
\set ON_ERROR_STOP 0
SET statement_timeout = '3s';
SELECT * FROM sandbox.exec('sleep 35', 'cnc');
RESET statement_timeout;
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '57014', 'statement_timeout stops a cloud exec');
SELECT pg_sleep(0.5);
SELECT cmp_ok(coalesce((test.emu_stats()->'executions'->>'cancelled')::int, 0), '>', :cancelled_before,
			  'the cancelled query cancelled its Cloud Run execution');
SELECT is(test.wait_procs('sleep 35', 0, 10), 0, 'and the execution''s process is gone');

SELECT sandbox.drop_session('flt');
SELECT sandbox.drop_session('cnc', if_exists => true);
SELECT * FROM finish();
