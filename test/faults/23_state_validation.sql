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
SELECT set_config('f23.file', test.session_dir('f23') || '/state.json', false),
	set_config('f23.gen', test.state_json('f23')->>'generation', false);

-- write_state replaces alice's state.json with doc (a JSON document, or any
-- text), then returns what her next command raises.
CREATE FUNCTION pg_temp.write_state(doc text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT %L) TO %L', doc, current_setting('f23.file'));
	SET LOCAL ROLE alice;
	RETURN test.error_of($q$SELECT sandbox.exec('true', 'f23')$q$);
END $$;
CREATE FUNCTION pg_temp.state(version int, cwd text, env jsonb DEFAULT '{}') RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('version', version, 'generation', current_setting('f23.gen')::int,
							  'cwd', cwd, 'last_execution', 0, 'env', env)::text
$$;

SELECT matches(pg_temp.write_state(pg_temp.state(99, '/workspace')),
			   '^XX001: session state file .* is damaged HINT: Fix or remove the file',
			   'a state of version 99 is refused as damaged (XX001), with a hint');
SET ROLE alice;
SELECT matches(test.error_of($$SELECT sandbox.sync('f23')$$), '^XX001: ', 'sync refuses it too');
RESET ROLE;
SELECT matches(pg_temp.write_state(pg_temp.state(1, '/workspace/../etc')),
			   '^XX001: session state file .* is damaged',
			   'a state whose cwd is /workspace/../etc is refused as damaged');
SELECT matches(pg_temp.write_state(repeat('x', 65 * 1024 * 1024)),
			   '^54000: session state file .* is too large HINT: Fix or remove the file',
			   'a 65 MB state.json is refused as too large (54000), with a hint');

-- repaired: the session works again, as the file says
SELECT is(pg_temp.write_state(pg_temp.state(1, '/tmp', '{"KEEP": "2"}')), 'no error', 'once repaired, the session runs');
SET ROLE alice;
SELECT results_eq($$SELECT status, stdout FROM sandbox.exec('echo "$PWD $KEEP"', 'f23')$$,
				  $$VALUES ('succeeded'::text, E'/tmp 2\n'::text)$$, 'with the state the file holds');
SELECT is((SELECT cwd FROM sandbox.sessions WHERE name = 'f23'), '/tmp', 'and its mirror follows');
SELECT sandbox.drop_session('f23');
RESET ROLE;
SELECT * FROM finish();
