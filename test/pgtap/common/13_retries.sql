-- Retries of queued commands (issue 14, part 5): submit(..., retries,
-- retry_delay, retry_on) and submit_trigger's options.  With retry_on =>
-- 'failure' a command that exits 1 twice and then 0 is run three times, with
-- its stdin and its directory each time, after delays that double; it ends
-- succeeded; every attempt is in sandbox.execution_attempts (the retried ones
-- in sandbox.retried_attempts, counted in the row's bytes); wait() waits
-- through the retries; the callback runs once and NOTIFY comes once, after
-- the last attempt.  retry_on 'error' (the default) does not retry a non-zero
-- exit; retries run out; a waiting retry blocks its session's later commands
-- but no other session's; cancel() during the delay, or during an attempt,
-- ends it cancelled and no attempt runs after.  Bad policies are refused with
-- 22023 and a hint; another role sees none of the attempts; a retried
-- execution and its attempts are pruned together (history_max_bytes_per_role).
-- (An attempt that ends in error, retried: test/pgtap/cloud/08_retries.sql.)
-- Runs as: tap (sandbox_user only), on each backend; bob (sandbox_user only) through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '180s';
SELECT plan(55);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session(s, if_exists => true)
	FROM unnest(ARRAY['rt', 'rt_ok', 'rt_out', 'rt_ord', 'rt_other', 'rt_trig', 'rt_drop']) s;

-- bad policies
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => -1)$$, '22023',
				 'retries must be between 0 and 100, not -1', 'retries below 0 is refused');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => 101)$$, '22023',
				 'retries must be between 0 and 100, not 101', 'attack: retries above 100 is refused');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => 1, retry_delay => '0 s')$$, '22023',
				 'retry_delay must be positive and at most a day', 'a retry_delay of 0 is refused');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => 1, retry_delay => '-1 s')$$, '22023',
				 'retry_delay must be positive and at most a day', 'a negative retry_delay is refused');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => 1, retry_delay => '2 days')$$, '22023',
				 'retry_delay must be positive and at most a day', 'attack: a retry_delay above a day is refused');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retries => 1, retry_on => 'always')$$, '22023',
				 'retry_on must be ''error'' or ''failure'', not "always"', 'retry_on other than error or failure is refused');
SELECT matches(test.error_of($$SELECT sandbox.submit('true', 'rt', retries => 1, retry_on => 'always')$$),
			   'HINT: ''error'' retries an attempt the sandbox or the cloud failed', 'with a hint');
SELECT throws_ok($$SELECT sandbox.submit('true', 'rt', retry_on => 'failure')$$, '22023',
				 'retry_delay and retry_on need retries', 'retry_on without retries is refused');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'rt'), 0, 'nothing was queued by them');

-- A command that fails twice and then succeeds, retried on failure.
DROP TABLE IF EXISTS rt_calls;
CREATE TABLE rt_calls (execution bigint, status text, attempt int, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION rt_done(execution bigint) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rt_calls (execution, status, attempt)
	SELECT e.id, e.status, e.attempt FROM sandbox.executions e WHERE e.id = execution
$$;
SELECT is((SELECT status FROM sandbox.exec('mkdir -p sub && rm -f sub/n', 'rt_ok')), 'succeeded', 'a session with a directory sub');
SELECT test.dblink_connect('rt_l');
SELECT dblink_exec('rt_l', 'LISTEN sandbox_executions');
SELECT sandbox.submit($$n=$(cat n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > n; echo "try $n in $PWD"; cat; echo; [ $n -ge 3 ]$$,
					  'rt_ok', retries => 3, retry_delay => '0.3 s', retry_on => 'failure', stdin => 'the input',
					  cwd => 'sub', callback => 'rt_done(bigint)') AS ok_id \gset
SELECT results_eq(format('SELECT status, exit_code, stdout FROM sandbox.wait(%s, ''120 s'')', :ok_id),
				  $$VALUES ('succeeded'::text, 0, E'try 3 in /workspace/sub\nthe input\n'::text)$$,
				  'wait waits through the retries: the third attempt succeeded, with its stdin and in its directory');
SELECT is((SELECT attempt FROM sandbox.executions WHERE id = :ok_id), 3, 'the execution is at its attempt 3');
SELECT results_eq(format('SELECT attempt, status, exit_code, stdout, latest FROM sandbox.execution_attempts WHERE id = %s ORDER BY attempt', :ok_id),
				  $$VALUES (1, 'failed'::text, 1, E'try 1 in /workspace/sub\nthe input\n'::text, false),
						   (2, 'failed', 1, E'try 2 in /workspace/sub\nthe input\n', false),
						   (3, 'succeeded', 0, E'try 3 in /workspace/sub\nthe input\n', true)$$,
				  'every attempt is in sandbox.execution_attempts, each with the same stdin and directory');
SELECT is((SELECT count(*)::int FROM sandbox.retried_attempts WHERE execution_id = :ok_id), 2,
		  'the two retried ones are rows of sandbox.retried_attempts');
SELECT ok((SELECT bool_and(a2.started_at >= a1.finished_at + interval '0.3 s' * 2 ^ (a1.attempt - 1))
		   FROM sandbox.execution_attempts a1 JOIN sandbox.execution_attempts a2
			 ON a2.id = a1.id AND a2.attempt = a1.attempt + 1 WHERE a1.id = :ok_id),
		  'each retry started no sooner than its delay after the attempt before (0.3 s, then 0.6 s)');
SELECT is((SELECT stdin FROM sandbox.executions WHERE id = :ok_id), NULL, 'its stdin is cleared once it has finished');
SELECT ok((SELECT e.attempts_bytes = (SELECT sum(bytes) FROM sandbox.retried_attempts WHERE execution_id = e.id)
				  AND e.attempts_bytes > 2 * length('try 1 in /workspace/sub')
				  AND e.bytes >= e.attempts_bytes + octet_length(e.command) + octet_length(e.stdout)
		   FROM sandbox.executions e WHERE e.id = :ok_id),
		  'the row''s bytes count its retried attempts (history_max_bytes_per_role bounds them)');
SELECT ok(test.wait_until(format('SELECT count(*) >= 1 FROM rt_calls WHERE execution = %s', :ok_id), 60),
		  'the callback ran');
SELECT pg_sleep(1);
SELECT results_eq(format('SELECT status, attempt FROM rt_calls WHERE execution = %s', :ok_id),
				  $$VALUES ('succeeded'::text, 3)$$, 'once, after the last attempt');
SELECT is((SELECT count(*)::int FROM dblink_get_notify('rt_l') n
		   WHERE n.notify_name = 'sandbox_executions' AND n.extra::bigint = :ok_id), 1,
		  'NOTIFY came once for the execution');
SELECT dblink_disconnect('rt_l');
SET ROLE bob;
SELECT is((SELECT count(*)::int FROM sandbox.execution_attempts WHERE id = :ok_id), 0,
		  'attack: another role sees none of its attempts in sandbox.execution_attempts');
SELECT is((SELECT count(*)::int FROM sandbox.retried_attempts WHERE execution_id = :ok_id), 0,
		  'nor in sandbox.retried_attempts');
RESET ROLE;

-- retry_on 'error' (the default) does not retry a command that exits 1; retries run out.
SELECT sandbox.submit('exit 1', 'rt_out', retries => 2) AS err_only \gset
SELECT results_eq(format('SELECT status, exit_code FROM sandbox.wait(%s, ''60 s'')', :err_only),
				  $$VALUES ('failed'::text, 1)$$, 'with retry_on error a non-zero exit is final');
SELECT is((SELECT count(*)::int FROM sandbox.execution_attempts WHERE id = :err_only), 1, 'one attempt');
SELECT sandbox.submit('echo x >> runs; exit 1', 'rt_out', retries => 2, retry_delay => '0.1 s', retry_on => 'failure') AS out_id \gset
SELECT results_eq(format('SELECT status, exit_code FROM sandbox.wait(%s, ''60 s'')', :out_id),
				  $$VALUES ('failed'::text, 1)$$, 'a command that always fails ends failed when its retries run out');
SELECT results_eq(format('SELECT attempt, status FROM sandbox.execution_attempts WHERE id = %s ORDER BY attempt', :out_id),
				  $$VALUES (1, 'failed'::text), (2, 'failed'), (3, 'failed')$$, 'after 1 + 2 attempts');
SELECT is((SELECT stdout FROM sandbox.exec('wc -l < runs', 'rt_out')), E'3\n', 'it ran three times, no more');

-- A waiting retry blocks its session's later commands, not other sessions; cancel stops it.
SELECT sandbox.submit('echo A >> order; exit 1', 'rt_ord', retries => 5, retry_delay => '1 hour', retry_on => 'failure',
					  callback => 'rt_done(bigint)') AS wait_id \gset
SELECT sandbox.submit('echo B >> order', 'rt_ord') AS later_id \gset
SELECT ok(test.wait_until(format('SELECT attempt = 2 AND status = ''queued'' FROM sandbox.executions WHERE id = %s', :wait_id), 60),
		  'the failed attempt is queued again as attempt 2');
SELECT ok((SELECT next_attempt_at > now() + interval '50 minutes' FROM sandbox.executions WHERE id = :wait_id),
		  'due after its delay');
SELECT sandbox.submit('echo C', 'rt_other') AS other_id \gset
SELECT is((SELECT status FROM sandbox.wait(:other_id, '60 s')), 'succeeded', 'another session''s command runs meanwhile');
SELECT is((SELECT status FROM sandbox.result(:later_id)), 'queued', 'the session''s later command waits for the retry');
SELECT is((SELECT status FROM sandbox.wait(:wait_id, '1 s')), 'queued', 'wait with a timeout returns the waiting retry as it stands');
SELECT is(sandbox.cancel(:wait_id), true, 'cancel during the delay');
SELECT results_eq(format('SELECT r.status, e.error FROM sandbox.wait(%1$s, ''10 s'') r, sandbox.executions e WHERE e.id = %1$s', :wait_id),
				  $$VALUES ('cancelled'::text, 'cancelled before attempt 2 (a retry) started'::text)$$,
				  'ends it cancelled, saying so');
SELECT is((SELECT status FROM sandbox.wait(:later_id, '60 s')), 'succeeded', 'the session''s later command runs then');
SELECT is((SELECT stdout FROM sandbox.exec('tr "\n" " " < order', 'rt_ord')), 'A B ',
		  'no attempt of the cancelled command ran after its first');
SELECT is((SELECT count(*)::int FROM rt_calls WHERE execution = :wait_id), 0, 'a cancelled execution has no callback');

-- Dropping the session during the delay ends the waiting retry.
SELECT sandbox.submit('exit 1', 'rt_drop', retries => 3, retry_delay => '1 hour', retry_on => 'failure') AS drop_id \gset
SELECT ok(test.wait_until(format('SELECT attempt = 2 AND status = ''queued'' FROM sandbox.executions WHERE id = %s', :drop_id), 60),
		  'a retry waits in a session');
SELECT sandbox.drop_session('rt_drop');
SELECT results_eq(format('SELECT status, attempt, error FROM sandbox.executions WHERE id = %s', :drop_id),
				  $$VALUES ('cancelled'::text, 2, 'its session was dropped before it started'::text)$$,
				  'dropping the session ends it: it never runs again');

-- cancel during an attempt stops it, and there are no more.
SELECT sandbox.submit('sleep 30; exit 1', 'rt_other', retries => 3, retry_delay => '0.1 s',
					  retry_on => 'failure') AS run_id \gset
SELECT ok(test.wait_until(format('SELECT status = ''running'' FROM sandbox.executions WHERE id = %s', :run_id), 60),
		  'a command with retries is running');
SELECT is(sandbox.cancel(:run_id), true, 'cancel during its attempt');
SELECT is((SELECT status FROM sandbox.wait(:run_id, '60 s')), 'cancelled', 'ends it cancelled');
SELECT pg_sleep(1);
SELECT results_eq(format('SELECT attempt, status FROM sandbox.execution_attempts WHERE id = %s', :run_id),
				  $$VALUES (1, 'cancelled'::text)$$, 'with no attempt after it');
SELECT ok((SELECT run_id IS NULL AND next_attempt_at IS NULL FROM sandbox.executions WHERE id = :run_id),
		  'it was never queued again (no retry''s run id, no due time)');

-- submit_trigger's options: retries, retry_delay, retry_on (after session, timeout, callback).
DROP TABLE IF EXISTS rt_jobs;
CREATE TABLE rt_jobs (id serial PRIMARY KEY, name text);
CREATE TRIGGER rt_jobs_run AFTER INSERT ON rt_jobs FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('echo {name} >> t; [ $(wc -l < t) -ge 2 ]', 'rt_trig', '', '', '2', '0.1 s', 'failure');
INSERT INTO rt_jobs (name) VALUES ('job');
SELECT max(id) AS trig_id FROM sandbox.executions WHERE session = 'rt_trig' \gset
SELECT is((SELECT status FROM sandbox.wait(:trig_id, '60 s')), 'succeeded', 'a trigger''s command with retry options succeeds');
SELECT results_eq(format('SELECT attempt, status FROM sandbox.execution_attempts WHERE id = %s ORDER BY attempt', :trig_id),
				  $$VALUES (1, 'failed'::text), (2, 'succeeded')$$, 'at its second attempt: retried as its options say');
CREATE TABLE rt_bad (id serial PRIMARY KEY);
CREATE TRIGGER rt_bad_run AFTER INSERT ON rt_bad FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('true', 'rt_trig', '', '', 'lots');
SELECT throws_ok('INSERT INTO rt_bad DEFAULT VALUES', '22023',
				 'the retries option of submit_trigger must be a number, not "lots"', 'a bad retries option is refused');

-- history_max_bytes_per_role deletes a retried execution with its attempts (bob's history).
SET ROLE bob;
SELECT sandbox.drop_session('rt_hist', if_exists => true);
SELECT sandbox.submit('head -c 3000 /dev/zero | tr ''\0'' r; exit 1', 'rt_hist', retries => 1, retry_delay => '0.1 s',
					  retry_on => 'failure') AS hist_id \gset
SELECT is((SELECT status FROM sandbox.wait(:hist_id, '60 s')), 'failed', 'bob''s command failed');
SELECT is((SELECT count(*)::int FROM sandbox.execution_attempts WHERE id = :hist_id), 2, 'twice');
SELECT ok((SELECT attempts_bytes >= 3000 FROM sandbox.executions WHERE id = :hist_id),
		  'its retried attempt''s output counts in its bytes');
RESET ROLE;
SELECT test.set_setting('cloudrun_sandbox.history_max_bytes_per_role', '64kB');
SET ROLE bob;
SELECT sandbox.exec('head -c 70000 /dev/zero | tr ''\0'' h', 'rt_hist') FROM generate_series(1, 2) \g /dev/null
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id = :hist_id)
		  + (SELECT count(*)::int FROM sandbox.retried_attempts WHERE execution_id = :hist_id), 0,
		  'beyond history_max_bytes_per_role it is deleted, its retried attempts with it');
SELECT sandbox.drop_session('rt_hist');
RESET ROLE;
SELECT test.set_setting('cloudrun_sandbox.history_max_bytes_per_role', NULL);

DROP TABLE rt_jobs, rt_bad, rt_calls;
DROP FUNCTION rt_done(bigint);
SELECT sandbox.drop_session(s, if_exists => true)
	FROM unnest(ARRAY['rt', 'rt_ok', 'rt_out', 'rt_ord', 'rt_other', 'rt_trig', 'rt_drop']) s;
-- a retried attempt's output is followed while it runs (its live files are its own run's)
CREATE FUNCTION pg_temp.live_of_attempt(id bigint, want text, OUT seen text, OUT attempt_seen integer)
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
	LOOP
		SELECT e.status, e.attempt INTO st, attempt_seen FROM sandbox.executions e WHERE e.id = live_of_attempt.id;
		IF st = 'running' THEN
			SELECT convert_from(r.stdout, 'UTF8') INTO seen FROM sandbox.read_output(live_of_attempt.id) r;
			EXIT WHEN position(want IN seen) > 0;
		END IF;
		EXIT WHEN st NOT IN ('queued', 'launching', 'running') OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT sandbox.submit('if [ -e rt_live_mark ]; then echo second attempt; sleep 4; else touch rt_live_mark; echo first attempt; exit 1; fi',
					  'rt_live', retries => 1, retry_delay => '100 ms', retry_on => 'failure') AS rl \gset
SELECT is((SELECT row(seen, attempt_seen)::text FROM pg_temp.live_of_attempt(:rl, 'second attempt')),
		  row(E'second attempt\n', 2)::text, 'read_output of a retried execution shows the running attempt''s output, not the first''s');
SELECT is((SELECT stdout FROM sandbox.result(:rl)), E'second attempt\n', 'and so does result() while it runs');
SELECT is((SELECT row(w.status, e.attempt, w.stdout)::text FROM sandbox.wait(:rl, '60 s') w, sandbox.executions e WHERE e.id = :rl),
		  row('succeeded', 2, E'second attempt\n')::text, 'it ends with the second attempt''s output');
SELECT sandbox.drop_session('rt_live');
SELECT * FROM finish();
