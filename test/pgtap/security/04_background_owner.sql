-- Security, finding 4: a background process belongs to the role that started it.
-- Runs as alice and bob, roles with only sandbox_user; the superuser only creates
-- helpers that count host processes (COPY FROM PROGRAM needs it).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(16);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec04']) s;
SELECT ok(test.wait_worker(), 'the worker is running');

-- wait_procs waits for a number of host processes with a command line (as the superuser).
CREATE FUNCTION pg_temp.wait_procs(cmdline text, want integer, max_s float8 DEFAULT 10) RETURNS integer
	LANGUAGE sql SECURITY DEFINER AS $$ SELECT test.wait_procs(cmdline, want, max_s) $$;
-- wait_running waits up to 10 s until the caller lists a background process as running.
CREATE FUNCTION pg_temp.wait_running(h bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..100 LOOP
		IF (SELECT running FROM sandbox.list_background_processes() WHERE pid = h) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN false;
END $$;

SET ROLE alice;
SELECT sandbox.start_background('echo hello from alice; sleep 141', 'sec04') AS h \gset
SELECT ok(pg_temp.wait_running(:h), 'alice lists her background process as running');
SELECT is((SELECT count(*)::int FROM sandbox.list_background_processes('sec04') WHERE pid = :h), 1,
		  'also when she names the session');
SELECT is((SELECT owner::text FROM sandbox.background_processes WHERE pid = :h), 'alice',
		  'the process is recorded as hers');
SELECT is(pg_temp.wait_procs('sleep 141', 1), 1, 'it runs');
SELECT is(sandbox.get_background_logs(:h), E'hello from alice\n', 'alice reads its logs');

SELECT sandbox.start_background('sleep 142', 'sec04') AS h2 \gset
SELECT ok(pg_temp.wait_running(:h2), 'a second one runs');

SET ROLE bob;
-- (bob may have ended processes of his own in the history, from other files: only alice's count)
SELECT is((SELECT count(*)::int FROM sandbox.list_background_processes() WHERE pid IN (:h, :h2)), 0,
		  'bob lists none of alice''s processes');
SELECT is((SELECT count(*)::int FROM sandbox.background_processes WHERE owner <> 'bob'::regrole), 0,
		  'and sees none of their rows');
SELECT throws_ok(format('SELECT sandbox.get_background_logs(%s)', :h), '42501', NULL,
				 'bob cannot read the logs of alice''s process');
SELECT is((SELECT killed_count FROM sandbox.kill_background_process(:h)), 0, 'bob cannot kill it by handle');
SELECT is((SELECT killed_count FROM sandbox.kill_background_process(pattern => 'sleep')), 0, 'nor by pattern');
SELECT is(pg_temp.wait_procs('sleep 141', 1, 0.5), 1, 'it still runs');

SET ROLE alice;
SELECT results_eq(format('SELECT killed_count, killed_pids FROM sandbox.kill_background_process(%s)', :h),
				  format('VALUES (1, ARRAY[%s]::bigint[])', :h), 'alice kills her process');
SELECT is(pg_temp.wait_procs('sleep 141', 0, 5), 0, 'and it is gone');
SELECT sandbox.drop_session('sec04');
SELECT is(pg_temp.wait_procs('sleep 142', 0, 5), 0, 'drop_session by alice kills her session''s other process');

RESET ROLE;
SELECT sandbox.kill_background_process(pattern => '^(echo hello from alice; )?sleep 14[12]$');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec04']) s;
SELECT * FROM finish();
