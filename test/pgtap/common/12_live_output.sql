-- Live output of queued executions (issue 14, part 4): while a queued command
-- runs, sandbox.read_output(id, stdout_offset, stderr_offset) returns the bytes
-- after the offsets and the next offsets; a follower reading it in a loop gets
-- every byte of stdout and stderr exactly once, in order, before the command
-- finishes, and finished once it has; sandbox.result(id) shows the output so
-- far.  Attacks (tap, sandbox_user only): another role reading the output
-- (42501), negative offsets (22023), an unknown id (42704).
-- Runs as: tap (sandbox_user only), on each backend; bob through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '120s';
SELECT plan(23);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['lo']) s;

-- follow reads an execution's output until it has finished: the bytes in the
-- order received, how many non-empty reads came while the row was running,
-- and when the first and last of those came.
CREATE OR REPLACE FUNCTION pg_temp.follow(id bigint, OUT sout bytea, OUT serr bytea,
	OUT live_reads integer, OUT first_at timestamptz, OUT last_at timestamptz, OUT polls integer)
LANGUAGE plpgsql AS $$
DECLARE
	o bigint := 0;
	e bigint := 0;
	r record;
	st text;
BEGIN
	sout := ''; serr := ''; live_reads := 0; polls := 0;
	LOOP
		SELECT status INTO st FROM sandbox.result(id);
		SELECT * INTO r FROM sandbox.read_output(id, o, e);
		polls := polls + 1;
		IF r.next_stdout_offset <> o + length(r.stdout) OR r.next_stderr_offset <> e + length(r.stderr) THEN
			RAISE EXCEPTION 'next offsets % % do not follow % % + % %', r.next_stdout_offset,
				r.next_stderr_offset, o, e, length(r.stdout), length(r.stderr);
		END IF;
		sout := sout || r.stdout;
		serr := serr || r.stderr;
		o := r.next_stdout_offset;
		e := r.next_stderr_offset;
		IF (length(r.stdout) > 0 OR length(r.stderr) > 0) AND st = 'running' AND NOT r.finished THEN
			live_reads := live_reads + 1;
			first_at := coalesce(first_at, clock_timestamp());
			last_at := clock_timestamp();
		END IF;
		EXIT WHEN r.finished OR polls > 600;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;

SELECT test.dblink_connect('lo_listen');
SELECT dblink_exec('lo_listen', 'LISTEN sandbox_output');
SELECT sandbox.submit('for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; echo "err $i" >&2; sleep 0.5; done',
					  'lo', timeout => '60s') AS id \gset
SELECT ok(test.wait_until(format('SELECT status = %L FROM sandbox.result(%s)', 'running', :id), 30),
		  'the queued command is running');
SELECT ok(test.wait_until(format('SELECT stdout LIKE %L FROM sandbox.result(%s)', 'line 1%', :id), 10),
		  'while it runs, result(id) shows the output so far');
SELECT * FROM pg_temp.follow(:id) \gset f_
SELECT is(convert_from(:'f_sout', 'UTF8'),
		  (SELECT string_agg(format('line %s', i) || E'\n', '' ORDER BY i) FROM generate_series(1, 10) i),
		  'the follower got every byte of stdout once, in order');
SELECT is(convert_from(:'f_serr', 'UTF8'),
		  (SELECT string_agg(format('err %s', i) || E'\n', '' ORDER BY i) FROM generate_series(1, 10) i),
		  'and of stderr');
SELECT is(convert_from(:'f_sout', 'UTF8'), (SELECT stdout FROM sandbox.result(:id)),
		  'the same bytes as the finished row''s stdout');
SELECT cmp_ok(:f_live_reads, '>=', 3, 'output arrived in several reads while the command was running');
SELECT cmp_ok(:'f_last_at'::timestamptz - :'f_first_at'::timestamptz, '>=', interval '1 second',
			  'spread over the command''s run, not all at its end');
SELECT is((SELECT status FROM sandbox.result(:id)), 'succeeded', 'the command succeeded');
-- NOTIFY sandbox_output "<id> <stdout offset> <stderr offset>": local backend, coalesced.
CREATE TEMP TABLE lo_notes AS
	SELECT row_number() OVER () AS n, split_part(extra, ' ', 2)::bigint AS o, split_part(extra, ' ', 3)::bigint AS e
	FROM dblink_get_notify('lo_listen') WHERE notify_name = 'sandbox_output' AND split_part(extra, ' ', 1) = :'id';
SELECT CASE WHEN test.cloud()
	THEN is((SELECT count(*)::int FROM lo_notes), 0, 'cloud backend: no NOTIFY sandbox_output (local only, documented)')
	ELSE ok((SELECT count(*) BETWEEN 2 AND 15 FROM lo_notes),
			format('followers were notified of new output a few times, coalesced (%s NOTIFYs over 5 s)',
				   (SELECT count(*) FROM lo_notes))) END;
SELECT ok((SELECT coalesce(bool_and(o <= 71 AND e <= 61), true) AND count(*) = count(DISTINCT (o, e)) FROM lo_notes),
		  'each NOTIFY names new offsets within the output');
SELECT results_eq(format('SELECT length(stdout), length(stderr), next_stdout_offset, finished FROM sandbox.read_output(%s, 5)', :id),
				  $$VALUES (66, 61, 71::bigint, true)$$,
				  'after it finished, read_output reads the row from an offset');

-- get_background_logs(pid, log_offset): a background process's output, followed the same way.
CREATE OR REPLACE FUNCTION pg_temp.follow_bg(pid bigint, OUT sout bytea, OUT live_reads integer)
LANGUAGE plpgsql AS $$
DECLARE
	o bigint := 0;
	r record;
	quiet integer := 0;
BEGIN
	sout := ''; live_reads := 0;
	FOR i IN 1..600 LOOP
		SELECT * INTO r FROM sandbox.get_background_logs(pid, o);
		IF r.next_offset <> o + length(r.output) THEN
			RAISE EXCEPTION 'next offset % does not follow % + %', r.next_offset, o, length(r.output);
		END IF;
		sout := sout || r.output;
		o := r.next_offset;
		IF length(r.output) > 0 AND r.running THEN
			live_reads := live_reads + 1;
		END IF;
		-- Once it has ended, a few more reads find nothing new.
		IF NOT r.running AND length(r.output) = 0 THEN
			quiet := quiet + 1;
			EXIT WHEN quiet >= 5;
		END IF;
		PERFORM pg_sleep(0.2);
	END LOOP;
END $$;
SELECT sandbox.start_background('for i in 1 2 3 4 5 6 7 8; do echo "bg $i"; sleep 0.5; done', 'lo') AS bg \gset
SELECT ok(test.wait_until(format('SELECT running FROM sandbox.list_background_processes(%L) WHERE pid = %s', 'lo', :bg), 30),
		  'the background process runs');
SELECT * FROM pg_temp.follow_bg(:bg) \gset b_
SELECT is(convert_from(:'b_sout', 'UTF8'),
		  (SELECT string_agg(format('bg %s', i) || E'\n', '' ORDER BY i) FROM generate_series(1, 8) i),
		  'a follower of get_background_logs(pid, log_offset) gets every byte once, in order');
SELECT cmp_ok(:b_live_reads, '>=', 1, 'some of it while the process ran');
SELECT throws_ok(format('SELECT * FROM sandbox.get_background_logs(%s, -1)', :bg), '22023', NULL,
				 'a negative log_offset is refused');

-- Attacks.
SELECT sandbox.submit($$for f in /proc/[0-9]*/fd/*; do readlink "$f"; done 2>/dev/null | grep -c live; echo end$$,
					  'lo') AS peek \gset
-- Locally the descriptors are the host's files: out of the command's reach.  In the
-- cloud container's command sandbox they are memfds holding only the command's own
-- output, which its inner executor holds (the command may see those, nothing else).
SELECT CASE WHEN test.cloud()
	THEN is((SELECT stdout FROM sandbox.wait(:peek, '60s')) IN (E'0\nend\n', E'2\nend\n'), true,
			'the command sees at most its own output''s two memfds')
	ELSE is((SELECT stdout FROM sandbox.wait(:peek, '60s')), E'0\nend\n',
			'the command cannot reach the live output files (not inherited, the executor not dumpable)') END;
SELECT throws_ok(format('SELECT * FROM sandbox.read_output(%s, -1)', :id), '22023', NULL,
				 'a negative offset is refused');
SELECT throws_ok(format('SELECT * FROM sandbox.read_output(%s, 0, -5)', :id), '22023', NULL,
				 'a negative stderr offset too');
SELECT throws_ok('SELECT * FROM sandbox.read_output(999999999)', '42704', NULL,
				 'an unknown execution is a clear error');
-- exec(stream => true) returns the row as ever (its NOTICEs: test/stream_notices.sh).
SELECT is((SELECT stdout FROM sandbox.exec('echo x', 'lo', stream => true)), E'x\n',
		  'stream => true returns the row as ever');
SET ROLE bob;
SELECT throws_ok(format('SELECT * FROM sandbox.read_output(%s)', :id), '42501', NULL,
				 'another role cannot read an execution''s output');
SELECT throws_ok(format('SELECT * FROM sandbox.get_background_logs(%s, 0)', :bg), '42501', NULL,
				 'nor follow another role''s background process');
RESET ROLE;
SELECT dblink_disconnect('lo_listen');
SELECT sandbox.drop_session('lo');
SELECT * FROM finish();
