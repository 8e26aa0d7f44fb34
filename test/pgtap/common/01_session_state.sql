-- A session keeps its working directory and environment between calls.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(22);
SELECT sandbox.drop_session('st', if_exists => true);
SELECT test.forget_executions('st');

SELECT is((SELECT cwd FROM sandbox.exec('cd /tmp', 'st')), '/tmp', 'cd reports the new working directory');
SELECT is((SELECT stdout FROM sandbox.exec('pwd', 'st')), E'/tmp\n', 'pwd in the next call returns /tmp');
SELECT is((SELECT stdout FROM sandbox.exec('export FOO=bar', 'st')), '', 'export prints nothing');
SELECT is((SELECT stdout FROM sandbox.exec('echo $FOO', 'st')), E'bar\n', 'an exported variable is there in the next call');
SELECT results_eq($$SELECT status, exit_code FROM sandbox.exec('cd / && export BAZ=qux; exit 3', 'st')$$,
				  $$VALUES ('failed'::text, 3)$$, 'a command ending in exit 3 fails with exit code 3');
SELECT is((SELECT stdout FROM sandbox.exec('echo "$(pwd) $BAZ"', 'st')), E'/ qux\n',
		  'cd and export made before exit 3 persist');

SELECT is((SELECT stdout FROM sandbox.exec('echo $ONCE', 'st', env => '{"ONCE": "1"}')), E'1\n',
		  'env adds a variable for the call');
SELECT is((SELECT stdout FROM sandbox.exec('echo "[$ONCE]"', 'st')), E'[]\n',
		  'a variable given with env is gone in the next call');
SELECT is((SELECT stdout FROM sandbox.exec('echo "[$FOO]"', 'st', env => '{"FOO": "override"}')), E'[override]\n',
		  'env overrides a session variable for the call');
SELECT is((SELECT stdout FROM sandbox.exec('echo "[$FOO]"', 'st')), E'[bar]\n',
		  'the session variable is back after the overriding call');
SELECT is((SELECT stdout FROM sandbox.exec('unset FOO; echo "[$FOO]"', 'st')), E'[]\n', 'unset works');
SELECT ok(NOT (SELECT env ? 'FOO' FROM sandbox.sessions WHERE name = 'st'), 'unset removes the variable from the session');

SELECT is((SELECT cwd FROM sandbox.sessions WHERE name = 'st'), test.state_json('st')->>'cwd',
		  'sandbox.sessions shows the cwd that state.json holds');
SELECT is((SELECT env FROM sandbox.sessions WHERE name = 'st'), test.state_json('st')->'env',
		  'sandbox.sessions shows the environment that state.json holds');
SELECT is((SELECT generation FROM sandbox.sessions WHERE name = 'st'), test.state_generation('st'),
		  'sandbox.sessions shows the generation of state.json');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'st'), 11, 'every call is in sandbox.executions');
SELECT is((SELECT last_execution FROM sandbox.sessions WHERE name = 'st'),
		  (SELECT max(id) FROM sandbox.executions WHERE session = 'st'), 'the session names its last execution');

SELECT test.scribble_mirror('st', cwd => '/bogus', env => '{}');
SELECT is(sandbox.sync('st'), 1, 'sync refreshes one session');
SELECT is((SELECT cwd || ' ' || (env->>'BAZ') FROM sandbox.sessions WHERE name = 'st'), '/ qux',
		  'sync rebuilds the mirror row from state.json');

SELECT sandbox.exec('mkdir -p /workspace/d && cd /workspace/d', 'st');
SELECT sandbox.exec('rmdir /workspace/d', 'st');
SELECT is((SELECT cwd FROM sandbox.exec('pwd', 'st')), '/workspace', 'a working directory that vanished falls back to /workspace');

SELECT is((SELECT stdout FROM sandbox.exec($cmd$printf '%s|' "it's" 'a "q" $x `y` \z'; echo$cmd$, 'st')),
		  E'it''s|a "q" $x `y` \\z|\n', 'quotes, $, backticks and backslashes reach bash untouched');
SELECT is((SELECT stdout FROM sandbox.exec(E'echo one\necho two', 'st')), E'one\ntwo\n', 'a multi-line command runs every line');

SELECT sandbox.drop_session('st');
SELECT * FROM finish();
