-- Warm sandboxes: the worker keeps a session's sandbox running between queued
-- commands.  Each command must still start as if the sandbox were new (state
-- from the session, nothing left running), and a sandbox is replaced when its
-- session is dropped, when a run is cancelled, and stopped when idle.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(22);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['warm1', 'warm2', 'warm3']) s;

-- warm_pids lists the worker's warm sandboxes (bwrap processes) of a session.
CREATE FUNCTION pg_temp.warm_pids(name text) RETURNS SETOF integer
LANGUAGE sql AS $$
	SELECT test.worker_children(regexp_replace(test.session_dir(name), '([.[\]()*+?{}|^$\\])', '\\\1', 'g')
		|| '(/fs)?/workspace .* serve --listen 3$')
$$;

SELECT sandbox.submit('cd /tmp; export WARM=kept; echo first', 'warm1') AS id \gset
SELECT results_eq(format('SELECT status, stdout FROM sandbox.wait(%s)', :id),
				  $$VALUES ('succeeded'::text, E'first\n'::text)$$, 'a queued command runs in a warm sandbox');
SELECT is((SELECT count(*)::int FROM pg_temp.warm_pids('warm1')), 1, 'the session''s sandbox stays up after the command');
SELECT pid AS warm_pid FROM pg_temp.warm_pids('warm1') pid \gset

SELECT sandbox.submit('echo "$WARM $PWD"', 'warm1') AS id \gset
SELECT results_eq(format('SELECT status, stdout, cwd FROM sandbox.wait(%s)', :id),
				  $$VALUES ('succeeded'::text, E'kept /tmp\n'::text, '/tmp'::text)$$,
				  'the next command keeps the session''s cwd and environment');
SELECT is((SELECT array_agg(p) FROM pg_temp.warm_pids('warm1') p), ARRAY[:warm_pid],
		  'and ran in the same warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('echo "$WARM"', 'warm1')), E'kept\n',
		  'a synchronous exec sees the state the warm sandbox left');

-- Nothing a command starts outlives it, even in a sandbox that stays up.
SELECT sandbox.submit('setsid sleep 301 >/dev/null 2>&1 < /dev/null & echo started', 'warm1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'started\n', 'a command leaves a detached process behind');
SELECT is(test.wait_procs('sleep 301', 0), 0, 'which is killed when the command ends');
SELECT sandbox.submit('ps -e -o comm= | grep -c -x -e sleep -e postgres', 'warm1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'0\n',
		  'the next command sees neither the left process nor any of the host''s');

-- A timed-out command is killed; its sandbox goes on serving the session.
SELECT sandbox.submit('sleep 30', 'warm1', timeout => '1 second') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id)), 'timed_out', 'a command past its timeout is stopped');
SELECT is(test.wait_procs('sleep 30', 0), 0, 'and nothing of it is left');
SELECT sandbox.submit('echo after', 'warm1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'after\n', 'the session runs the next command');
SELECT is((SELECT array_agg(p) FROM pg_temp.warm_pids('warm1') p), ARRAY[:warm_pid],
		  'in the same sandbox');

-- A cancelled run takes its sandbox with it; the next command gets a new one.
SELECT sandbox.submit('sleep 40', 'warm1') AS id \gset
SELECT is(test.wait_procs('sleep 40', 1), 1, 'a long command is running');
SELECT ok(sandbox.cancel(:id), 'cancel stops it');
SELECT is(test.wait_procs('sleep 40', 0), 0, 'its process is gone');
SELECT sandbox.submit('echo "$WARM"', 'warm1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'kept\n', 'the session goes on after a cancel');
SELECT isnt((SELECT array_agg(p) FROM pg_temp.warm_pids('warm1') p), ARRAY[:warm_pid],
			'in a new sandbox');

-- A session dropped and created again never sees the old one's sandbox.
SELECT sandbox.submit('echo old > left.txt', 'warm2') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id)), 'succeeded', 'a command writes a file in a session');
SELECT sandbox.drop_session('warm2');
SELECT status FROM sandbox.exec('echo new > new.txt', 'warm2');
SELECT sandbox.submit('ls', 'warm2') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'new.txt\n',
		  'a session dropped and created again gets a sandbox of the new session''s workspace');

-- With local_warm_sessions = 0 every command gets a sandbox of its own.
SELECT test.set_system('cloudrun_sandbox.local_warm_sessions', '0');
SELECT pg_sleep(0.5);
SELECT sandbox.submit('echo cold', 'warm3') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'cold\n', 'commands run with warm sandboxes turned off');
SELECT is((SELECT count(*)::int FROM pg_temp.warm_pids('warm3')), 0, 'and no sandbox stays up');
SELECT test.set_system('cloudrun_sandbox.local_warm_sessions', NULL);

-- Idle sandboxes are stopped after local_warm_idle_timeout.
SELECT test.set_system('cloudrun_sandbox.local_warm_idle_timeout', '1s');
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM pg_temp.warm_pids('warm1'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT is((SELECT count(*)::int FROM pg_temp.warm_pids('warm1')), 0, 'an idle warm sandbox is stopped');
SELECT test.set_system('cloudrun_sandbox.local_warm_idle_timeout', NULL);

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['warm1', 'warm2', 'warm3']) s;
SELECT * FROM finish();
