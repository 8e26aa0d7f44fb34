-- Issue 10, smaller points: a damaged state.json is refused on load with a
-- clear error that says how to repair it (version other than 1, a working
-- directory that is not a normalized absolute path, a file over the 64 MB
-- limit), and the session works again once the file is repaired.  Local
-- backend (the decoder is the same code the cloud executor runs: test/unit).
-- Runs as: postgres (writes the damaged files); the calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(8);
SET cloudrun_sandbox.backend = local;
SET ROLE alice;
SELECT sandbox.drop_session('f23', if_exists => true);
SELECT is((SELECT status FROM sandbox.exec('export KEEP=1', 'f23')), 'succeeded', 'a local session');
RESET ROLE;
SELECT test.session_dir('f23') || '/state.json' AS state_file,
	test.state_json('f23')->>'generation' AS gen \gset

-- version 99
COPY (SELECT jsonb_build_object('version', 99, 'generation', :gen::int, 'cwd', '/workspace',
	'last_execution', 0, 'env', '{}'::jsonb)::text) TO :'state_file';
SET ROLE alice;
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'f23')$$),
			   '^XX001: session state file .* is damaged HINT: Fix or remove the file',
			   'a state of version 99 is refused as damaged (XX001), with a hint');
SELECT matches(test.error_of($$SELECT sandbox.sync('f23')$$), '^XX001: ', 'sync refuses it too');
RESET ROLE;

-- a working directory with ..
COPY (SELECT jsonb_build_object('version', 1, 'generation', :gen::int, 'cwd', '/workspace/../etc',
	'last_execution', 0, 'env', '{}'::jsonb)::text) TO :'state_file';
SET ROLE alice;
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'f23')$$),
			   '^XX001: session state file .* is damaged',
			   'a state whose cwd is /workspace/../etc is refused as damaged');
RESET ROLE;

-- over the 64 MB limit
COPY (SELECT repeat('x', 65 * 1024 * 1024)) TO :'state_file';
SET ROLE alice;
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'f23')$$),
			   '^54000: session state file .* is too large HINT: Fix or remove the file',
			   'a 65 MB state.json is refused as too large (54000), with a hint');
RESET ROLE;

-- repaired: the session works again, as the file says
COPY (SELECT jsonb_build_object('version', 1, 'generation', :gen::int, 'cwd', '/tmp',
	'last_execution', 0, 'env', '{"KEEP": "2"}'::jsonb)::text) TO :'state_file';
SET ROLE alice;
SELECT results_eq($$SELECT status, stdout FROM sandbox.exec('echo "$PWD $KEEP"', 'f23')$$,
				  $$VALUES ('succeeded'::text, E'/tmp 2\n'::text)$$, 'once repaired, the session runs with that state');
SELECT is((SELECT cwd FROM sandbox.sessions WHERE name = 'f23'), '/tmp', 'and its mirror follows');
SELECT is(sandbox.drop_session('f23'), true, 'the session can be dropped');
RESET ROLE;
SELECT * FROM finish();
