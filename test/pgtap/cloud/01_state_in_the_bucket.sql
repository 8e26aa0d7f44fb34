-- The cloud backend keeps a session's state in the bucket; the tables mirror it.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(13);
SELECT sandbox.drop_session('cl1', if_exists => true);
SELECT sandbox.drop_session('cl_local', if_exists => true);

SELECT is((SELECT status FROM sandbox.exec('mkdir -p w && cd w && export K=v && echo data > f', 'cl1')), 'succeeded',
		  'a command runs as a Cloud Run execution');
SELECT is((SELECT backend FROM sandbox.sessions WHERE name = 'cl1'), 'cloudrun',
		  'a session created with cloudrun_sandbox.backend = cloudrun is a cloud session');
SELECT is(test.state_json('cl1')->>'cwd', (SELECT cwd FROM sandbox.sessions WHERE name = 'cl1'),
		  'state.json in the bucket holds the cwd that sandbox.sessions shows');
SELECT is(test.state_json('cl1')->'env', (SELECT env FROM sandbox.sessions WHERE name = 'cl1'),
		  'state.json in the bucket holds the environment that sandbox.sessions shows');
SELECT is(test.state_generation('cl1'), (SELECT generation FROM sandbox.sessions WHERE name = 'cl1'),
		  'sandbox.sessions carries the generation of the state.json object');
SELECT ok(EXISTS (SELECT FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'),
		  test.object_prefix('cl1') || 'results/' || (SELECT max(id) FROM sandbox.executions WHERE session = 'cl1') || '.json')),
		  'the execution left its result object in the bucket');
SELECT is((SELECT stdout FROM sandbox.exec('cat f; echo $K', 'cl1')), E'data\nv\n',
		  'the next execution, in a new container, sees the files and the environment');

SET cloudrun_sandbox.backend = 'local';
SELECT is((SELECT cwd FROM sandbox.exec('true', 'cl1')), '/workspace/w', 'a session keeps its backend when the default changes');
SELECT (test.emu_stats()->>'jobs_run_calls')::int AS runs_before \gset
SELECT is((SELECT backend FROM sandbox.create_session('cl_local', backend => 'local')), 'local',
		  'create_session can name the backend');
SELECT sandbox.exec('true', 'cl_local');
SELECT is((test.emu_stats()->>'jobs_run_calls')::int, :runs_before, 'a local session starts no Cloud Run execution');
RESET cloudrun_sandbox.backend;

SELECT test.scribble_mirror('cl1', cwd => '/bogus', generation => 0);
SELECT is(sandbox.sync('cl1'), 1, 'sync refreshes a cloud session');
SELECT results_eq($$SELECT cwd, generation FROM sandbox.sessions WHERE name = 'cl1'$$,
				  $$SELECT '/workspace/w'::text, test.state_generation('cl1')$$,
				  'sync rebuilds the mirror from the bucket, generation included');

SELECT sandbox.drop_session('cl1');
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('cl1')$$),
		  'dropping a cloud session deletes its objects once the drop has committed');
SELECT sandbox.drop_session('cl_local');
SELECT * FROM finish();
