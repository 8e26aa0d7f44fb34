-- Issue 10, finding 9: a command's cd and export are kept, or the result says
-- they were not (never a silent `succeeded`): arrays, the command's own EXIT
-- trap (with and without exit), exec, an environment over 1 MiB.  Both backends.
-- Runs as: postgres (setup); the calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(32);
\set backend local
\ir 20_state_kept_or_reported.inc
\set backend cloudrun
\ir 20_state_kept_or_reported.inc
SELECT * FROM finish();
