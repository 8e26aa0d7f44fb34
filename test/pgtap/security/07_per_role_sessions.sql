-- Security, finding 7: sessions are per role; renames keep them; DROP ROLE removes them.
-- Runs as: alice and bob (sandbox_user only), and dave, a role made for this file;
-- a superuser creates, renames and drops dave, and looks at the host.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(12);
SET ROLE alice;
SELECT sandbox.drop_session('default', if_exists => true);
SELECT is((SELECT stdout FROM sandbox.exec('echo hi; echo alice > who')), E'hi\n', 'alice runs echo hi in her default session');
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('default', if_exists => true);
SELECT is((SELECT stdout FROM sandbox.exec('echo hi; cat who 2>/dev/null || echo none')), E'hi\nnone\n',
		  'bob runs echo hi in his own default session, without alice''s files');
SELECT is((SELECT array_agg(name) FROM sandbox.sessions), ARRAY['default'], 'bob sees one session: his default');
RESET ROLE;
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('cat who')), E'alice\n', 'alice''s default is untouched');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE owner <> 'alice'::regrole), 0, 'alice sees none of bob''s history');
RESET ROLE;
SELECT is((SELECT count(DISTINCT storage_key)::int FROM sandbox.sessions WHERE name = 'default'
		   AND owner IN ('alice'::regrole, 'bob'::regrole)), 2, 'the two default sessions have storage of their own');

-- A rename keeps the role's sessions.
DROP ROLE IF EXISTS sec_dave;
DROP ROLE IF EXISTS sec_dave2;
CREATE ROLE sec_dave LOGIN;
GRANT sandbox_user TO sec_dave;
SET ROLE sec_dave;
SELECT sandbox.exec('echo kept > f', 'r');
SELECT sandbox.start_background('exec sleep 987', 'r');
RESET ROLE;
ALTER ROLE sec_dave RENAME TO sec_dave2;
SET ROLE sec_dave2;
SELECT is(sandbox.file_read('f', session => 'r'), E'kept\n', 'after ALTER ROLE RENAME the session is still the role''s');
RESET ROLE;
SELECT is(test.wait_procs('sleep 987', 1, 10), 1, 'its background process runs');
SELECT storage_key AS dave_key, owner::oid AS dave_oid FROM sandbox.sessions WHERE owner = 'sec_dave2'::regrole \gset
SELECT ok((pg_stat_file(test.session_dir_of(:'dave_key'), true)).isdir, 'its storage exists');

-- DROP ROLE: nothing of its sessions stays running, visible or stored.
DROP ROLE sec_dave2;
SELECT is(test.wait_procs('sleep 987', 0, 20), 0, 'after DROP ROLE its background process is stopped');
SELECT ok(test.wait_until($$SELECT count(*) = 0 FROM sandbox.sessions WHERE owner::oid = $$ || :dave_oid, 20),
		  'its sessions are removed');
SELECT ok(test.wait_until(format($$SELECT (pg_stat_file(%L, true)).isdir IS NULL$$, test.session_dir_of(:'dave_key')), 20),
		  'and their storage');
SET ROLE alice;
SELECT sandbox.drop_session('default');
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('default');
RESET ROLE;
SELECT * FROM finish();
