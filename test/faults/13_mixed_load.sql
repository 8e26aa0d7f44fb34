-- Fault suite, issue 10 acceptance: under a mixed load, another role's local
-- submit('true') still finishes within 2 seconds.  The load: alice's open
-- transaction holding her session row while her command in flight finishes;
-- bob's callback that runs for 30 s; and then, on top, the cloud API frozen
-- for 30 s (every request to the emulator delayed 30 s) with a cloud
-- execution of alice's in flight.  Afterwards everything finishes: alice's
-- command with its state, her cloud command, bob's callback.
-- Runs as: the superuser postgres for setup only (a schema for bob, the
-- emulator's fault hook); the calls as alice, bob and tap (sandbox_user only),
-- alice's open transaction through dblink.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(11);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT test.emu('hook', 'faults', '{}');
DROP SCHEMA IF EXISTS mlbob CASCADE;
CREATE SCHEMA mlbob AUTHORIZATION bob;

-- bob: a callback that runs for 30 s.
SET ROLE bob;
SET cloudrun_sandbox.backend = 'local';
SELECT sandbox.drop_session('ml_b', if_exists => true);
SET cloudrun_sandbox.backend = 'cloudrun';
SELECT sandbox.drop_session('ml_bc', if_exists => true);
SELECT sandbox.exec('true', 'ml_bc');
SET cloudrun_sandbox.backend = 'local';
CREATE FUNCTION mlbob.slow(id bigint) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;
SELECT sandbox.submit('true', 'ml_b', callback => 'mlbob.slow(bigint)') AS b_cb \gset
RESET ROLE;
-- tap: the role whose work must not wait.
SET ROLE tap;
SET cloudrun_sandbox.backend = 'local';
SELECT sandbox.drop_session('ml_t', if_exists => true);
SELECT sandbox.exec('true', 'ml_t');
RESET ROLE;
-- alice: a cloud command and a local one in flight.
SET ROLE alice;
SET cloudrun_sandbox.backend = 'cloudrun';
SELECT sandbox.drop_session('ml_cloud', if_exists => true);
SELECT sandbox.exec('true', 'ml_cloud');
SELECT sandbox.submit('sleep 4; echo cloud', 'ml_cloud') AS a_cloud \gset
SET cloudrun_sandbox.backend = 'local';
SELECT sandbox.drop_session('ml_a', if_exists => true);
SELECT sandbox.exec('true', 'ml_a');
SELECT sandbox.submit('sleep 1.5; export ML=kept', 'ml_a') AS a_local \gset
RESET ROLE;
SELECT ok(test.until(format($q$SELECT (SELECT count(*) FROM sandbox.executions WHERE id IN (%s, %s)
		  AND status = 'running') = 2 AND (SELECT callback_state = 'running' FROM sandbox.executions WHERE id = %s)$q$,
		  :a_cloud, :a_local, :b_cb), 20),
		  'the load is on: alice''s cloud and local commands run, bob''s 30-second callback runs');

-- alice's open transaction holds her session row while her local command finishes.
SELECT test.dblink_connect('ml_alice', 'alice');
SELECT dblink_exec('ml_alice', 'BEGIN');
SELECT * FROM dblink('ml_alice', $$SELECT sandbox.submit('echo later', 'ml_a')::text$$) AS t(id text);
SELECT pg_sleep(2);

-- 1. The row lock and the callback: tap's local submit('true') within 2 s.
SET ROLE tap;
SELECT sandbox.submit('true', 'ml_t') AS t1 \gset
SELECT is((SELECT status FROM sandbox.wait(:t1, '2 s')), 'succeeded',
		  'with a row lock held and a 30-second callback running, another role''s submit(''true'') finishes within 2 s');
RESET ROLE;

-- 2. And the cloud API frozen for 30 s, with alice's cloud execution in
-- flight and bob's cloud command to launch.
SELECT test.emu('hook', 'faults', '{"delay_ms": [30000, 30000]}');
SET ROLE bob;
SELECT sandbox.submit('echo bob-cloud', 'ml_bc') AS b_cloud \gset
RESET ROLE;
SELECT pg_sleep(2);
SET ROLE tap;
SELECT sandbox.submit('true', 'ml_t') AS t2 \gset
-- (This one waits for the worker's cloud I/O to go through its event loop.)
SELECT is((SELECT status FROM sandbox.wait(:t2, '2 s')), 'succeeded',
		  'with the cloud API frozen too, another role''s local submit(''true'') finishes within 2 s');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');

-- Afterwards: everything finishes, nothing lost.
SELECT dblink_exec('ml_alice', 'COMMIT');
SELECT dblink_disconnect('ml_alice');
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.wait(:a_local, '120 s')), 'succeeded', 'alice''s local command completes once she commits');
SELECT is((SELECT env->>'ML' FROM sandbox.sessions WHERE name = 'ml_a'), 'kept', 'with its state applied');
SELECT is((SELECT status FROM sandbox.wait(max(id), '60 s')), 'succeeded', 'and the command she queued in that transaction runs')
  FROM sandbox.executions WHERE session = 'ml_a' AND command = 'echo later';
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:a_cloud, '120 s')), E'succeeded cloud\n',
		  'her cloud command, in flight while the API was frozen, finishes with its result');
RESET ROLE;
SET ROLE bob;
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:b_cloud, '120 s')), E'succeeded bob-cloud\n',
		  'bob''s cloud command, launched while the API was frozen, runs');
RESET ROLE;
SELECT ok(test.until(format('SELECT callback_state = ''done'' FROM sandbox.executions WHERE id = %s', :b_cb), 45),
		  'bob''s 30-second callback finished');
SET ROLE tap;
SELECT is((SELECT status FROM sandbox.wait(:t2, '60 s')), 'succeeded', 'tap''s second command ran');
SELECT sandbox.drop_session('ml_t');
RESET ROLE;
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['ml_a', 'ml_cloud']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['ml_b', 'ml_bc']) s;
RESET ROLE;
DROP SCHEMA mlbob CASCADE;
SELECT * FROM finish();
