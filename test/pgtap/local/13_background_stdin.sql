-- Writing to a running background process (issue 14, part 1), local backend:
-- start_background_writable keeps the process's stdin open;
-- write_background_stdin feeds a running `cat > f` whose file then holds the
-- bytes (text and bytea, NUL and non-UTF-8 included) and closes it when asked;
-- a process of start_background (given stdin or not) is not writable; a
-- closed or ended one says so; a writer of a process that never reads waits
-- only in its own statement (statement_timeout ends it), and nothing else
-- waits.  Attacks (tap with sandbox_user only): another role's process; the
-- host's data directory from a cwd climbing out of /workspace.
-- Runs as: tap (sandbox_user only); bob's process as bob.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '120s';
SELECT plan(27);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['bsi', 'bsi2']) s;

CREATE FUNCTION pg_temp.status_is(h bigint, want text) RETURNS boolean LANGUAGE sql AS $$
	SELECT test.until(format($q$SELECT status = %L FROM sandbox.list_background_processes() WHERE pid = %s$q$, want, h), 60)
$$;

SELECT sandbox.start_background_writable('cat > f.bin; echo "cat ended $?"', 'bsi') AS w1 \gset
SELECT ok(pg_temp.status_is(:w1, 'running'), 'a writable background cat > f is running');
SELECT is(sandbox.write_background_stdin(:w1, E'hello\n'), 6::bigint, 'write_background_stdin writes text: 6 bytes');
SELECT is(sandbox.write_background_stdin(:w1, '\x00ff41fe0a'::bytea), 5::bigint, 'and bytes');
SELECT is(sandbox.write_background_stdin(:w1, repeat('z', 300000)), 300000::bigint,
		  'and more than a pipe holds, as cat takes it');
SELECT ok(pg_temp.status_is(:w1, 'running'), 'the process still runs: its stdin is open');
SELECT is(sandbox.write_background_stdin(:w1, 'end', close => true), 3::bigint, 'the last write closes it');
SELECT ok(pg_temp.status_is(:w1, 'exited'), 'then cat sees EOF and ends');
SELECT is(sandbox.file_download('f.bin', 'bsi'),
		  convert_to(E'hello\n', 'UTF8') || '\x00ff41fe0a'::bytea || convert_to(repeat('z', 300000) || 'end', 'UTF8'),
		  'the file holds the bytes, in order, byte for byte');
SELECT is(sandbox.get_background_logs(:w1), E'cat ended 0\n', 'cat ended normally');
SELECT throws_ok(format($$SELECT sandbox.write_background_stdin(%s, 'x')$$, :w1), '55000',
				 'background process ' || :w1 || ' is not running', 'an ended process is not written to');

-- first bytes at the start, then writes; closing twice
SELECT sandbox.start_background_writable('cat; echo "[eof]"', 'bsi', stdin => E'first\n') AS w2 \gset
SELECT ok(pg_temp.status_is(:w2, 'running'), 'a writable process with first bytes runs');
SELECT is(sandbox.write_background_stdin(:w2, E'second\n', close => true), 7::bigint, 'written after them, and closed');
SELECT throws_ok(format($$SELECT sandbox.write_background_stdin(%s, 'x')$$, :w2), '55000', NULL,
				 'a closed stdin takes nothing more');
SELECT ok(pg_temp.status_is(:w2, 'exited'), 'it ended');
SELECT is(sandbox.get_background_logs(:w2), E'first\nsecond\n[eof]\n', 'reading its first bytes, then the writes, then EOF');

-- a process of start_background is not writable
SELECT sandbox.start_background('sleep 60', 'bsi') AS nw \gset
SELECT ok(pg_temp.status_is(:nw, 'running'), 'a plain background process runs');
SELECT matches(test.error_of(format($$SELECT sandbox.write_background_stdin(%s, 'x')$$, :nw)),
			   '^55000: .* was not started to be written to HINT: Start it with sandbox.start_background_writable',
			   'it cannot be written to, with a hint');
SELECT sandbox.kill_background_process(:nw) \g /dev/null

-- a process that never reads: the writer waits in its own statement only
SELECT sandbox.start_background_writable('sleep 60', 'bsi') AS nr \gset
SELECT ok(pg_temp.status_is(:nr, 'running'), 'a writable process that never reads runs');
-- (throws_ok cannot catch a cancel: WHEN OTHERS leaves query_canceled out)
CREATE FUNCTION pg_temp.cancelled(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN query_canceled THEN
	RETURN 'cancelled';
END $$;
SET statement_timeout = '2s';
SELECT is(pg_temp.cancelled(format($$SELECT sandbox.write_background_stdin(%s, repeat('q', 4000000))$$, :nr)),
		  'cancelled', 'writing more than it takes waits, until statement_timeout');
SET statement_timeout = '120s';
SELECT is((SELECT stdout FROM sandbox.exec('echo still here', 'bsi2')), E'still here\n', 'nothing else waited');
SELECT sandbox.kill_background_process(:nr) \g /dev/null

-- attack: another role's writable process
SET ROLE bob;
SELECT sandbox.drop_session('bsi_bob', if_exists => true);
SELECT sandbox.start_background_writable('cat > bob.txt', 'bsi_bob') AS bobs \gset
SELECT ok(pg_temp.status_is(:bobs, 'running'), 'bob runs a writable cat > bob.txt');
RESET ROLE;
SELECT throws_ok(format($$SELECT sandbox.write_background_stdin(%s, 'injected by tap', close => true)$$, :bobs),
				 '42501', NULL, 'attack: tap cannot write to bob''s process');
SET ROLE bob;
SELECT is(sandbox.write_background_stdin(:bobs, 'bob''s own', close => true), 9::bigint, 'bob can');
SELECT ok(pg_temp.status_is(:bobs, 'exited'), 'and his process ends');
SELECT is(sandbox.file_read('bob.txt', session => 'bsi_bob'), 'bob''s own', 'his file holds his bytes only');
SELECT sandbox.drop_session('bsi_bob');
RESET ROLE;

-- attack: a cwd out of /workspace does not reach the host
SELECT is((SELECT stdout FROM sandbox.exec(format('test -e %s && echo visible || echo hidden',
												  test.server_setting('data_directory')), 'bsi', cwd => '../../../..')),
		  E'hidden\n', 'attack: from a cwd climbing out of /workspace the host''s data directory is not there');

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['bsi', 'bsi2']) s;
SELECT * FROM finish();
