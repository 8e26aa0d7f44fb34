-- Issue 10, finding 12: a sandbox.exec() whose transaction rolls back.  The
-- command did run: its file changes and its cd/export are kept (they are in
-- the session's storage); the rollback takes back only its history row.  The
-- mirror (sandbox.sessions) then follows state.json without waiting for the
-- next call, and its last_execution only ever names a command that has a
-- history row.  Both backends.
-- Runs as: postgres (looking at storage), calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(16);

\set backend local
\ir 31_exec_rollback.psql
\set backend cloudrun
\ir 31_exec_rollback.psql

SELECT * FROM finish();
