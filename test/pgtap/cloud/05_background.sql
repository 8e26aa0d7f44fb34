-- Background processes on the cloud backend: each one a long-running Cloud
-- Run execution whose supervisor saves the output and the exit code.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(14);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['cbg', 'cbg2']) s;
SELECT ok(test.wait_worker(), 'the worker is running');

CREATE OR REPLACE FUNCTION pg_temp.wait_bg(h bigint, want text, secs int DEFAULT 20) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
BEGIN
	FOR i IN 1..secs * 10 LOOP
		SELECT status INTO st FROM sandbox.list_background_processes() WHERE pid = h;
		EXIT WHEN st = want;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN st;
END $$;
CREATE OR REPLACE FUNCTION pg_temp.wait_logs(h bigint, pattern text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..150 LOOP
		IF sandbox.get_background_logs(h) ~ pattern THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN false;
END $$;

SELECT sandbox.exec('echo from-the-workspace > note.txt', 'cbg');
SELECT sandbox.start_background('sleep 106', 'cbg') AS sleeper \gset
SELECT is(pg_temp.wait_bg(:sleeper, 'running'), 'running', 'a background sleep on a cloud session is listed as running');
SELECT is(test.wait_procs('sleep 106', 1, 20), 1, 'and runs (as a Cloud Run execution)');
SELECT ok((SELECT remote_name IS NOT NULL FROM sandbox.background_processes WHERE pid = :sleeper), 'its execution is recorded');

SELECT sandbox.start_background('cat note.txt; for i in $(seq 1 40); do echo tick $i; sleep 0.2; done; exit 5', 'cbg') AS ticker \gset
SELECT ok(pg_temp.wait_logs(:ticker, 'from-the-workspace\ntick 1\n'),
		  'its logs can be read while it runs, within a few seconds, and it sees the session''s files');
SELECT is(pg_temp.wait_bg(:ticker, 'exited', 30), 'exited', 'a process that ends by itself is listed as exited');
SELECT is((SELECT exit_code FROM sandbox.list_background_processes() WHERE pid = :ticker), 5, 'with its exit code');
SELECT ok(sandbox.get_background_logs(:ticker, tail_lines => 1) = E'tick 40\n', 'and its whole output');

SELECT results_eq(format('SELECT killed_count, killed_pids FROM sandbox.kill_background_process(%s)', :sleeper),
				  format('VALUES (1, ARRAY[%s]::bigint[])', :sleeper), 'kill by handle');
SELECT is((SELECT running FROM sandbox.list_background_processes() WHERE pid = :sleeper), false, 'it is listed as not running');
SELECT is(test.wait_procs('sleep 106', 0, 15), 0, 'and its process is gone');

SELECT sandbox.start_background('sleep 107', 'cbg') AS a \gset
SELECT sandbox.start_background('sleep 108', 'cbg2') AS b \gset
SELECT pg_temp.wait_bg(:a, 'running');
SELECT pg_temp.wait_bg(:b, 'running');
SELECT test.wait_procs('sleep 108', 1, 20);
SELECT results_eq($$SELECT killed_count FROM sandbox.kill_background_process(pattern => 'sleep 107')$$, $$VALUES (1)$$,
				  'kill by pattern');
SELECT results_eq($$SELECT killed_count FROM sandbox.kill_background_process(session => 'cbg2')$$, $$VALUES (1)$$,
				  'kill by session');
SELECT is(test.wait_procs('sleep 107', 0, 15) + test.wait_procs('sleep 108', 0, 15), 0, 'their processes are gone');

SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['cbg', 'cbg2']) s;
SELECT * FROM finish();
