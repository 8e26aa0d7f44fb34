-- Issue 10, finding 10: call-only variables never persist and the shell's own
-- variables (SHELLOPTS, BASHOPTS, BASH_ENV, IFS, PS4, ...) are refused in env
-- arguments and never kept from a command; set -a leaks no internal variable.
-- Both backends.  Runs as: postgres (setup); the calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(28);
\set backend local
\ir 21_call_env_shell_vars.inc
\set backend cloudrun
\ir 21_call_env_shell_vars.inc
SELECT * FROM finish();
