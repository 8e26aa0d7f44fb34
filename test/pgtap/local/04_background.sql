-- Background processes on the local backend.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(21);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['bgt', 'bgt2', 'bge2e']) s;
SELECT ok(test.wait_worker(), 'the worker is running');

-- wait_bg waits up to 10 s for a background process to reach a status.
CREATE OR REPLACE FUNCTION pg_temp.wait_bg(h bigint, want text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
BEGIN
	FOR i IN 1..100 LOOP
		SELECT status INTO st FROM sandbox.list_background_processes() WHERE pid = h;
		EXIT WHEN st = want;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN st;
END $$;

SELECT sandbox.start_background('sleep 101', 'bgt') AS sleeper \gset
SELECT is(pg_temp.wait_bg(:sleeper, 'running'), 'running', 'a background sleep 101 is listed as running');
SELECT is((SELECT running FROM sandbox.list_background_processes('bgt') WHERE pid = :sleeper), true, 'with running = true');
SELECT is(test.host_procs('sleep 101'), 1, 'and it runs');

SELECT sandbox.start_background('for i in 1 2 3 4 5 6 7 8; do echo tick $i; echo err $i >&2; sleep 0.3; done; exit 7', 'bgt') AS ticker \gset
SELECT pg_sleep(1);
SELECT matches(sandbox.get_background_logs(:ticker), 'tick 1\nerr 1\ntick 2', 'its logs can be read while it runs, stdout and stderr together');
SELECT is(pg_temp.wait_bg(:ticker, 'exited'), 'exited', 'a process that ends by itself is listed as exited');
SELECT is(sandbox.get_background_logs(:ticker, tail_lines => 2), E'tick 8\nerr 8\n', 'tail_lines gives the last lines');
SELECT is((SELECT exit_code FROM sandbox.list_background_processes() WHERE pid = :ticker), 7, 'with its exit code');

SELECT results_eq(format('SELECT killed_count, killed_pids FROM sandbox.kill_background_process(%s)', :sleeper),
				  format('VALUES (1, ARRAY[%s]::bigint[])', :sleeper), 'kill by handle names the killed process');
SELECT is((SELECT running FROM sandbox.list_background_processes() WHERE pid = :sleeper), false, 'it is listed as not running');
SELECT is(test.wait_procs('sleep 101', 0, 5), 0, 'and its process is gone');

SELECT sandbox.start_background('sleep 102', 'bgt') AS a \gset
SELECT sandbox.start_background('sleep 103', 'bgt') AS b \gset
SELECT sandbox.start_background('sleep 104', 'bgt2') AS c \gset
SELECT pg_temp.wait_bg(:c, 'running');
SELECT results_eq($$SELECT killed_count FROM sandbox.kill_background_process(pattern => 'sleep 10[23]')$$, $$VALUES (2)$$,
				  'kill by pattern');
SELECT results_eq($$SELECT killed_count FROM sandbox.kill_background_process(session => 'bgt2')$$, $$VALUES (1)$$,
				  'kill by session');
SELECT is(test.wait_procs('sleep 102', 0, 5) + test.wait_procs('sleep 104', 0, 5), 0, 'their processes are gone');
SELECT throws_ok($$SELECT * FROM sandbox.kill_background_process()$$, '22023', NULL, 'kill with no target is an error');
SELECT throws_ok($$SELECT * FROM sandbox.kill_background_process(pattern => '[')$$, '2201B', NULL, 'a bad pattern is an error');

-- A background process outlives the connection that started it.
SELECT test.dblink_connect('bg');
SELECT * FROM dblink('bg', $$SELECT sandbox.start_background('sleep 105', 'bgt')$$) AS t(h bigint);
SELECT dblink_disconnect('bg');
SELECT is(test.wait_procs('sleep 105', 1, 10), 1, 'a background process outlives the connection that started it');
SELECT is(sandbox.drop_session('bgt'), true, 'drop_session');
SELECT is(test.wait_procs('sleep 105', 0, 5), 0, 'kills the session''s background processes');

-- The seed's end-to-end scenario: write a program, build it, run it in the background, read, kill, download.
SELECT sandbox.file_write('server.sh', E'i=0\nwhile true; do i=$((i+1)); echo "served $i" | tee -a out.txt; sleep 0.1; done\n', session => 'bge2e');
SELECT sandbox.exec('bash -n server.sh && chmod +x server.sh', 'bge2e');
SELECT sandbox.start_background('./server.sh', 'bge2e') AS srv \gset
SELECT pg_sleep(1);
SELECT ok((SELECT sandbox.get_background_logs(:srv) LIKE 'served 1%served 3%'), 'a program written with file_write runs in the background and logs');
SELECT sandbox.kill_background_process(:srv);
SELECT ok(convert_from(sandbox.file_download('out.txt', session => 'bge2e'), 'UTF8') LIKE 'served 1%served 3%',
		  'its output file can be downloaded after it was killed');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['bgt2', 'bge2e']) s;
SELECT * FROM finish();
