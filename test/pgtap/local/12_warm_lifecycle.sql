-- Issue 12: a session's warm sandbox is shared by every call and every
-- connection (exec, file operations), and replaced when it would differ from a
-- fresh one: a dropped and re-created session, changed sandbox settings, a dead
-- sandbox.  sandbox.warm_sandboxes shows a role its own rows only.
-- Runs as: tap (sandbox_user only), alice and bob (sandbox_user only) and carol
-- (nothing) through SET ROLE; settings and the kill through test.* helpers.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(27);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['wl1', 'wl2', 'wl3', 'wl4']) s;
SET ROLE alice;
SELECT sandbox.drop_session('wl_alice', if_exists => true);
RESET ROLE;

-- warm_pid waits up to 15 s for the session's row in sandbox.warm_sandboxes (with a pid
-- other than not_pid) and returns its pid; NULL if there is none (or no such view).
CREATE FUNCTION pg_temp.warm_pid(name text, not_pid integer DEFAULT 0) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	p integer;
BEGIN
	IF to_regclass('sandbox.warm_sandboxes') IS NULL THEN
		RETURN NULL;
	END IF;
	FOR i IN 1..150 LOOP
		EXECUTE 'SELECT pid FROM sandbox.warm_sandboxes WHERE session = $1 AND pid <> $2' INTO p USING name, not_pid;
		EXIT WHEN p IS NOT NULL;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN p;
END $$;

-- served is the session's commands_served in sandbox.warm_sandboxes (NULL: no row).
CREATE FUNCTION pg_temp.served(name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	IF to_regclass('sandbox.warm_sandboxes') IS NOT NULL THEN
		EXECUTE 'SELECT commands_served FROM sandbox.warm_sandboxes WHERE session = $1' INTO n USING name;
	END IF;
	RETURN n;
END $$;

-- rows_of counts the rows of sandbox.warm_sandboxes the current role sees of owner (NULL: no view).
CREATE FUNCTION pg_temp.rows_of(owner text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	IF to_regclass('sandbox.warm_sandboxes') IS NOT NULL THEN
		EXECUTE 'SELECT count(*) FROM sandbox.warm_sandboxes WHERE owner::text = $1' INTO n USING owner;
	END IF;
	RETURN n;
END $$;

-- A new connection reuses the session's sandbox.
SELECT status FROM sandbox.exec('true', 'wl1');
SELECT isnt(pg_temp.warm_pid('wl1'), NULL, 'a session has a warm sandbox after a call');
SELECT coalesce(pg_temp.warm_pid('wl1'), 0) AS p1 \gset
SELECT coalesce(pg_temp.served('wl1'), -1) AS n1 \gset
SELECT test.dblink_connect('wl');
SELECT is((SELECT s FROM dblink('wl', $$SELECT stdout FROM sandbox.exec('echo other-connection', 'wl1')$$) AS t(s text)),
		  E'other-connection\n', 'another connection runs an exec in the session');
SELECT dblink_disconnect('wl');
SELECT test.dblink_connect('wl');
SELECT is((SELECT s FROM dblink('wl', $$SELECT stdout FROM sandbox.exec('echo third-connection', 'wl1')$$) AS t(s text)),
		  E'third-connection\n', 'and a third one, after the second closed');
SELECT dblink_disconnect('wl');
SELECT is(pg_temp.warm_pid('wl1'), :p1, 'both used the same warm sandbox (same pid)');
SELECT is(pg_temp.served('wl1'), :'n1'::bigint + 2, 'commands_served grew by two');

-- File operations use the warm sandbox too.
SELECT coalesce(pg_temp.served('wl1'), -1) AS n1 \gset
SELECT is(sandbox.file_write('f.txt', 'warm file', session => 'wl1'), 9::bigint, 'file_write writes');
SELECT is(pg_temp.served('wl1'), :'n1'::bigint + 1, 'in the warm sandbox (commands_served grows)');
SELECT is(sandbox.file_read('f.txt', session => 'wl1'), 'warm file', 'file_read reads it');
SELECT is(pg_temp.served('wl1'), :'n1'::bigint + 2, 'in the warm sandbox too');
SELECT is(pg_temp.warm_pid('wl1'), :p1, 'the same one');

-- A dropped and re-created session gets a new sandbox, without the old session's files.
SELECT status FROM sandbox.exec('echo old > old.txt; echo old > /tmp/old.txt', 'wl2');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'2\n',
		  'a session has files in /workspace and /tmp (so the next checks can fail)');
SELECT coalesce(pg_temp.warm_pid('wl2'), 0) AS p2 \gset
SELECT sandbox.drop_session('wl2');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'0\n',
		  'a session re-created under the same name sees none of the old one''s files');
SELECT isnt(pg_temp.warm_pid('wl2', :p2), NULL, 'it gets a warm sandbox of its own (a new pid)');
SELECT is((SELECT stdout FROM sandbox.exec('ls /workspace/old.txt /tmp/old.txt 2>/dev/null | wc -l', 'wl2')), E'0\n',
		  'in which the old files are not visible either');
SELECT isnt(pg_temp.warm_pid('wl2'), :p2, 'the old sandbox is not used again');

-- Changed sandbox settings give a new sandbox.
SELECT status FROM sandbox.exec('true', 'wl3');
SELECT coalesce(pg_temp.warm_pid('wl3'), 0) AS p3 \gset
SELECT test.set_system('cloudrun_sandbox.local_nice', '13');
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'13\n', 'after local_nice changes, the next exec runs at the new niceness');
SELECT isnt(pg_temp.warm_pid('wl3', :p3), NULL, 'the session gets a new warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'13\n', 'which has the new niceness');
SELECT test.set_system('cloudrun_sandbox.local_nice', NULL);
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'wl3')), E'10\n', 'and back at the default after a reset');

-- A dead sandbox is replaced.
SELECT status FROM sandbox.exec('true', 'wl4');
SELECT coalesce(pg_temp.warm_pid('wl4'), 0) AS p4 \gset
SELECT is(test.kill_warm_sandbox('wl4'), :p4, 'the superuser kills the session''s warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('echo alive', 'wl4')), E'alive\n', 'the next exec works');
SELECT isnt(pg_temp.warm_pid('wl4', :p4), NULL, 'the session gets a new warm sandbox');
SELECT is((SELECT stdout FROM sandbox.exec('echo alive', 'wl4')), E'alive\n', 'which works');

-- Row-level security: each role sees its own rows; a role without sandbox_user none.
SET ROLE alice;
SELECT status FROM sandbox.exec('true', 'wl_alice');
SELECT isnt(pg_temp.warm_pid('wl_alice'), NULL, 'alice sees her session''s warm sandbox');
SELECT is(pg_temp.rows_of('tap'), 0, 'but no row of tap''s');
RESET ROLE;
SET ROLE bob;
SELECT is(pg_temp.rows_of('alice'), 0, 'bob sees none of alice''s rows');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', true);
SET ROLE carol;
SELECT throws_ok('SELECT * FROM sandbox.warm_sandboxes', '42501', NULL,
				 'carol (no sandbox_user) cannot read the view, even with USAGE on the schema');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', false);

SET ROLE alice;
SELECT sandbox.drop_session('wl_alice');
RESET ROLE;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['wl1', 'wl2', 'wl3', 'wl4']) s;
SELECT * FROM finish();
