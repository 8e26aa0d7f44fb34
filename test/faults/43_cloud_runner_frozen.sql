-- Issue 13: the Cloud Run and Cloud Storage APIs frozen for 30 s (the
-- emulator's hang fault: requests are never answered) while a session runner
-- runs a queued command.  The worker waits on nothing (another role's local
-- submit finishes within 2 s), nothing is marked failed while frozen, and once
-- the APIs answer again the command succeeds, run exactly once (its claim is
-- the runner's), its files saved; the session's next call works.  Runs as
-- alice and bob (sandbox_user only); the superuser only freezes and thaws.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(8);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session('rf1', if_exists => true);
SELECT sandbox.create_session('rf1', backend => 'cloudrun') IS NOT NULL;
SELECT is((SELECT stdout FROM sandbox.exec('echo warm', 'rf1')), E'warm\n', 'a session runner serves the session');
SET ROLE bob;
SELECT sandbox.drop_session('rfl', if_exists => true);
SELECT sandbox.create_session('rfl', backend => 'local') IS NOT NULL;
SELECT sandbox.submit('true', 'rfl') AS w \gset
SELECT status FROM sandbox.wait(:w, '30 s');
RESET ROLE;

SET ROLE alice;
SELECT sandbox.submit('sleep 3; echo once >> ran; cat ran', 'rf1') AS c \gset
RESET ROLE;
SELECT ok(test.wait_until(format($$SELECT status = 'running' FROM sandbox.executions WHERE id = %s$$, :c), 30),
		  'its queued command runs on the runner');
SELECT test.emu('hook', 'faults', '{"rate_hang": 1}');
SELECT pg_sleep(1);

SET ROLE bob;
SELECT clock_timestamp() AS t0 \gset
SELECT sandbox.submit('true', 'rfl') AS l \gset
SELECT is((SELECT status FROM sandbox.wait(:l, '30 s')), 'succeeded',
		  'another role''s local submit succeeds while the cloud APIs are frozen');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - :'t0')::float8, '<', 2.0::float8, 'within 2 seconds');
RESET ROLE;

SELECT pg_sleep(29);
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.executions WHERE id = :c), 'running',
		  'after 30 s of frozen APIs the command is still running, not failed');
RESET ROLE;

SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT is((SELECT status || ' ' || stdout FROM sandbox.wait(:c, '180 s')), E'succeeded once\n',
		  'once the APIs answer it succeeds');
RESET ROLE;
SELECT is(test.runs_of('rf1', :c), 1, 'run by exactly one runner or execution');
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('cat ran', 'rf1')), E'once\n',
		  'the next call works and sees the command''s file, written once');
SELECT sandbox.drop_session('rf1');
SET ROLE bob;
SELECT sandbox.drop_session('rfl');
RESET ROLE;
SELECT * FROM finish();
