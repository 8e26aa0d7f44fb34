-- Security, finding 1: a background sandbox must not reach host files through the
-- files the host keeps for background processes (the log and exit code of each).
-- The attacks run as alice, a role with only sandbox_user; the superuser only
-- prepares a host file to aim at and reads it back (SECURITY DEFINER helpers).
--
-- The attacker tries every name the host used to open in the directory that was
-- bound at /run/background: a symlink to a host file as the next process's log
-- (the host appended that process's output to it, and gave it to the sandbox as
-- stdout, readable through /proc/self/fd/1), as its own log (which
-- get_background_logs read), and FIFOs as its own log and exit code (which hung
-- get_background_logs and the worker).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(12);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec01', 'sec01b', 'sec01c']) s;
SELECT ok(test.wait_worker(), 'the worker is running');

-- The host file the attacks aim at, inside the data directory, and its contents.
SELECT current_setting('data_directory') || '/sec01_victim.txt' AS victim \gset
COPY (SELECT 'victim-secret-4c1d') TO :'victim';
CREATE FUNCTION pg_temp.victim() RETURNS text LANGUAGE sql SECURITY DEFINER
	AS $$ SELECT pg_read_file(current_setting('data_directory') || '/sec01_victim.txt') $$;
-- wait_bg waits up to max_s seconds for a background process to reach a status.
CREATE FUNCTION pg_temp.wait_bg(h bigint, want text, max_s int DEFAULT 10) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
BEGIN
	FOR i IN 1..max_s * 10 LOOP
		SELECT status INTO st FROM sandbox.list_background_processes() WHERE pid = h;
		EXIT WHEN st = want;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN st;
END $$;
-- A connection as alice, opened by the superuser (dblink asks a non-superuser for a
-- password), to run calls that must return promptly with a deadline.
SELECT dblink_connect('sec01', test.connstr('alice'));
-- busy_after tells whether a dblink query is still running after max_s seconds.
CREATE FUNCTION pg_temp.busy_after(conn text, max_s float8) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..(max_s * 10)::int LOOP
		EXIT WHEN dblink_is_busy(conn) = 0;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN dblink_is_busy(conn) = 1;
END $$;

SET ROLE alice;

-- 1. A symlink planted as the next process's log: "ls" finds our own handle, the
--    next start_background gets the one after it.
SELECT sandbox.start_background(format($cmd$
	h=$(ls /run/background 2>/dev/null | sed -n 's/^\([0-9]*\)\.log$/\1/p' | sort -n | tail -1)
	if [ -n "$h" ]; then
		for n in $((h + 1)) $((h + 2)) $((h + 3)); do
			ln -s %1$s /run/background/$n.log
			ln -s %1$s /run/background/$n.exit
		done
	fi
	echo planted
	$cmd$, :'victim'), 'sec01') AS planter \gset
SELECT is(pg_temp.wait_bg(:planter, 'exited'), 'exited', 'the planting process ran');
SELECT sandbox.start_background($c$echo appended-by-sandbox; cat /proc/$$/fd/1 > /workspace/stolen.txt; exit 3$c$, 'sec01') AS next \gset
SELECT is(pg_temp.wait_bg(:next, 'exited'), 'exited', 'the next background process ran');
SELECT is(pg_temp.victim(), E'victim-secret-4c1d\n', 'its output was not appended to the host file');
SELECT is(sandbox.get_background_logs(:next), E'appended-by-sandbox\n', 'its output is in its own log');
SELECT unalike(sandbox.file_read('stolen.txt', session => 'sec01'), '%victim-secret%',
			  'its stdout, read back through /proc, is its own log, not the host file');
SELECT is((SELECT exit_code FROM sandbox.list_background_processes() WHERE pid = :next), 3,
		  'and its exit code is its own, not read from the host file');

-- 2. Its own log replaced by a symlink to the host file: get_background_logs reads the log.
--    (In a session of its own, where its own log is the only one.)
SELECT sandbox.start_background(format($c$
	h=$(ls /run/background 2>/dev/null | sed -n 's/^\([0-9]*\)\.log$/\1/p' | sort -n | tail -1)
	[ -n "$h" ] && rm -f /run/background/$h.log && ln -s %s /run/background/$h.log
	echo relinked $?
	$c$, :'victim'), 'sec01c') AS relink \gset
SELECT pg_temp.wait_bg(:relink, 'exited');
SELECT unalike(sandbox.get_background_logs(:relink), '%victim-secret%', 'get_background_logs does not read a host file');

-- 3. FIFOs as its own log (get_background_logs) and its own exit code (the worker), with
--    the exit code's temporary file made a directory so that it stays a FIFO.
SELECT sandbox.start_background($c$
	h=$(ls /run/background 2>/dev/null | sed -n 's/^\([0-9]*\)\.log$/\1/p' | sort -n | tail -1)
	if [ -n "$h" ]; then
		cd /run/background && rm -f $h.log $h.exit && mkfifo $h.log $h.exit && mkdir $h.exit.tmp
	fi
	exit 0
	$c$, 'sec01b') AS fifo \gset
SELECT pg_temp.wait_bg(:fifo, 'exited', 5);
SELECT dblink_send_query('sec01', format('SELECT length(sandbox.get_background_logs(%s))', :fifo));
SELECT is(pg_temp.busy_after('sec01', 5), false, 'get_background_logs returns promptly whatever the sandbox planted');
SELECT sandbox.start_background('echo still-working', 'sec01b') AS after \gset
SELECT is(pg_temp.wait_bg(:after, 'exited', 15), 'exited', 'the worker still starts and reaps background processes');
SELECT sandbox.submit('echo queued-work', 'sec01b') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id, '15 s')), E'queued-work\n', 'and still runs queued commands');
SELECT is(pg_temp.victim(), E'victim-secret-4c1d\n', 'the host file is unchanged');

SELECT CASE WHEN dblink_is_busy('sec01') = 0 THEN (SELECT count(*) FROM dblink_get_result('sec01') AS t(n int)) END;
SELECT dblink_disconnect('sec01');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec01', 'sec01b', 'sec01c']) s;
RESET ROLE;
SELECT 'rm -f ' || :'victim' AS rm_victim \gset
COPY (SELECT 1) TO PROGRAM :'rm_victim';
SELECT * FROM finish();
