-- Issue 12: a session's warm sandbox is shared by every call and every
-- connection (exec, file operations), and replaced when it would differ from a
-- fresh one: a dropped and re-created session, changed sandbox settings, a dead
-- sandbox.  sandbox.warm_sandboxes shows a role its own rows only.
-- Runs as: tap (sandbox_user only), alice and bob (sandbox_user only) and carol
-- (nothing) through SET ROLE; settings and the kill through test.* helpers.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(28);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['wl1', 'wl2', 'wl3', 'wl4']) s;
SET ROLE alice;
SELECT sandbox.drop_session('wl_alice', if_exists => true);
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('wl_bob', if_exists => true);
RESET ROLE;

-- A new connection reuses the session's sandbox.
SELECT status FROM sandbox.exec('true', 'wl1');
SELECT isnt(test.warm_pid('wl1'), NULL, 'a session has a warm sandbox after a call');
SELECT coalesce(test.warm_pid('wl1'), 0) AS p1 \gset
SELECT coalesce(test.warm_served('wl1'), -1) AS n1 \gset
SELECT test.dblink_connect('wl');
SELECT is((SELECT s FROM dblink('wl', $$SELECT stdout FROM sandbox.exec('echo other-connection', 'wl1')$$) AS t(s text)),
		  E'other-connection\n', 'another connection runs an exec in the session');
SELECT dblink_disconnect('wl');
SELECT test.dblink_connect('wl');
SELECT is((SELECT s FROM dblink('wl', $$SELECT stdout FROM sandbox.exec('echo third-connection', 'wl1')$$) AS t(s text)),
		  E'third-connection\n', 'and a third one, after the second closed');
SELECT dblink_disconnect('wl');
SELECT is(test.warm_pid('wl1'), :p1, 'both used the same warm sandbox (same pid)');
SELECT is(test.warm_served('wl1'), :'n1'::bigint + 2, 'commands_served grew by two');

-- A dropped and re-created session gets a new sandbox, without the old session's files.
SELECT status FROM sandbox.exec('echo old > old.txt; echo old > /tmp/old.txt', 'wl2');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'2\n',
		  'a session has files in /workspace and /tmp (so the next checks can fail)');
SELECT coalesce(test.warm_pid('wl2'), 0) AS p2 \gset
SELECT sandbox.drop_session('wl2');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'0\n',
		  'a session re-created under the same name sees none of the old one''s files');
SELECT isnt(test.warm_pid('wl2', :p2), NULL, 'it gets a warm sandbox of its own (a new pid)');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'0\n',
		  'in which the old files are not visible either');
SELECT isnt(test.warm_pid('wl2'), :p2, 'the old sandbox is not used again');

-- Changed sandbox settings give a new sandbox.
SELECT status FROM sandbox.exec('true', 'wl3');
SELECT coalesce(test.warm_pid('wl3'), 0) AS p3 \gset
SELECT test.set_system('cloudrun_sandbox.local_nice', '13');
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'13\n', 'after local_nice changes, the next exec runs at the new niceness');
SELECT isnt(test.warm_pid('wl3', :p3), NULL, 'the session gets a new warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'13\n', 'which has the new niceness');
SELECT test.set_system('cloudrun_sandbox.local_nice', NULL);
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'10\n', 'and back at the default after a reset');

-- A dead sandbox is replaced.
SELECT status FROM sandbox.exec('true', 'wl4');
SELECT coalesce(test.warm_pid('wl4'), 0) AS p4 \gset
SELECT is(test.kill_warm_sandbox('wl4'), :p4, 'the superuser kills the session''s warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('echo alive', 'wl4')), E'alive\n', 'the next exec works');
SELECT isnt(test.warm_pid('wl4', :p4), NULL, 'the session gets a new warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('echo alive', 'wl4')), E'alive\n', 'which works');

-- Row-level security: each role sees its own rows; a role without sandbox_user none.
SET ROLE alice;
SELECT status FROM sandbox.exec('true', 'wl_alice');
SELECT isnt(test.warm_pid('wl_alice'), NULL, 'alice sees her session''s warm sandbox');
SELECT is((SELECT count(*)::int FROM test.warm_rows() r WHERE r->>'owner' = 'tap'), 0, 'but no row of tap''s');
RESET ROLE;
SET ROLE bob;
SELECT status FROM sandbox.exec('true', 'wl_bob');
SELECT isnt(test.warm_pid('wl_bob'), NULL, 'bob sees his session''s warm sandbox');
SELECT is((SELECT count(*)::int FROM test.warm_rows() r WHERE r->>'owner' = 'alice'), 0, 'but none of alice''s rows');
SELECT sandbox.drop_session('wl_bob');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', true);
SET ROLE carol;
SELECT throws_ok('SELECT * FROM sandbox.warm_sandboxes', '42501', NULL,
				 'carol (no sandbox_user) cannot read the view, even with USAGE on the schema');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', false);

-- File operations use the warm sandbox too (last: a failing one ends the file).
SELECT status FROM sandbox.exec('true', 'wl1');
SELECT coalesce(test.warm_pid('wl1'), 0) AS p1 \gset
SELECT coalesce(test.warm_served('wl1'), -1) AS n1 \gset
SELECT is(sandbox.file_write('f.txt', 'warm file', session => 'wl1'), 9::bigint, 'file_write writes');
SELECT is(test.warm_served('wl1'), :'n1'::bigint + 1, 'in the warm sandbox (commands_served grows)');
SELECT is(sandbox.file_read('f.txt', session => 'wl1'), 'warm file', 'file_read reads it');
SELECT is(test.warm_served('wl1'), :'n1'::bigint + 2, 'in the warm sandbox too');
SELECT is(test.warm_pid('wl1'), :p1, 'the same one');

SET ROLE alice;
SELECT sandbox.drop_session('wl_alice');
RESET ROLE;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['wl1', 'wl2', 'wl3', 'wl4']) s;
SELECT * FROM finish();
