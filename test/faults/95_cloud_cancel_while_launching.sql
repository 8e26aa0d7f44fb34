-- Review: cancel() of a cloud execution whose execution name is not known yet
-- (jobs:run's answer lost, the look-up by request still in flight:
-- cancel_async with run->execution == NULL) drops the calls and returns: the
-- row says cancelled, the session is released, but Cloud Run received the
-- request and the command runs anyway, writing the session's workspace after
-- it was reported cancelled (the execution is never cancelled).  Passes only when a cancelled command has no effect.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(2);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session('f95', if_exists => true);
SELECT sandbox.create_session('f95', backend => 'cloudrun') IS NOT NULL;
RESET ROLE;
SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "jobs:run", "fault": "reset_after", "count": 1}, {"endpoint": "GET executions", "fault": "delay:6000", "count": 3}]}');
SET ROLE alice;
SELECT sandbox.submit('sleep 6; echo ran > /workspace/marker', 'f95') AS c \gset
SELECT pg_sleep(2);
SELECT sandbox.cancel(:c);
SELECT is((SELECT status FROM sandbox.wait(:c, '30 s')), 'cancelled', 'the command is reported cancelled');
RESET ROLE;
SELECT pg_sleep(15);
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('cat marker 2>/dev/null || echo none', 'f95')), E'none\n',
		  'the cancelled command changed nothing in the session');
SELECT sandbox.drop_session('f95');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');
SELECT * FROM finish();
