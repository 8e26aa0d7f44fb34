-- Local-backend specifics: a per-session /tmp that persists, the trash of
-- dropped sessions, and a backend that dies in the middle of a command.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);
SELECT sandbox.drop_session('t1', if_exists => true);
SELECT sandbox.drop_session('t2', if_exists => true);
SELECT sandbox.drop_session('lim3', if_exists => true);

SELECT is((SELECT status FROM sandbox.exec('echo t > /tmp/t1', 't1')), 'succeeded', 't1 writes a file in /tmp');
SELECT is((SELECT stdout FROM sandbox.exec('cat /tmp/t1', 't1')), E't\n', 'the local backend keeps a session''s /tmp between calls');
SELECT is((SELECT stdout FROM sandbox.exec('find /tmp -mindepth 1 | wc -l', 't2')), E'0\n', 'another session''s /tmp is its own, and empty');

SELECT test.storage_key('t1');
BEGIN;
SELECT sandbox.drop_session('t1');
SELECT ok(test.session_storage_exists('t1'), 'inside the dropping transaction the directory is untouched (a rollback finds it as it was)');
COMMIT;
SELECT ok(test.wait_until($$SELECT NOT test.key_storage_exists(test.storage_key('t1'))$$),
		  'after the commit the directory is deleted');
SELECT is((SELECT count(*)::int FROM test.trash_entries()), 0,
		  'nothing is left in the trash after commit');

-- the backend is terminated mid-command
SELECT test.dblink_connect('c2');
SELECT dblink_send_query('c2', $$SELECT status FROM sandbox.exec('sleep 34', 'lim3')$$);
SELECT is(test.wait_procs('sleep 34', 1, 10), 1, 'the long command is running (so the next check can fail)');
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%sleep 34%' AND pid <> pg_backend_pid();
SELECT is(test.wait_procs('sleep 34', 0, 5), 0, 'no process remains when the backend running exec is terminated');
SELECT dblink_disconnect('c2');
SELECT is((SELECT stdout FROM sandbox.exec('echo alive', 'lim3')), E'alive\n', 'the session works after its backend died');

SELECT sandbox.drop_session('t2');
SELECT sandbox.drop_session('lim3');
SELECT * FROM finish();
