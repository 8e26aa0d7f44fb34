-- Timeouts, cancellation, huge and invalid output.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(18);
SELECT sandbox.drop_session('lim', if_exists => true);
SELECT sandbox.drop_session('lim2', if_exists => true);
SELECT test.forget_executions(s) FROM unnest(ARRAY['lim', 'lim2']) s;
CREATE TEMP TABLE t (started timestamptz, finished timestamptz, status text, exit_code int);

-- timeout
INSERT INTO t (started) VALUES (clock_timestamp());
UPDATE t SET status = x.status, exit_code = x.exit_code
	FROM sandbox.exec('sleep 31', 'lim', timeout => '1 second') x;
UPDATE t SET finished = clock_timestamp();
SELECT is((SELECT status FROM t), 'timed_out', 'sleep 30 with a 1 second timeout is timed_out');
SELECT cmp_ok((SELECT finished - started FROM t), '<', interval '3 seconds', 'and returns in about a second');
SELECT cmp_ok((SELECT finished - started FROM t), '>=', interval '1 second', 'but not before the timeout');
SELECT is(test.wait_procs('sleep 31', 0, 5), 0, 'no sleep process remains on the host after a timeout');

-- huge output
SELECT test.backend_hwm_kb(pg_backend_pid()) AS hwm_before \gset
SELECT results_eq($$SELECT length(stdout), stdout_truncated, status FROM sandbox.exec('head -c 200000000 /dev/zero | tr "\0" x', 'lim')$$,
				  $$VALUES (1048576, true, 'succeeded'::text)$$,
				  'a command printing 200 MB returns max_output_bytes of it, flagged truncated');
SELECT cmp_ok(test.backend_hwm_kb(pg_backend_pid()) - :hwm_before, '<', 65536::bigint,
			  'the backend''s peak memory grows by less than 64 MB for 200 MB of output');
SELECT results_eq($$SELECT length(stderr), stderr_truncated, length(stdout), stdout_truncated FROM sandbox.exec('head -c 3000000 /dev/zero | tr "\0" y >&2; echo out', 'lim')$$,
				  $$VALUES (1048576, true, 4, false)$$, 'stderr is capped on its own');
SELECT test.set_setting('cloudrun_sandbox.max_output_bytes', '10kB');
SELECT is((SELECT length(stdout) FROM sandbox.exec('seq 100000', 'lim')), 10240, 'cloudrun_sandbox.max_output_bytes sets the cap');
SELECT test.set_setting('cloudrun_sandbox.max_output_bytes', NULL);
SELECT is((SELECT stdout FROM sandbox.exec('printf "a\377\376b"', 'lim')), E'a\uFFFD\uFFFDb',
		  'invalid UTF-8 in output is replaced, and the query does not fail');
SELECT is((SELECT stdout FROM sandbox.exec('printf "a\000b"', 'lim')), E'a\uFFFDb', 'a NUL byte in output does not fail the query');
SELECT is((SELECT stdout FROM sandbox.exec(E'printf "caf\u00e9 \u2603"', 'lim')), E'caf\u00e9 \u2603', 'valid UTF-8 comes back unchanged');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'lim' AND stdout LIKE E'%\uFFFD%'), 2,
		  'repaired output is stored in the history too');

-- statement_timeout
-- (A cancel is not an error PL/pgSQL can catch, so psql reports it.)
\set ON_ERROR_STOP 0
SET statement_timeout = '1s';
SELECT * FROM sandbox.exec('sleep 32', 'lim');
RESET statement_timeout;
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '57014', 'statement_timeout stops a long exec');
SELECT is(test.wait_procs('sleep 32', 0, 5), 0, 'no process remains after statement_timeout');
SELECT is((SELECT stdout FROM sandbox.exec('echo still-usable', 'lim')), E'still-usable\n', 'the session is usable after a cancelled exec');

-- query cancel from another connection
SELECT test.dblink_connect('c1');
SELECT dblink_send_query('c1', $$SELECT status FROM sandbox.exec('sleep 33', 'lim2')$$);
SELECT is(test.wait_procs('sleep 33', 1, 10), 1, 'the long command is running (so the next check can fail)');
SELECT dblink_cancel_query('c1');
\set ON_ERROR_STOP 0
SELECT * FROM dblink_get_result('c1') AS t(s text);
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '57014', 'a query cancel stops exec');
SELECT is(test.wait_procs('sleep 33', 0, 5), 0, 'no process remains after a query cancel');
SELECT dblink_disconnect('c1');

SELECT sandbox.drop_session('lim');
SELECT sandbox.drop_session('lim2', if_exists => true);
SELECT * FROM finish();
