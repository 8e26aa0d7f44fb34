-- Issue 12: synchronous exec runs in the session's warm sandbox (listed in
-- sandbox.warm_sandboxes), with the semantics of a fresh sandbox: what a command
-- leaves (children, setsid daemons, /dev/shm) is gone before the next one; a
-- timed-out or cancelled command, or a backend terminated mid-command, leaves
-- nothing running and the next call works.
-- Runs as: tap (sandbox_user only); the host checks through test.* helpers.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(32);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['ws1', 'ws2', 'ws3']) s;

-- in_sandbox counts the processes the session's sandbox sees whose whole command
-- line is cmdline (its own /proc, from the next command).
CREATE FUNCTION pg_temp.in_sandbox(name text, cmdline text) RETURNS integer
LANGUAGE sql AS $$
	SELECT btrim((sandbox.exec(format('for p in /proc/[0-9]*; do tr "\0" " " < $p/cmdline 2>/dev/null; echo; done | grep -c -x -F %s || true',
									  test.sh_quote(cmdline || ' ')), name)).stdout, E'\n')::integer
$$;

-- A session's first call starts its warm sandbox; the next calls run in it.
SELECT is((SELECT stdout FROM sandbox.exec('echo first', 'ws1')), E'first\n', 'a first exec runs');
SELECT isnt(test.warm_pid('ws1'), NULL, 'the session then has a warm sandbox in sandbox.warm_sandboxes');
SELECT coalesce(test.warm_pid('ws1'), 0) AS p1 \gset
SELECT coalesce(test.warm_served('ws1'), -1) AS n1 \gset
SELECT is((SELECT stdout FROM sandbox.exec('cd /tmp; export WS=kept; echo second', 'ws1')), E'second\n', 'the next exec runs');
SELECT is(test.warm_served('ws1'), :'n1'::bigint + 1, 'in the warm sandbox (commands_served grows by one)');
SELECT results_eq($$SELECT stdout, cwd FROM sandbox.exec('echo "$WS $PWD"', 'ws1')$$,
				  $$VALUES (E'kept /tmp\n'::text, '/tmp'::text)$$, 'cwd and environment come with each request');

-- Leftovers: a setsid daemon and a plain background child of one exec are gone
-- before the next one starts.
SELECT is((SELECT stdout FROM sandbox.exec(
	'setsid sleep 1201 >/dev/null 2>&1 </dev/null & sleep 1202 >/dev/null 2>&1 </dev/null & echo started', 'ws1')),
		  E'started\n', 'an exec leaves a setsid daemon and a background child behind');
SELECT is(pg_temp.in_sandbox('ws1', 'sleep 1201'), 0, 'the next command sees no setsid daemon in the sandbox''s /proc');
SELECT is(pg_temp.in_sandbox('ws1', 'sleep 1202'), 0, '... and no background child');
SELECT is(test.host_procs('sleep 1201') + test.host_procs('sleep 1202'), 0, 'the host has neither of them');
SELECT is(test.warm_pid('ws1'), :p1, 'all in the same warm sandbox');

-- /dev/shm is cleared between commands.
SELECT is((SELECT stdout FROM sandbox.exec('head -c 4096 /dev/zero > /dev/shm/left; mkdir /dev/shm/d; ls /dev/shm', 'ws1')),
		  E'd\nleft\n', 'an exec leaves files in /dev/shm');
SELECT is((SELECT stdout FROM sandbox.exec('ls -A /dev/shm | wc -l', 'ws1')), E'0\n', 'the next exec finds /dev/shm empty');
SELECT is(test.warm_pid('ws1'), :p1, 'in the same warm sandbox');

-- Timeout: the command is killed, nothing of it is left, the next call works at once.
SELECT is((SELECT status FROM sandbox.exec('sleep 1203', 'ws1', timeout => '1 second')), 'timed_out',
		  'an exec past its timeout ends timed_out');
SELECT is(test.wait_procs('sleep 1203', 0, 3), 0, 'nothing of the timed-out command is left on the host');
SELECT clock_timestamp() AS t0 \gset
SELECT is((SELECT stdout FROM sandbox.exec('echo after-timeout', 'ws1')), E'after-timeout\n', 'the next exec works');
SELECT cmp_ok(clock_timestamp() - :'t0'::timestamptz, '<', interval '1 second', 'and is fast');
SELECT is(pg_temp.in_sandbox('ws1', 'sleep 1203'), 0, 'the sandbox has nothing of the timed-out command');

-- Cancel by statement_timeout (a cancel is not an error PL/pgSQL can catch, so psql reports it).
SELECT status FROM sandbox.exec('true', 'ws2');
SELECT isnt(test.warm_pid('ws2'), NULL, 'a second session has its warm sandbox');
\set ON_ERROR_STOP 0
SET statement_timeout = '1s';
SELECT * FROM sandbox.exec('sleep 1204', 'ws2');
RESET statement_timeout;
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '57014', 'statement_timeout cancels an exec in a warm sandbox');
SELECT is(test.wait_procs('sleep 1204', 0, 5), 0, 'and its command is gone');
SELECT is((SELECT stdout FROM sandbox.exec('echo after-cancel', 'ws2')), E'after-cancel\n', 'the next exec works');

-- Cancel from a second connection (pg_cancel_backend).
SELECT test.dblink_connect('wc1');
SELECT dblink_send_query('wc1', $$SELECT status FROM sandbox.exec('sleep 1205', 'ws2')$$);
SELECT is(test.wait_procs('sleep 1205', 1, 10), 1, 'a long exec runs in the warm sandbox (so the next checks can fail)');
SELECT ok(pg_cancel_backend(pid), 'pg_cancel_backend cancels it') FROM pg_stat_activity
	WHERE query LIKE '%sleep 1205%' AND pid <> pg_backend_pid();
SELECT is((SELECT count(*)::int FROM dblink_get_result('wc1', false) AS t(s text)), 0, 'the cancelled exec returns no row');
SELECT alike(dblink_error_message('wc1'), '%canceling statement due to user request%', 'it fails as cancelled');
SELECT count(*) FROM dblink_get_result('wc1', false) AS t(s text);
SELECT is(test.wait_procs('sleep 1205', 0, 5), 0, 'its command is gone');
SELECT is((SELECT s FROM dblink('wc1', $$SELECT stdout FROM sandbox.exec('echo again', 'ws2')$$) AS t(s text)),
		  E'again\n', 'the same connection''s next exec works');
SELECT dblink_disconnect('wc1');

-- pg_terminate_backend of a backend mid-command.
SELECT status FROM sandbox.exec('true', 'ws3');
SELECT test.dblink_connect('wc2');
SELECT dblink_send_query('wc2', $$SELECT status FROM sandbox.exec('sleep 1206', 'ws3')$$);
SELECT is(test.wait_procs('sleep 1206', 1, 10), 1, 'a long exec runs (so the next check can fail)');
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%sleep 1206%' AND pid <> pg_backend_pid();
SELECT is(test.wait_procs('sleep 1206', 0, 5), 0, 'pg_terminate_backend of its backend kills the command');
SELECT dblink_disconnect('wc2');
SELECT test.dblink_connect('wc3');
SELECT is((SELECT s FROM dblink('wc3', $$SELECT stdout FROM sandbox.exec('echo alive', 'ws3')$$) AS t(s text)),
		  E'alive\n', 'the next exec, on a new connection, works');
SELECT dblink_disconnect('wc3');
SELECT is(pg_temp.in_sandbox('ws3', 'sleep 1206'), 0, 'and its sandbox has nothing of the killed command');

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['ws1', 'ws2', 'ws3']) s;
SELECT * FROM finish();
