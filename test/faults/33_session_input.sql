-- Issue 10, smaller points: a write to a path with a trailing slash (which
-- names a directory) is refused, on both backends; create_session() with
-- if_not_exists on a session of the other backend is an error.
-- Runs as: postgres, calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);

\set backend local
\ir 33_session_input.psql
\set backend cloudrun
\ir 33_session_input.psql

-- if_not_exists on a session of the other backend.
SET cloudrun_sandbox.backend = local;
SET ROLE alice;
SELECT sandbox.drop_session('ine', if_exists => true);
SELECT sandbox.create_session('ine');
SELECT is(test.error_of($$SELECT sandbox.create_session('ine', backend => 'cloudrun', if_not_exists => true)$$),
		  '42710: session "ine" already exists on the local backend HINT: Drop it first, or use another name for a cloudrun session.',
		  'create_session(if_not_exists) on a session of the other backend is an error');
SELECT sandbox.drop_session('ine');

RESET ROLE;

SELECT * FROM finish();
