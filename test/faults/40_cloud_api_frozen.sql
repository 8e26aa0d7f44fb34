-- Issue 10, finding 6: with the Cloud Run and Cloud Storage APIs frozen (the
-- emulator's hang fault: requests are never answered), the worker waits on no
-- call: another role's local submit finishes within 2 seconds while one cloud
-- command is in flight and another is being launched; nothing that may still
-- run is marked failed, and once the API answers again both cloud commands
-- succeed, each run by exactly one execution.  Runs as alice and bob
-- (sandbox_user only); the superuser only freezes and thaws the emulator.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(7);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session('fz1', if_exists => true);
SELECT sandbox.drop_session('fz2', if_exists => true);
SELECT sandbox.create_session('fz1', backend => 'cloudrun') IS NOT NULL;
SELECT sandbox.create_session('fz2', backend => 'cloudrun') IS NOT NULL;
SET ROLE bob;
SELECT sandbox.drop_session('fzl', if_exists => true);
SELECT sandbox.create_session('fzl', backend => 'local') IS NOT NULL;
SELECT sandbox.submit('true', 'fzl') AS w \gset
SELECT status FROM sandbox.wait(:w, '30 s');
RESET ROLE;

-- alice's first command is running in Cloud Run when the APIs freeze.
SET ROLE alice;
SELECT sandbox.submit('sleep 3; echo first', 'fz1') AS c1 \gset
RESET ROLE;
SELECT ok(test.wait_until($$SELECT (test.emu_stats()->'executions'->>'running')::int > 0$$, 30),
		  'the first cloud command is running in Cloud Run');
SELECT test.emu('hook', 'faults', '{"rate_hang": 1}');
-- Her second is claimed by the worker while they are frozen: its upload hangs.
SET ROLE alice;
SELECT sandbox.submit('echo second', 'fz2') AS c2 \gset
RESET ROLE;
SELECT pg_sleep(1);

SET ROLE bob;
SELECT clock_timestamp() AS t0 \gset
SELECT sandbox.submit('true', 'fzl') AS l \gset
SELECT is((SELECT status FROM sandbox.wait(:l, '30 s')), 'succeeded',
		  'another role''s local submit succeeds while the cloud APIs are frozen');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - :'t0')::float8, '<', 2.0::float8, 'within 2 seconds');
RESET ROLE;

SELECT pg_sleep(6);
SET ROLE alice;
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id IN (:c1, :c2) AND status IN ('queued', 'launching', 'running')),
		  2, 'after 7 s of frozen APIs, neither cloud command is marked failed');
RESET ROLE;

-- Thawed: the hung connections close (as resets), and everything is tried again.
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:c1, '90 s')), E'succeeded first\n',
		  'the command in flight when the APIs froze succeeds');
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:c2, '90 s')), E'succeeded second\n',
		  'the command launched while they were frozen succeeds');
RESET ROLE;
SELECT is(test.runs_of('fz1', :c1) || ' ' || test.runs_of('fz2', :c2), '1 1',
		  'each was run by exactly one execution');

SET ROLE alice;
SELECT sandbox.drop_session('fz1');
SELECT sandbox.drop_session('fz2');
SET ROLE bob;
SELECT sandbox.drop_session('fzl');
RESET ROLE;
SELECT * FROM finish();
