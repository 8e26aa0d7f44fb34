-- Session runners on Cloud Run (issue 13): one long-running execution serves
-- a cloud session's synchronous exec, file operations and queued commands,
-- in order, with the session's cwd and env; psql sees it in
-- sandbox.session_runners.  A runner killed in the middle of a command
-- loses that command (reported, never run again) and the next call works;
-- a second runner started with the same token writes nothing; a runner
-- that stopped while idle is given up and the call runs cold; drop_session
-- stops the runner.  Runs as: tap (sandbox_user only); the emulator is
-- driven through test.emu (a superuser's function).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '300s';
SELECT plan(26);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session('rn1', if_exists => true);
SELECT sandbox.create_session('rn1', backend => 'cloudrun');

-- runner_runs counts the emulator's executions of a runner for session s.
CREATE FUNCTION pg_temp.runner_runs(s text) RETURNS int LANGUAGE sql AS $$
	SELECT coalesce(sum(value::int), 0)::int FROM jsonb_each_text(test.emu_stats()->'runs_by_arg')
	WHERE key LIKE 'runner % ' || rtrim(test.object_prefix(s), '/') || ' %'
$$;
CREATE FUNCTION pg_temp.cold_runs(s text) RETURNS int LANGUAGE sql AS $$
	SELECT coalesce(sum(value::int), 0)::int FROM jsonb_each_text(test.emu_stats()->'runs_by_arg')
	WHERE key LIKE 'cloud % ' || test.object_prefix(s) || 'requests/%'
$$;
CREATE FUNCTION pg_temp.runner_of(s text) RETURNS text LANGUAGE sql AS $$
	SELECT execution FROM sandbox.session_runners WHERE session = s
$$;

SELECT is((SELECT status || ' ' || stdout FROM sandbox.exec('mkdir -p sub; echo 1 >> log; echo hi', 'rn1')),
		  E'succeeded hi\n', 'a cloud exec succeeds through the session''s runner');
SELECT is(pg_temp.runner_runs('rn1'), 1, 'one runner was started for the session');
SELECT is(pg_temp.cold_runs('rn1'), 0, 'and no execution of its own for the command');
SELECT ok(pg_temp.runner_of('rn1') LIKE 'projects/%/executions/%', 'sandbox.session_runners names its execution');
SELECT pg_temp.runner_of('rn1') AS runner1 \gset

-- File operations, a queued command and more execs, in order, on the same runner.
SELECT sandbox.file_write('sub/w.txt', 'written', session => 'rn1');
SELECT sandbox.submit('echo 2 >> log; cd sub; export QV=queued', 'rn1') AS q \gset
SELECT is((SELECT status FROM sandbox.wait(:q, '60 s')), 'succeeded', 'a queued command succeeds');
SELECT is((SELECT remote_name FROM sandbox.executions WHERE id = :q), :'runner1',
		  'the worker ran it on the session''s runner');
SELECT is((SELECT stdout FROM sandbox.exec('pwd; echo $QV; cat ../log; cat w.txt', 'rn1')),
		  E'/workspace/sub\nqueued\n1\n2\nwritten', 'exec sees the queued command''s cwd, env and files, and the file written');
SELECT is(sandbox.file_read('/workspace/log', session => 'rn1'), E'1\n2\n', 'file_read sees them too');
SELECT is(pg_temp.runner_runs('rn1') || ' ' || pg_temp.cold_runs('rn1'), '1 0',
		  'all of it through the one runner: no other execution');
SELECT cmp_ok((SELECT requests FROM sandbox.session_runners WHERE session = 'rn1'), '>=', 2::bigint,
			  'session_runners counts the requests it served');
SELECT cmp_ok((SELECT runners FROM sandbox.worker_status()), '>=', 1, 'worker_status() counts runners');
SELECT ok(jsonb_array_length(coalesce((SELECT string_agg(l, '')::jsonb FROM test.emu('media', current_setting('cloudrun_sandbox.bucket'),
				test.object_prefix('rn1') || 'state.json') l)->'increments', '[]')) >= 1,
		  'state.json names incremental archives of the changes');

-- A second runner with the same token writes nothing and ends.
SELECT (SELECT string_agg(l, '') FROM test.emu('media', current_setting('cloudrun_sandbox.bucket'),
		test.object_prefix('rn1') || 'runner.json') l)::jsonb->>'token' AS token \gset
SELECT l AS twin FROM test.emu('run', 'sandbox', 'runner', current_setting('cloudrun_sandbox.bucket'),
		rtrim(test.object_prefix('rn1'), '/'), :'token', '300') l \gset
SELECT ok(test.wait_until(format($$SELECT EXISTS (SELECT FROM test.emu('completed', %L) c WHERE c <> '')$$, :'twin'), 30),
		  'a twin runner of the same lease ends by itself');
SELECT is((SELECT stdout FROM sandbox.exec('cat /workspace/log', 'rn1')), E'1\n2\n', 'and the session goes on, served by the first');
SELECT is(pg_temp.runner_of('rn1'), :'runner1', 'by the same runner');

-- The runner killed in the middle of a command: that command is lost, never run again.
SELECT sandbox.submit('echo started >> marks; sleep 30; echo done >> marks', 'rn1') AS k \gset
SELECT ok(test.wait_until(format($$SELECT status = 'running' FROM sandbox.executions WHERE id = %s$$, :k), 60), 'a long command runs');
SELECT pg_sleep(2);
SELECT test.emu('cancel', :'runner1');
SELECT is((SELECT status FROM sandbox.wait(:k, '90 s')), 'error', 'the command the runner was running ends in error');
SELECT ok((SELECT error FROM sandbox.executions WHERE id = :k) LIKE '%runner stopped%lost%',
		  'saying the runner stopped and its output is lost');
SELECT is((SELECT status || ' ' || stdout FROM sandbox.exec('cat marks 2>/dev/null | wc -l', 'rn1')), E'succeeded 0\n',
		  'the next call works, and the lost command''s effects were not saved');
SELECT pg_sleep(3);
SELECT is((SELECT stdout FROM sandbox.exec('cat marks 2>/dev/null | wc -l; cat /workspace/log', 'rn1')), E'0\n1\n2\n',
		  'it was not run again; the earlier files are all there');

-- drop_session stops the runner.
SELECT pg_temp.runner_of('rn1') AS runner2 \gset
SELECT isnt(:'runner2'::text, :'runner1'::text, 'a new runner serves the session now');

-- A runner that stopped while idle (an operator cancelled it): the next call
-- finds it ended, withdraws its request and runs it as an execution of its own.
SELECT pg_temp.cold_runs('rn1') AS cold_before \gset
SELECT test.emu('cancel', :'runner2');
SELECT ok(test.wait_until(format($$SELECT EXISTS (SELECT FROM test.emu('completed', %L) c WHERE c <> '')$$, :'runner2'), 30),
		  'the idle runner has ended');
SELECT is((SELECT status || ' ' || stdout FROM sandbox.exec('cat /workspace/log', 'rn1')), E'succeeded 1\n2\n',
		  'the next call succeeds');
SELECT is(pg_temp.cold_runs('rn1'), :cold_before + 1, 'as a Cloud Run execution of its own');
SELECT sandbox.exec('true', 'rn1');
SELECT pg_temp.runner_of('rn1') AS runner2 \gset
SELECT sandbox.drop_session('rn1');
SELECT ok(test.wait_until(format($$SELECT EXISTS (SELECT FROM test.emu('completed', %L) c WHERE c <> '')$$, :'runner2'), 60),
		  'drop_session stops the session''s runner');

SELECT * FROM finish();
