-- Issue 10, findings 3 and 4: a submit committed while the worker was inside a
-- callback was not seen (with local_warm_sessions = 0 it stayed queued for
-- good), and a slow callback, or one waiting on a lock, delayed every role's
-- work.  Callbacks now run in processes of their own; the worker's loop never
-- waits for one.  Here, without warm sandboxes: alice's callback waits on a
-- row lock her own open transaction holds, another sleeps; bob's commands,
-- committed meanwhile, finish within 2 s.
-- Runs as: postgres for setup; alice and bob (sandbox_user) run everything.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(6);
SELECT test.wait_worker();
SELECT test.alter_system('cloudrun_sandbox.local_warm_sessions', '0');
DROP SCHEMA IF EXISTS f03 CASCADE;
CREATE SCHEMA f03 AUTHORIZATION alice;
SET ROLE alice;
CREATE TABLE f03.t (k int PRIMARY KEY, v text);
INSERT INTO f03.t VALUES (1, 'unlocked');
CREATE FUNCTION f03.locked(id bigint) RETURNS void LANGUAGE sql AS
	$$ UPDATE f03.t SET v = 'callback ' || id WHERE k = 1 $$;
CREATE FUNCTION f03.slow(id bigint) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(20) $$;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['f03a', 'f03c']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('f03b', if_exists => true);
RESET ROLE;

-- alice holds the row her callback will update, in an open transaction.
SELECT test.dblink_connect('holder', 'alice');
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', $$UPDATE f03.t SET v = 'held' WHERE k = 1$$);
SET ROLE alice;
SELECT sandbox.submit('true', 'f03a', callback => 'f03.locked(bigint)') AS a1 \gset
SELECT sandbox.submit('true', 'f03c', callback => 'f03.slow(bigint)') AS a2 \gset
SELECT is((SELECT status FROM sandbox.wait(:a1, '20 s')) || ' ' || (SELECT status FROM sandbox.wait(:a2, '20 s')),
		  'succeeded succeeded', 'alice''s two commands finished; their callbacks run');
RESET ROLE;
SELECT ok(test.wait_until($$SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type LIKE 'cloudrun_sandbox%'
						   AND wait_event IN ('PgSleep', 'transactionid', 'tuple')$$, 20),
		  'one callback waits on the row lock, the other sleeps');

SET ROLE bob;
SELECT sandbox.submit('echo one', 'f03b') AS b1 \gset
SELECT is((SELECT status FROM sandbox.wait(:b1, '2 s')), 'succeeded',
		  'meanwhile bob''s submit finishes within 2 s, without a warm sandbox');
SELECT pg_sleep(0.5);
SELECT sandbox.submit('echo two', 'f03b') AS b2 \gset
SELECT is((SELECT status FROM sandbox.wait(:b2, '2 s')), 'succeeded',
		  'and one committed later, while both callbacks still run, too');
RESET ROLE;

-- alice commits: her waiting callback goes on.
SELECT dblink_exec('holder', 'COMMIT');
SELECT dblink_disconnect('holder');
SELECT ok(test.wait_until(format($$SELECT v = 'callback %s' FROM f03.t WHERE k = 1$$, :a1), 20),
		  'once the lock is released the waiting callback completes');
SELECT is((SELECT callback_state FROM sandbox.executions WHERE id = :a1), 'done', 'and is recorded as done');

SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type LIKE 'cloudrun_sandbox%' AND wait_event = 'PgSleep';
SELECT test.alter_system('cloudrun_sandbox.local_warm_sessions', NULL);
SET ROLE alice;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['f03a', 'f03c']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('f03b');
RESET ROLE;
DROP SCHEMA f03 CASCADE;
SELECT * FROM finish();
