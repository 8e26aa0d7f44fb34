-- Fault suite, issue 11 finding 5: the memory of a backend stays within a
-- small multiple of what a sandbox_user gives it or asks of it.  Measured as
-- the growth of a fresh backend's peak resident memory (VmHWM) over its own
-- after a first exec, each call in a connection of its own as alice.
--   * file_search with many short matches: 1.7 million entries (56 MB of
--     result, within max_transfer_bytes) once took 1.1 GB as a jansson tree;
--     now the entries may take at most 2 x max_transfer_bytes, beyond which
--     the call fails with 54000.
--   * an env argument of 100 MB (refused: an environment holds at most 1 MB)
--     was copied to text and to a jansson tree before the check (667 MB in
--     all); now it is refused before any copy (about 290 MB, most of it the
--     making of the argument).
-- Runs as: the superuser postgres for setup only; the calls as alice (sandbox_user
-- only) through dblink.  Local backend.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET cloudrun_sandbox.backend = 'local';
SELECT plan(5);

-- mem_growth_mb runs sql in a fresh connection as alice after a first exec,
-- and returns how much her backend's peak memory grew meanwhile, in MB, and
-- the error (SQLSTATE and message) the call ended with, if any.
CREATE FUNCTION pg_temp.mem_growth_mb(sql text, OUT mb bigint, OUT error text)
LANGUAGE plpgsql AS $$
DECLARE
	pid int;
	base bigint;
BEGIN
	PERFORM test.dblink_connect('mem', 'alice');
	SELECT p INTO pid FROM dblink('mem', 'SELECT pg_backend_pid()') AS t(p int);
	PERFORM * FROM dblink('mem', $q$SELECT status FROM sandbox.exec('true', 'mem60')$q$) AS t(s text);
	base := test.backend_hwm_kb(pid);
	error := 'no error';
	BEGIN
		PERFORM * FROM dblink('mem', 'SELECT count(*) FROM (' || sql || ') q') AS t(n bigint);
	EXCEPTION WHEN OTHERS THEN
		error := SQLSTATE || ': ' || SQLERRM;
	END;
	mb := (test.backend_hwm_kb(pid) - base) / 1024;
	PERFORM dblink_disconnect('mem');
END $$;

SET ROLE alice;
SELECT sandbox.drop_session('mem60', if_exists => true);
SELECT status FROM sandbox.exec('seq 1 3000000 > lines.txt', 'mem60');
RESET ROLE;

-- file_search: 1.7 million matching lines of a few bytes each.
SELECT * FROM pg_temp.mem_growth_mb($$SELECT * FROM sandbox.file_search('lines.txt', '1', 'mem60')$$) \gset search_
SELECT diag('file_search, 1.7 million entries: backend peak grew by ' || :search_mb || ' MB: ' || :'search_error');
SELECT cmp_ok(:search_mb::bigint, '<', 400::bigint,
			  'file_search with 1.7 million short matches grows the backend by less than 4 x max_transfer_bytes');
SELECT is(:'search_error'::text, '54000: the result of sandbox.file_search has too many entries to hold in memory',
		  'and fails with 54000, naming the call');
-- A search with fewer entries still works.
SET ROLE alice;
SELECT is((SELECT count(*)::int FROM sandbox.file_search('lines.txt', '^299999[0-9]$', 'mem60')), 10,
		  'a search with few matches in the same file works');
RESET ROLE;

-- An env argument of 100 MB is refused before it is copied (making the
-- argument itself takes about 3 x its size: the repeat, the jsonb).
SELECT * FROM pg_temp.mem_growth_mb($$SELECT status FROM sandbox.exec('true', 'mem60',
	env => jsonb_build_object('V', repeat('x', 100000000)))$$) \gset env_
SELECT diag('exec with a 100 MB env: backend peak grew by ' || :env_mb || ' MB: ' || :'env_error');
SELECT cmp_ok(:env_mb::bigint, '<', 400::bigint,
			  'a 100 MB env argument grows the backend by less than 4 x its size, making it included');
SELECT is(:'env_error'::text, '54000: env argument is too large: 100000017 bytes', 'and is refused with 54000');

SET ROLE alice;
SELECT sandbox.drop_session('mem60');
RESET ROLE;
SELECT * FROM finish();
