-- Issue 10, finding 6: starting a cloud background process waits on no call
-- in the worker.  With the Cloud Run and Cloud Storage APIs frozen (the
-- emulator's hang fault), alice's start_background commits and stays
-- 'starting' (nothing fails while the API may still answer), and meanwhile
-- bob's local submit finishes within 2 seconds; once the APIs answer again
-- the process runs, exactly once.  Likewise a submit that creates a cloud
-- session (one that has never run anything: nothing to clear first).  A lost jobs:run answer is looked for, not
-- sent again (one execution); a refused launch ends 'failed' with the reason.
-- Runs as alice and bob (sandbox_user only); the superuser only sets the
-- emulator's faults and reads its counts.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(13);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session('fzb', if_exists => true);
SELECT sandbox.drop_session('fzn', if_exists => true);
SELECT sandbox.create_session('fzb', backend => 'cloudrun') IS NOT NULL;
-- A first cloud command, so that the worker holds a token when the APIs freeze.
SELECT sandbox.submit('true', 'fzb') AS c \gset
SELECT status FROM sandbox.wait(:c, '60 s');
SET ROLE bob;
SELECT sandbox.drop_session('fzbl', if_exists => true);
SELECT sandbox.create_session('fzbl', backend => 'local') IS NOT NULL;
SELECT sandbox.submit('true', 'fzbl') AS w \gset
SELECT status FROM sandbox.wait(:w, '30 s');
RESET ROLE;

CREATE FUNCTION pg_temp.bg_status(h bigint) RETURNS text LANGUAGE sql AS $$
	SELECT status FROM sandbox.background_processes WHERE pid = h $$;
CREATE FUNCTION pg_temp.bg_runs(h bigint) RETURNS int LANGUAGE sql AS $$
	SELECT coalesce((test.emu_stats()->'runs_by_arg'->>('cloud sandbox-test ' || test.object_prefix('fzb')
		|| 'background/' || h || '.json'))::int, 0) $$;
GRANT EXECUTE ON FUNCTION pg_temp.bg_status(bigint) TO alice;

-- 1. Frozen: the start commits, the worker's launch hangs, bob's work goes on.
SELECT test.emu('hook', 'faults', '{"rate_hang": 1}');
SET ROLE alice;
SELECT sandbox.start_background('echo bg-ran; sleep 1', 'fzb') AS h \gset
SET cloudrun_sandbox.backend = 'cloudrun';
SELECT sandbox.submit('echo fresh-ran', 'fzn') AS n \gset
RESET cloudrun_sandbox.backend;
RESET ROLE;
SELECT pg_sleep(1);

SET ROLE bob;
SELECT clock_timestamp() AS t0 \gset
SELECT sandbox.submit('true', 'fzbl') AS l \gset
SELECT is((SELECT status FROM sandbox.wait(:l, '30 s')), 'succeeded',
		  'another role''s local submit succeeds while a cloud background start is frozen');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - :'t0')::float8, '<', 2.0::float8, 'within 2 seconds');
RESET ROLE;
SELECT pg_sleep(4);
SET ROLE alice;
SELECT is(pg_temp.bg_status(:h), 'starting', 'after 5 s of frozen APIs, the background process is still starting');
RESET ROLE;

-- Thawed: the launch goes on, and the process runs once.
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT ok(test.until(format('SELECT sandbox.get_background_logs(%s) ~ ''bg-ran''', :h), 60),
		  'once the APIs answer again, the background process runs and its log shows its output');
SELECT test.until(format('SELECT status = ''exited'' FROM sandbox.background_processes WHERE pid = %s', :h), 30);
SELECT ok((SELECT status = 'exited' AND exit_code = 0 AND remote_name IS NOT NULL
		   FROM sandbox.background_processes WHERE pid = :h), 'it ran as a Cloud Run execution and exited 0');
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:n, '60 s')), E'succeeded fresh-ran\n',
		  'the submit that created a cloud session while the APIs were frozen succeeds');
RESET ROLE;
SELECT is(pg_temp.bg_runs(:h), 1, 'by exactly one execution');
SELECT is(test.runs_of('fzn', :n), 1, 'and so is the submit');

-- 2. jobs:run's answer is lost: the execution is looked for, not started again.
SELECT coalesce((test.emu_stats()->'faults_injected'->>'reset_after')::int, 0) AS lost0 \gset
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "reset_after", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.start_background('echo lost-ran', 'fzb') AS h2 \gset
SELECT ok(test.until(format('SELECT status = ''exited'' FROM sandbox.background_processes WHERE pid = %s', :h2), 60),
		  'a background process whose jobs:run answer was lost runs');
RESET ROLE;
SELECT is((test.emu_stats()->'faults_injected'->>'reset_after')::int - :lost0, 1, 'the answer of its jobs:run was lost');
SELECT is(pg_temp.bg_runs(:h2), 1, 'and it was run by exactly one execution');

-- 3. Cloud Run refuses the launch: the process ends failed, with the reason.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "403", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.start_background('echo refused', 'fzb') AS h3 \gset
SELECT ok(test.until(format('SELECT status = ''failed'' FROM sandbox.background_processes WHERE pid = %s', :h3), 30),
		  'a background process whose launch is refused ends failed');
SELECT alike((SELECT error FROM sandbox.background_processes WHERE pid = :h3), '%could not start a Cloud Run execution%',
			'with the reason');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');

SET ROLE alice;
SELECT sandbox.drop_session('fzb');
SELECT sandbox.drop_session('fzn');
SET ROLE bob;
SELECT sandbox.drop_session('fzbl');
RESET ROLE;
SELECT * FROM finish();
