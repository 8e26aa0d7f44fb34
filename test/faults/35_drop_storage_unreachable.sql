-- Issue 10, finding 8 under a fault: when a dropped cloud session's objects
-- cannot be deleted after the commit (the storage API refuses), nothing is
-- lost track of: the drop stays recorded in sandbox.dropped_storage with the
-- error, and a later reaper deletes the objects once the API answers again.
-- Runs as: postgres (emulator faults, looking at the bucket), calls as alice
-- (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(5);
SET cloudrun_sandbox.backend = cloudrun;
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['du1', 'du2']) s;
SELECT sandbox.exec('echo x > f', 'du1');
SELECT sandbox.exec('true', 'du2');
RESET ROLE;
SELECT storage_key AS du1 FROM sandbox.sessions WHERE name = 'du1' AND owner = 'alice'::regrole \gset

SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "DELETE object", "fault": "403", "count": 1000}]}');
SET ROLE alice;
SELECT sandbox.drop_session('du1');
RESET ROLE;
SELECT ok(test.wait_until(format($$SELECT attempts > 0 AND last_error IS NOT NULL FROM sandbox.dropped_storage
		  WHERE storage_key = %L$$, :'du1')),
		  'a deletion the storage API refuses stays recorded, with its error');
SELECT ok(test.key_storage_exists(:'du1'), 'and the objects are still there');
SELECT test.emu('hook', 'faults', '{}');

-- The next drop's reaper takes care of it as well.
SET ROLE alice;
SELECT sandbox.drop_session('du2');
RESET ROLE;
SELECT ok(test.wait_until(format('SELECT NOT test.key_storage_exists(%L)', :'du1')),
		  'once the API answers, a later reaper deletes the objects');
SELECT ok(test.wait_until($$SELECT NOT EXISTS (SELECT FROM sandbox.dropped_storage)$$),
		  'and nothing is left to delete');
SELECT is((SELECT count(*)::int FROM sandbox.sessions WHERE name IN ('du1', 'du2')), 0, 'both sessions are gone');
SELECT * FROM finish();
