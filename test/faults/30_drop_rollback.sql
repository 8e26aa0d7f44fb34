-- Issue 10, finding 8: a drop of a session that rolls back leaves the
-- session exactly as it was, on both backends, also when the same
-- transaction re-created the session under its name; a drop that commits
-- deletes its storage after the commit, and never a later session's.
-- Runs as: postgres (setup, and looking at storage), calls as alice
-- (sandbox_user only).  The scenario is 30_drop_rollback.psql, run once per
-- backend; a session from 0.1.0 (storage key = its name) is the local part
-- at the end.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(28);

\set backend local
\ir 30_drop_rollback.psql
\set backend cloudrun
\ir 30_drop_rollback.psql

-- A session from 0.1.0, whose storage key is its name: made here from a new one.
SET cloudrun_sandbox.backend = local;
SET ROLE alice;
SELECT sandbox.drop_session('lg', if_exists => true);
SELECT sandbox.exec('echo legacy > f', 'lg');
RESET ROLE;
SELECT storage_key AS lg_key FROM sandbox.sessions WHERE name = 'lg' AND owner = 'alice'::regrole \gset
SELECT test.program_lines(format('mv %s %s', test.sh_quote(test.session_dir_of(:'lg_key')),
								 test.sh_quote(test.session_dir_of('lg'))));
UPDATE sandbox.sessions SET storage_key = 'lg' WHERE name = 'lg' AND owner = 'alice'::regrole;
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('cat f', 'lg')), E'legacy\n', '0.1.0 session: its files are under its name');
BEGIN;
SELECT sandbox.drop_session('lg');
SELECT is((SELECT stdout FROM sandbox.exec('cat f 2>/dev/null || echo none; echo new > f', 'lg')), E'none\n',
		  '0.1.0 session: re-created in the dropping transaction, it is a new, empty session');
ROLLBACK;
SELECT is((SELECT stdout FROM sandbox.exec('cat f', 'lg')), E'legacy\n',
		  '0.1.0 session: after the rollback its own files are back as they were');
BEGIN;
SELECT sandbox.drop_session('lg');
SELECT sandbox.exec('echo fresh > f', 'lg');
COMMIT;
RESET ROLE;
SELECT ok(test.wait_until($$SELECT NOT test.key_storage_exists('lg')$$),
		  '0.1.0 session: its directory is deleted after the drop commits');
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('cat f', 'lg')), E'fresh\n',
		  '0.1.0 session: the session re-created under its name keeps its own files');
SELECT sandbox.drop_session('lg');
RESET ROLE;

SELECT * FROM finish();
