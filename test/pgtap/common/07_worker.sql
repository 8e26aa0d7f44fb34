-- The background worker: submit, wait, result, cancel, triggers, callbacks, NOTIFY.
-- Runs as: tap (sandbox_user only), and as bob (sandbox_user only) and carol
-- (nothing) through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(24);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['wk', 'wk2', 'wk3', 'builds', 'ord0', 'ord1', 'ord2', 'ord3']) s;
SELECT ok(test.wait_worker(), 'the worker is running');

BEGIN;
SELECT sandbox.submit('touch /workspace/rolled-back', 'wk');
ROLLBACK;
SELECT sandbox.submit('echo hello; export W=1', 'wk') AS id1 \gset
SELECT results_eq(format('SELECT status, exit_code, stdout FROM sandbox.wait(%s)', :id1),
				  $$VALUES ('succeeded'::text, 0, E'hello\n'::text)$$, 'wait returns the finished row of a submitted command');
SELECT results_eq(format('SELECT id, status, stdout FROM sandbox.result(%s)', :id1),
				  format('VALUES (%s::bigint, %L::text, %L::text)', :id1, 'succeeded', E'hello\n'), 'result returns the same row');
SELECT is((SELECT stdout FROM sandbox.exec('echo "$W"; test -e rolled-back && echo ran || echo never', 'wk')), E'1\nnever\n',
		  'a submitted command keeps the session''s state; one queued in a rolled-back transaction never ran');

SELECT sandbox.submit('sleep 30', 'wk2') AS long_id \gset
SELECT sandbox.submit('echo second', 'wk2') AS queued_id \gset
SELECT is((SELECT status FROM sandbox.wait(:long_id, '2 seconds')), 'running', 'wait with a timeout returns the row as it stands');
SELECT is((SELECT status FROM sandbox.result(:queued_id)), 'queued', 'a session runs one execution at a time: the next one is queued');
SELECT ok((SELECT count(*) = 2 FROM sandbox.activity WHERE session = 'wk2'), 'sandbox.activity lists them');
SELECT is(sandbox.cancel(:queued_id), true, 'cancel stops a queued execution');
SELECT is((SELECT status FROM sandbox.result(:queued_id)), 'cancelled', 'which never runs');
SELECT is(sandbox.cancel(:long_id), true, 'cancel stops a running execution');
SELECT is((SELECT status FROM sandbox.wait(:long_id, '30 seconds')), 'cancelled', 'it ends cancelled');
SELECT is(test.wait_procs('sleep 30', 0, 10), 0, 'and its process is gone');
SELECT is(sandbox.cancel(:long_id), false, 'cancelling a finished execution does nothing');

BEGIN;
SELECT sandbox.submit('true', 'wk3') AS mine \gset
SELECT throws_ok(format('SELECT * FROM sandbox.wait(%s)', :mine), '55000', NULL,
				 'waiting in the transaction that queued it is an error, not a hang');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok(format('SELECT * FROM sandbox.wait(%s)', :id1), '0A000', NULL, 'wait refuses REPEATABLE READ');
ROLLBACK;
SELECT throws_ok('SELECT * FROM sandbox.result(999999999)', '42704', NULL, 'an unknown execution is a clear error');
SET ROLE bob;
SELECT throws_ok(format('SELECT * FROM sandbox.result(%s)', :id1), '42501', NULL, 'another role''s execution is not visible');
SELECT throws_ok(format('SELECT sandbox.cancel(%s)', :id1), '42501', NULL, 'nor cancellable');
RESET ROLE;

-- A table whose inserts queue commands; the callback writes the outcome back.
DROP TABLE IF EXISTS builds;
CREATE TABLE builds (id serial PRIMARY KEY, target text, status text, exit_code int);
CREATE OR REPLACE FUNCTION build_done(execution bigint) RETURNS void LANGUAGE sql AS $$
	UPDATE builds b SET status = r.status, exit_code = r.exit_code
	FROM sandbox.executions e, sandbox.result(execution) r
	WHERE e.id = execution AND b.id = (e.call_env->>'SANDBOX_ARG_id')::int
$$;
CREATE TRIGGER builds_run AFTER INSERT ON builds FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('echo building {target} {id} >> log; test {target} != bad', 'builds', '1 minute', 'build_done(bigint)');
SELECT test.dblink_connect('l');
SELECT dblink_exec('l', 'LISTEN sandbox_executions');
SELECT max(id) AS before_id FROM sandbox.executions \gset
INSERT INTO builds (target) VALUES ('app'), ('bad'), ('lib'), ($$x; touch pwned; `touch pwned2` $(touch pwned3) ' " \$$);
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN (SELECT count(*) FROM builds WHERE status IS NOT NULL) = 4;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT results_eq('SELECT target, status, exit_code FROM builds WHERE id <= 3 ORDER BY id',
				  $$VALUES ('app'::text, 'succeeded'::text, 0), ('bad', 'failed', 1), ('lib', 'succeeded', 0)$$,
				  'a trigger queues a command per inserted row and the callback writes status and exit code back');
SELECT is((SELECT stdout FROM sandbox.exec('cat log; ls pwned* 2>/dev/null | wc -l', 'builds')),
		  E'building app 1\nbuilding bad 2\nbuilding lib 3\nbuilding x; touch pwned; `touch pwned2` $(touch pwned3) '' " \\ 4\n0\n',
		  'row values reach the command as data, never as shell syntax');
SELECT pg_sleep(0.2);
SELECT is((SELECT count(*)::int FROM dblink_get_notify('l') n
		   WHERE n.notify_name = 'sandbox_executions' AND n.extra::bigint > :before_id), 4,
		  'LISTEN sandbox_executions receives each finished execution''s id');
SELECT dblink_disconnect('l');

GRANT INSERT ON builds TO carol;
GRANT USAGE ON SEQUENCE builds_id_seq TO carol;
SET ROLE carol;
SELECT throws_ok($$INSERT INTO public.builds (target) VALUES ('x')$$, '42501', NULL,
				 'a role without sandbox_user cannot queue commands through a trigger');
RESET ROLE;

-- Submission order within a session, parallel sessions.
SELECT max(id) AS ord_before FROM sandbox.executions \gset
SELECT count(sandbox.submit('echo ' || i || ' >> order.txt', 'ord' || (i % 4))) FROM generate_series(1, 40) i;
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM sandbox.executions WHERE session LIKE 'ord%' AND status IN ('queued', 'launching', 'running'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id > :ord_before AND session LIKE 'ord%' AND status = 'succeeded'), 40,
		  '40 submits over 4 sessions all finish');
SELECT is((SELECT stdout FROM sandbox.exec('tr "\n" " " < order.txt', 'ord1')), '1 5 9 13 17 21 25 29 33 37 ',
		  'within a session they ran in submission order');

DROP TABLE builds;
DROP FUNCTION build_done(bigint);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['wk', 'wk2', 'wk3', 'builds', 'ord0', 'ord1', 'ord2', 'ord3']) s;
SELECT * FROM finish();
