-- Fault suite, issue 10 finding 5: row locks held by users never stall the worker.
-- alice's open transaction (through dblink) has called submit() and exec(),
-- cancel() on a running execution of hers and kill_background_process(): it
-- holds her session rows, an executions row and a background_processes row
-- while the worker finishes her commands.  bob's submit('true') still finishes
-- within 2 s; alice's own executions complete, with their state applied, once
-- she commits; nothing is left running.
-- Runs as: the superuser postgres for setup only; the calls as alice and bob
-- (sandbox_user only), alice's open transaction through dblink.  Local backend.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'local';
SELECT plan(9);
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

SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['rl_a', 'rl_a2', 'rl_c', 'rl_bg']) s;
SELECT sandbox.start_background('sleep 300', 'rl_bg') AS bgpid \gset
-- Two commands of alice's in flight in the worker, finishing in about 1.5 s.
SELECT sandbox.submit('sleep 1.5; export RL_A=applied; mkdir -p rl_dir; cd rl_dir', 'rl_a') AS a_id \gset
SELECT sandbox.submit('sleep 1.5; echo c', 'rl_c') AS c_id \gset
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('rl_b', if_exists => true);
RESET ROLE;
SELECT ok(pg_temp.until(format($q$SELECT (SELECT count(*) FROM sandbox.executions
		   WHERE id IN (%s, %s) AND status = 'running') = 2
		   AND (SELECT status FROM sandbox.background_processes WHERE pid = %s) = 'running'$q$,
		   :a_id, :c_id, :bgpid), 5),
		  'alice''s two commands run in the worker and her background process runs');

-- alice's open transaction: her session rows (submit, exec), the running
-- execution she cancels, and the background process she kills, all locked.
SELECT test.dblink_connect('alice_tx', 'alice');
SELECT dblink_exec('alice_tx', 'BEGIN');
SELECT * FROM dblink('alice_tx', $$SELECT stdout FROM sandbox.exec('echo x', 'rl_a2')$$) AS t(o text);
SELECT * FROM dblink('alice_tx', $$SELECT sandbox.submit('echo queued-in-tx', 'rl_a')::text$$) AS t(id text);
SELECT * FROM dblink('alice_tx', format('SELECT sandbox.cancel(%s)::text', :c_id)) AS t(b text);
SELECT * FROM dblink('alice_tx', format('SELECT killed_count::text FROM sandbox.kill_background_process(%s)', :bgpid)) AS t(n text);

-- Her commands finish in the worker meanwhile; bob's command must not wait for her.
SELECT pg_sleep(2);
SET ROLE bob;
SELECT sandbox.submit('true', 'rl_b') AS b_id \gset
SELECT is((SELECT status FROM sandbox.wait(:b_id, '2 s')), 'succeeded',
		  'bob''s submit(''true'') finishes within 2 s while alice holds her rows');
SELECT sandbox.submit('echo again', 'rl_b') AS b2_id \gset
SELECT is((SELECT status FROM sandbox.wait(:b2_id, '2 s')), 'succeeded', 'and so does his next one');
RESET ROLE;

SELECT dblink_exec('alice_tx', 'COMMIT');
SELECT dblink_disconnect('alice_tx');
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.wait(:a_id, '10 s')), 'succeeded',
		  'once she commits, alice''s own command completes');
SELECT is((SELECT env->>'RL_A' || ' ' || cwd FROM sandbox.sessions WHERE name = 'rl_a'), 'applied /workspace/rl_dir',
		  'with its state applied to her session');
SELECT ok((SELECT status IN ('succeeded', 'cancelled') FROM sandbox.wait(:c_id, '10 s')),
		  'the command she cancelled in her open transaction is finished, not left running');
SELECT is((SELECT status FROM sandbox.wait(max(id), '10 s')) , 'succeeded',
		  'the command she queued in that transaction runs after it')
  FROM sandbox.executions WHERE session = 'rl_a' AND command = 'echo queued-in-tx';
RESET ROLE;
SELECT ok(pg_temp.until(format('SELECT ended_at IS NOT NULL FROM sandbox.background_processes WHERE pid = %s',
		  :bgpid), 5), 'the background process she killed is recorded as ended');
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['rl_a', 'rl_a2', 'rl_c', 'rl_bg']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('rl_b', if_exists => true);
RESET ROLE;
SELECT * FROM finish();
