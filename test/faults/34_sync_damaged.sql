-- Issue 10, smaller point: sync() over all sessions syncs the others when
-- one session's state is damaged, and reports that one as a WARNING.
-- Runs as: postgres (damaging a state file), calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(3);
SET cloudrun_sandbox.backend = local;
SET ROLE alice;

-- sync() with one damaged state.json: the others are synced, the damaged one reported.
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sy1', 'sy2']) s;
SELECT sandbox.exec('cd /tmp', 'sy1');
SELECT sandbox.exec('cd /tmp', 'sy2');
RESET ROLE;
UPDATE sandbox.sessions SET cwd = '/elsewhere' WHERE name = 'sy2' AND owner = 'alice'::regrole;
SELECT test.program_lines('echo garbage > ' || test.sh_quote(test.session_dir('sy1') || '/state.json'));
SET ROLE alice;
SET client_min_messages = warning;
SELECT is(test.error_of('SELECT sandbox.sync()'), 'no error', 'sync() of all sessions succeeds with one damaged state');
SELECT is((SELECT cwd FROM sandbox.sessions WHERE name = 'sy2'), '/tmp', 'the undamaged session was synced');
SELECT matches(test.error_of($$SELECT sandbox.sync('sy1')$$), '^XX001: session state file .* is damaged',
			   'sync() of the damaged session alone is still an error');
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['sy1', 'sy2']) s;
RESET ROLE;

SELECT * FROM finish();
