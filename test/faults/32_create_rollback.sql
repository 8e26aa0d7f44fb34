-- Issue 10, smaller point: a create_session() (or a first exec(), which
-- creates the session) that fails or rolls back leaves no directory and no
-- objects behind.  Both backends.
-- Runs as: postgres (looking at storage), calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(8);

\set backend local
\ir 32_create_rollback.psql
\set backend cloudrun
\ir 32_create_rollback.psql

SELECT * FROM finish();
