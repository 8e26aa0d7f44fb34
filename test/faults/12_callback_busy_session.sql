-- Fault suite, issue 10 finding 2: a callback that runs a command and file
-- operations in a session that has a command in flight in the worker.  No
-- crash (the runner checks the server log), the in-flight row finishes
-- normally (never left running), and the callback's calls wait for the
-- session and then work; with a callback_timeout shorter than the command in
-- flight, the callback fails clearly and the command in flight still finishes.
-- Runs as: the superuser postgres for setup only (a schema for alice, the
-- callback_timeout setting); the calls and the callback as alice (sandbox_user
-- only).  Local backend.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'local';
SELECT plan(10);
SELECT ok(test.wait_worker(), 'the worker is running');
DROP SCHEMA IF EXISTS cbbusy CASCADE;
CREATE SCHEMA cbbusy AUTHORIZATION alice;

SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['cbb_busy', 'cbb_src']) s;
CREATE TABLE cbbusy.log (what text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION cbbusy.cb(id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cbbusy.log (what)
		SELECT 'exec ' || status || ' ' || stdout FROM sandbox.exec('echo from-cb > cbfile; cat cbfile', 'cbb_busy');
	INSERT INTO cbbusy.log (what) SELECT 'read ' || sandbox.file_read('cbfile', session => 'cbb_busy');
	INSERT INTO cbbusy.log (what) SELECT 'write ' || sandbox.file_write('cb2.txt', 'x', session => 'cbb_busy');
	INSERT INTO cbbusy.log (what) SELECT 'exists ' || sandbox.file_exists('cb2.txt', session => 'cbb_busy');
END $$;
SELECT sandbox.exec('true', 'cbb_src');

-- 1. The command in flight ends in 3 s, well within the callback's timeout.
SELECT sandbox.submit('sleep 3; echo long', 'cbb_busy') AS busy \gset
RESET ROLE;
SELECT ok(test.until(format('SELECT status = ''running'' FROM sandbox.executions WHERE id = %s', :busy), 5),
		  'a command is in flight in alice''s session');
SET ROLE alice;
SELECT sandbox.submit('true', 'cbb_src', callback => 'cbbusy.cb(bigint)') AS src \gset
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:busy, '10 s')), E'succeeded long\n',
		  'the command in flight finishes normally');
RESET ROLE;
SELECT ok(test.until(format('SELECT callback_state = ''done'' FROM sandbox.executions WHERE id = %s', :src), 20),
		  'the callback that ran in the busy session is done');
SET ROLE alice;
SELECT is((SELECT array_agg(what ORDER BY at) FROM cbbusy.log),
		  ARRAY[E'exec succeeded from-cb\n', E'read from-cb\n', 'write 1', 'exists true'],
		  'its exec and file operations waited for the session and then worked');
SELECT ok((SELECT min(at) FROM cbbusy.log) >= (SELECT finished_at FROM sandbox.executions WHERE id = :busy),
		  'after the command in flight had finished');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'cbb_busy'
		   AND status IN ('queued', 'launching', 'running')), 0, 'nothing of the session is left running');
RESET ROLE;

-- 2. A callback_timeout of 2 s, a command in flight for 6 s: the callback fails clearly.
ALTER SYSTEM SET cloudrun_sandbox.callback_timeout = 2;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SET ROLE alice;
DELETE FROM cbbusy.log;
SELECT sandbox.submit('sleep 6; echo long2', 'cbb_busy') AS busy2 \gset
RESET ROLE;
SELECT test.until(format('SELECT status = ''running'' FROM sandbox.executions WHERE id = %s', :busy2), 5);
SET ROLE alice;
SELECT sandbox.submit('true', 'cbb_src', callback => 'cbbusy.cb(bigint)') AS src2 \gset
RESET ROLE;
SELECT ok(test.until(format('SELECT callback_state = ''failed'' AND callback_error ~* ''timeout|time out|canceling''
		  FROM sandbox.executions WHERE id = %s', :src2), 15),
		  'a callback that waits for the session past callback_timeout fails with a clear timeout error');
SET ROLE alice;
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:busy2, '10 s')), E'succeeded long2\n',
		  'the command in flight still finishes normally');
SELECT is((SELECT count(*)::int FROM cbbusy.log), 0, 'and nothing of the failed callback was kept');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['cbb_busy', 'cbb_src']) s;
RESET ROLE;
ALTER SYSTEM RESET cloudrun_sandbox.callback_timeout;
SELECT pg_reload_conf();
DROP SCHEMA cbbusy CASCADE;
SELECT * FROM finish();
