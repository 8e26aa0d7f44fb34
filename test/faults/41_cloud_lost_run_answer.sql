-- Issue 10, finding 13: a lost jobs:run answer must not run the command twice.
-- jobs:run is not idempotent: with its answer lost (the emulator's reset_after
-- fault: the execution starts, the connection closes without an answer), the
-- extension looks for the execution by its request instead of sending
-- jobs:run again, in the worker (submit) and in a synchronous exec.  And a
-- second execution of a request that runs all the same (a twin, started here
-- by hand) writes nothing: the executor's create-only claim stops it before
-- the command runs.  Runs as alice (sandbox_user only); the superuser only
-- sets the emulator's faults and starts the twin.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'cloudrun';
SELECT plan(10);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session('lost1', if_exists => true);
SELECT sandbox.drop_session('lost2', if_exists => true);
SELECT sandbox.drop_session('twin', if_exists => true);
SELECT sandbox.create_session('lost1', backend => 'cloudrun') IS NOT NULL;
SELECT sandbox.create_session('lost2', backend => 'cloudrun') IS NOT NULL;
SELECT sandbox.create_session('twin', backend => 'cloudrun') IS NOT NULL;
RESET ROLE;

-- 1. The worker: the first jobs:run's answer is lost.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "reset_after", "count": 1}]}');
SET ROLE alice;
SELECT sandbox.submit('export N=$((${N:-0} + 1)); echo ran $N', 'lost1') AS id1 \gset
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:id1, '60 s')), E'succeeded ran 1\n',
		  'a submitted command whose jobs:run answer was lost succeeds');
RESET ROLE;
SELECT is((test.emu_stats()->'faults_injected'->>'reset_after')::int, 1, 'the answer of its jobs:run was lost');
SELECT is(test.runs_of('lost1', :id1), 1, 'and its request was run by exactly one execution');
SET ROLE alice;
SELECT is((SELECT env->>'N' FROM sandbox.sessions WHERE name = 'lost1'), '1', 'the session''s counter went up once');
RESET ROLE;

-- 2. A synchronous exec: the same.
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "reset_after", "count": 1}]}');
SET ROLE alice;
SELECT id AS id2, status || ' ' || stdout AS out2
  FROM sandbox.exec('export N=$((${N:-0} + 1)); echo ran $N', 'lost2') \gset
SELECT is(:'out2'::text, E'succeeded ran 1\n', 'an exec whose jobs:run answer was lost succeeds');
RESET ROLE;
SELECT is(test.runs_of('lost2', :id2), 1, 'and its request was run by exactly one execution');
SELECT test.emu('hook', 'faults', '{}');

-- 3. A twin execution of a request that is running writes nothing.  This is
-- about cold executions (a session runner's twin is cloud/09_runners.sql's):
-- the worker runs this one with session runners off.
SELECT test.alter_system('cloudrun_sandbox.cloud_runners', 'off');
SET ROLE alice;
SELECT sandbox.submit('sleep 3; echo once >> runs.txt', 'twin') AS id3 \gset
RESET ROLE;
SELECT ok(test.wait_until(format($q$SELECT (test.emu_stats()->'runs_by_arg'->>%L) IS NOT NULL$q$,
		  'cloud sandbox-test ' || test.object_prefix('twin') || 'requests/' || :id3 || '.json'), 30),
		  'the command''s execution has started');
SELECT test.emu('run', 'sandbox', 'cloud', 'sandbox-test', test.object_prefix('twin') || 'requests/' || :id3 || '.json') AS twin \gset
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.wait(:id3, '60 s')), 'succeeded', 'the command succeeds');
RESET ROLE;
SELECT ok(test.wait_until(format($q$SELECT count(*) > 0 FROM test.emu('completed', %L)$q$, :'twin'), 30),
		  'the twin execution has ended');
-- GCS generations are microsecond timestamps: the run writes its snapshot, then its result.
SELECT cmp_ok(test.emu('generation', 'sandbox-test', test.object_prefix('twin') || 'workspace/' || :id3 || '.tar')::bigint, '<',
			  test.emu('generation', 'sandbox-test', test.object_prefix('twin') || 'results/' || :id3 || '.json')::bigint,
			  'the twin did not write the workspace snapshot again after the result (nor anything else: it never ran the command)');

SELECT test.alter_system('cloudrun_sandbox.cloud_runners', NULL);
SET ROLE alice;
SELECT sandbox.drop_session('lost1');
SELECT sandbox.drop_session('lost2');
SELECT sandbox.drop_session('twin');
RESET ROLE;
SELECT * FROM finish();
