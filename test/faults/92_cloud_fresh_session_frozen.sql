-- Review: a submit that creates a cloud session (generation 0: "fresh") makes
-- the worker clear the session's prefix with a synchronous GCS list in its
-- loop (cloud_prepare_session from flight_start -> sb_prepare_exec).  With
-- the storage API frozen the whole worker waits, up to the submit's own
-- timeout: another role's local submit stalls.  Passes only when it does not.
-- (The worker fetches its access token first, while the API answers: a token
-- fetch is the one cloud call left that may block the worker, for at most 5 s;
-- see the README's worker section.)
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(2);
SELECT test.wait_worker();
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['f92c', 'f92w']) s;
SELECT sandbox.create_session('f92w', backend => 'cloudrun') IS NOT NULL;
SELECT sandbox.submit('true', 'f92w') AS warm \gset
SELECT status FROM sandbox.wait(:warm, '30 s');
SET ROLE bob;
SELECT sandbox.drop_session('f92l', if_exists => true);
SELECT sandbox.create_session('f92l', backend => 'local') IS NOT NULL;
SELECT sandbox.submit('true', 'f92l') AS w \gset
SELECT status FROM sandbox.wait(:w, '30 s');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{"rate_hang": 1}');
SET ROLE alice;
SET cloudrun_sandbox.backend = 'cloudrun';
SELECT sandbox.submit('echo hi', 'f92c', timeout => '20 s') AS c \gset
RESET cloudrun_sandbox.backend;
RESET ROLE;
SELECT pg_sleep(1);
SET ROLE bob;
SELECT clock_timestamp() AS t0 \gset
SELECT sandbox.submit('true', 'f92l') AS l \gset
SELECT is((SELECT status FROM sandbox.wait(:l, '30 s')), 'succeeded', 'bob''s local submit succeeds');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - :'t0')::float8, '<', 2.0::float8,
			  'within 2 seconds while alice''s fresh cloud session is being prepared');
RESET ROLE;
SELECT test.emu('hook', 'faults', '{}');
SET ROLE alice;
SELECT status FROM sandbox.wait(:c, '90 s');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['f92c', 'f92w']) s;
SET ROLE bob;
SELECT sandbox.drop_session('f92l');
RESET ROLE;
SELECT * FROM finish();
